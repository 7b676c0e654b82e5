/**
 * Memory of a frame left half-received (issue 19): when a connection ends in the middle of a
 * large frame, the buffer the parser was filling is freed as the session ends, not whenever V8
 * next collects garbage (an idle process may not for a long time). Real sockets on 127.0.0.1; the
 * process's `arrayBuffers` is read without forcing a GC.
 */
import { assert, describe, it } from "@effect/vitest"
import { CloseReason } from "@effect-ws/codec"
import { Deferred, Effect } from "effect"
import * as WebSocketServer from "../src/WebSocketServer.ts"
import { connectRaw, eventually, readUntil, upgradeRequest } from "./helpers.ts"

const MiB = 1024 * 1024

describe("a frame left half-received", () => {
  it.live("its buffer is freed when the connection ends, without waiting for a GC", () =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<CloseReason.CloseReason>()
      const server = yield* WebSocketServer.make(
        (session) => Effect.andThen(Effect.flatMap(session.awaitClose, (reason) => Deferred.succeed(ended, reason)), Effect.never),
        { host: "127.0.0.1" }
      )
      const socket = yield* connectRaw(server.port)
      socket.write(upgradeRequest())
      yield* readUntil(socket, (s) => s.includes("\r\n\r\n"))
      // A binary frame declaring 64 MiB (masked, key 0), then 8 MiB of it.
      const payload = Buffer.alloc(8 * MiB, 1)
      const base = process.memoryUsage().arrayBuffers
      socket.write(Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0]))
      socket.write(payload)
      // The server holds what arrived (the payload written here stays counted until it is flushed).
      yield* eventually(() => process.memoryUsage().arrayBuffers - base >= 7 * MiB, 1000)
      socket.destroy()
      assert.strictEqual((yield* Deferred.await(ended)).code, 1006)
      // Freed as the reader finishes (within a few ms of the session's end), not at some later GC.
      const held = () => process.memoryUsage().arrayBuffers - base
      const freed = yield* Effect.result(eventually(() => held() < 2 * MiB, 40))
      assert.strictEqual(freed._tag, "Success", `still held 200 ms after the end: ${(held() / MiB).toFixed(1)} MiB`)
    }))
})
