/**
 * Issue #22, defect 1: a `flush` taken by the writer into a batch whose write never completes
 * (the peer does not read) must still complete when the scope closes and the writer is
 * interrupted. `flush` never fails: it completes once the frames before it were handed over *or
 * the writer stopped*, so a stopped writer completes it with success.
 */
import { assert, describe, it } from "@effect/vitest"
import { Frame } from "@effect-ws/codec"
import { Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as DefaultWebSocketSession from "../src/DefaultWebSocketSession.ts"
import * as RawWebSocket from "../src/RawWebSocket.ts"
import * as TestTransport from "../src/TestTransport.ts"

/** A payload far above the pipe's high-water mark: its write waits for a peer that never reads. */
const big = Frame.binary(new Uint8Array(4096))

/** Yields up to `n` times until `fiber` is done; returns its exit (undefined if still running). */
const pollFor = <A, E>(fiber: Fiber.Fiber<A, E>, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < n && fiber.pollUnsafe() === undefined; i++) yield* Effect.yieldNow
    return fiber.pollUnsafe()
  })

describe("flush while the write is stuck and the scope closes (issue #22)", () => {
  it.effect("raw: a flush taken into the stuck batch completes (success) when the scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const [ours, _theirs] = yield* TestTransport.makePair({ highWaterMark: 16 }) // the peer never reads
      const raw = yield* RawWebSocket.make(ours, { role: "server" }).pipe(Scope.provide(scope))
      yield* raw.send(big)
      // Forked outside the session's scope, in the same turn: the flush joins the big frame's batch.
      const waiter = yield* Effect.forkChild(raw.flush, { startImmediately: true })
      const stuck = yield* pollFor(waiter, 20)
      assert.isUndefined(stuck, "flush completed although the peer reads nothing")
      assert.isDefined(raw.writer.currentFiber, "the writer is waiting in its write")
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* pollFor(waiter, 20), Exit.void, "the waiting flush never completed")
    }))

  it.effect("session: flush and close waiting on the stuck write complete once the scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const [ours, _theirs] = yield* TestTransport.makePair({ highWaterMark: 16 })
      const raw = yield* RawWebSocket.make(ours, { role: "server" }).pipe(Scope.provide(scope))
      const session = yield* DefaultWebSocketSession.make(raw, { closeTimeout: "1 second" }).pipe(Scope.provide(scope))
      yield* session.sendFrame(big)
      const flushing = yield* Effect.forkChild(session.flush, { startImmediately: true })
      const closing = yield* Effect.forkChild(session.close(), { startImmediately: true })
      assert.isUndefined(yield* pollFor(flushing, 20), "flush completed although the peer reads nothing")
      assert.isUndefined(closing.pollUnsafe(), "close completed although the peer reads nothing")
      const closer = yield* Effect.forkChild(Scope.close(scope, Exit.void), { startImmediately: true })
      yield* TestClock.adjust("1 second") // the session's finalizer waits for the flush at most closeTimeout
      assert.isDefined(yield* pollFor(closer, 20), "the scope did not close")
      assert.deepStrictEqual(yield* pollFor(flushing, 20), Exit.void, "the waiting flush never completed")
      assert.deepStrictEqual(yield* pollFor(closing, 20), Exit.void, "the waiting close never completed")
    }))
})
