import { assert, describe, it } from "@effect/vitest"
import { CloseReason, Frame } from "@effect-ws/codec"
import { Effect, Exit, Fiber, Queue, Scope } from "effect"
import * as ChannelsConfig from "../src/ChannelsConfig.ts"
import * as RawWebSocket from "../src/RawWebSocket.ts"
import * as TestTransport from "../src/TestTransport.ts"
import { closeOf, TestPeer, text, utf8 } from "./helpers.ts"

const setup = (options: Partial<RawWebSocket.RawWebSocketOptions> = {}, kit: TestTransport.TestTransportOptions = {}) =>
  Effect.gen(function*() {
    const [ours, theirs] = yield* TestTransport.makePair(kit)
    const raw = yield* RawWebSocket.make(ours, { role: "server", ...options })
    return { raw, peer: new TestPeer(theirs, options.role === "client" ? "server" : "client"), ours }
  })

describe("RawWebSocket", () => {
  it.effect("delivers frames as they are: fragments, pings and closes; no auto-pong", () =>
    Effect.gen(function*() {
      const { raw, peer } = yield* setup()
      yield* peer.send(
        Frame.text("he", { fin: false }),
        Frame.ping(utf8("p")),
        Frame.continuation(utf8("llo")),
        Frame.close(CloseReason.CloseReason(1000, "bye"))
      )
      const frames = yield* Queue.collect(raw.incoming)
      assert.deepStrictEqual(frames.map((f) => [f._tag, f.fin, f._tag === "Close" ? closeOf(f) : text(f)]), [
        ["Text", false, "he"],
        ["Ping", true, "p"],
        ["Continuation", true, "llo"],
        ["Close", true, [1000, "bye"]]
      ])
      yield* raw.send(Frame.text("after"))
      yield* raw.flush
      assert.strictEqual(text(yield* peer.next), "after") // no Pong, no Close echo
    }))

  it.effect("writes a batch of frames in one transport write; server frames are unmasked, client frames masked", () =>
    Effect.gen(function*() {
      const { raw, peer } = yield* setup()
      yield* Effect.forEach(["a", "b", "c"], (s) => raw.send(Frame.text(s)))
      yield* raw.flush
      assert.strictEqual(text(yield* peer.next), "a")
      assert.deepStrictEqual(peer.wire, [0x81, 1, 97, 0x81, 1, 98, 0x81, 1, 99]) // one chunk held all three
      const client = yield* setup({ role: "client" })
      yield* client.raw.send(Frame.text("x"))
      assert.strictEqual(text(yield* client.peer.next), "x") // the server-role parser requires masking
      assert.strictEqual(client.peer.wire[1]! & 0x80, 0x80)
    }))

  it.effect("a protocol violation sends Close 1002 and fails incoming after the frames before it", () =>
    Effect.gen(function*() {
      const { raw, peer } = yield* setup()
      yield* peer.send(Frame.text("ok"))
      yield* peer.sendBytes([0x83, 0x80, 0, 0, 0, 0]) // reserved opcode 3, masked, empty
      assert.strictEqual(text(yield* Queue.take(raw.incoming)), "ok")
      const error = yield* Effect.flip(Queue.take(raw.incoming))
      assert.strictEqual(error._tag, "ProtocolViolation")
      assert.deepStrictEqual(closeOf(yield* peer.next), [1002, (error as { message: string }).message])
      assert.strictEqual((yield* peer.next)._tag, "TransportClosed") // half-closed after the Close
    }))

  it.effect("a frame over maxFrameSize sends Close 1009 from its header, before the payload", () =>
    Effect.gen(function*() {
      const { raw, peer } = yield* setup({ maxFrameSize: 10 })
      yield* peer.sendBytes([0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]) // 65536 bytes announced
      const error = yield* Effect.flip(Queue.take(raw.incoming))
      assert.strictEqual(error._tag, "FrameTooBig")
      const close = closeOf(yield* peer.next)
      assert.strictEqual((close as [number, string])[0], 1009)
    }))

  it.effect("masking violations: unmasked frame to a server, masked frame to a client", () =>
    Effect.gen(function*() {
      const server = yield* setup()
      yield* server.peer.sendBytes([0x81, 0x01, 0x61])
      const e1 = yield* Effect.flip(Queue.take(server.raw.incoming))
      assert.strictEqual(e1._tag === "ProtocolViolation" && e1.kind, "UnmaskedFrame")
      const client = yield* setup({ role: "client" })
      yield* client.peer.sendBytes([0x81, 0x81, 1, 2, 3, 4, 0x60])
      const e2 = yield* Effect.flip(Queue.take(client.raw.incoming))
      assert.strictEqual(e2._tag === "ProtocolViolation" && e2.kind, "MaskedFrame")
      assert.deepStrictEqual((closeOf(yield* client.peer.next) as [number, string])[0], 1002)
    }))

  it.effect("EOF without Close fails incoming with AbnormalClosure (EOF mid-frame too)", () =>
    Effect.gen(function*() {
      const { raw, peer } = yield* setup()
      yield* peer.sendBytes([0x81, 0x85, 0, 0, 0, 0, 0x61]) // truncated frame
      yield* peer.transport.end
      const error = yield* Effect.flip(Queue.take(raw.incoming))
      assert.strictEqual(error._tag, "AbnormalClosure")
    }))

  it.effect("send after a Close fails with OutgoingClosed; frames queued before it are written first", () =>
    Effect.gen(function*() {
      const { raw, peer } = yield* setup()
      yield* raw.send(Frame.text("1"))
      yield* raw.send(Frame.close(CloseReason.CloseReason(1000)))
      const error = yield* Effect.flip(raw.send(Frame.text("2")))
      assert.strictEqual(error._tag, "OutgoingClosed")
      const events = yield* peer.drain
      assert.deepStrictEqual(events.map((e) => e._tag), ["Text", "Close", "TransportClosed"])
    }))

  it.effect("H12 suspend: send suspends once the outgoing queue is full and the peer does not read", () =>
    Effect.gen(function*() {
      const { raw, peer } = yield* setup(
        { channels: ChannelsConfig.make({ outgoing: ChannelsConfig.bounded(2) }) },
        { highWaterMark: 16 }
      )
      const big = new Uint8Array(100)
      const sender = yield* Effect.forkChild(Effect.forEach([1, 2, 3, 4, 5], () => raw.send(Frame.binary(big))))
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.isUndefined(sender.pollUnsafe()) // blocked: transport full, queue full
      assert.isAtMost(peer.transport.bufferedOutput(), 0) // nothing read by peer yet
      const received: Array<number> = []
      for (let i = 0; i < 5; i++) {
        const f = yield* peer.next
        received.push("payload" in f ? f.payload.length : -1)
      }
      yield* Fiber.join(sender)
      assert.deepStrictEqual(received, [100, 100, 100, 100, 100])
    }))

  it.effect("H12 fail: send fails with ChannelOverflow when the outgoing queue is full; nothing is lost", () =>
    Effect.gen(function*() {
      const { raw, peer } = yield* setup(
        { channels: ChannelsConfig.make({ outgoing: ChannelsConfig.bounded(2, "fail") }) },
        { highWaterMark: 16 }
      )
      const big = new Uint8Array(100)
      const results: Array<string> = []
      for (let i = 0; i < 6; i++) {
        const r = yield* Effect.result(raw.send(Frame.binary(big)))
        results.push(r._tag === "Success" ? "ok" : r.failure._tag)
        yield* Effect.yieldNow
      }
      assert.include(results, "ChannelOverflow")
      const accepted = results.filter((r) => r === "ok").length
      let received = 0
      yield* raw.send(Frame.close())
      for (const e of yield* peer.drain) if (e._tag === "Binary") received++
      assert.strictEqual(received, accepted)
    }))

  it.effect("incoming overflow with policy fail sends Close 1008 and fails incoming after the queued frames", () =>
    Effect.gen(function*() {
      const { raw, peer } = yield* setup({ channels: ChannelsConfig.make({ incoming: ChannelsConfig.bounded(2, "fail") }) })
      yield* peer.send(Frame.text("1"), Frame.text("2"), Frame.text("3"))
      assert.deepStrictEqual(closeOf(yield* peer.next), [1008, "Incoming queue overflow"])
      assert.strictEqual(text(yield* Queue.take(raw.incoming)), "1")
      assert.strictEqual(text(yield* Queue.take(raw.incoming)), "2")
      const error = yield* Effect.flip(Queue.take(raw.incoming))
      assert.strictEqual(error._tag, "ChannelOverflow")
    }))

  it.effect("terminate destroys the transport without a Close", () =>
    Effect.gen(function*() {
      const { raw, peer } = yield* setup()
      yield* raw.terminate
      const e = yield* peer.next
      assert.strictEqual(e._tag === "TransportClosed" && e.reason, "Reset")
      assert.strictEqual((yield* Effect.flip(Queue.take(raw.incoming)))._tag, "AbnormalClosure")
    }))

  it.effect("closing the scope interrupts the reader and writer and destroys the transport", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const [ours, theirs] = yield* TestTransport.makePair()
      const raw = yield* RawWebSocket.make(ours, { role: "server" }).pipe(Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)
      for (const f of raw.fibers) assert.isDefined(f.pollUnsafe())
      assert.strictEqual((yield* Effect.flip(theirs.read)).reason, "Reset")
      const error = yield* Effect.flip(Queue.take(raw.incoming))
      assert.strictEqual(error._tag, "AbnormalClosure")
    }))
})
