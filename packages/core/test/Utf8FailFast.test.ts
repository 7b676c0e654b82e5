/**
 * UTF-8 fail fast at the session level (conformance §6, hostile-inputs H10, Autobahn 6.4.x): the
 * peer writes a text frame's header and an early part holding an invalid byte, then pauses; the
 * session must answer Close 1007 during the pause, before the rest of the frame is written.
 * Time is the `TestClock`'s: the pause is a clock adjustment, not a sleep.
 */
import { assert, describe, it } from "@effect/vitest"
import { CloseReason, Frame, Serializer } from "@effect-ws/codec"
import { Deferred, type Duration, Effect, Exit, Fiber, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as DefaultWebSocketSession from "../src/DefaultWebSocketSession.ts"
import type * as Extension from "../src/Extension.ts"
import * as RawWebSocket from "../src/RawWebSocket.ts"
import * as TestTransport from "../src/TestTransport.ts"
import { closeOf, type PeerEvent, TestPeer, utf8 } from "./helpers.ts"

/** A raw session (the session is made by the caller, in `scope`), and a scripted peer. */
const setupRaw = (role: "server" | "client", validateUtf8?: boolean) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const [ours, theirs] = yield* TestTransport.makePair()
    const raw = yield* RawWebSocket.make(ours, { role, ...(validateUtf8 === undefined ? {} : { validateUtf8 }) }).pipe(
      Scope.provide(scope)
    )
    const peer = new TestPeer(theirs, role === "server" ? "client" : "server")
    const makeSession = DefaultWebSocketSession.make(raw).pipe(Scope.provide(scope))
    return { raw, peer, scope, makeSession }
  })

/** The bytes of `frames` as the peer writes them (masked from a client). */
const wireOf = (peer: TestPeer, ...frames: ReadonlyArray<Frame.Frame>): Uint8Array => {
  const parts: Array<Uint8Array> = []
  peer.serializer.serializeBatch(frames, parts)
  return Serializer.concat(parts).slice()
}

/**
 * The next event the peer sees within `pause` of test time (`None`: nothing came during the
 * pause). The session first gets scheduler turns to react with no time passing (its reader, the
 * turns it leaves the application to take earlier messages, its writer); then the clock moves.
 */
const nextWithin = (peer: TestPeer, pause: Duration.Input) =>
  Effect.gen(function*() {
    const next = yield* Effect.forkChild(Effect.timeoutOption(peer.next, pause))
    for (let i = 0; i < 1_000 && next.pollUnsafe() === undefined; i++) yield* Effect.yieldNow
    yield* TestClock.adjust(pause)
    return yield* Fiber.join(next)
  })

/** The peer answers our Close and half-closes; then the scope closes (a client waits for that). */
const finish = (peer: TestPeer, scope: Scope.Closeable) =>
  Effect.gen(function*() {
    yield* Effect.ignore(peer.send(Frame.close(CloseReason.CloseReason(1007))))
    yield* Effect.ignore(peer.transport.end)
    yield* Scope.close(scope, Exit.void)
  })

const closeCode = (event: Option.Option<PeerEvent>): number | string =>
  Option.isNone(event) ? "nothing during the pause" : (closeOf(event.value) as [number, string])[0] ?? closeOf(event.value)

/** A 200-byte text whose 10th byte is invalid (0xC0: an overlong lead byte), and where the invalid byte sits in `wire`. */
const badText = () => {
  const payload = new Uint8Array(200).fill(0x61)
  payload[9] = 0xc0
  return payload
}

describe("DefaultWebSocketSession: UTF-8 fail fast inside a frame (6.4.x timing)", () => {
  for (const role of ["server", "client"] as const) {
    it.effect(`${role}: the invalid first part of a text frame closes 1007 before the rest is written`, () =>
      Effect.gen(function*() {
        const { peer, scope, makeSession } = yield* setupRaw(role)
        const session = yield* makeSession
        yield* peer.send(Frame.text("ok"))
        const wire = wireOf(peer, Frame.text(badText()))
        const header = wire.length - 200
        yield* peer.sendBytes(wire.subarray(0, header + 10)) // up to and including the invalid byte
        // "ok" came before the bad bytes: our Close waits until the application took it (replies
        // before the Close), then goes out while the rest of the frame is still unsent.
        assert.strictEqual(DefaultWebSocketSession.readText((yield* session.receive) as Frame.Text), "ok")
        assert.strictEqual(closeCode(yield* nextWithin(peer, "1 second")), 1007)
        yield* Effect.ignore(peer.sendBytes(wire.subarray(header + 10))) // the rest, after the pause
        const error = yield* Effect.flip(session.receive)
        assert.deepStrictEqual([error._tag, error._tag === "ProtocolViolation" && error.code], ["ProtocolViolation", 1007])
        assert.strictEqual((yield* Deferred.await(session.closeReason)).code, 1007)
        yield* finish(peer, scope)
      }))

    it.effect(`${role}: a fragmented message closes 1007 in its second fragment's first part, with a Ping in between`, () =>
      Effect.gen(function*() {
        const { peer, scope, makeSession } = yield* setupRaw(role)
        const session = yield* makeSession
        const euro = utf8("€")
        // "a" + the first byte of "€" | Ping | the second byte of "€" + 0x41 (not a continuation byte): invalid at 0x41.
        const second = new Uint8Array(100).fill(0x61)
        second.set([euro[1]!, 0x41])
        const wire = wireOf(
          peer,
          Frame.text(Uint8Array.of(0x61, euro[0]!), { fin: false }),
          Frame.ping(utf8("p")),
          Frame.continuation(second)
        )
        const bad = wire.length - 100 + 1
        yield* peer.sendBytes(wire.subarray(0, bad)) // the first fragment, the Ping, half a character: valid so far
        const pong = yield* nextWithin(peer, "1 second")
        assert.strictEqual(Option.isSome(pong) && pong.value._tag, "Pong")
        assert.isTrue(Option.isNone(yield* nextWithin(peer, "1 second")), "nothing but the Pong before the invalid byte")
        yield* peer.sendBytes(wire.subarray(bad, bad + 1)) // 0x41
        assert.strictEqual(closeCode(yield* nextWithin(peer, "1 second")), 1007)
        yield* Effect.ignore(peer.sendBytes(wire.subarray(bad + 1)))
        assert.strictEqual((yield* Deferred.await(session.closeReason)).code, 1007)
        yield* finish(peer, scope)
      }))
  }

  it.effect("text that reached the parser before the session attached is still validated (whole frames, 1007)", () =>
    Effect.gen(function*() {
      const { peer: probe } = yield* setupRaw("server")
      const length = wireOf(probe, Frame.text("ok"), Frame.text(badText())).length
      // Before the session attaches: whole frames (they go to the raw queue), half a header (the
      // parser is mid-frame, with no frame parsed), or "ok" and part of the bad frame. In each case
      // the parser does not see the session's first message from its start: the session checks
      // complete frames itself.
      for (const cut of [length, 5, 8 + 8 + 50]) {
        const { peer, scope, makeSession } = yield* setupRaw("server")
        const wire = wireOf(peer, Frame.text("ok"), Frame.text(badText()))
        yield* peer.sendBytes(wire.subarray(0, cut))
        yield* Effect.yieldNow
        const session = yield* makeSession
        if (cut < length) yield* peer.sendBytes(wire.subarray(cut))
        // Our Close waits until the application took "ok" (replies before the Close).
        assert.strictEqual(DefaultWebSocketSession.readText((yield* session.receive) as Frame.Text), "ok")
        assert.strictEqual(closeCode(yield* nextWithin(peer, "1 second")), 1007, `cut at ${cut}`)
        assert.strictEqual((yield* Deferred.await(session.closeReason)).code, 1007)
        yield* finish(peer, scope)
      }
    }))

  it.effect("a raw session that validates from the start lets a session made later fail fast too (bytes before the session)", () =>
    Effect.gen(function*() {
      for (const before of ["ok", "ping"] as const) {
        // Without validateUtf8 on the raw session, a text message parsed before the session exists
        // makes the session check complete frames itself; with it (or with no text before), it fails fast.
        const { peer, scope, makeSession } = yield* setupRaw("server", before === "ok" ? true : undefined)
        const first = before === "ok" ? Frame.text("ok") : Frame.ping(utf8("p"))
        const wire = wireOf(peer, first, Frame.text(badText()))
        const bad = wire.length - 200 + 9
        // The "ok" frame and the bad frame's start; or the Ping alone (the bad frame must start
        // after the session turned validation on: a text message the parser began unvalidated is
        // left to the session).
        const cut = before === "ok" ? bad - 5 : wire.length - 200 - 8
        yield* peer.sendBytes(wire.subarray(0, cut))
        yield* Effect.yieldNow
        const session = yield* makeSession
        yield* peer.sendBytes(wire.subarray(cut, bad + 1))
        let event = yield* nextWithin(peer, "1 second")
        if (before === "ping") {
          assert.strictEqual(Option.isSome(event) && event.value._tag, "Pong")
          event = yield* nextWithin(peer, "1 second")
        }
        assert.strictEqual(closeCode(event), 1007, before)
        yield* Effect.ignore(peer.sendBytes(wire.subarray(bad + 1)))
        assert.strictEqual((yield* Deferred.await(session.closeReason)).code, 1007)
        yield* finish(peer, scope)
      }
    }))
})

/**
 * A toy extension on RSV1 that reverses incoming payloads (so that invalid text can come out of
 * valid-looking input), optionally asynchronously, optionally declaring `validatesIncomingUtf8`
 * (it does not actually validate: the test sees whether the session checks after it).
 */
const reverser = (options: { readonly validates: boolean; readonly async: boolean }): Extension.WebSocketExtension => ({
  key: "x-reverse",
  rsv1: true,
  rsv2: false,
  rsv3: false,
  protocols: [],
  clientNegotiation: () => true,
  serverNegotiation: () => [],
  processOutgoingMessage: (m) => Effect.succeed(m),
  incomingUnchanged: (m) => !m.rsv1,
  processIncomingMessage: (m) => {
    const out = Frame.make(m._tag, true, false, false, false, m.payload.slice().reverse())
    return options.async ? Effect.as(Effect.yieldNow, out) : Effect.succeed(out)
  },
  ...(options.validates ? { validatesIncomingUtf8: true } : {})
})

/** A second extension (no RSV bit) whose hook returns the message as it is: declared a pass-through (`incomingUnchanged`) or not. */
const second = (passThrough: boolean): Extension.WebSocketExtension => ({
  ...reverser({ validates: false, async: false }),
  key: "x-second",
  rsv1: false,
  incomingUnchanged: () => passThrough,
  processIncomingMessage: (m) => Effect.succeed(m)
})

describe("DefaultWebSocketSession: text an extension produced is checked once", () => {
  it.effect("not again after a hook that validatesIncomingUtf8, synchronous or not; otherwise 1007", () =>
    Effect.gen(function*() {
      // "éa" on the wire (RSV1, so not checked as it arrives); reversed by the hook: 0x61 0xa9 0xc3, invalid.
      const invalidAfter = Uint8Array.of(0xc3, 0xa9, 0x61)
      const chains: ReadonlyArray<[string, ReadonlyArray<Extension.WebSocketExtension>, "delivered" | 1007]> = [
        ["validating, synchronous", [reverser({ validates: true, async: false })], "delivered"],
        ["validating, asynchronous", [reverser({ validates: true, async: true })], "delivered"],
        ["not validating, synchronous", [reverser({ validates: false, async: false })], 1007],
        ["not validating, asynchronous", [reverser({ validates: false, async: true })], 1007],
        // An asynchronous validating hook, then one that passes the message through: not checked again.
        ["validating, then a pass-through", [reverser({ validates: true, async: true }), second(true)], "delivered"],
        // ... then a hook that does not validate: checked after it.
        ["validating, then a hook that does not validate", [reverser({ validates: true, async: true }), second(false)], 1007],
        ["validating synchronously, then a hook that does not validate", [reverser({ validates: true, async: false }), second(false)], 1007]
      ]
      for (const [name, extensions, expected] of chains) {
        const scope = yield* Scope.make()
        const [ours, theirs] = yield* TestTransport.makePair()
        const raw = yield* RawWebSocket.make(ours, { role: "server", extensions }).pipe(Scope.provide(scope))
        const session = yield* DefaultWebSocketSession.make(raw).pipe(Scope.provide(scope))
        const peer = new TestPeer(theirs, "client")
        yield* peer.send(Frame.text(invalidAfter, { rsv1: true }))
        if (expected === "delivered") {
          assert.deepStrictEqual(Array.from((yield* session.receive).payload), [0x61, 0xa9, 0xc3], name)
        } else {
          assert.strictEqual(closeCode(yield* nextWithin(peer, "1 second")), 1007, name)
        }
        yield* finish(peer, scope)
      }
    }))
})
