/** Issue #22 (defect 2): a fragmented message sent with `sendFrame` holds the send gate from its first frame to its final one. */
import { assert, describe, it } from "@effect/vitest"
import { Frame } from "@effect-ws/codec"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as DefaultWebSocketSession from "../src/DefaultWebSocketSession.ts"
import type * as Extension from "../src/Extension.ts"
import * as RawWebSocket from "../src/RawWebSocket.ts"
import * as TestTransport from "../src/TestTransport.ts"
import { closeOf, type PeerEvent, TestPeer, text, utf8 } from "./helpers.ts"

const setup = (extensions: ReadonlyArray<Extension.WebSocketExtension> = []) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const [ours, theirs] = yield* TestTransport.makePair()
    const raw = yield* RawWebSocket.make(ours, { role: "server", extensions }).pipe(Scope.provide(scope))
    const session = yield* DefaultWebSocketSession.make(raw).pipe(Scope.provide(scope))
    return { session, peer: new TestPeer(theirs, "client"), close: Scope.close(scope, Exit.void) }
  })

/** An extension (RSV1) whose outgoing step takes 10 ms for messages starting with "slow" (a compressor under load). */
const Slow: Extension.WebSocketExtension = {
  key: "x-slow",
  rsv1: true,
  rsv2: false,
  rsv3: false,
  protocols: [],
  clientNegotiation: () => true,
  serverNegotiation: () => [],
  processOutgoingMessage: (m) =>
    new TextDecoder().decode(m.payload).startsWith("slow")
      ? Effect.as(Effect.sleep("10 millis"), Frame.make(m._tag, true, true, false, false, m.payload))
      : Effect.succeed(m),
  processIncomingMessage: (m) => Effect.succeed(m)
}

/** What the peer saw, as `tag(more):text` (`more` when `fin` is not set). */
const shown = (e: PeerEvent): string =>
  e._tag === "Close" ? `Close:${JSON.stringify(closeOf(e))}` : "fin" in e ? `${e._tag}${e.fin ? "" : "(more)"}:${text(e)}` : e._tag

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

describe("DefaultWebSocketSession: fragments hold the send gate (issue #22)", () => {
  it.effect("a send between two fragments of one message goes out after the final fragment", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup()
      yield* session.sendFrame(Frame.text("a", { fin: false }))
      const other = yield* Effect.forkChild(session.send("x"), { startImmediately: true })
      yield* settle
      yield* session.sendFrame(Frame.ping(utf8("p"))) // control frames may still go between fragments
      yield* session.sendFrame(Frame.continuation(utf8("b")))
      yield* Fiber.join(other)
      const seen = [yield* peer.next, yield* peer.next, yield* peer.next, yield* peer.next].map(shown)
      assert.deepStrictEqual(seen, ["Text(more):a", "Ping:p", "Continuation:b", "Text:x"])
      // the gate is free again: whole messages go straight out
      yield* session.send("y")
      assert.strictEqual(shown(yield* peer.next), "Text:y")
      yield* close
    }))

  it.effect("a second fragmented message from another fiber waits for the first one's final fragment", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup()
      yield* session.sendFrame(Frame.binary(utf8("a1"), { fin: false }))
      const other = yield* Effect.forkChild(
        Effect.andThen(session.sendFrame(Frame.text("b1", { fin: false })), session.sendFrame(Frame.continuation(utf8("b2")))),
        { startImmediately: true }
      )
      yield* settle
      yield* session.sendFrame(Frame.continuation(utf8("a2"), { fin: false }))
      yield* session.sendFrame(Frame.continuation(utf8("a3")))
      yield* Fiber.join(other)
      const seen: Array<string> = []
      for (let i = 0; i < 5; i++) seen.push(shown(yield* peer.next))
      assert.deepStrictEqual(seen, ["Binary(more):a1", "Continuation(more):a2", "Continuation:a3", "Text(more):b1", "Continuation:b2"])
      yield* close
    }))

  it.effect("a fragment cannot overtake a message still being processed by an extension, nor be overtaken", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup([Slow])
      const slow = yield* Effect.forkChild(session.send("slow first"), { startImmediately: true })
      const fragmented = yield* Effect.forkChild(
        Effect.andThen(session.sendFrame(Frame.text("a", { fin: false })), session.sendFrame(Frame.continuation(utf8("b")))),
        { startImmediately: true }
      )
      const after = yield* Effect.forkChild(session.send("fast after"), { startImmediately: true })
      yield* settle
      yield* TestClock.adjust("10 millis")
      for (const f of [slow, fragmented, after]) yield* Fiber.join(f)
      const seen: Array<string> = []
      for (let i = 0; i < 4; i++) seen.push(shown(yield* peer.next))
      assert.deepStrictEqual(seen, ["Text:slow first", "Text(more):a", "Continuation:b", "Text:fast after"])
      yield* close
    }))

  it.effect("a fragmented message left open by a fiber that ends (interrupted or not) closes the session with 1011; waiting senders fail with OutgoingClosed", () =>
    Effect.gen(function*() {
      for (const ending of ["interrupted", "returned"] as const) {
        const { session, peer, close } = yield* setup()
        const done = yield* Deferred.make<void>()
        const opener = yield* Effect.forkChild(
          Effect.andThen(session.sendFrame(Frame.text("a", { fin: false })), Deferred.await(done)),
          { startImmediately: true }
        )
        const waiting = yield* Effect.forkChild(session.send("x"), { startImmediately: true })
        yield* settle
        assert.isUndefined(waiting.pollUnsafe())
        if (ending === "interrupted") yield* Fiber.interrupt(opener)
        else yield* Effect.andThen(Deferred.succeed(done, undefined), Fiber.join(opener))
        const failed = yield* Fiber.await(waiting)
        assert.isTrue(Exit.isFailure(failed))
        assert.strictEqual(shown(yield* peer.next), "Text(more):a")
        assert.deepStrictEqual(closeOf(yield* peer.next), [1011, "Fragmented message left open"])
        assert.strictEqual((yield* Effect.flip(session.send("late")))._tag, "OutgoingClosed")
        // the close handshake is bounded as after `close`: no answer within closeTimeout ends it with 1006
        yield* TestClock.adjust(DefaultWebSocketSession.DEFAULT_CLOSE_TIMEOUT)
        assert.deepStrictEqual({ ...(yield* session.awaitClose) }, { code: 1006, message: "Close handshake timed out" })
        yield* close
      }
    }))

  it.effect("the session ending while a fragmented message is open releases the gate: waiting senders fail with OutgoingClosed", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup()
      yield* session.sendFrame(Frame.text("a", { fin: false }))
      const waiting = yield* Effect.forkChild(session.send("x"), { startImmediately: true })
      yield* settle
      assert.isUndefined(waiting.pollUnsafe())
      yield* peer.send(Frame.close()) // the peer closes; the owner (this fiber) is still running
      assert.strictEqual((yield* Effect.flip(Fiber.join(waiting)))._tag, "OutgoingClosed")
      assert.strictEqual((yield* Effect.flip(session.sendFrame(Frame.continuation(utf8("b")))))._tag, "OutgoingClosed")
      assert.strictEqual(shown(yield* peer.next), "Text(more):a")
      assert.strictEqual(shown(yield* peer.next), "Close:[1005,\"\"]")
      yield* close
    }))

  it.effect("a new message from the fiber whose fragmented message is open closes the session with 1011 and fails with OutgoingClosed", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup()
      yield* session.sendFrame(Frame.text("a", { fin: false }))
      const error = yield* Effect.flip(session.send("x"))
      assert.strictEqual(error._tag, "OutgoingClosed")
      assert.strictEqual(shown(yield* peer.next), "Text(more):a")
      assert.deepStrictEqual(closeOf(yield* peer.next), [1011, "Fragmented message left open"])
      yield* peer.send(Frame.close())
      assert.strictEqual((yield* session.awaitClose).code, 1011) // we closed first: the reason we sent
      yield* close
    }))

  it.effect("the fiber that sent the latest fragment owns the message: it can be handed over to another fiber", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup()
      const go = yield* Deferred.make<void>()
      const opener = yield* Effect.forkChild(
        Effect.gen(function*() {
          yield* session.sendFrame(Frame.text("a", { fin: false }))
          return yield* Effect.forkDetach(
            Effect.andThen(
              session.sendFrame(Frame.continuation(utf8("b"), { fin: false })),
              Effect.andThen(Deferred.await(go), session.sendFrame(Frame.continuation(utf8("c"))))
            ),
            { startImmediately: true }
          )
        }),
        { startImmediately: true }
      )
      const continuer = yield* Fiber.join(opener) // the opener ended after handing the message over
      const waiting = yield* Effect.forkChild(session.send("x"), { startImmediately: true })
      yield* settle
      assert.isUndefined(waiting.pollUnsafe())
      yield* Deferred.succeed(go, undefined)
      yield* Fiber.join(continuer)
      yield* Fiber.join(waiting)
      const seen: Array<string> = []
      for (let i = 0; i < 4; i++) seen.push(shown(yield* peer.next))
      assert.deepStrictEqual(seen, ["Text(more):a", "Continuation(more):b", "Continuation:c", "Text:x"])
      yield* close
    }))
})
