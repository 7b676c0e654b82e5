/**
 * One Pong per Ping (conformance §2, hostile input H15): every Ping gets its own Pong, in order,
 * and a Ping flood is bounded by `maxPendingPongBytes` (the reader pauses), never by coalescing.
 */
import { assert, describe, it } from "@effect/vitest"
import { CloseReason, Frame } from "@effect-ws/codec"
import { Effect, Exit, Fiber, Scope } from "effect"
import * as DefaultWebSocketSession from "../src/DefaultWebSocketSession.ts"
import * as RawWebSocket from "../src/RawWebSocket.ts"
import * as TestTransport from "../src/TestTransport.ts"
import { closeOf, type PeerEvent, TestPeer, text, utf8 } from "./helpers.ts"

interface Setup {
  readonly role?: "server" | "client"
  readonly kit?: TestTransport.TestTransportOptions
  readonly session?: DefaultWebSocketSession.DefaultWebSocketSessionOptions
}

/** A session in its own scope and a scripted peer; `closeAndCheck` closes the scope and checks no fiber is left. */
const setup = (options: Setup = {}) =>
  Effect.gen(function*() {
    const role = options.role ?? "server"
    const scope = yield* Scope.make()
    const [ours, theirs] = yield* TestTransport.makePair(options.kit ?? {})
    const raw = yield* RawWebSocket.make(ours, { role }).pipe(Scope.provide(scope))
    const session = yield* DefaultWebSocketSession.make(raw, options.session ?? {}).pipe(Scope.provide(scope))
    const peer = new TestPeer(theirs, role === "server" ? "client" : "server")
    const closeAndCheck = Effect.gen(function*() {
      yield* Scope.close(scope, Exit.void)
      for (const f of session.fibers()) assert.isDefined(f.pollUnsafe(), "a session fiber is still running")
    })
    return { session, peer, ours, closeAndCheck }
  })

/**
 * Closes the session's scope while the peer completes the close handshake (reads up to our Close
 * or EOF, replies, half-closes): a client waits for that before it ends.
 */
const closeBoth = (peer: TestPeer, closeAndCheck: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const closing = yield* Effect.forkChild(closeAndCheck)
    for (let i = 0; i < 100; i++) {
      const e = yield* peer.next
      if (e._tag === "Close" || e._tag === "TransportClosed") break
    }
    yield* Effect.ignore(Effect.andThen(peer.send(Frame.close(CloseReason.CloseReason(1000))), peer.transport.end))
    yield* Fiber.join(closing)
  })

/** Lets the reader, the writer and forked fibers run (bounded, no time passes). */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

/** The Ping payloads of a burst: each its own (empty, text, binary, 125 bytes). */
const burst = (n: number): Array<Uint8Array> =>
  Array.from({ length: n }, (_, i) =>
    i === 0 ? new Uint8Array(0) : i === n - 1 ? new Uint8Array(125).fill(i) : i % 2 === 0 ? Uint8Array.of(i, 0, 255, i) : utf8(`ping ${i}`))

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i])

/** Reads `n` events from the peer and checks they are Pongs with exactly `payloads`, in order. */
const expectPongs = (peer: TestPeer, payloads: ReadonlyArray<Uint8Array>) =>
  Effect.gen(function*() {
    for (let i = 0; i < payloads.length; i++) {
      const e = yield* peer.next
      assert.strictEqual(e._tag, "Pong", `event ${i}`)
      assert.isTrue("payload" in e && same(e.payload, payloads[i]!), `Pong ${i} carries Ping ${i}'s payload`)
    }
  })

/** A 125-byte Ping payload numbered `i` (in its first four bytes). */
const numbered = (i: number) => {
  const payload = new Uint8Array(125).fill(0x61)
  new DataView(payload.buffer).setUint32(0, i)
  return payload
}
const numberOf = (e: PeerEvent) => ("payload" in e && e.payload.length === 125 ? new DataView(e.payload.buffer, e.payload.byteOffset).getUint32(0) : -1)

describe("DefaultWebSocketSession: one Pong per Ping (conformance §2, H15)", () => {
  for (const role of ["server", "client"] as const) {
    it.effect(`§2 ten Pings in one write (${role}): ten Pongs in order, each with its Ping's payload, in one write`, () =>
      Effect.gen(function*() {
        const { peer, ours, closeAndCheck } = yield* setup({ role })
        const payloads = burst(10)
        yield* peer.send(...payloads.map((p) => Frame.ping(p)))
        yield* settle
        // One writer batch, one write: the first chunk the peer reads holds all ten Pongs (and nothing else was written).
        const chunk = yield* peer.transport.read
        assert.strictEqual(chunk.length, ours.bytesWritten())
        const frames: Array<Frame.Frame> = []
        assert.isUndefined(peer.parser.push(chunk, frames))
        assert.deepStrictEqual(frames.map((f) => f._tag), Array(10).fill("Pong"))
        frames.forEach((f, i) => assert.isTrue(same(f.payload, payloads[i]!), `Pong ${i}`))
        yield* closeBoth(peer, closeAndCheck)
      }))

    it.effect(`§2 ten Pings in one-byte chunks (${role}): ten Pongs in order, each with its own payload`, () =>
      Effect.gen(function*() {
        const { session, peer, closeAndCheck } = yield* setup({ role, kit: { chunkSize: 1 } })
        const payloads = burst(10)
        yield* peer.send(...payloads.map((p) => Frame.ping(p)), Frame.text("after"))
        assert.strictEqual(text(yield* session.receive), "after")
        yield* expectPongs(peer, payloads)
        yield* session.close(CloseReason.CloseReason(1000, "bye"))
        assert.deepStrictEqual(closeOf(yield* peer.next), [1000, "bye"]) // nothing more than ten Pongs came before
        yield* closeBoth(peer, closeAndCheck)
      }))
  }

  it.effect("H15 ping flood from a peer that does not read: pending Pongs stay under the bound, the reader pauses (the flood's writes suspend), then every Pong arrives in order", () =>
    Effect.gen(function*() {
      const cap = 4096
      const { session, peer, ours, closeAndCheck } = yield* setup({
        kit: { highWaterMark: 4096 },
        session: { maxPendingPongBytes: cap }
      })
      // Watch the bound on every Pong the session queues.
      const writer = session.raw.writer
      const pong = writer.pong.bind(writer)
      let highest = 0
      writer.pong = (payload) => {
        const accepted = pong(payload)
        highest = Math.max(highest, writer.pendingPongBytes)
        return accepted
      }
      const total = 10_000
      let sent = 0
      const flood = yield* Effect.forkChild(
        Effect.gen(function*() {
          for (; sent < total; sent += 10) {
            yield* peer.send(...Array.from({ length: 10 }, (_, k) => Frame.ping(numbered(sent + k))))
          }
        }),
        { startImmediately: true }
      )
      yield* settle
      // Paused: the session reads no more, so the flood's bytes stay on the sender's side and its write waits.
      assert.isUndefined(flood.pollUnsafe(), "the flooding write suspends")
      const unread = peer.transport.bufferedOutput()
      const floodedSoFar = sent
      assert.isAbove(unread, 4096)
      assert.isBelow(floodedSoFar, 200)
      assert.isAbove(writer.pendingPongBytes, cap)
      assert.isAtMost(highest, cap + 127) // the bound plus one Pong (125-byte payload + 2-byte header)
      yield* settle
      assert.strictEqual(peer.transport.bufferedOutput(), unread, "the reader stays paused")
      assert.strictEqual(sent, floodedSoFar)
      // Nothing was dropped or refused: no Close, the session is open.
      assert.isFalse(ours.outputClosed())
      // The peer starts reading: every Pong arrives, in order, and the flood completes.
      for (let i = 0; i < total; i++) {
        const e = yield* peer.next
        assert.strictEqual(e._tag, "Pong")
        if (numberOf(e) !== i) assert.fail(`Pong ${i} carries Ping ${numberOf(e)}'s payload`)
      }
      yield* Fiber.join(flood)
      assert.isAtMost(highest, cap + 127)
      assert.strictEqual(writer.pendingPongBytes, 0)
      // The session goes on as usual.
      yield* peer.send(Frame.text("done"))
      assert.strictEqual(text(yield* session.receive), "done")
      yield* closeAndCheck
    }))

  it.effect("Pongs go ahead of the data frames already queued, in their own order", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ kit: { highWaterMark: 64 } })
      yield* session.send(new Uint8Array(1000).fill(1)) // written; the write waits for the peer to read
      yield* settle
      yield* session.send("a")
      yield* session.send("b")
      yield* peer.send(Frame.ping(utf8("p1")), Frame.ping(utf8("p2")))
      yield* settle
      const seen: Array<string> = []
      for (let i = 0; i < 5; i++) {
        const e = yield* peer.next
        seen.push(`${e._tag}:${text(e).slice(0, 2)}`)
      }
      assert.deepStrictEqual(seen, ["Binary:\u0001\u0001", "Pong:p1", "Pong:p2", "Text:a", "Text:b"])
      yield* closeAndCheck
    }))

  it.effect("no Pong after our Close: a Ping that arrives once our Close is queued is not answered; one before it is, ahead of it", () =>
    Effect.gen(function*() {
      const { session, peer, closeAndCheck } = yield* setup({ kit: { highWaterMark: 64 } })
      yield* peer.send(Frame.ping(utf8("before")))
      yield* settle
      // Our output blocks (the peer does not read yet), so our Close waits in the writer's mailbox.
      yield* session.send(new Uint8Array(1000).fill(1))
      const closing = yield* Effect.forkChild(session.close(CloseReason.CloseReason(4000, "bye")), { startImmediately: true })
      yield* settle
      yield* peer.send(Frame.ping(utf8("after")))
      yield* settle
      assert.strictEqual(session.raw.writer.pendingPongBytes, 0, "the late Ping queued no Pong")
      const seen: Array<string> = []
      for (let i = 0; i < 3; i++) {
        const e = yield* peer.next
        seen.push(`${e._tag}:${e._tag === "Close" ? closeOf(e).toString() : text(e).slice(0, 6)}`)
      }
      assert.deepStrictEqual(seen, ["Pong:before", `Binary:${"\u0001".repeat(6)}`, "Close:4000,bye"])
      yield* Fiber.join(closing)
      yield* peer.send(Frame.close(CloseReason.CloseReason(4000, "bye")))
      assert.strictEqual((yield* peer.next)._tag, "TransportClosed") // our FIN: no Pong after the Close
      yield* closeAndCheck
    }))

  it.effect("the writer counts Pongs in wire bytes (masked for a client) until written, and refuses a payload over 125 bytes", () =>
    Effect.gen(function*() {
      for (const role of ["server", "client"] as const) {
        const { session, peer, closeAndCheck } = yield* setup({ role })
        const writer = session.raw.writer
        assert.isTrue(writer.pong(new Uint8Array(125)))
        assert.isTrue(writer.pong(new Uint8Array(0)))
        assert.strictEqual(writer.pendingPongBytes, role === "client" ? 131 + 6 : 127 + 2)
        assert.throws(() => writer.pong(new Uint8Array(126)), RangeError)
        yield* expectPongs(peer, [new Uint8Array(125), new Uint8Array(0)])
        yield* settle // the writer's write completes
        assert.strictEqual(writer.pendingPongBytes, 0)
        yield* closeBoth(peer, closeAndCheck)
      }
    }))

  it.effect("a maxPendingPongBytes that is not a number ≥ 0 is refused (RangeError)", () =>
    Effect.gen(function*() {
      for (const max of [-1, Number.NaN]) {
        const [ours] = yield* TestTransport.makePair()
        const exit = yield* Effect.exit(
          Effect.scoped(Effect.flatMap(RawWebSocket.make(ours, { role: "server" }), (raw) =>
            DefaultWebSocketSession.make(raw, { maxPendingPongBytes: max })))
        )
        assert.isTrue(Exit.isFailure(exit) && Exit.hasDies(exit), `max ${max}`)
      }
    }))
})
