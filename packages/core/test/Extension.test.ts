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
  it.effect("the session tells each extension its maxMessageSize once, before any message (limitIncomingMessageSize)", () =>
    Effect.gen(function*() {
      const told: Array<number> = []
      const limited = (): Extension.WebSocketExtension => ({
        ...baseExtension("x-limited", {}),
        processOutgoingMessage: Effect.succeed,
        processIncomingMessage: Effect.succeed,
        limitIncomingMessageSize: (bytes) => told.push(bytes)
      })
      const a = yield* setup([limited()], { maxMessageSize: 4096 })
      assert.deepStrictEqual(told, [4096])
      yield* a.close
      const b = yield* setup([limited()]) // default: the raw session's maxFrameSize
      assert.deepStrictEqual(told, [4096, b.session.raw.maxFrameSize])
      yield* b.close
    }))

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

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes)
const reversed = (m: Extension.Message, rsv1: boolean) =>
  Frame.make(m._tag, true, rsv1, m.rsv2, m.rsv3, m.payload.slice().reverse())

/**
 * A toy compressor on RSV1 that records every hook call: it reverses outgoing messages starting
 * with "r" (after 10 ms for "rslow…") and incoming RSV1 messages, and passes the rest through.
 * With `declares` it says so through `outgoingUnchanged`/`incomingUnchanged`.
 */
const recording = (declares: boolean) => {
  const calls = { outgoing: [] as Array<string>, incoming: [] as Array<string> }
  const ext: Extension.WebSocketExtension = {
    ...baseExtension("x-recording", { rsv1: true }),
    processOutgoingMessage: (m) => {
      const t = decode(m.payload)
      calls.outgoing.push(t)
      if (!t.startsWith("r")) return Effect.succeed(m)
      return t.startsWith("rslow") ? Effect.as(Effect.sleep("10 millis"), reversed(m, true)) : Effect.succeed(reversed(m, true))
    },
    processIncomingMessage: (m) => {
      calls.incoming.push(decode(m.payload))
      return m.rsv1 ? Effect.succeed(reversed(m, false)) : Effect.succeed(m)
    },
    ...(declares ? { outgoingUnchanged: (m) => !decode(m.payload).startsWith("r"), incomingUnchanged: (m) => !m.rsv1 } : {})
  }
  return { ext, calls }
}

/**
 * Appends `mark` in both directions (after a scheduler turn with `async`), yet claims to pass
 * every message through when `claims`: a message it claims shows whether its hook was skipped.
 */
const marking = (key: string, mark: string, options: { readonly async?: boolean; readonly claims?: boolean }): Extension.WebSocketExtension => {
  const append = (m: Extension.Message) => {
    const out = Frame.make(m._tag, true, m.rsv1, m.rsv2, m.rsv3, new Uint8Array([...m.payload, ...utf8(mark)]))
    return options.async === true ? Effect.as(Effect.yieldNow, out) : Effect.succeed(out)
  }
  return {
    ...baseExtension(key, {}),
    processOutgoingMessage: append,
    processIncomingMessage: append,
    ...(options.claims === true ? { outgoingUnchanged: () => true, incomingUnchanged: () => true } : {})
  }
}

describe("Extension API: messages passed through unchanged (outgoingUnchanged, incomingUnchanged)", () => {
  const exchange = (declares: boolean) =>
    Effect.gen(function*() {
      const { calls, ext } = recording(declares)
      const { close, peer, session } = yield* setup([ext])
      yield* session.send("plain")
      yield* session.send("rev")
      const a = yield* peer.next
      const b = yield* peer.next
      assert.deepStrictEqual([a, b].map((f) => [text(f), "rsv1" in f && f.rsv1]), [["plain", false], ["ver", true]])
      yield* peer.send(Frame.text("hello"), Frame.text("olleh", { rsv1: true }))
      const m1 = yield* session.receive
      const m2 = yield* session.receive
      assert.deepStrictEqual([m1, m2].map((m) => [decode(m.payload), m.rsv1]), [["hello", false], ["hello", false]])
      yield* close
      return calls
    })

  it.effect("a message the extension passes through skips its hook; every other message goes through it", () =>
    Effect.gen(function*() {
      const calls = yield* exchange(true)
      assert.deepStrictEqual(calls, { outgoing: ["rev"], incoming: ["olleh"] })
    }))

  it.effect("an extension without outgoingUnchanged/incomingUnchanged gets every hook call, as before", () =>
    Effect.gen(function*() {
      const calls = yield* exchange(false)
      assert.deepStrictEqual(calls, { outgoing: ["plain", "rev"], incoming: ["hello", "olleh"] })
    }))

  it.effect("a passed-through message sent while a slow hook holds the send gate goes out after it (FIFO)", () =>
    Effect.gen(function*() {
      const { calls, ext } = recording(true)
      const { close, peer, session } = yield* setup([ext])
      const first = yield* Effect.forkChild(session.send("rslow first"), { startImmediately: true })
      const second = yield* Effect.forkChild(session.send("plain second"), { startImmediately: true })
      const third = yield* Effect.forkChild(session.send("plain third"), { startImmediately: true })
      yield* TestClock.adjust("10 millis")
      for (const fiber of [first, second, third]) yield* Fiber.join(fiber)
      assert.deepStrictEqual(
        [yield* peer.next, yield* peer.next, yield* peer.next].map(text),
        ["tsrif wolsr", "plain second", "plain third"]
      )
      yield* session.send("plain after")
      assert.strictEqual(text(yield* peer.next), "plain after")
      assert.deepStrictEqual(calls.outgoing, ["rslow first"])
      yield* close
    }))

  it.effect("a message every extension passes through is still checked: UTF-8 (1007), size (1009), RSV bits re-checked", () =>
    Effect.gen(function*() {
      const passAll: Extension.WebSocketExtension = {
        ...marking("x-pass", "!", { claims: true }),
        rsv1: true
      }
      const a = yield* setup([passAll])
      yield* a.peer.send(Frame.text("fine"), Frame.text(Uint8Array.from([0xc3, 0x28])))
      assert.strictEqual(decode((yield* a.session.receive).payload), "fine")
      assert.strictEqual((closeOf(yield* a.peer.next) as [number, string])[0], 1007)
      yield* a.close
      const b = yield* setup([passAll], { maxMessageSize: 4 })
      yield* b.peer.send(Frame.binary(utf8("four")), Frame.binary(utf8("five!")))
      assert.strictEqual(decode((yield* b.session.receive).payload), "four")
      assert.strictEqual((closeOf(yield* b.peer.next) as [number, string])[0], 1009)
      yield* b.close
      // RSV1 skips the UTF-8 check as the frames arrive; passed through, it is checked afterwards.
      const c = yield* setup([passAll])
      yield* c.peer.send(Frame.text("é", { rsv1: true }), Frame.text(Uint8Array.from([0xc3, 0x28]), { rsv1: true }))
      const kept = yield* c.session.receive
      assert.deepStrictEqual([decode(kept.payload), kept.rsv1], ["é", true])
      assert.strictEqual((closeOf(yield* c.peer.next) as [number, string])[0], 1007)
      yield* c.close
    }))

  it.effect("with several extensions only those that do not pass a message through run, in order, also after an asynchronous hook", () =>
    Effect.gen(function*() {
      const chain = [marking("a", "A", {}), marking("b", "B", { claims: true }), marking("c", "C", {})]
      const s1 = yield* setup(chain)
      yield* s1.session.send("x")
      assert.strictEqual(text(yield* s1.peer.next), "xAC")
      yield* s1.peer.send(Frame.text("y"))
      assert.strictEqual(decode((yield* s1.session.receive).payload), "yAC")
      yield* s1.close
      // The first hook completes later: the rest of the chain is an effect that still skips "b".
      const s2 = yield* setup([marking("a", "A", { async: true }), marking("b", "B", { claims: true }), marking("c", "C", {})])
      yield* s2.session.send("x")
      assert.strictEqual(text(yield* s2.peer.next), "xAC")
      yield* s2.peer.send(Frame.text("y"))
      assert.strictEqual(decode((yield* s2.session.receive).payload), "yAC")
      yield* s2.close
    }))

  it.effect("a passed-through message is still fragmented by outgoingFragmentSize", () =>
    Effect.gen(function*() {
      const { calls, ext } = recording(true)
      const { close, peer, session } = yield* setup([ext], { outgoingFragmentSize: 2 })
      yield* session.send("abcde")
      const frames = [yield* peer.next, yield* peer.next, yield* peer.next]
      assert.deepStrictEqual(frames.map((f) => [f._tag, text(f)]), [["Text", "ab"], ["Continuation", "cd"], ["Continuation", "e"]])
      assert.deepStrictEqual(calls.outgoing, [])
      yield* close
    }))
})
