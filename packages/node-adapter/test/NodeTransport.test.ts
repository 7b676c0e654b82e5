import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import * as NodeTransport from "../src/NodeTransport.ts"
import { eventually, latin1, socketPair } from "./helpers.ts"

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString("latin1")

/** Reads until `n` bytes have arrived (bounded by the transport's own end). */
const readBytes = (transport: NodeTransport.NodeTransport, n: number) =>
  Effect.gen(function*() {
    let total = 0
    const parts: Array<Uint8Array> = []
    while (total < n) {
      const chunk = yield* transport.read
      parts.push(chunk)
      total += chunk.length
    }
    return Buffer.concat(parts)
  })

const reasonOf = <A>(exit: Exit.Exit<A, { readonly reason: string }>) =>
  Exit.isFailure(exit) ? exit.cause.reasons.flatMap((r) => (r._tag === "Fail" ? [r.error.reason] : [])) : ["success"]

describe("NodeTransport", () => {
  it("runs on node 24", () => assert.match(process.version, /^v24\./))

  it.live("writes a batch in order and reads it on the other side", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const a = yield* NodeTransport.make(client)
      const b = yield* NodeTransport.make(server)
      yield* a.write([latin1("hello "), latin1(""), latin1("world"), latin1("!")])
      assert.strictEqual(text(yield* readBytes(b, 12)), "hello world!")
      yield* b.write([latin1("back")])
      assert.strictEqual(text(yield* readBytes(a, 4)), "back")
    }))

  it.live("returns initial bytes before socket data", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const b = yield* NodeTransport.make(server, { initialBytes: latin1("head|") })
      client.write("rest")
      assert.strictEqual(text(yield* readBytes(b, 9)), "head|rest")
    }))

  it.live("pauses the socket while nobody reads: bounded buffering, and the writer suspends until drained", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const a = yield* NodeTransport.make(client)
      const b = yield* NodeTransport.make(server)
      const chunk = new Uint8Array(256 * 1024).fill(7)
      const total = 64 // 16 MiB, far more than the kernel and Node buffers hold
      let written = 0
      const writer = yield* Effect.forkChild(
        Effect.gen(function*() {
          for (let i = 0; i < total; i++) {
            yield* a.write([chunk])
            written++
          }
        }),
        { startImmediately: true }
      )
      // The reader does not read: the server socket pauses with at most one or two chunks held.
      yield* eventually(() => server.isPaused() && client.writableNeedDrain)
      const stalledAt = written
      assert.isBelow(stalledAt, total)
      assert.isAtMost(b.bufferedInput(), 2)
      assert.isAtMost(server.readableLength, server.readableHighWaterMark * 2)
      assert.isUndefined(writer.pollUnsafe())
      // Now read everything: the writer completes and every byte arrives.
      const received = yield* readBytes(b, total * chunk.length)
      assert.strictEqual(received.length, total * chunk.length)
      assert.isTrue(received.every((x) => x === 7))
      yield* Fiber.join(writer)
      assert.strictEqual(written, total)
    }))

  it.live("maps the peer's FIN to Eof after the data, and an orderly close to ended = Eof", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const a = yield* NodeTransport.make(client)
      const b = yield* NodeTransport.make(server)
      yield* a.write([latin1("last")])
      yield* a.end
      yield* a.end // idempotent
      assert.strictEqual(text(yield* readBytes(b, 4)), "last")
      assert.deepStrictEqual(reasonOf(yield* Effect.exit(b.read)), ["Eof"])
      // The half-closed side can still write.
      yield* b.write([latin1("reply")])
      assert.strictEqual(text(yield* readBytes(a, 5)), "reply")
      assert.deepStrictEqual(reasonOf(yield* Effect.exit(a.write([latin1("x")]))), ["Ended"])
      yield* b.end
      assert.deepStrictEqual(reasonOf(yield* Effect.exit(a.read)), ["Eof"])
      assert.strictEqual((yield* a.ended).reason, "Eof")
      assert.strictEqual((yield* b.ended).reason, "Eof")
    }))

  it.live("maps a TCP reset to Reset on read, write and ended", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const b = yield* NodeTransport.make(server)
      const pending = yield* Effect.forkChild(Effect.exit(b.read), { startImmediately: true })
      client.resetAndDestroy()
      assert.deepStrictEqual(reasonOf(yield* Fiber.join(pending)), ["Reset"])
      assert.strictEqual((yield* b.ended).reason, "Reset")
      assert.deepStrictEqual(reasonOf(yield* Effect.exit(b.write([latin1("x")]))), ["Reset"])
    }))

  it.live("a writer suspended on drain fails with Reset when the peer resets", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const a = yield* NodeTransport.make(client)
      const big = new Uint8Array(1024 * 1024)
      const writer = yield* Effect.forkChild(
        Effect.exit(Effect.gen(function*() {
          for (let i = 0; i < 64; i++) yield* a.write([big])
        })),
        { startImmediately: true }
      )
      yield* eventually(() => client.writableNeedDrain)
      server.resetAndDestroy()
      assert.deepStrictEqual(reasonOf(yield* Fiber.join(writer)), ["Reset"])
    }))

  it.live("destroy fails pending and later reads with Destroyed; the peer sees Eof or Reset; idempotent", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const a = yield* NodeTransport.make(client)
      const b = yield* NodeTransport.make(server)
      const pending = yield* Effect.forkChild(Effect.exit(a.read), { startImmediately: true })
      yield* a.destroy
      yield* a.destroy
      assert.deepStrictEqual(reasonOf(yield* Fiber.join(pending)), ["Destroyed"])
      assert.deepStrictEqual(reasonOf(yield* Effect.exit(a.write([latin1("x")]))), ["Destroyed"])
      assert.strictEqual((yield* a.ended).reason, "Destroyed")
      assert.isTrue(client.destroyed)
      const peerRead = reasonOf(yield* Effect.exit(b.read))[0]
      assert.oneOf(peerRead, ["Eof", "Reset"])
    }))

  it.live("closing the scope destroys the socket", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const b = yield* NodeTransport.make(server)
      yield* Effect.scoped(NodeTransport.make(client))
      assert.isTrue(client.destroyed)
      assert.oneOf(reasonOf(yield* Effect.exit(b.read))[0], ["Eof", "Reset"])
    }))
})
