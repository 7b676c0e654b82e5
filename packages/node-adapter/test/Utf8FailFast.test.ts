/**
 * UTF-8 fail fast over real sockets (127.0.0.1), in the timing of Autobahn 6.4.3/6.4.4: a text
 * frame's header and an early part holding an invalid byte are written, and the rest of the frame
 * only once the Close 1007 has come back (or after a bounded wait of 2 s, which fails the test).
 * Once for our server (a raw TCP client speaks the handshake) and once for our client (a raw
 * `node:net` server speaks it).
 */
import { assert, describe, it } from "@effect/vitest"
import { CloseReason, Frame, FrameParser, Serializer } from "@effect-ws/codec"
import { DefaultWebSocketSession } from "@effect-ws/core"
import { Deferred, Effect } from "effect"
import type * as Net from "node:net"
import * as WebSocketClient from "../src/WebSocketClient.ts"
import * as WebSocketServer from "../src/WebSocketServer.ts"
import { connectRaw, echo, listen, switchingProtocols, upgradeRequest } from "./helpers.ts"

/** How long the peer waits for the Close before it writes the rest anyway. */
const WAIT_MS = 2_000

/** A 300-byte text whose 10th byte is invalid (0xC0, an overlong lead byte). */
const badPayload = (): Uint8Array => {
  const payload = new Uint8Array(300).fill(0x61)
  payload[9] = 0xc0
  return payload
}

/** Serializes frames (masked when `mask`: from a client). */
const wireOf = (mask: boolean, ...frames: ReadonlyArray<Frame.Frame>): Buffer => {
  const parts: Array<Uint8Array> = []
  new Serializer.Serializer({ mask }).serializeBatch(frames, parts)
  return Buffer.from(Serializer.concat(parts))
}

/**
 * Reads one side of a raw connection: the HTTP head (up to the blank line), then frames parsed as
 * `role` (the raw peer's role). `closeOrTimeout` resolves with the first Close frame's code, or
 * "timeout" after `WAIT_MS`.
 */
const rawReader = (socket: Net.Socket, role: "server" | "client") => {
  let head = ""
  let headDone = false
  const parser = new FrameParser.FrameParser({ role })
  const frames: Array<Frame.Frame> = []
  let onHead: (() => void) | undefined
  let onFrame: (() => void) | undefined
  socket.on("data", (chunk: Buffer) => {
    let rest: Buffer = chunk
    if (!headDone) {
      head += chunk.toString("latin1")
      const end = head.indexOf("\r\n\r\n")
      if (end === -1) return
      headDone = true
      rest = chunk.subarray(chunk.length - (head.length - end - 4))
      head = head.slice(0, end + 4)
      onHead?.()
    }
    if (rest.length > 0) parser.push(Uint8Array.from(rest), frames)
    onFrame?.()
  })
  const closeCode = () => {
    const close = frames.find((f) => f._tag === "Close")
    return close === undefined ? undefined : (close.payload[0]! << 8) | close.payload[1]!
  }
  return {
    frames,
    head: () => new Promise<string>((resolve) => (headDone ? resolve(head) : (onHead = () => resolve(head)))),
    closeOrTimeout: () =>
      new Promise<number | "timeout">((resolve) => {
        const timer = setTimeout(() => resolve("timeout"), WAIT_MS)
        const check = () => {
          const code = closeCode()
          if (code === undefined) return
          clearTimeout(timer)
          onFrame = undefined
          resolve(code)
        }
        onFrame = check
        check()
      })
  }
}

describe("UTF-8 fail fast over real sockets (Autobahn 6.4.3 timing)", () => {
  it.live("our server closes 1007 as soon as the invalid byte of a text frame arrives, before the rest is sent", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1" })
      const socket = yield* connectRaw(server.port)
      const reader = rawReader(socket, "client")
      socket.write(upgradeRequest())
      const head = yield* Effect.promise(reader.head)
      assert.match(head, /^HTTP\/1\.1 101/)
      const wire = wireOf(true, Frame.text("ok"), Frame.text(badPayload()))
      const bad = wire.length - 300 + 9 // the invalid byte
      socket.write(wire.subarray(0, bad + 1))
      const started = Date.now()
      const code = yield* Effect.promise(reader.closeOrTimeout)
      socket.write(wire.subarray(bad + 1)) // the rest, only now
      assert.strictEqual(code, 1007)
      assert.isBelow(Date.now() - started, WAIT_MS)
      assert.deepStrictEqual(reader.frames.map((f) => f._tag), ["Text", "Close"]) // "ok" was echoed first
      assert.strictEqual(Buffer.from(reader.frames[0]!.payload).toString(), "ok")
    }))

  it.live("our client closes 1007 as soon as the invalid byte of a text frame arrives, before the rest is sent", () =>
    Effect.gen(function*() {
      const outcome = yield* Deferred.make<number | "timeout">()
      const wire = wireOf(false, Frame.text("ok"), Frame.text(badPayload()))
      const bad = wire.length - 300 + 9
      const { port } = yield* listen((socket) => {
        socket.on("error", () => {})
        const reader = rawReader(socket, "server")
        void reader.head().then(async (request) => {
          socket.write(switchingProtocols(request))
          socket.write(wire.subarray(0, bad + 1))
          const code = await reader.closeOrTimeout()
          if (!socket.destroyed) {
            socket.write(wire.subarray(bad + 1)) // the rest, only now
            socket.end(wireOf(false, Frame.close(CloseReason.CloseReason(1007)))) // answer the Close
          }
          Deferred.doneUnsafe(outcome, Effect.succeed(code))
        })
      })
      const started = Date.now()
      const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}/`)
      // "ok" came before the bad bytes: our Close waits until the application took it (replies
      // before the Close), then goes out while the rest of the frame is still unsent.
      const first = yield* session.receive
      assert.strictEqual(first._tag === "Text" && DefaultWebSocketSession.readText(first), "ok")
      assert.strictEqual(yield* Deferred.await(outcome), 1007)
      assert.isBelow(Date.now() - started, WAIT_MS)
      const error = yield* Effect.flip(session.receive)
      assert.deepStrictEqual([error._tag, error._tag === "ProtocolViolation" && error.code], ["ProtocolViolation", 1007])
      assert.strictEqual((yield* Deferred.await(session.closeReason)).code, 1007)
    }))
})
