/**
 * A Ping flood over a real socket: a session paused on its `maxPendingPongBytes` bound (set
 * through the adapter's `SessionOptions`) really stops reading the socket, so TCP pushes back on
 * the flooder, and nothing is lost once it reads again.
 */
import { Frame, FrameParser, Serializer } from "@effect-ws/codec"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as NodeTransport from "../src/NodeTransport.ts"
import * as SessionOptions from "../src/SessionOptions.ts"
import { eventually, socketPair } from "./helpers.ts"

/** A 125-byte Ping payload numbered `i` (in its first four bytes). */
const numbered = (i: number) => {
  const payload = new Uint8Array(125).fill(0x61)
  new DataView(payload.buffer).setUint32(0, i)
  return payload
}

describe("Ping flood over TCP", () => {
  it.live("a session paused on its Pong bound stops reading the socket: it pauses, the flooder's writes back up, then every Pong arrives in order", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const transport = yield* NodeTransport.make(server)
      const cap = 4096
      const session = yield* SessionOptions.startSession(transport, "server", [], { maxPendingPongBytes: cap })
      const writer = session.raw.writer
      const flooder = yield* NodeTransport.make(client) // does not read until told
      const serializer = new Serializer.Serializer({ mask: true })
      const perWrite = 1000 // 131 KB of Pings per write
      let writes = 0
      let stop = false
      const flood = yield* Effect.forkChild(
        Effect.gen(function*() {
          while (!stop && writes < 2000) {
            const parts: Array<Uint8Array> = []
            serializer.serializeBatch(Array.from({ length: perWrite }, (_, k) => Frame.ping(numbered(writes * perWrite + k))), parts)
            writes++
            yield* flooder.write(parts)
          }
        }),
        { startImmediately: true }
      )
      // The session stops reading once its Pongs (which the flooder does not read) pass the bound:
      // the server socket pauses with at most a chunk or two held, and the flooder's writes wait.
      yield* eventually(() => server.isPaused() && client.writableNeedDrain && writer.pendingPongBytes > cap, 1000)
      assert.isAtMost(writer.pendingPongBytes, cap + 127)
      assert.isAtMost(transport.bufferedInput(), 2)
      assert.isAtMost(server.readableLength, server.readableHighWaterMark * 2)
      assert.isUndefined(flood.pollUnsafe())
      stop = true
      // The flooder reads: every Pong arrives, in order, and its writes complete.
      const parser = new FrameParser.FrameParser({ role: "client" })
      const frames: Array<Frame.Frame> = []
      let received = 0
      while (flood.pollUnsafe() === undefined || received < writes * perWrite) {
        const chunk = yield* flooder.read
        assert.isUndefined(parser.push(chunk, frames))
        for (const f of frames) {
          const n = f.payload.length === 125 ? new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(0) : -1
          if (f._tag !== "Pong" || n !== received) assert.fail(`frame ${received}: ${f._tag} for Ping ${n}`)
          received++
        }
        frames.length = 0
        assert.isAtMost(writer.pendingPongBytes, cap + 127)
      }
      yield* Fiber.join(flood)
      assert.strictEqual(received, writes * perWrite)
      assert.isFalse(session.raw.writer.isClosedForSending) // merely fast: not closed
    }))
})
