/**
 * Replies before the Close (issue #21, item 3; conformance §3–§5, Autobahn 3.2, 3.3, 4.1.3, 4.1.4,
 * 4.2.3, 4.2.4, 5.15): valid messages that arrive just before a bad frame reach the handler, and
 * what it sends in answer goes out before our Close 1002. The session waits for the handler to
 * take them (for `consumeEach`, until `f` completed on them; for `messages`, until the stream
 * pulled again after them; for `receive`, until they were received), at most `closeTimeout`.
 */
import { assert, describe, it } from "@effect/vitest"
import { CloseReason, Frame } from "@effect-ws/codec"
import { Cause, Deferred, Effect, Exit, Fiber, Queue, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as DefaultWebSocketSession from "../src/DefaultWebSocketSession.ts"
import type { SessionError } from "../src/Errors.ts"
import * as RawWebSocket from "../src/RawWebSocket.ts"
import * as TestTransport from "../src/TestTransport.ts"
import { closeOf, type PeerEvent, TestPeer, text, utf8 } from "./helpers.ts"

type Role = "server" | "client"
type Session = DefaultWebSocketSession.WebSocketSession

/** When the peer's bytes arrive: after the session is up, or already waiting when the raw session is made (a client's bytes right after the 101 head). */
type Timing = "after the session started" | "before the raw session was made"
const TIMINGS: ReadonlyArray<Timing> = ["after the session started", "before the raw session was made"]
const ROLES: ReadonlyArray<Role> = ["server", "client"]

/** One Autobahn-like shape: valid frames, then the bad frame (and what follows it), all in one write. */
interface BadInput {
  readonly name: string
  /** The frames the peer writes, as bytes; `masked` when the peer is a client. */
  readonly bytes: (peer: TestPeer, masked: boolean) => Uint8Array
  /** The messages that arrived before the bad frame: their echoes must precede our Close. */
  readonly echoes: ReadonlyArray<string>
  readonly reason: string
}

const serialize = (peer: TestPeer, frames: ReadonlyArray<Frame.Frame>): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  peer.serializer.serializeBatch(frames, out)
  return out
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    all.set(p, at)
    at += p.length
  }
  return all
}

/** An empty frame with a reserved opcode (FIN set), masked with a zero key when the peer is a client. */
const reservedOpcode = (opcode: number, masked: boolean): Uint8Array =>
  masked ? Uint8Array.of(0x80 | opcode, 0x80, 0, 0, 0, 0) : Uint8Array.of(0x80 | opcode, 0x00)

const HELLO = "Hello, world!"
const PING = Frame.ping(utf8("ping after the bad frame"))

const BAD_INPUTS: ReadonlyArray<BadInput> = [
  {
    name: "RSV1 set without an extension (3.x)",
    bytes: (peer) =>
      concat(serialize(peer, [Frame.text(HELLO), Frame.make("Text", true, true, false, false, utf8(HELLO)), PING])),
    echoes: [HELLO],
    reason: "RSV bits set without a negotiated extension"
  },
  {
    name: "reserved opcode 3 (4.1.3)",
    bytes: (peer, masked) =>
      concat([...serialize(peer, [Frame.text(HELLO)]), reservedOpcode(3, masked), ...serialize(peer, [PING])]),
    echoes: [HELLO],
    reason: ""
  },
  {
    name: "reserved opcode 11 (4.2.3)",
    bytes: (peer, masked) =>
      concat([...serialize(peer, [Frame.text(HELLO)]), reservedOpcode(11, masked), ...serialize(peer, [PING])]),
    echoes: [HELLO],
    reason: ""
  },
  {
    name: "a continuation with nothing to continue",
    bytes: (peer) => concat(serialize(peer, [Frame.text(HELLO), Frame.continuation(utf8("orphan")), PING])),
    echoes: [HELLO],
    reason: "Continuation frame without an open message"
  },
  {
    name: "5.15: fragment1 + fragment2, then a continuation with nothing to continue",
    bytes: (peer) =>
      concat(serialize(peer, [
        Frame.text("fragment1", { fin: false }),
        Frame.continuation(utf8("fragment2")),
        Frame.continuation(utf8("fragment3"), { fin: false }),
        Frame.continuation(utf8("fragment4"))
      ])),
    echoes: ["fragment1fragment2"],
    reason: "Continuation frame without an open message"
  }
]

/** Echo handlers, one per way of reading. */
const HANDLERS: ReadonlyArray<readonly [string, (session: Session) => Effect.Effect<unknown, { readonly _tag: string }>]> = [
  ["receive", (session) => Effect.forever(Effect.flatMap(session.receive, (m) => session.sendFrame(m)))],
  ["messages", (session) => Stream.runForEach(session.messages, (m) => session.sendFrame(m))],
  ["consumeEach", (session) => session.consumeEach((m) => session.sendFrame(m))]
]

/**
 * A session of `role` and its scripted peer. With `timing` "before the raw session was made" the
 * peer's bytes are written before `RawWebSocket.make`, and the session is made right after it (as
 * the adapter does); otherwise `send` writes them.
 */
const setup = (
  role: Role,
  timing: Timing,
  bytes: (peer: TestPeer, masked: boolean) => Uint8Array,
  options: DefaultWebSocketSession.DefaultWebSocketSessionOptions = {}
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const [ours, theirs] = yield* TestTransport.makePair()
    const peer = new TestPeer(theirs, role === "server" ? "client" : "server")
    const input = bytes(peer, role === "server")
    if (timing === "before the raw session was made") yield* peer.sendBytes(input)
    const raw = yield* RawWebSocket.make(ours, { role }).pipe(Scope.provide(scope))
    const session = yield* DefaultWebSocketSession.make(raw, options).pipe(Scope.provide(scope))
    const send = timing === "before the raw session was made" ? Effect.void : peer.sendBytes(input)
    return { session, peer, ours, scope, send }
  })

const settle = Effect.gen(function*() {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const assertClose1002 = (event: PeerEvent, reason: string) => {
  const close = closeOf(event)
  assert.isArray(close, `expected our Close, got ${typeof close === "string" ? close : ""}`)
  assert.strictEqual((close as [number, string])[0], 1002)
  if (reason !== "") assert.strictEqual((close as [number, string])[1], reason)
}

/** The peer answers our Close and half-closes; then everything else it reads is the end of input (no Pong after our Close). */
const finishHandshake = (peer: TestPeer) =>
  Effect.gen(function*() {
    yield* peer.send(Frame.close(CloseReason.CloseReason(1002)))
    yield* peer.transport.end
    const rest = yield* peer.drain
    assert.deepStrictEqual(rest.map((e) => e._tag), ["TransportClosed"], "nothing after our Close")
  })

const assertProtocolViolation = (exit: Exit.Exit<unknown, unknown>) => {
  assert.isTrue(Exit.isFailure(exit), "the handler ends with the session's failure")
  if (Exit.isFailure(exit)) {
    const error = Cause.findErrorOption(exit.cause)
    assert.strictEqual(error._tag, "Some", Cause.pretty(exit.cause))
    if (error._tag === "Some") {
      const e = error.value as SessionError
      assert.strictEqual(e._tag, "ProtocolViolation")
      if (e._tag === "ProtocolViolation") assert.strictEqual(e.code, 1002)
    }
  }
}

describe("replies before the Close: an echo handler's answers precede Close 1002", () => {
  for (const role of ROLES) {
    for (const timing of TIMINGS) {
      for (const bad of BAD_INPUTS) {
        for (const [kind, handler] of HANDLERS) {
          it.effect(`${role}, ${kind}, ${bad.name}, bytes ${timing}`, () =>
            Effect.gen(function*() {
              const { peer, scope, send, session } = yield* setup(role, timing, bad.bytes)
              const running = yield* Effect.forkChild(handler(session))
              yield* send
              for (const expected of bad.echoes) {
                const echo = yield* peer.next
                assert.strictEqual(echo._tag, "Text", `expected the echo of "${expected}", got ${text(echo)}`)
                assert.strictEqual(text(echo), expected)
              }
              assertClose1002(yield* peer.next, bad.reason)
              assertProtocolViolation(yield* Fiber.await(running))
              // Sends after our Close are refused.
              assert.strictEqual((yield* Effect.flip(session.send("late")))._tag, "OutgoingClosed")
              assert.strictEqual((yield* Deferred.await(session.closeReason)).code, 1002)
              yield* finishHandshake(peer)
              yield* Scope.close(scope, Exit.void)
            }))
        }
      }
    }
  }
})

describe("replies before the Close: how long the session waits for the handler", () => {
  for (const role of ROLES) {
    for (const timing of TIMINGS) {
      for (const bad of BAD_INPUTS) {
        it.effect(`${role}, a handler that never reads, ${bad.name}, bytes ${timing}: Close 1002 after closeTimeout, the messages dropped`, () =>
          Effect.gen(function*() {
            const { ours, peer, scope, send, session } = yield* setup(role, timing, bad.bytes, { closeTimeout: "5 seconds" })
            yield* send
            yield* settle
            assert.strictEqual(ours.bytesWritten(), 0, "no Close while the handler may still take the messages")
            yield* TestClock.adjust("4999 millis")
            yield* settle
            assert.strictEqual(ours.bytesWritten(), 0, "no Close before closeTimeout")
            yield* TestClock.adjust("1 millis")
            assertClose1002(yield* peer.next, bad.reason)
            // The messages not taken in time were dropped: the next take gets the failure.
            const failure = yield* Effect.flip(session.receive)
            assert.strictEqual(failure._tag, "ProtocolViolation")
            yield* finishHandshake(peer)
            yield* Scope.close(scope, Exit.void)
          }))
      }
    }
  }

  const hello = BAD_INPUTS[0]!

  for (const role of ROLES) {
    // consumeEach waits for f on each message; messages waits until the stream pulls again.
    const slowReaders: ReadonlyArray<readonly [string, (session: DefaultWebSocketSession.WebSocketSession) => Effect.Effect<void, unknown>]> = [
      [
        "consumeEach: the Close waits until f completed on the messages (f sleeps before answering)",
        (session) => session.consumeEach((m) => Effect.andThen(Effect.sleep("2 seconds"), session.sendFrame(m)))
      ],
      [
        "messages: the Close waits until the stream pulls again (runForEach's f sleeps before answering)",
        (session) => Stream.runForEach(session.messages, (m) => Effect.andThen(Effect.sleep("2 seconds"), session.sendFrame(m)))
      ]
    ]
    for (const [title, read] of slowReaders) {
      it.effect(`${role}, ${title}`, () =>
        Effect.gen(function*() {
          const { ours, peer, send, session, scope } = yield* setup(role, TIMINGS[0]!, hello.bytes)
          const running = yield* Effect.forkChild(read(session))
          yield* send
          yield* settle
          yield* TestClock.adjust("1999 millis")
          yield* settle
          assert.strictEqual(ours.bytesWritten(), 0, "f is still running: nothing written")
          yield* TestClock.adjust("1 millis")
          assert.strictEqual(text(yield* peer.next), HELLO)
          assertClose1002(yield* peer.next, hello.reason)
          assertProtocolViolation(yield* Fiber.await(running))
          yield* finishHandshake(peer)
          yield* Scope.close(scope, Exit.void)
        }))
    }

    it.effect(`${role}, consumeEach: a bad frame that arrives while f still runs on the message before it waits for f`, () =>
      Effect.gen(function*() {
        const { ours, peer, session, scope } = yield* setup(role, TIMINGS[0]!, hello.bytes)
        const running = yield* Effect.forkChild(
          session.consumeEach((m) => Effect.andThen(Effect.sleep("2 seconds"), session.sendFrame(m)))
        )
        yield* peer.send(Frame.text(HELLO))
        yield* settle
        yield* peer.send(Frame.make("Text", true, true, false, false, utf8("bad")))
        yield* settle
        assert.strictEqual(ours.bytesWritten(), 0, "f is still running: nothing written")
        yield* TestClock.adjust("2 seconds")
        assert.strictEqual(text(yield* peer.next), HELLO)
        assertClose1002(yield* peer.next, hello.reason)
        assertProtocolViolation(yield* Fiber.await(running))
        yield* finishHandshake(peer)
        yield* Scope.close(scope, Exit.void)
      }))

    it.effect(`${role}, a bad frame after our own Close is not held back (nothing can be answered): the session ends with it at once`, () =>
      Effect.gen(function*() {
        const { peer, send, session, scope } = yield* setup(role, TIMINGS[0]!, hello.bytes)
        yield* session.close()
        yield* send
        assert.deepStrictEqual(closeOf(yield* peer.next), [1000, ""]) // only one Close is ever sent
        assert.strictEqual((yield* Deferred.await(session.closeReason)).code, 1002)
        // The message before the bad frame is still delivered, then the failure.
        assert.strictEqual(text(yield* session.receive), HELLO)
        assert.strictEqual((yield* Effect.flip(session.receive))._tag, "ProtocolViolation")
        yield* finishHandshake(peer)
        yield* Scope.close(scope, Exit.void)
      }))

    it.effect(`${role}, terminate while the failure waits for the handler: the session ends at once with it, without a Close`, () =>
      Effect.gen(function*() {
        const { ours, send, session, scope } = yield* setup(role, TIMINGS[0]!, hello.bytes)
        yield* send
        yield* settle
        yield* session.terminate
        assert.strictEqual((yield* Deferred.await(session.closeReason)).code, 1002)
        // As on every other ending path, the messages received before are still delivered.
        assert.strictEqual(text(yield* session.receive), HELLO)
        assert.strictEqual((yield* Effect.flip(session.receive))._tag, "ProtocolViolation")
        assert.strictEqual(ours.bytesWritten(), 0)
        yield* Scope.close(scope, Exit.void)
      }))

    it.effect(`${role}, receive: the Close goes out once the messages were received (a reply that waits first is refused)`, () =>
      Effect.gen(function*() {
        const { peer, send, session, scope } = yield* setup(role, TIMINGS[0]!, hello.bytes)
        const running = yield* Effect.forkChild(
          Effect.flatMap(session.receive, (m) => Effect.andThen(Effect.sleep("1 second"), session.sendFrame(m)))
        )
        yield* send
        assertClose1002(yield* peer.next, hello.reason)
        yield* TestClock.adjust("1 second")
        const exit = yield* Fiber.await(running)
        const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
        assert.strictEqual(error?._tag === "Some" ? error.value._tag : "no failure", "OutgoingClosed")
        yield* finishHandshake(peer)
        yield* Scope.close(scope, Exit.void)
      }))

    it.effect(`${role}, receive: a handler that starts reading within closeTimeout still gets its reply out first`, () =>
      Effect.gen(function*() {
        const { ours, peer, send, session, scope } = yield* setup(role, TIMINGS[0]!, hello.bytes, { closeTimeout: "5 seconds" })
        yield* send
        yield* settle
        yield* TestClock.adjust("4 seconds")
        yield* settle
        assert.strictEqual(ours.bytesWritten(), 0)
        const running = yield* Effect.forkChild(Effect.forever(Effect.flatMap(session.receive, (m) => session.sendFrame(m))))
        assert.strictEqual(text(yield* peer.next), HELLO)
        assertClose1002(yield* peer.next, hello.reason)
        assertProtocolViolation(yield* Fiber.await(running))
        yield* finishHandshake(peer)
        yield* Scope.close(scope, Exit.void)
      }))

    it.effect(`${role}, incoming taken directly: the Close goes out once the queue is empty`, () =>
      Effect.gen(function*() {
        const { peer, send, session, scope } = yield* setup(role, TIMINGS[0]!, hello.bytes)
        const queue = session.incoming
        const running = yield* Effect.forkChild(Effect.forever(Effect.flatMap(Queue.take(queue), (m) => session.sendFrame(m))))
        yield* send
        yield* settle
        yield* TestClock.adjust("10 millis") // the queue is checked every 10 ms
        assert.strictEqual(text(yield* peer.next), HELLO)
        assertClose1002(yield* peer.next, hello.reason)
        assertProtocolViolation(yield* Fiber.await(running))
        yield* finishHandshake(peer)
        yield* Scope.close(scope, Exit.void)
      }))

    it.effect(`${role}, close or scope close while the failure waits for the handler: the Close is 1002`, () =>
      Effect.gen(function*() {
        for (const how of ["close", "scope"] as const) {
          const { peer, send, session, scope } = yield* setup(role, TIMINGS[0]!, hello.bytes)
          yield* send
          yield* settle
          if (how === "close") yield* session.close()
          else yield* Effect.forkChild(Scope.close(scope, Exit.void))
          assertClose1002(yield* peer.next, hello.reason)
          assert.strictEqual((yield* Deferred.await(session.closeReason)).code, 1002)
          yield* finishHandshake(peer)
          yield* Scope.close(scope, Exit.void)
        }
      }))
  }
})
