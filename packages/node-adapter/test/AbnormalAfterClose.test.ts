/**
 * Issue #22, defect 4, over a real socket: our client sends Close, the peer reads it and drops the
 * connection without answering. RFC 6455 §7.1.5 (and `ws`): no Close was received, so the close
 * code is 1006, and the session ends with `AbnormalClosure` carrying the Close we sent.
 */
import { assert, describe, it } from "@effect/vitest"
import { CloseReason, type Frame, FrameParser } from "@effect-ws/codec"
import { Deferred, Effect, Exit } from "effect"
import type * as Net from "node:net"
import * as WebSocketClient from "../src/WebSocketClient.ts"
import { listen, switchingProtocols } from "./helpers.ts"

/** A raw peer on 127.0.0.1: answers the upgrade, then drops the socket (`how`) as soon as it read our Close, without a reply. */
const vanishingPeer = (how: "destroy" | "end", sawClose: Deferred.Deferred<number>) =>
  listen((socket: Net.Socket) => {
    let head = ""
    const parser = new FrameParser.FrameParser({ role: "server" })
    const frames: Array<Frame.Frame> = []
    socket.on("error", () => {})
    socket.on("data", (chunk: Buffer) => {
      if (!head.includes("\r\n\r\n")) {
        head += chunk.toString("latin1")
        if (!head.includes("\r\n\r\n")) return
        socket.write(switchingProtocols(head))
        return
      }
      parser.push(chunk, frames)
      const close = frames.find((f) => f._tag === "Close")
      if (close !== undefined) {
        Deferred.doneUnsafe(sawClose, Exit.succeed((close.payload[0]! << 8) | close.payload[1]!))
        if (how === "destroy") socket.destroy()
        else socket.end() // FIN, no Close
      }
    })
  })

describe("client: the server vanishes after reading our Close (issue #22)", () => {
  for (const how of ["destroy", "end"] as const) {
    it.live(`the peer reads our Close and ${how === "destroy" ? "destroys the socket" : "half-closes (FIN)"} without replying: awaitClose is 1006`, () =>
      Effect.gen(function*() {
        const sawClose = yield* Deferred.make<number>()
        const { port } = yield* vanishingPeer(how, sawClose)
        const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}/`)
        yield* session.close(CloseReason.CloseReason(1000, "bye"))
        assert.strictEqual(yield* Deferred.await(sawClose).pipe(Effect.timeout("2 seconds")), 1000)
        const reason = yield* session.awaitClose.pipe(Effect.timeout("2 seconds")) // well below the 10 s close timeout
        assert.strictEqual(reason.code, 1006)
        const error = yield* Effect.flip(session.receive)
        assert.strictEqual(error._tag, "AbnormalClosure")
        if (error._tag === "AbnormalClosure") assert.deepStrictEqual(error.sent, { code: 1000, message: "bye" })
      }).pipe(Effect.scoped))
  }
})
