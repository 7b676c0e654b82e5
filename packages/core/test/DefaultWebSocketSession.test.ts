import { assert, describe, it } from "@effect/vitest"
import { CloseReason, Frame } from "@effect-ws/codec"
import { Cause, Deferred, Effect, Exit, Fiber, Queue, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as DefaultWebSocketSession from "../src/DefaultWebSocketSession.ts"
import { ChannelOverflow } from "../src/Errors.ts"
import * as RawWebSocket from "../src/RawWebSocket.ts"
import * as TestTransport from "../src/TestTransport.ts"
import { closeOf, type PeerEvent, TestPeer, text, utf8 } from "./helpers.ts"

interface Setup {
  readonly role?: "server" | "client"
  readonly kit?: TestTransport.TestTransportOptions
  readonly raw?: Partial<RawWebSocket.RawWebSocketOptions>
  readonly session?: DefaultWebSocketSession.DefaultWebSocketSessionOptions
}

/** A session in its own scope (closed by the caller) and a scripted peer. */
const setup = (options: Setup = {}) =>
  Effect.gen(function*() {
    const role = options.role ?? "server"
    const scope = yield* Scope.make()
    const [ours, theirs] = yield* TestTransport.makePair(options.kit ?? {})
    const raw = yield* RawWebSocket.make(ours, { role, ...options.raw }).pipe(Scope.provide(scope))
    const session = yield* DefaultWebSocketSession.make(raw, options.session ?? {}).pipe(Scope.provide(scope))
    const peer = new TestPeer(theirs, role === "server" ? "client" : "server")
    const closeScope = Scope.close(scope, Exit.void)
    /** Closes the scope and checks that no fiber of the session is left running. */
    const closeAndCheck = Effect.gen(function*() {
      yield* closeScope
      for (const f of session.fibers()) assert.isDefined(f.pollUnsafe(), "a session fiber is still running")
    })
    return { session, peer, scope, closeScope, closeAndCheck, ours }
  })

/**
 * A session (closeTimeout 3 s) whose inbox, or `incoming` queue, holds one message: the peer sent
 * three, so the reader waits to offer the second and reads nothing more.
 */
const blockedReader = (mode: "queue" | "inbox") =>
  Effect.gen(function*() {
    const setupDone = yield* setup({
      session: { closeTimeout: "3 seconds" },
      raw: { channels: { incoming: { capacity: 1, overflow: "suspend" }, outgoing: { capacity: 8, overflow: "suspend" } } }
    })
    if (mode === "queue") assert.isDefined(setupDone.session.incoming)
    yield* setupDone.peer.send(Frame.text("1"), Frame.text("2"), Frame.text("3"))
    for (let i = 0; i < 20; i++) yield* Effect.yieldNow
    return setupDone
  })

const reasonOf = (session: DefaultWebSocketSession.WebSocketSession) => Deferred.await(session.closeReason)
const peerClose = (f: PeerEvent) => closeOf(f)
const payloadText = (m: Frame.Frame) => new TextDecoder().decode(m.payload)

/** The peer answers our Close with `reply` and half-closes. */
const replyClose = (peer: TestPeer, reply: Frame.Close = Frame.close(CloseReason.CloseReason(1000))) =>
  Effect.andThen(peer.send(reply), peer.transport.end)

describe("DefaultWebSocketSession: earlier messages before a failure (conformance §3–§5)", () => {
  /** An echo handler: every message back as it came. */
  const echo = (session: DefaultWebSocketSession.WebSocketSession) =>
    Effect.forkChild(Effect.ignore(Stream.runForEach(session.messages, (m) => session.sendFrame(m))))

  it.effect("a message followed by a parser violation in the same chunk is echoed before Close 1002", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* echo(session)
      // RSV2 without an extension: the parser fails on the second frame of this one write.
      yield* peer.send(Frame.text("ok"), Frame.make("Text", true, false, true, false, utf8("bad")))
      const first = yield* peer.next
      assert.strictEqual(first._tag, "Text")
      assert.strictEqual(text(first), "ok")
      assert.deepStrictEqual(peerClose(yield* peer.next), [1002, "RSV bits set without a negotiated extension"])
      assert.strictEqual((yield* reasonOf(session)).code, 1002)
      yield* closeAndCheck
    }))

  it.effect("a message followed by invalid UTF-8 in the same chunk is echoed before Close 1007", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* echo(session)
      yield* peer.send(Frame.text("ok"), Frame.text(Uint8Array.of(0x61, 0xed, 0xa0, 0x80)))
      assert.strictEqual(text(yield* peer.next), "ok")
      assert.strictEqual((peerClose(yield* peer.next) as [number, string])[0], 1007)
      yield* closeAndCheck
    }))

  it.effect("an application that does not read holds the Close back for closeTimeout at most; the messages it did not take are dropped", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck, ours } = yield* setup()
      yield* peer.send(Frame.text("one"), Frame.text("two"), Frame.make("Binary", true, false, false, true, utf8("bad")))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      assert.strictEqual(ours.bytesWritten(), 0)
      yield* TestClock.adjust(DefaultWebSocketSession.DEFAULT_CLOSE_TIMEOUT)
      assert.deepStrictEqual(peerClose(yield* peer.next), [1002, "RSV bits set without a negotiated extension"])
      const failure = yield* Effect.flip(session.receive)
      assert.strictEqual(failure._tag, "ProtocolViolation")
      // Sending after the failure is refused, not silently dropped.
      assert.strictEqual((yield* Effect.flip(session.send("late")))._tag, "OutgoingClosed")
      yield* closeAndCheck
    }))
})

describe("DefaultWebSocketSession: messages", () => {
  it.effect("§1 framing: messages of boundary lengths echo, in one chunk and one byte at a time", () =>
    Effect.gen(function*() {
      for (const chunkSize of [0, 1]) {
        const { session, peer, closeAndCheck } = yield* setup({ kit: { chunkSize } })
        const lengths = [0, 125, 126, 127, 128, 65535, 65536]
        for (const n of lengths) {
          const payload = new Uint8Array(n).fill(0x61)
          yield* peer.send(Frame.text(payload), Frame.binary(payload))
          for (const tag of ["Text", "Binary"]) {
            const m = yield* session.receive
            assert.strictEqual(m._tag, tag)
            assert.strictEqual(m.payload.length, n)
            yield* session.sendFrame(m)
          }
          for (const tag of ["Text", "Binary"]) {
            const e = yield* peer.next
            assert.strictEqual(e._tag, tag)
            assert.strictEqual("payload" in e ? e.payload.length : -1, n)
          }
        }
        yield* closeAndCheck
      }
    }))

  it.effect("§5 fragments with interleaved Ping/Pong are one message; the Ping is answered in between", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ kit: { chunkSize: 3 } })
      yield* peer.send(
        Frame.text("Hel", { fin: false }),
        Frame.ping(utf8("a")),
        Frame.continuation(utf8("l"), { fin: false }),
        Frame.pong(utf8("unsolicited")),
        Frame.continuation(new Uint8Array(0), { fin: false }),
        Frame.continuation(utf8("o €"))
      )
      const pong = yield* peer.next
      assert.deepStrictEqual([pong._tag, text(pong)], ["Pong", "a"])
      const m = yield* session.receive
      assert.deepStrictEqual([m._tag, m.fin, payloadText(m)], ["Text", true, "Hello €"])
      yield* closeAndCheck
    }))

  it.effect("§2 Pings with empty and 125-byte payloads get identical Pongs; 126 bytes fails 1002", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.send(Frame.ping())
      const p1 = yield* peer.next
      assert.deepStrictEqual([p1._tag, "payload" in p1 ? p1.payload.length : -1], ["Pong", 0])
      const big = new Uint8Array(125).map((_, i) => i)
      yield* peer.send(Frame.ping(big))
      const p2 = yield* peer.next
      assert.deepStrictEqual("payload" in p2 ? Array.from(p2.payload) : [], Array.from(big))
      // A Ping announcing 126 bytes (masked, zero key).
      yield* peer.sendBytes(Uint8Array.from([0x89, 0xfe, 0, 126, 0, 0, 0, 0, ...new Uint8Array(126)]))
      assert.strictEqual((peerClose(yield* peer.next) as [number, string])[0], 1002)
      assert.strictEqual((yield* reasonOf(session)).code, 1002)
      assert.strictEqual((yield* Effect.flip(session.receive))._tag, "ProtocolViolation")
      yield* closeAndCheck
    }))

  it.effect("§6 UTF-8: valid text split inside code points is accepted; edge code points echo", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      const s = "\u007f\u0080\u07ff\u0800\uffff\u{10000}\u{10ffff}€"
      const b = utf8(s)
      for (let cut = 1; cut < b.length; cut++) {
        yield* peer.send(Frame.text(b.slice(0, cut), { fin: false }), Frame.continuation(b.slice(cut)))
        assert.strictEqual(payloadText(yield* session.receive), s)
      }
      yield* closeAndCheck
    }))

  it.effect("§6 UTF-8 fail fast: an invalid byte in an early fragment closes 1007 before the rest is sent", () =>
    Effect.gen(function*() {
      for (const bad of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80]]) {
        const { session, peer, closeAndCheck } = yield* setup()
        yield* peer.send(Frame.text("ok"))
        yield* peer.send(Frame.text(utf8("a"), { fin: false }), Frame.continuation(Uint8Array.from(bad), { fin: false }))
        assert.strictEqual(payloadText(yield* session.receive), "ok") // delivered before the error (the Close waits for it)
        const close = peerClose(yield* peer.next)
        assert.deepStrictEqual((close as [number, string])[0], 1007)
        const error = yield* Effect.flip(session.receive)
        assert.strictEqual(error._tag, "ProtocolViolation")
        assert.strictEqual((yield* reasonOf(session)).code, 1007)
        yield* closeAndCheck
      }
    }))

  it.effect("§6 a truncated sequence at the end of a message fails 1007", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.send(Frame.text(Uint8Array.from([0x61, 0xe2, 0x82])))
      assert.strictEqual((peerClose(yield* peer.next) as [number, string])[0], 1007)
      assert.strictEqual((yield* reasonOf(session)).code, 1007)
      yield* closeAndCheck
    }))

  it.effect("§3 RSV bits without an extension fail 1002 after earlier messages were echoed", () =>
    Effect.gen(function*() {
      for (const rsv of [{ rsv1: true }, { rsv2: true }, { rsv3: true }]) {
        const { session, peer, closeAndCheck } = yield* setup()
        yield* peer.send(Frame.text("first"))
        yield* session.send(payloadText(yield* session.receive))
        yield* peer.send(Frame.text("x", rsv))
        assert.strictEqual(text(yield* peer.next), "first")
        assert.strictEqual((peerClose(yield* peer.next) as [number, string])[0], 1002)
        yield* closeAndCheck
      }
    }))

  it.effect("§4 reserved opcodes fail 1002; §5 bad continuation sequences and fragmented control frames fail 1002", () =>
    Effect.gen(function*() {
      const cases: Array<ReadonlyArray<number>> = [
        [0x83, 0x80, 0, 0, 0, 0],
        [0x87, 0x81, 0, 0, 0, 0, 0x61],
        [0x8b, 0x80, 0, 0, 0, 0],
        [0x8f, 0x80, 0, 0, 0, 0],
        [0x80, 0x80, 0, 0, 0, 0], // continuation without a message
        [0x01, 0x80, 0, 0, 0, 0, 0x81, 0x80, 0, 0, 0, 0], // new Text while one is open
        [0x09, 0x80, 0, 0, 0, 0] // fragmented Ping
      ]
      for (const bytes of cases) {
        const { session, peer, closeAndCheck } = yield* setup()
        yield* peer.send(Frame.text("ok"))
        yield* peer.sendBytes(bytes)
        assert.strictEqual(payloadText(yield* session.receive), "ok")
        assert.strictEqual((peerClose(yield* peer.next) as [number, string])[0], 1002)
        assert.strictEqual((yield* Effect.flip(session.receive))._tag, "ProtocolViolation")
        yield* closeAndCheck
      }
    }))

  it.effect("H5: maxMessageSize and the fragment-count limit fail 1009 as soon as they are exceeded", () =>
    Effect.gen(function*() {
      const a = yield* setup({ session: { maxMessageSize: 10 } })
      yield* a.peer.send(Frame.binary(new Uint8Array(6), { fin: false }), Frame.continuation(new Uint8Array(6), { fin: false }))
      assert.strictEqual((peerClose(yield* a.peer.next) as [number, string])[0], 1009)
      const e1 = yield* Effect.flip(a.session.receive)
      assert.strictEqual(e1._tag === "FrameTooBig" && e1.kind, "MessageTooBig")
      yield* a.closeAndCheck
      const b = yield* setup({ session: { maxFragments: 3 } })
      const empty = new Uint8Array(0)
      yield* b.peer.send(
        Frame.binary(empty, { fin: false }),
        ...Array.from({ length: 100 }, () => Frame.continuation(empty, { fin: false }))
      )
      assert.strictEqual((peerClose(yield* b.peer.next) as [number, string])[0], 1009)
      const e2 = yield* Effect.flip(b.session.receive)
      assert.strictEqual(e2._tag === "FrameTooBig" && e2.kind, "TooManyFragments")
      assert.strictEqual((yield* reasonOf(b.session)).code, 1009)
      yield* b.closeAndCheck
    }))

  it.effect("maxMessageSize is checked at the frame header: a declared length over it fails 1009 before its payload comes", () =>
    Effect.gen(function*() {
      // 1 MiB declared (under maxFrameSize), not one payload byte sent.
      const a = yield* setup({ session: { maxMessageSize: 64 * 1024 } })
      yield* a.peer.sendBytes([0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4])
      assert.strictEqual((peerClose(yield* a.peer.next) as [number, string])[0], 1009)
      const e1 = yield* Effect.flip(a.session.receive)
      assert.strictEqual(e1._tag === "FrameTooBig" && e1.kind, "MessageTooBig")
      yield* a.closeAndCheck
      // Fragments: 40 KiB delivered, then a header declaring 40 KiB more (the running total).
      const b = yield* setup({ session: { maxMessageSize: 64 * 1024 } })
      yield* b.peer.send(Frame.binary(new Uint8Array(40 * 1024), { fin: false }))
      yield* b.peer.sendBytes([0x80, 0xfe, 0xa0, 0x00, 1, 2, 3, 4])
      assert.strictEqual((peerClose(yield* b.peer.next) as [number, string])[0], 1009)
      const e2 = yield* Effect.flip(b.session.receive)
      assert.strictEqual(e2._tag === "FrameTooBig" && e2.kind, "MessageTooBig")
      yield* b.closeAndCheck
    }))
})

describe("DefaultWebSocketSession: closing (every ending path completes closeReason once)", () => {
  it.effect("closed by us: Close on the wire, the peer's reply completes the handshake; closeReason = what we sent", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* session.send("last")
      yield* session.close(CloseReason.CloseReason(4000, "bye"))
      assert.strictEqual((yield* Effect.flip(session.send("late")))._tag, "OutgoingClosed")
      assert.strictEqual(text(yield* peer.next), "last")
      assert.deepStrictEqual(peerClose(yield* peer.next), [4000, "bye"])
      assert.strictEqual((yield* peer.next)._tag, "TransportClosed") // our FIN; "late" never reached the wire
      // Messages sent by the peer before its Close reply are still delivered.
      yield* peer.send(Frame.text("in flight"))
      yield* replyClose(peer, Frame.close(CloseReason.CloseReason(4000)))
      assert.strictEqual(payloadText(yield* session.receive), "in flight")
      const error = yield* Effect.flip(session.receive)
      assert.deepStrictEqual([error._tag, error._tag === "ConnectionClosed" && error.initiator], ["ConnectionClosed", "local"])
      assert.deepStrictEqual(yield* reasonOf(session), { code: 4000, message: "bye" })
      yield* closeAndCheck
    }))

  it.effect("closed by us, the peer hangs up (EOF or reset) without a Close reply: 1006, AbnormalClosure keeps what we sent (both roles)", () =>
    Effect.gen(function*() {
      for (const role of ["server", "client"] as const) {
        for (const end of ["Eof", "Reset"] as const) {
          const label = `${role} ${end}`
          const { session, peer, closeAndCheck } = yield* setup({ role })
          yield* session.close(CloseReason.CloseReason(1000, "done"))
          assert.deepStrictEqual(peerClose(yield* peer.next), [1000, "done"], label)
          yield* end === "Eof" ? peer.transport.end : peer.transport.reset
          const error = yield* Effect.flip(session.receive)
          assert.strictEqual(error._tag, "AbnormalClosure", label)
          if (error._tag === "AbnormalClosure") {
            assert.strictEqual(error.cause.reason, end, label)
            assert.deepStrictEqual(error.sent, { code: 1000, message: "done" }, label)
          }
          // RFC 6455 §7.1.5: no Close was received, so the close code is 1006 (never sent).
          assert.deepStrictEqual(yield* reasonOf(session), { code: 1006, message: "Connection closed without a Close frame" }, label)
          yield* closeAndCheck
        }
      }
    }))

  it.effect("closed by the peer: its Close is echoed (same code and reason) and becomes closeReason", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.send(Frame.text("m"), Frame.close(CloseReason.CloseReason(3001, "done")), Frame.text("ignored"))
      assert.deepStrictEqual(peerClose(yield* peer.next), [3001, "done"])
      assert.strictEqual(payloadText(yield* session.receive), "m")
      const error = yield* Effect.flip(session.receive)
      assert.deepStrictEqual([error._tag, error._tag === "ConnectionClosed" && error.initiator], ["ConnectionClosed", "peer"])
      assert.deepStrictEqual(yield* reasonOf(session), { code: 3001, message: "done" })
      yield* peer.transport.end
      yield* closeAndCheck
    }))

  it.effect("the echo of the peer's Close is written even when the scope closes right after run returns", () =>
    Effect.gen(function*() {
      const { session, peer, closeScope } = yield* setup()
      const handler = yield* Effect.forkChild(session.run((s) => Effect.ignore(s.receive)))
      yield* peer.send(Frame.close(CloseReason.CloseReason(1000, "bye")))
      yield* Fiber.join(handler)
      yield* closeScope
      assert.deepStrictEqual(peerClose(yield* peer.next), [1000, "bye"])
    }))

  it.effect("§7 an empty Close is answered with an empty Close; closeReason is 1005", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.send(Frame.close())
      const reply = yield* peer.next
      assert.deepStrictEqual([reply._tag, "payload" in reply ? reply.payload.length : -1], ["Close", 0])
      assert.deepStrictEqual(yield* reasonOf(session), { code: 1005, message: "" })
      yield* closeAndCheck
    }))

  it.effect("§7 valid codes are echoed; invalid codes, 1-byte payloads and long reasons fail 1002; bad UTF-8 fails 1007", () =>
    Effect.gen(function*() {
      for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]) {
        const { peer, closeAndCheck } = yield* setup()
        yield* peer.send(Frame.close(CloseReason.CloseReason(code, "r")))
        assert.deepStrictEqual(peerClose(yield* peer.next), [code, "r"])
        yield* closeAndCheck
      }
      const bad: Array<[Uint8Array, number]> = [
        ...[0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535].map(
          (c): [Uint8Array, number] => [Uint8Array.from([c >> 8, c & 0xff]), 1002]
        ),
        [Uint8Array.from([0x03]), 1002],
        [Uint8Array.from([0x03, 0xe8, 0xff]), 1007]
      ]
      for (const [payload, expected] of bad) {
        const { session, peer, closeAndCheck } = yield* setup()
        yield* peer.send(Frame.close(payload))
        assert.strictEqual((peerClose(yield* peer.next) as [number, string])[0], expected)
        assert.strictEqual((yield* reasonOf(session)).code, expected)
        yield* closeAndCheck
      }
      // A 126-byte Close payload (reason of 124 bytes) cannot be built with Frame.close: write it by hand.
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.sendBytes(Uint8Array.from([0x88, 0xfe, 0, 126, 0, 0, 0, 0, 0x03, 0xe8, ...new Uint8Array(124).fill(0x61)]))
      assert.strictEqual((peerClose(yield* peer.next) as [number, string])[0], 1002)
      assert.strictEqual((yield* reasonOf(session)).code, 1002)
      yield* closeAndCheck
    }))

  it.effect("H14 peer EOF without Close: we send Close 1000, closeReason 1006, receive fails AbnormalClosure", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.send(Frame.text("m"))
      yield* peer.sendBytes([0x81, 0x85, 0, 0]) // EOF in the middle of a frame header
      yield* peer.transport.end
      assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
      assert.strictEqual(payloadText(yield* session.receive), "m")
      const error = yield* Effect.flip(session.receive)
      assert.strictEqual(error._tag, "AbnormalClosure")
      assert.deepStrictEqual(yield* reasonOf(session), { code: 1006, message: "Connection closed without a Close frame" })
      yield* closeAndCheck
    }))

  it.effect("H14 reset mid-frame: closeReason 1006, receive fails AbnormalClosure(Reset), fibers end", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.sendBytes([0x82, 0xfe, 0x10])
      yield* peer.transport.reset
      const error = yield* Effect.flip(session.receive)
      assert.strictEqual(error._tag === "AbnormalClosure" && error.cause.reason, "Reset")
      assert.strictEqual((yield* reasonOf(session)).code, 1006)
      yield* closeAndCheck
    }))

  it.effect("H13 close timeout: the peer never answers our Close; after closeTimeout the transport is destroyed", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ session: { closeTimeout: "3 seconds" } })
      yield* session.close()
      assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
      yield* TestClock.adjust("2999 millis")
      assert.isFalse(yield* Deferred.isDone(session.closeReason))
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* reasonOf(session), { code: 1006, message: "Close handshake timed out" })
      assert.strictEqual((yield* Effect.flip(session.receive))._tag, "CloseTimeout")
      const end = yield* peer.next
      assert.strictEqual(end._tag, "TransportClosed")
      assert.strictEqual((yield* peer.transport.ended).reason, "Reset")
      yield* closeAndCheck
    }))

  it.effect("H13 with a full incoming queue: the reader waiting to offer a message stops when the session ends (not at scope close)", () =>
    Effect.gen(function*() {
      for (const mode of ["queue", "inbox"] as const) {
        const { session, peer, closeAndCheck } = yield* blockedReader(mode)
        yield* session.close()
        assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
        yield* TestClock.adjust("3 seconds")
        assert.deepStrictEqual(yield* reasonOf(session), { code: 1006, message: "Close handshake timed out" }, mode)
        for (let i = 0; i < 20; i++) yield* Effect.yieldNow
        for (const f of session.fibers()) assert.isDefined(f.pollUnsafe(), `${mode}: a session fiber still runs after the end`)
        // The message taken before the end is still there; nothing after the end is delivered.
        assert.strictEqual(text(yield* session.receive), "1", mode)
        assert.strictEqual((yield* Effect.flip(session.receive))._tag, "CloseTimeout", mode)
        yield* closeAndCheck
      }
    }))

  it.effect("when run's handler ends, the messages it did not take are dropped: a reader blocked on a full inbox reads on to the peer's Close (no close timeout)", () =>
    Effect.gen(function*() {
      for (const mode of ["queue", "inbox"] as const) {
        const { session, peer, closeAndCheck } = yield* blockedReader(mode)
        const running = yield* Effect.forkChild(session.run(() => Effect.void))
        assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""], mode)
        // The clock never moves: the peer's Close is read only because the reader was let go.
        yield* peer.send(Frame.close(CloseReason.CloseReason(1000)))
        yield* Fiber.join(running)
        assert.deepStrictEqual(yield* reasonOf(session), { code: 1000, message: "" }, mode)
        yield* closeAndCheck
      }
    }))

  it.effect("H13 the peer sends Close and never reads our reply: the transport is destroyed after closeTimeout", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ session: { closeTimeout: "1 second" }, kit: { highWaterMark: 0 } })
      yield* peer.send(Frame.close(CloseReason.CloseReason(1000)))
      assert.strictEqual((yield* reasonOf(session)).code, 1000)
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* peer.transport.ended).reason, "Reset")
      yield* closeAndCheck
    }))

  it.effect("ping interval and timeout (TestClock): Ktor's payload, answered Pings keep the session, a missing Pong closes 1011", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ session: { pingInterval: "1 second", pingTimeout: "500 millis" } })
      yield* TestClock.adjust("1 second")
      const ping = yield* peer.next
      assert.strictEqual(ping._tag, "Ping")
      assert.match(text(ping), /^\[ping [0-9a-f]{64} ping\]$/)
      yield* peer.send(Frame.pong(utf8("not it")), Frame.pong("payload" in ping ? ping.payload : new Uint8Array(0)))
      yield* TestClock.adjust("500 millis")
      assert.isFalse(yield* Deferred.isDone(session.closeReason))
      yield* TestClock.adjust("500 millis") // second Ping, never answered
      assert.strictEqual((yield* peer.next)._tag, "Ping")
      yield* TestClock.adjust("499 millis")
      assert.isFalse(yield* Deferred.isDone(session.closeReason))
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(peerClose(yield* peer.next), [1011, "Ping timeout"])
      assert.deepStrictEqual(yield* reasonOf(session), { code: 1011, message: "Ping timeout" })
      assert.strictEqual((yield* Effect.flip(session.receive))._tag, "PingTimeout")
      yield* replyClose(peer)
      yield* closeAndCheck
    }))

  it.effect("run: a failing handler sends Close 1011 with its message and re-raises its error", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      const fiber = yield* Effect.forkChild(session.run(() => Effect.fail(new Error("boom"))))
      assert.deepStrictEqual(peerClose(yield* peer.next), [1011, "Error: boom"])
      yield* replyClose(peer, Frame.close(CloseReason.CloseReason(1011)))
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit))
      assert.deepStrictEqual(yield* reasonOf(session), { code: 1011, message: "Error: boom" })
      yield* closeAndCheck
    }))

  it.effect("run: a handler that returns closes with 1000 and waits for the handshake", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      const fiber = yield* Effect.forkChild(session.run((s) => Effect.as(s.send("hi"), 42)))
      assert.strictEqual(text(yield* peer.next), "hi")
      assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
      yield* Effect.yieldNow
      assert.isUndefined(fiber.pollUnsafe())
      yield* replyClose(peer)
      assert.strictEqual(yield* Fiber.join(fiber), 42)
      yield* closeAndCheck
    }))

  it.effect("scope close / interruption: servers send 1001, clients 1000; closeReason completed; no fiber left", () =>
    Effect.gen(function*() {
      for (const [role, code] of [["server", 1001], ["client", 1000]] as const) {
        const { session, peer, closeAndCheck } = yield* setup({ role })
        const waiter = yield* Effect.forkChild(Effect.flip(session.receive))
        yield* Effect.yieldNow
        if (role === "server") {
          yield* closeAndCheck
          assert.deepStrictEqual(peerClose(yield* peer.next), [code, ""])
        } else {
          // A client waits for the server's Close and EOF (RFC 6455 §7.1.1).
          const closing = yield* Effect.forkChild(closeAndCheck)
          assert.deepStrictEqual(peerClose(yield* peer.next), [code, ""])
          yield* replyClose(peer)
          yield* Fiber.join(closing)
        }
        assert.strictEqual((yield* reasonOf(session)).code, code)
        const error = yield* Fiber.join(waiter)
        assert.deepStrictEqual([error._tag, error._tag === "ConnectionClosed" && error.initiator], ["ConnectionClosed", "local"])
      }
    }))

  it.effect("close validates the reason: 1005/1006/1015 and reserved codes are refused with InvalidCloseReason", () =>
    Effect.gen(function*() {
      const { session, closeAndCheck } = yield* setup()
      for (const code of [1005, 1006, 1015, 999, 2000]) {
        const error = yield* Effect.flip(session.close(CloseReason.CloseReason(code)))
        assert.strictEqual(error._tag, "InvalidCloseReason")
      }
      yield* closeAndCheck
    }))

  it.effect("incoming queue: messages as a Stream end cleanly on a normal close", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.send(Frame.text("a"), Frame.binary(utf8("b")), Frame.close(CloseReason.CloseReason(1000)))
      const received = yield* Stream.runCollect(session.messages)
      assert.deepStrictEqual(received.map(payloadText), ["a", "b"])
      yield* closeAndCheck
    }))

  it.effect("closeExceptionally sends 1011 with the cause's message cut to 123 bytes", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* session.closeExceptionally(new Error("x".repeat(300)))
      const close = peerClose(yield* peer.next) as [number, string]
      assert.strictEqual(close[0], 1011)
      assert.strictEqual(new TextEncoder().encode(close[1]).length, 123)
      yield* replyClose(peer, Frame.close(CloseReason.CloseReason(1011)))
      assert.strictEqual((yield* reasonOf(session)).code, 1011)
      yield* closeAndCheck
    }))

  it.effect("a violation while our Close is pending still reports the violation and its code", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* session.close(CloseReason.CloseReason(1000, "going"))
      yield* peer.sendBytes([0x83, 0x80, 0, 0, 0, 0])
      assert.deepStrictEqual(peerClose(yield* peer.next), [1000, "going"]) // only one Close is ever sent
      assert.strictEqual((yield* peer.next)._tag, "TransportClosed")
      assert.strictEqual((yield* Effect.flip(session.receive))._tag, "ProtocolViolation")
      assert.strictEqual((yield* reasonOf(session)).code, 1002)
      yield* closeAndCheck
    }))
})

describe("DefaultWebSocketSession: sending and queues", () => {
  it.effect("a client session masks its frames; sendFrame passes fragments and Pings as they are", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ role: "client" })
      yield* session.sendFrame(Frame.text("ab", { fin: false }))
      yield* session.sendFrame(Frame.ping(utf8("p")))
      yield* session.sendFrame(Frame.continuation(utf8("c")))
      const events = [yield* peer.next, yield* peer.next, yield* peer.next]
      assert.deepStrictEqual(events.map((e) => [e._tag, text(e)]), [["Text", "ab"], ["Ping", "p"], ["Continuation", "c"]])
      assert.strictEqual(peer.wire[1]! & 0x80, 0x80) // masked (the server-role parser also insists)
      const closing = yield* Effect.forkChild(closeAndCheck)
      assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
      yield* replyClose(peer)
      yield* Fiber.join(closing)
    }))

  it.effect("sendFrame(Close) is close(reason); an invalid Close payload is InvalidCloseReason", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      const bad = yield* Effect.flip(session.sendFrame(Frame.close(Uint8Array.from([0x03, 0xed])))) // code 1005
      assert.deepStrictEqual([bad._tag, bad._tag === "InvalidCloseReason" && bad.code], ["InvalidCloseReason", 1005])
      const e = yield* Effect.flip(session.sendFrame(Frame.close()))
      assert.strictEqual(e._tag, "InvalidCloseReason")
      yield* session.sendFrame(Frame.close(CloseReason.CloseReason(4001, "x")))
      assert.deepStrictEqual(peerClose(yield* peer.next), [4001, "x"])
      yield* closeAndCheck
    }))

  it.effect("H12 at the session: send suspends on a full outgoing queue and resumes as the peer reads", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({
        raw: { channels: { incoming: { capacity: 8, overflow: "suspend" }, outgoing: { capacity: 1, overflow: "suspend" } } },
        kit: { highWaterMark: 0 }
      })
      const sender = yield* Effect.forkChild(Effect.forEach(["1", "2", "3", "4"], (m) => session.send(m)))
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.isUndefined(sender.pollUnsafe())
      const got: Array<string> = []
      for (let i = 0; i < 4; i++) got.push(text(yield* peer.next))
      yield* Fiber.join(sender)
      assert.deepStrictEqual(got, ["1", "2", "3", "4"])
      yield* Effect.forkChild(peer.drain) // the peer keeps reading, so our Close can be written on scope close
      yield* closeAndCheck
    }))

  it.effect("incoming overflow (policy fail) at the session: Close 1008, earlier messages delivered, then ChannelOverflow", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({
        raw: { channels: { incoming: { capacity: 2, overflow: "fail" }, outgoing: { capacity: 8, overflow: "suspend" } } }
      })
      yield* peer.send(Frame.text("1"))
      yield* peer.send(Frame.text("2"))
      yield* peer.send(Frame.text("3"))
      assert.deepStrictEqual(peerClose(yield* peer.next), [1008, "Incoming queue overflow"])
      assert.strictEqual(payloadText(yield* session.receive), "1")
      assert.strictEqual(payloadText(yield* session.receive), "2")
      assert.strictEqual((yield* Effect.flip(session.receive))._tag, "ChannelOverflow")
      assert.strictEqual((yield* reasonOf(session)).code, 1008)
      yield* closeAndCheck
    }))

  it.effect("the outgoing Sink sends strings as Text and bytes as Binary; readBytes copies; readReason validates", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* Stream.run(Stream.make<Array<string | Uint8Array>>("a", utf8("b")), session.outgoing)
      const a = yield* peer.next
      const b = yield* peer.next
      assert.deepStrictEqual([a._tag, text(a), b._tag, text(b)], ["Text", "a", "Binary", "b"])
      const frame = Frame.binary(utf8("xy"))
      const copy = DefaultWebSocketSession.readBytes(frame)
      copy[0] = 0
      assert.strictEqual(payloadText(frame), "xy")
      assert.deepStrictEqual(yield* DefaultWebSocketSession.readReason(Frame.close(CloseReason.CloseReason(4000, "r"))), { code: 4000, message: "r" })
      assert.deepStrictEqual(yield* DefaultWebSocketSession.readReason(Frame.close()), { code: 1005, message: "" })
      const bad = yield* Effect.flip(DefaultWebSocketSession.readReason(Frame.close(Uint8Array.from([3]))))
      assert.deepStrictEqual([bad._tag, bad.code], ["ProtocolViolation", 1002])
      yield* closeAndCheck
    }))
})

describe("DefaultWebSocketSession: close path by role (RFC 6455 §7.1.1: the server closes TCP first)", () => {
  it.effect("client, scope close: waits for the server's Close and EOF, then ends promptly (orderly TCP end)", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ role: "client", session: { closeTimeout: "5 seconds" } })
      const closing = yield* Effect.forkChild(closeAndCheck)
      assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.isUndefined(closing.pollUnsafe(), "the client waits for the server")
      yield* replyClose(peer)
      yield* Fiber.join(closing) // no clock adjustment needed
      assert.deepStrictEqual(yield* reasonOf(session), { code: 1000, message: "" })
      const error = yield* Effect.flip(session.receive)
      assert.deepStrictEqual([error._tag, error._tag === "ConnectionClosed" && error.initiator], ["ConnectionClosed", "local"])
      assert.strictEqual((yield* peer.transport.ended).reason, "Eof") // both sides ended before the destroy
    }))

  it.effect("client, scope close: a server that never answers is destroyed after closeTimeout; closeReason 1006", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ role: "client", session: { closeTimeout: "3 seconds" } })
      const closing = yield* Effect.forkChild(closeAndCheck)
      assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
      yield* TestClock.adjust("2999 millis")
      assert.isUndefined(closing.pollUnsafe())
      assert.isFalse(yield* Deferred.isDone(session.closeReason))
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(closing)
      assert.deepStrictEqual(yield* reasonOf(session), { code: 1006, message: "Close handshake timed out" })
      const error = yield* Effect.flip(session.receive)
      assert.deepStrictEqual([error._tag, error._tag === "CloseTimeout" && error.sent.code], ["CloseTimeout", 1000])
      assert.strictEqual((yield* peer.next)._tag, "TransportClosed")
      assert.strictEqual((yield* peer.transport.ended).reason, "Reset")
    }))

  it.effect("client, run: after the server's Close reply, run waits for its EOF (bounded by closeTimeout), then destroys", () =>
    Effect.gen(function*() {
      // The server replies and closes TCP: run ends at once.
      const a = yield* setup({ role: "client", session: { closeTimeout: "2 seconds" } })
      const fa = yield* Effect.forkChild(a.session.run(() => Effect.succeed(1)))
      assert.deepStrictEqual(peerClose(yield* a.peer.next), [1000, ""])
      yield* replyClose(a.peer)
      assert.strictEqual(yield* Fiber.join(fa), 1)
      assert.strictEqual((yield* a.peer.transport.ended).reason, "Eof")
      yield* a.closeScope
      // The server replies but never closes TCP: run ends after closeTimeout, the transport destroyed.
      const b = yield* setup({ role: "client", session: { closeTimeout: "2 seconds" } })
      const fb = yield* Effect.forkChild(b.session.run(() => Effect.succeed(2)))
      assert.deepStrictEqual(peerClose(yield* b.peer.next), [1000, ""])
      yield* b.peer.send(Frame.close(CloseReason.CloseReason(1000)))
      assert.deepStrictEqual(yield* reasonOf(b.session), { code: 1000, message: "" })
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.isUndefined(fb.pollUnsafe(), "run waits for the server's EOF")
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* Fiber.join(fb), 2)
      assert.strictEqual((yield* b.peer.transport.ended).reason, "Reset")
      yield* b.closeScope
    }))

  it.effect("server (unchanged): scope close sends 1001 and destroys without waiting; run ends once the echo is in", () =>
    Effect.gen(function*() {
      const a = yield* setup({ role: "server" })
      yield* a.closeAndCheck // the peer never answers, no clock adjustment: a server does not wait
      assert.deepStrictEqual(peerClose(yield* a.peer.next), [1001, ""])
      assert.strictEqual((yield* a.peer.next)._tag, "TransportClosed")
      assert.strictEqual((yield* a.peer.transport.ended).reason, "Reset")
      assert.deepStrictEqual(yield* reasonOf(a.session), { code: 1001, message: "" })
      const b = yield* setup({ role: "server" })
      const fb = yield* Effect.forkChild(b.session.run(() => Effect.succeed(3)))
      assert.deepStrictEqual(peerClose(yield* b.peer.next), [1000, ""])
      yield* b.peer.send(Frame.close(CloseReason.CloseReason(1000))) // no EOF from the client
      assert.strictEqual(yield* Fiber.join(fb), 3)
      yield* b.closeAndCheck
      assert.strictEqual((yield* b.peer.transport.ended).reason, "Reset") // the server closed TCP first
    }))
})

describe("DefaultWebSocketSession: footprint", () => {
  it.effect("an idle session runs no fiber (reader and writer run only while they have work)", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* Effect.yieldNow
      assert.strictEqual(session.fibers().filter((f) => f.pollUnsafe() === undefined).length, 0)
      // Pings are still answered: the input starts a reader fiber, the Pong a writer fiber, and both end.
      yield* peer.send(Frame.ping(utf8("x")))
      const pong = yield* peer.next
      assert.deepStrictEqual([pong._tag, text(pong)], ["Pong", "x"])
      yield* Effect.yieldNow
      assert.strictEqual(session.fibers().filter((f) => f.pollUnsafe() === undefined).length, 0)
      yield* closeAndCheck
    }))

  it.effect("over a transport without poll, one reader fiber waits for input and does not outlive the scope", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ kit: { poll: false } })
      yield* Effect.yieldNow
      const live = session.fibers().filter((f) => f.pollUnsafe() === undefined)
      assert.strictEqual(live.length, 1)
      yield* peer.send(Frame.text("hi"))
      assert.strictEqual(payloadText(yield* session.receive), "hi")
      yield* peer.send(Frame.ping(utf8("x")))
      const pong = yield* peer.next
      assert.deepStrictEqual([pong._tag, text(pong)], ["Pong", "x"])
      yield* closeAndCheck
      assert.isDefined(live[0]!.pollUnsafe())
      assert.strictEqual((yield* Effect.flip(session.receive))._tag, "ConnectionClosed")
    }))

  it.effect("a writer fiber blocked on a full transport is listed and does not outlive the scope", () =>
    Effect.gen(function*() {
      const { session, closeAndCheck } = yield* setup({ kit: { highWaterMark: 16 } })
      yield* session.send(new Uint8Array(4096)) // the peer never reads: the write waits for room
      for (let i = 0; i < 3; i++) yield* Effect.yieldNow
      const live = session.fibers().filter((f) => f.pollUnsafe() === undefined)
      assert.strictEqual(live.length, 1) // the writer (the reader has no input to handle)
      // The scope close waits (bounded by the close timeout) for the stuck writer, then interrupts it.
      const closing = yield* Effect.forkChild(closeAndCheck)
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(closing)
      for (const f of live) assert.isDefined(f.pollUnsafe())
      assert.strictEqual((yield* Effect.flip(session.send("late")))._tag, "OutgoingClosed")
    }))

  it.effect("frames the raw session received before the default session was made are processed first, in order", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const [ours, theirs] = yield* TestTransport.makePair()
      const peer = new TestPeer(theirs, "client")
      // Bytes already buffered: the raw reader parses them as soon as it starts.
      yield* peer.send(Frame.text("a", { fin: false }), Frame.ping(utf8("p")), Frame.continuation(utf8("b")))
      const raw = yield* RawWebSocket.make(ours, { role: "server" }).pipe(Scope.provide(scope))
      for (let i = 0; i < 3; i++) yield* Effect.yieldNow
      const session = yield* DefaultWebSocketSession.make(raw).pipe(Scope.provide(scope))
      assert.strictEqual(session.fibers().length, 1) // a pump draining the raw queue (reader and writer are idle)
      yield* peer.send(Frame.text("c"))
      assert.strictEqual(payloadText(yield* session.receive), "ab")
      assert.strictEqual(payloadText(yield* session.receive), "c")
      const pong = yield* peer.next
      assert.deepStrictEqual([pong._tag, text(pong)], ["Pong", "p"])
      yield* peer.send(Frame.close(CloseReason.CloseReason(1000)))
      assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
      assert.strictEqual((yield* reasonOf(session)).code, 1000)
      yield* Scope.close(scope, Exit.void)
      for (const f of session.fibers()) assert.isDefined(f.pollUnsafe())
    }))
})

describe("DefaultWebSocketSession: outgoing fragmentation (outgoingFragmentSize)", () => {
  it.effect("a large message goes out as a valid fragmented message; small ones and control frames are whole", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ session: { outgoingFragmentSize: 4 } })
      yield* session.send("hello world!!") // 13 bytes: 4 + 4 + 4 + 1
      yield* session.send("tiny")
      yield* session.sendFrame(Frame.ping(utf8("12345678")))
      yield* session.send(Uint8Array.from([1, 2, 3, 4, 5]))
      const events: Array<PeerEvent> = []
      for (let i = 0; i < 8; i++) events.push(yield* peer.next)
      assert.deepStrictEqual(events.map((e) => ["fin" in e ? e.fin : null, e._tag, text(e)]), [
        [false, "Text", "hell"],
        [false, "Continuation", "o wo"],
        [false, "Continuation", "rld!"],
        [true, "Continuation", "!"],
        [true, "Text", "tiny"],
        [true, "Ping", "12345678"],
        [false, "Binary", "\u0001\u0002\u0003\u0004"],
        [true, "Continuation", "\u0005"]
      ])
      // On the wire: FIN clear and opcode 1 on the first header, opcode 0 on the continuations, FIN on the last.
      assert.deepStrictEqual([peer.wire[0], peer.wire[6], peer.wire[12], peer.wire[18]], [0x01, 0x00, 0x00, 0x80])
      yield* closeAndCheck
    }))

  it.effect("round trip: a fragmenting client and a server session exchange whole messages", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const [a, b] = yield* TestTransport.makePair({ chunkSize: 7 })
      const clientRaw = yield* RawWebSocket.make(a, { role: "client" }).pipe(Scope.provide(scope))
      const client = yield* DefaultWebSocketSession.make(clientRaw, { outgoingFragmentSize: 3 }).pipe(Scope.provide(scope))
      const serverRaw = yield* RawWebSocket.make(b, { role: "server" }).pipe(Scope.provide(scope))
      const server = yield* DefaultWebSocketSession.make(serverRaw, { outgoingFragmentSize: 1000 }).pipe(Scope.provide(scope))
      const big = new Uint8Array(5000).map((_, i) => i & 0xff)
      yield* client.send("héllo, fragmented wörld €")
      yield* client.send(big)
      const m1 = yield* server.receive
      assert.deepStrictEqual([m1._tag, payloadText(m1)], ["Text", "héllo, fragmented wörld €"])
      const m2 = yield* server.receive
      assert.deepStrictEqual(Array.from(m2.payload), Array.from(big))
      yield* server.send(m2.payload) // 5 fragments back
      assert.deepStrictEqual(Array.from((yield* client.receive).payload), Array.from(big))
      yield* client.close()
      assert.deepStrictEqual(yield* reasonOf(server), { code: 1000, message: "" })
      assert.deepStrictEqual(yield* reasonOf(client), { code: 1000, message: "" })
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("an outgoingFragmentSize that is not a positive integer is refused (RangeError)", () =>
    Effect.gen(function*() {
      for (const size of [0, -1, 1.5]) {
        const [ours] = yield* TestTransport.makePair()
        const exit = yield* Effect.exit(
          Effect.scoped(Effect.flatMap(RawWebSocket.make(ours, { role: "server" }), (raw) =>
            DefaultWebSocketSession.make(raw, { outgoingFragmentSize: size })))
        )
        assert.isTrue(Exit.isFailure(exit) && Exit.hasDies(exit), `size ${size}`)
      }
    }))
})

describe("incoming inbox", () => {
  type Msg = DefaultWebSocketSession.Message

  /** Lets the reader, the inbox's wake-ups and forked fibers run (bounded). */
  const settle = Effect.gen(function*() {
    for (let i = 0; i < 20; i++) yield* Effect.yieldNow
  })

  /** Runs `effect` in a fiber and returns its exit once things settled; fails the test if it is still waiting. */
  const now = <A, E>(effect: Effect.Effect<A, E>, what = "the effect") =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(effect, { startImmediately: true })
      yield* settle
      const exit = fiber.pollUnsafe()
      if (exit === undefined) {
        yield* Fiber.interrupt(fiber)
        return assert.fail(`${what} is still waiting`)
      }
      return exit
    })

  /** The message `effect` gives at once, as text. */
  const textNow = <E>(effect: Effect.Effect<Msg, E>, what?: string) =>
    Effect.map(now(effect, what), (exit) => {
      if (Exit.isFailure(exit)) return assert.fail(`expected a message, got ${Cause.pretty(exit.cause)}`)
      return payloadText(exit.value)
    })

  /** The error `effect` fails with at once. */
  const errorNow = <A, E>(effect: Effect.Effect<A, E>, what?: string) =>
    Effect.map(now(effect, what), (exit): E => {
      if (Exit.isSuccess(exit)) return assert.fail(`expected a failure, got ${String(exit.value)}`)
      const error = Cause.findErrorOption(exit.cause)
      if (error._tag === "None") return assert.fail(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
      return error.value
    })

  const isWaiting = (fiber: Fiber.Fiber<unknown, unknown>) => fiber.pollUnsafe() === undefined

  /** The value of a fiber that must have completed successfully. */
  const doneValue = <A, E>(fiber: Fiber.Fiber<A, E>, what = "fiber"): A => {
    const exit = fiber.pollUnsafe()
    if (exit === undefined) return assert.fail(`${what} is still waiting`)
    if (Exit.isFailure(exit)) return assert.fail(`${what} failed: ${Cause.pretty(exit.cause)}`)
    return exit.value
  }

  const bounded = (capacity: number, overflow: "suspend" | "fail") => ({
    raw: { channels: { incoming: { capacity, overflow }, outgoing: { capacity: 64, overflow: "suspend" as const } } }
  })

  it.effect("messages buffered before incoming is first read are all in the queue, in order; later ones follow", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.send(Frame.text("1"), Frame.binary(utf8("2")))
      yield* peer.send(Frame.text("3"))
      yield* settle
      const queue = session.incoming
      assert.strictEqual(session.incoming, queue) // created once
      assert.strictEqual(Queue.sizeUnsafe(queue), 3)
      yield* peer.send(Frame.text("4"), Frame.text("5"))
      yield* settle
      assert.strictEqual(Queue.sizeUnsafe(queue), 5)
      const first = yield* Queue.take(queue)
      assert.deepStrictEqual([first._tag, payloadText(first)], ["Text", "1"])
      const second = yield* Queue.take(queue)
      assert.deepStrictEqual([second._tag, payloadText(second)], ["Binary", "2"])
      // receive and messages take from the same queue now
      assert.strictEqual(yield* textNow(session.receive), "3")
      assert.deepStrictEqual((yield* Queue.takeAll(queue)).map(payloadText), ["4", "5"])
      yield* peer.send(Frame.text("6"), Frame.text("7"))
      assert.strictEqual(yield* textNow(session.receive), "6")
      assert.strictEqual(yield* textNow(Queue.take(queue)), "7")
      assert.strictEqual(Queue.sizeUnsafe(queue), 0)
      yield* closeAndCheck
    }))

  it.effect("a receive taken partly from the inbox, then incoming: the rest moves over without loss or duplicate", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.send(Frame.text("1"), Frame.text("2"), Frame.text("3"), Frame.text("4"))
      yield* settle
      assert.strictEqual(yield* textNow(session.receive), "1")
      assert.strictEqual(yield* textNow(session.receive), "2")
      const queue = session.incoming
      assert.strictEqual(Queue.sizeUnsafe(queue), 2)
      assert.deepStrictEqual((yield* Queue.takeAll(queue)).map(payloadText), ["3", "4"])
      yield* closeAndCheck
    }))

  it.effect("a fiber waiting in receive when incoming is first read gets the next message, once", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      const receiver = yield* Effect.forkChild(session.receive, { startImmediately: true })
      yield* settle
      assert.isTrue(isWaiting(receiver))
      const queue = session.incoming
      yield* settle
      assert.isTrue(isWaiting(receiver)) // moved over to the queue, not resumed with anything
      yield* peer.send(Frame.text("a"), Frame.text("b"))
      yield* settle
      assert.strictEqual(payloadText(doneValue(receiver, "the receiver")), "a")
      assert.strictEqual(Queue.sizeUnsafe(queue), 1)
      assert.strictEqual(yield* textNow(Queue.take(queue)), "b")
      assert.strictEqual(Queue.sizeUnsafe(queue), 0)
      yield* closeAndCheck
    }))

  it.effect("a fiber pulling messages when incoming is first read gets the next messages, once", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      const collector = yield* Effect.forkChild(Stream.runCollect(Stream.take(session.messages, 2)), {
        startImmediately: true
      })
      yield* settle
      assert.isTrue(isWaiting(collector))
      const queue = session.incoming
      yield* settle
      assert.isTrue(isWaiting(collector))
      yield* peer.send(Frame.text("a"))
      yield* settle
      yield* peer.send(Frame.text("b"))
      yield* settle
      assert.deepStrictEqual(doneValue(collector, "the stream").map(payloadText), ["a", "b"])
      assert.strictEqual(Queue.sizeUnsafe(queue), 0)
      yield* peer.send(Frame.text("c"))
      assert.strictEqual(yield* textNow(Queue.take(queue)), "c")
      yield* closeAndCheck
    }))

  it.effect("incoming read after the peer's Close: the buffered messages, then ConnectionClosed (Queue.take and receive)", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.send(Frame.text("1"), Frame.text("2"), Frame.text("3"), Frame.close(CloseReason.CloseReason(3001, "bye")))
      assert.deepStrictEqual(peerClose(yield* peer.next), [3001, "bye"])
      assert.deepStrictEqual(yield* reasonOf(session), { code: 3001, message: "bye" })
      const queue = session.incoming
      assert.strictEqual(yield* textNow(Queue.take(queue)), "1")
      assert.strictEqual(yield* textNow(session.receive), "2")
      assert.strictEqual(yield* textNow(Queue.take(queue)), "3")
      for (const take of [Queue.take(queue), session.receive, Queue.take(queue)]) {
        const error = yield* errorNow(take, "a take after the end")
        assert.strictEqual(error._tag, "ConnectionClosed")
        if (error._tag === "ConnectionClosed") {
          assert.deepStrictEqual([error.initiator, error.reason.code, error.reason.message], ["peer", 3001, "bye"])
        }
      }
      yield* peer.transport.end
      yield* closeAndCheck
    }))

  it.effect("incoming read after the peer's Close with nothing buffered: takes fail with ConnectionClosed at once", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      yield* peer.send(Frame.close(CloseReason.CloseReason(1000)))
      assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
      const queue = session.incoming
      assert.strictEqual((yield* errorNow(Queue.take(queue)))._tag, "ConnectionClosed")
      assert.strictEqual((yield* errorNow(session.receive))._tag, "ConnectionClosed")
      yield* closeAndCheck
    }))

  it.effect("incoming read while a protocol violation waits for the earlier messages: they, then the ProtocolViolation", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck, ours } = yield* setup()
      // RSV2 without an extension: the parser fails on the third frame.
      yield* peer.send(Frame.text("1"), Frame.text("2"), Frame.make("Text", true, false, true, false, utf8("bad")))
      yield* settle
      assert.strictEqual(ours.bytesWritten(), 0) // the Close waits until "1" and "2" are taken
      const queue = session.incoming
      assert.strictEqual(yield* textNow(Queue.take(queue)), "1")
      assert.strictEqual(yield* textNow(session.receive), "2")
      assert.deepStrictEqual(peerClose(yield* peer.next), [1002, "RSV bits set without a negotiated extension"])
      assert.strictEqual((yield* reasonOf(session)).code, 1002)
      for (const take of [Queue.take(queue), session.receive]) {
        const error = yield* errorNow(take, "a take after the violation")
        assert.strictEqual(error._tag, "ProtocolViolation")
        if (error._tag === "ProtocolViolation") assert.strictEqual(error.code, 1002)
      }
      yield* closeAndCheck
    }))

  it.effect("incoming read before the session ends: takers get the queued messages, then the end error", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      const queue = session.incoming
      yield* peer.send(Frame.text("1"), Frame.text(Uint8Array.of(0x61, 0xed, 0xa0, 0x80))) // invalid UTF-8
      assert.strictEqual(yield* textNow(session.receive), "1")
      assert.strictEqual((peerClose(yield* peer.next) as [number, string])[0], 1007)
      const error = yield* errorNow(Queue.take(queue))
      assert.deepStrictEqual([error._tag, error._tag === "ProtocolViolation" && error.code], ["ProtocolViolation", 1007])
      yield* closeAndCheck
    }))

  it.effect("takers waiting when the session ends with nothing buffered fail at once (inbox and queue)", () =>
    Effect.gen(function*() {
      for (const readIncoming of [false, true]) {
        const { session, peer, closeAndCheck } = yield* setup()
        if (readIncoming) assert.isDefined(session.incoming)
        const receiver = yield* Effect.forkChild(session.receive, { startImmediately: true })
        const collector = yield* Effect.forkChild(Stream.runCollect(session.messages), { startImmediately: true })
        yield* settle
        assert.isTrue(isWaiting(receiver) && isWaiting(collector))
        yield* peer.send(Frame.close(CloseReason.CloseReason(1000, "done")))
        yield* settle
        const exit = receiver.pollUnsafe()
        assert.isDefined(exit, `incoming read: ${readIncoming}: the receiver still waits`)
        const error = exit !== undefined && Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
        assert.strictEqual(error?._tag === "Some" ? error.value._tag : "none", "ConnectionClosed")
        assert.deepStrictEqual(doneValue(collector, "the stream"), [])
        if (!readIncoming) assert.strictEqual((yield* errorNow(Queue.take(session.incoming)))._tag, "ConnectionClosed")
        yield* closeAndCheck
      }
    }))

  it.effect("backpressure (capacity 2, suspend): the reader waits; incoming read while it waits lets every message through in order", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup(bounded(2, "suspend"))
      yield* peer.send(Frame.text("1"), Frame.text("2"), Frame.text("3"), Frame.text("4"), Frame.text("5"))
      yield* peer.send(Frame.ping(utf8("p")))
      yield* settle
      // The reader waits for room: it is still running, and the Ping after the messages is not answered yet.
      assert.isTrue(session.fibers().some(isWaiting), "the reader waits for room")
      const pong = yield* Effect.forkChild(peer.next, { startImmediately: true })
      yield* settle
      assert.isTrue(isWaiting(pong), "no Pong while the reader is blocked")
      const queue = session.incoming
      yield* settle
      assert.strictEqual(Queue.sizeUnsafe(queue), 2) // never more than the capacity
      const got: Array<string> = []
      for (let i = 0; i < 5; i++) {
        got.push(yield* textNow(Queue.take(queue), `take ${i + 1}`))
        assert.isAtMost(Queue.sizeUnsafe(queue), 2)
      }
      assert.deepStrictEqual(got, ["1", "2", "3", "4", "5"])
      yield* settle
      const answered = doneValue(pong, "the Pong")
      assert.deepStrictEqual([answered._tag, text(answered)], ["Pong", "p"])
      // Still flowing afterwards, through receive too.
      yield* peer.send(Frame.text("6"), Frame.text("7"), Frame.text("8"))
      assert.strictEqual(yield* textNow(session.receive), "6")
      assert.deepStrictEqual((yield* now(Queue.takeAll(queue))).pipe(Exit.map((ms) => ms.map(payloadText))), Exit.succeed(["7", "8"]))
      yield* closeAndCheck
    }))

  it.effect("backpressure (capacity 2, suspend) without incoming: receive makes room and the reader goes on, in order", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup(bounded(2, "suspend"))
      yield* peer.send(Frame.text("1"), Frame.text("2"), Frame.text("3"), Frame.text("4"), Frame.text("5"))
      yield* settle
      assert.isTrue(session.fibers().some(isWaiting), "the reader waits for room")
      const got: Array<string> = []
      for (let i = 0; i < 3; i++) got.push(yield* textNow(session.receive, `receive ${i + 1}`))
      // Then incoming takes over what is left, with the reader possibly still waiting.
      const queue = session.incoming
      yield* settle
      for (let i = 3; i < 5; i++) got.push(yield* textNow(Queue.take(queue), `take ${i + 1}`))
      assert.deepStrictEqual(got, ["1", "2", "3", "4", "5"])
      assert.strictEqual(Queue.sizeUnsafe(queue), 0)
      yield* closeAndCheck
    }))

  it.effect("backpressure (capacity 2, suspend): the session ends while the reader waits for room; takers get the messages in order, then the end", () =>
    Effect.gen(function*() {
      for (const readIncoming of [false, true]) {
        const { session, peer, closeAndCheck } = yield* setup(bounded(2, "suspend"))
        if (readIncoming) assert.isDefined(session.incoming)
        yield* peer.send(Frame.text("1"), Frame.text("2"), Frame.text("3"), Frame.text("4"), Frame.text("5"))
        yield* settle
        yield* Effect.forkChild(session.close(), { startImmediately: true })
        assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
        yield* replyClose(peer) // never read: the reader waits for room
        yield* TestClock.adjust("10 seconds")
        yield* settle
        assert.deepStrictEqual(yield* reasonOf(session), { code: 1006, message: "Close handshake timed out" })
        if (!readIncoming) {
          // The inbox lets the waiting reader go at the end (nothing is delivered after it).
          assert.strictEqual(session.fibers().filter(isWaiting).length, 0)
        }
        const got: Array<string> = []
        let end = "none"
        for (let i = 0; i < 6; i++) {
          const exit = yield* now(session.receive, `receive ${i + 1}`)
          if (Exit.isSuccess(exit)) got.push(payloadText(exit.value))
          else {
            const error = Cause.findErrorOption(exit.cause)
            end = error._tag === "Some" ? error.value._tag : Cause.pretty(exit.cause)
            break
          }
        }
        // In order, no gap. (The Queue currently also delivers the message its producer was offering when the session ended.)
        if (readIncoming) assert.include([`["1","2"]`, `["1","2","3"]`], JSON.stringify(got))
        else assert.deepStrictEqual(got, ["1", "2"])
        assert.strictEqual(end, "CloseTimeout")
        yield* closeAndCheck
      }
    }))

  it.effect("overflow (capacity 2, fail) after incoming was read: Close 1008, the queued messages, then ChannelOverflow", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup(bounded(2, "fail"))
      const queue = session.incoming
      yield* peer.send(Frame.text("1"), Frame.text("2"), Frame.text("3"), Frame.text("4"))
      assert.deepStrictEqual(peerClose(yield* peer.next), [1008, "Incoming queue overflow"])
      assert.strictEqual((yield* reasonOf(session)).code, 1008)
      assert.strictEqual(yield* textNow(Queue.take(queue)), "1")
      assert.strictEqual(yield* textNow(session.receive), "2")
      const error = yield* errorNow(Queue.take(queue))
      assert.deepStrictEqual(error, new ChannelOverflow({ channel: "incoming", capacity: 2 }))
      assert.strictEqual((yield* errorNow(session.receive))._tag, "ChannelOverflow")
      yield* closeAndCheck
    }))

  it.effect("overflow (capacity 2, fail) before incoming was read: incoming gets the 2 messages, then ChannelOverflow", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup(bounded(2, "fail"))
      yield* peer.send(Frame.text("1"), Frame.text("2"), Frame.text("3"))
      assert.deepStrictEqual(peerClose(yield* peer.next), [1008, "Incoming queue overflow"])
      assert.strictEqual((yield* reasonOf(session)).code, 1008)
      const queue = session.incoming
      assert.strictEqual(Queue.sizeUnsafe(queue), 2)
      assert.deepStrictEqual(
        (yield* now(Queue.takeAll(queue))).pipe(Exit.map((ms) => ms.map(payloadText))),
        Exit.succeed(["1", "2"])
      )
      assert.strictEqual((yield* errorNow(Queue.take(queue)))._tag, "ChannelOverflow")
      yield* closeAndCheck
    }))

  it.effect("a receive that timed out loses no message: the next receive gets it (inbox, then queue)", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      for (const mode of ["inbox", "queue"] as const) {
        if (mode === "queue") assert.isDefined(session.incoming)
        const timed = yield* Effect.forkChild(Effect.timeout(session.receive, "1 second"), { startImmediately: true })
        yield* settle
        assert.isTrue(isWaiting(timed))
        yield* TestClock.adjust("1 second")
        yield* settle
        const exit = timed.pollUnsafe()
        assert.isTrue(exit !== undefined && Exit.isFailure(exit), `${mode}: the receive timed out`)
        yield* peer.send(Frame.text(`${mode} 1`), Frame.text(`${mode} 2`))
        yield* settle
        assert.strictEqual(yield* textNow(session.receive, `${mode}: receive after the timeout`), `${mode} 1`)
        assert.strictEqual(yield* textNow(session.receive), `${mode} 2`)
      }
      yield* closeAndCheck
    }))

  it.effect("an interrupted receive loses no message, also when incoming is read while it was waiting", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      const first = yield* Effect.forkChild(session.receive, { startImmediately: true })
      yield* settle
      yield* Fiber.interrupt(first)
      const second = yield* Effect.forkChild(session.receive, { startImmediately: true })
      yield* settle
      yield* peer.send(Frame.text("a"))
      yield* settle
      assert.strictEqual(payloadText(doneValue(second, "the second receive")), "a")
      // A taker interrupted before incoming is read is not handed over to the queue.
      const third = yield* Effect.forkChild(session.receive, { startImmediately: true })
      yield* settle
      yield* Fiber.interrupt(third)
      const queue = session.incoming
      yield* peer.send(Frame.text("b"))
      yield* settle
      assert.strictEqual(Queue.sizeUnsafe(queue), 1)
      assert.strictEqual(yield* textNow(session.receive), "b")
      yield* closeAndCheck
    }))

  it.effect("two fibers receiving at once get distinct messages, in arrival order", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      const a = yield* Effect.forkChild(session.receive, { startImmediately: true })
      const b = yield* Effect.forkChild(session.receive, { startImmediately: true })
      yield* settle
      yield* peer.send(Frame.text("1"))
      yield* settle
      assert.strictEqual(payloadText(doneValue(a, "the first receiver")), "1")
      assert.isTrue(isWaiting(b), "one message wakes one receiver")
      yield* peer.send(Frame.text("2"), Frame.text("3"))
      yield* settle
      assert.strictEqual(payloadText(doneValue(b, "the second receiver")), "2")
      assert.strictEqual(yield* textNow(session.receive), "3")
      // Three at once, with the messages in one chunk.
      const fibers = []
      for (let i = 0; i < 3; i++) fibers.push(yield* Effect.forkChild(session.receive, { startImmediately: true }))
      yield* settle
      yield* peer.send(Frame.text("4"), Frame.text("5"), Frame.text("6"))
      yield* settle
      assert.deepStrictEqual(fibers.map((f, i) => payloadText(doneValue(f, `receiver ${i}`))), ["4", "5", "6"])
      yield* closeAndCheck
    }))

  it.effect("two fibers waiting when incoming is first read both move to the queue and get distinct messages", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup()
      const a = yield* Effect.forkChild(session.receive, { startImmediately: true })
      const b = yield* Effect.forkChild(Stream.runCollect(Stream.take(session.messages, 1)), { startImmediately: true })
      yield* settle
      const queue = session.incoming
      yield* peer.send(Frame.text("1"))
      yield* settle
      yield* peer.send(Frame.text("2"))
      yield* settle
      const got = [payloadText(doneValue(a, "the receiver")), ...doneValue(b, "the stream").map(payloadText)]
      assert.deepStrictEqual(got.slice().sort(), ["1", "2"])
      assert.strictEqual(Queue.sizeUnsafe(queue), 0)
      yield* closeAndCheck
    }))

  it.effect("messages ends cleanly on a normal close, whether incoming was read before or not", () =>
    Effect.gen(function*() {
      for (const mode of ["inbox", "queue", "queue, read after the close"] as const) {
        const { session, peer, closeAndCheck } = yield* setup()
        if (mode === "queue") assert.isDefined(session.incoming)
        const collector = yield* Effect.forkChild(Stream.runCollect(session.messages), { startImmediately: true })
        yield* peer.send(Frame.text("a"))
        yield* settle
        assert.isTrue(isWaiting(collector), `${mode}: the stream waits`)
        if (mode === "queue, read after the close") {
          yield* peer.send(Frame.text("b"), Frame.close(CloseReason.CloseReason(1000)))
          assert.deepStrictEqual(peerClose(yield* peer.next), [1000, ""])
          assert.isDefined(session.incoming)
        } else {
          yield* peer.send(Frame.text("b"), Frame.close(CloseReason.CloseReason(1000)))
        }
        yield* settle
        assert.deepStrictEqual(doneValue(collector, `${mode}: the stream`).map(payloadText), ["a", "b"], mode)
        // A stream started after the end ends at once too.
        const after = yield* now(Stream.runCollect(session.messages))
        assert.deepStrictEqual(after, Exit.succeed([]), mode)
        yield* closeAndCheck
      }
    }))

  it.effect("consumeEach runs f on every message in order, one after another, and succeeds on a normal close", () =>
    Effect.gen(function*() {
      for (const mode of ["inbox", "queue"] as const) {
        const { session, peer, closeAndCheck } = yield* setup()
        if (mode === "queue") assert.isDefined(session.incoming)
        const got: Array<string> = []
        const gate = yield* Deferred.make<void>()
        const consumer = yield* Effect.forkChild(
          session.consumeEach((m) => {
            const t = payloadText(m)
            // "a" waits for the gate; "b" completes during the call (an Exit); "c" after a yield.
            if (t === "a") return Effect.andThen(Deferred.await(gate), Effect.sync(() => got.push(`${t} done`)))
            got.push(t)
            return t === "b" ? Effect.void : Effect.yieldNow
          }),
          { startImmediately: true }
        )
        yield* peer.send(Frame.text("a"), Frame.text("b"), Frame.binary(utf8("c")))
        yield* settle
        assert.deepStrictEqual(got, [], `${mode}: "b" waits until f's effect for "a" completed`)
        yield* Deferred.succeed(gate, undefined)
        yield* settle
        assert.deepStrictEqual(got, ["a done", "b", "c"], mode)
        assert.isTrue(isWaiting(consumer), `${mode}: waits for more`)
        yield* peer.send(Frame.text("d"), Frame.close(CloseReason.CloseReason(1000)))
        yield* settle
        assert.deepStrictEqual(got, ["a done", "b", "c", "d"], mode)
        assert.deepStrictEqual(consumer.pollUnsafe(), Exit.void, `${mode}: a normal close ends it`)
        // Started after the end, it ends at once.
        assert.deepStrictEqual(yield* now(session.consumeEach(() => Effect.void)), Exit.void, mode)
        yield* closeAndCheck
      }
    }))

  it.effect("consumeEach fails with f's first failure, and runs f on no later message", () =>
    Effect.gen(function*() {
      for (const failing of ["during the call", "later"] as const) {
        const { session, peer, closeAndCheck } = yield* setup()
        yield* peer.send(Frame.text("a"), Frame.text("b"), Frame.text("c"))
        yield* settle
        const got: Array<string> = []
        const exit = yield* now(session.consumeEach((m) => {
          const t = payloadText(m)
          got.push(t)
          if (t !== "b") return Effect.void
          return failing === "later" ? Effect.andThen(Effect.yieldNow, Effect.fail("boom" as const)) : Effect.fail("boom" as const)
        }))
        assert.deepStrictEqual(got, ["a", "b"], failing)
        assert.deepStrictEqual(exit, Exit.fail("boom"), failing)
        yield* closeAndCheck
      }
    }))

  it.effect("messages and consumeEach fail with any other end (EOF without Close), before and after incoming was read", () =>
    Effect.gen(function*() {
      for (const consumer of ["messages", "consumeEach"] as const) {
        for (const readIncoming of [false, true]) {
          const { session, peer, closeAndCheck } = yield* setup()
          if (readIncoming) assert.isDefined(session.incoming)
          yield* peer.send(Frame.text("a"))
          yield* peer.transport.end
          yield* settle
          const got: Array<string> = []
          const f = (m: Frame.Text | Frame.Binary) => Effect.sync(() => got.push(payloadText(m)))
          const exit = yield* now(consumer === "messages" ? Stream.runForEach(session.messages, f) : session.consumeEach(f))
          assert.deepStrictEqual(got, ["a"])
          const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
          assert.strictEqual(error?._tag === "Some" ? error.value._tag : "none", "AbnormalClosure", `${consumer}, incoming read: ${readIncoming}`)
          yield* closeAndCheck
        }
      }
    }))
})
