import { assert, describe, it } from "@effect/vitest"
import { Frame } from "@effect-ws/codec"
import { Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as ChannelsConfig from "../src/ChannelsConfig.ts"
import * as DefaultWebSocketSession from "../src/DefaultWebSocketSession.ts"
import { ExtensionError } from "../src/Errors.ts"
import * as Extension from "../src/Extension.ts"
import * as RawWebSocket from "../src/RawWebSocket.ts"
import * as TestTransport from "../src/TestTransport.ts"
import { closeOf, TestPeer, text, utf8 } from "./helpers.ts"

type Bits = { readonly rsv1?: boolean; readonly rsv2?: boolean; readonly rsv3?: boolean }

const baseExtension = (key: string, bits: Bits) => ({
  key,
  rsv1: bits.rsv1 ?? false,
  rsv2: bits.rsv2 ?? false,
  rsv3: bits.rsv3 ?? false,
  protocols: [],
  clientNegotiation: () => true,
  serverNegotiation: () => []
})

/** A toy "compressor" on RSV1: reverses the bytes of whole messages. */
const Reverse: Extension.WebSocketExtensionFactory<{ readonly failOn?: string }, Extension.WebSocketExtension> = {
  key: "x-reverse",
  rsv1: true,
  rsv2: false,
  rsv3: false,
  install: (config) => ({
    ...baseExtension("x-reverse", { rsv1: true }),
    processOutgoingMessage: (m) =>
      Effect.succeed(Frame.make(m._tag, true, true, m.rsv2, m.rsv3, m.payload.slice().reverse())),
    processIncomingMessage: (m) => {
      if (!m.rsv1) return Effect.succeed(m)
      const payload = m.payload.slice().reverse()
      if (config.failOn !== undefined && new TextDecoder().decode(payload) === config.failOn) {
        return Effect.fail(new ExtensionError({ extension: "x-reverse", message: "cannot reverse" }))
      }
      return Effect.succeed(Frame.make(m._tag, true, false, m.rsv2, m.rsv3, payload))
    }
  })
}

/** Appends a marker byte in both directions, to observe the order. */
const marker = (key: string, mark: string, bits: Bits): Extension.WebSocketExtensionFactory<void, Extension.WebSocketExtension> => ({
  ...baseExtension(key, bits),
  install: () => ({
    ...baseExtension(key, bits),
    processOutgoingMessage: (m) => Effect.succeed(Frame.make(m._tag, true, m.rsv1, m.rsv2, m.rsv3, new Uint8Array([...m.payload, ...utf8(mark)]))),
    processIncomingMessage: (m) => Effect.succeed(Frame.make(m._tag, true, m.rsv1, m.rsv2, m.rsv3, new Uint8Array([...m.payload, ...utf8(mark)])))
  })
})

const setup = (
  extensions: ReadonlyArray<Extension.WebSocketExtension>,
  options: DefaultWebSocketSession.DefaultWebSocketSessionOptions = {}
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const [ours, theirs] = yield* TestTransport.makePair()
    const raw = yield* RawWebSocket.make(ours, { role: "server", extensions }).pipe(Scope.provide(scope))
    const session = yield* DefaultWebSocketSession.make(raw, options).pipe(Scope.provide(scope))
    return { session, peer: new TestPeer(theirs, "client"), close: Scope.close(scope, Exit.void) }
  })

/** An extension whose outgoing step takes 10 ms for messages starting with "slow" (a compressor under load). */
const Slow: Extension.WebSocketExtension = {
  ...baseExtension("x-slow", {}),
  processOutgoingMessage: (m) =>
    new TextDecoder().decode(m.payload).startsWith("slow") ? Effect.as(Effect.sleep("10 millis"), m) : Effect.succeed(m),
  processIncomingMessage: (m) => Effect.succeed(m)
}

describe("Extension API", () => {
  it.effect("messages reach the wire in the order the extensions processed them, even from concurrent senders", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup([Slow])
      const first = yield* Effect.forkChild(session.send("slow first"), { startImmediately: true })
      const second = yield* Effect.forkChild(session.send("fast second"), { startImmediately: true })
      yield* TestClock.adjust("10 millis")
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      assert.strictEqual(text(yield* peer.next), "slow first")
      assert.strictEqual(text(yield* peer.next), "fast second")
      yield* close
    }))

  it.effect("the send gate keeps call order across slow hooks and a full outgoing queue; an interrupted waiter does not wedge it", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      // A peer that takes 5 ms per write and an outgoing queue of one: senders wait for room too.
      const [ours, theirs] = yield* TestTransport.makePair({ highWaterMark: 1 })
      const raw = yield* RawWebSocket.make(ours, {
        role: "server",
        extensions: [Slow],
        channels: ChannelsConfig.make({ outgoing: { capacity: 1, overflow: "suspend" } })
      }).pipe(Scope.provide(scope))
      const session = yield* DefaultWebSocketSession.make(raw).pipe(Scope.provide(scope))
      const peer = new TestPeer(theirs, "client")
      const labels = ["slow 0", "fast 1", "slow 2", "fast 3", "fast 4", "fast 5", "slow 6", "fast 7"]
      const fibers: Array<Fiber.Fiber<void, unknown>> = []
      for (const label of labels) fibers.push(yield* Effect.forkChild(session.send(label), { startImmediately: true }))
      yield* Fiber.interrupt(fibers[3]!) // waiting for the gate behind "slow 0"
      const reader = yield* Effect.forkChild(
        Effect.forEach(labels.slice(1), () => Effect.map(peer.next, text)),
        { startImmediately: true }
      )
      for (let i = 0; i < 40 && reader.pollUnsafe() === undefined; i++) yield* TestClock.adjust("5 millis")
      for (const [i, fiber] of fibers.entries()) if (i !== 3) yield* Fiber.join(fiber)
      assert.deepStrictEqual(yield* Fiber.join(reader), labels.filter((l) => l !== "fast 3"))
      yield* session.send("after")
      assert.strictEqual(text(yield* peer.next), "after")
      // the peer reads our Close (one byte of room on the wire), so the scope can close
      yield* Effect.forkChild(peer.next, { startImmediately: true })
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("a sender interrupted while its slow hook runs passes the send gate on", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup([Slow])
      const holder = yield* Effect.forkChild(session.send("slow and abandoned"), { startImmediately: true })
      const next = yield* Effect.forkChild(session.send("fast next"), { startImmediately: true })
      yield* Fiber.interrupt(holder)
      yield* Fiber.join(next)
      assert.strictEqual(text(yield* peer.next), "fast next")
      yield* session.send("fast after")
      assert.strictEqual(text(yield* peer.next), "fast after")
      yield* close
    }))

  it.effect("install rejects two extensions claiming the same RSV bit (rsv3 included)", () =>
    Effect.gen(function*() {
      const one = yield* Extension.install(Extension.empty, marker("a", "A", { rsv3: true }), undefined)
      const error = yield* Effect.flip(Extension.install(one, marker("b", "B", { rsv3: true }), undefined))
      assert.deepStrictEqual([error._tag, error.bit, error.first, error.second], ["ExtensionConflict", "rsv3", "a", "b"])
      const two = yield* Extension.install(one, Reverse, {})
      assert.deepStrictEqual(Extension.build(two).map((e) => e.key), ["a", "x-reverse"])
    }))

  it.effect("RawWebSocket.make fails with ExtensionConflict for a conflicting list", () =>
    Effect.gen(function*() {
      const [ours] = yield* TestTransport.makePair()
      const error = yield* Effect.flip(
        RawWebSocket.make(ours, { role: "server", extensions: [Reverse.install({}), Reverse.install({})] })
      )
      assert.strictEqual(error._tag, "ExtensionConflict")
    }))

  it.effect("extensions apply in negotiated order to whole messages, incoming and outgoing", () =>
    Effect.gen(function*() {
      const config = yield* Extension.install(Extension.empty, marker("a", "A", {}), undefined).pipe(
        Effect.flatMap((c) => Extension.install(c, marker("b", "B", {}), undefined))
      )
      const { session, peer, close } = yield* setup(Extension.build(config))
      yield* peer.send(Frame.text("x", { fin: false }), Frame.continuation(utf8("y")))
      assert.strictEqual(new TextDecoder().decode((yield* session.receive).payload), "xyAB")
      yield* session.send("z")
      assert.strictEqual(text(yield* peer.next), "zAB")
      assert.strictEqual(session.extensionOrNull(marker("b", "B", {}))?.key, "b")
      assert.isNull(session.extensionOrNull(Reverse))
      assert.strictEqual((yield* Effect.flip(session.extension(Reverse)))._tag, "ExtensionNotFound")
      yield* close
    }))

  it.effect("an RSV1 message is processed once as a whole; its text is validated after processing", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup([Reverse.install({})])
      // "€" reversed (ac 82 e2) is not UTF-8 on the wire; the message is valid after the extension.
      yield* peer.send(Frame.text(Uint8Array.from([0xac]), { fin: false, rsv1: true }), Frame.continuation(Uint8Array.from([0x82, 0xe2])))
      const m = yield* session.receive
      assert.deepStrictEqual([new TextDecoder().decode(m.payload), m.rsv1], ["€", false])
      yield* session.send("abc")
      const out = yield* peer.next
      assert.deepStrictEqual([text(out), out._tag !== "TransportClosed" && out._tag !== "ProtocolViolation" && out.rsv1], ["cba", true])
      yield* close
    }))

  it.effect("RSV1 on a continuation frame fails 1002; invalid text after processing fails 1007", () =>
    Effect.gen(function*() {
      const a = yield* setup([Reverse.install({})])
      yield* a.peer.send(Frame.text(utf8("a"), { fin: false, rsv1: true }), Frame.continuation(utf8("b"), { rsv1: true }))
      assert.strictEqual((closeOf(yield* a.peer.next) as [number, string])[0], 1002)
      yield* a.close
      const b = yield* setup([Reverse.install({})])
      yield* b.peer.send(Frame.text(Uint8Array.from([0x82, 0xe2]), { rsv1: true }))
      assert.strictEqual((closeOf(yield* b.peer.next) as [number, string])[0], 1007)
      yield* b.close
    }))

  it.effect("an extension failure closes the session with 1011", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup([Reverse.install({ failOn: "bad" })])
      yield* peer.send(Frame.text("dab", { rsv1: true }))
      assert.deepStrictEqual(closeOf(yield* peer.next), [1011, "cannot reverse"])
      assert.strictEqual((yield* Effect.flip(session.receive))._tag, "ExtensionError")
      yield* close
    }))

  it.effect("outgoingFragmentSize splits the message after the extensions; RSV bits only on the first fragment", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup([Reverse.install({})], { outgoingFragmentSize: 2 })
      yield* session.send("abcde")
      const frames = [yield* peer.next, yield* peer.next, yield* peer.next]
      assert.deepStrictEqual(
        frames.map((f) => ["fin" in f ? [f._tag, f.fin, f.rsv1] : [f._tag], text(f)].flat()),
        [["Text", false, true, "ed"], ["Continuation", false, false, "cb"], ["Continuation", true, false, "a"]]
      )
      // The peer reassembles it and the extension restores it.
      yield* peer.send(Frame.text(utf8("ed"), { fin: false, rsv1: true }), Frame.continuation(utf8("cb"), { fin: false }), Frame.continuation(utf8("a")))
      assert.strictEqual(new TextDecoder().decode((yield* session.receive).payload), "abcde")
      yield* close
    }))
})
