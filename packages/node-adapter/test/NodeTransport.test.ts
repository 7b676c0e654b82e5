import { Frame, FrameParser, Serializer } from "@effect-ws/codec"
import { RawWebSocket, type Transport } from "@effect-ws/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Queue } from "effect"
import { randomFillSync } from "node:crypto"
import { readFileSync } from "node:fs"
import type * as Net from "node:net"
import * as Tls from "node:tls"
import { markAsUntransferable } from "node:worker_threads"
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

/** Reads server frames from a raw client socket until `count` arrived (2 s at most). */
const readFrames = (socket: Net.Socket, count: number) =>
  Effect.callback<Array<Frame.Frame>, Error>((resume) => {
    const parser = new FrameParser.FrameParser({ role: "client" })
    const frames: Array<Frame.Frame> = []
    const timer = setTimeout(() => resume(Effect.fail(new Error(`${frames.length} of ${count} frames`))), 2_000)
    const onData = (chunk: Buffer) => {
      const violation = parser.push(chunk, frames)
      if (violation !== undefined || frames.length >= count) {
        socket.off("data", onData)
        clearTimeout(timer)
        resume(violation === undefined ? Effect.succeed(frames) : Effect.fail(new Error(violation.message)))
      }
    }
    socket.on("data", onData)
  })

/**
 * Runs a raw server session over `server` that echoes every frame, sends it large masked messages
 * from the raw `client` (one write, split by the network as it likes) and checks every echoed
 * byte, and that the session released chunks to the transport.
 */
const echoesIntact = (client: Net.Socket, server: Net.Socket) =>
  Effect.gen(function*() {
    const transport = yield* NodeTransport.make(server)
    let released = 0
    const counting: Transport.Transport = {
      read: transport.read,
      poll: (wake) => transport.poll(wake),
      write: (chunks) => transport.write(chunks),
      end: transport.end,
      destroy: transport.destroy,
      ended: transport.ended,
      allocate: transport.allocate,
      release: (chunk) => {
        released++
        transport.release(chunk)
      }
    }
    const raw = yield* RawWebSocket.make(counting, { role: "server" })
    const sizes = [0, 1, 125, 126, 1000, 65_535, 65_536, 65_550, 200_001, 3, 131_072, 70_000, 16]
    const sent = sizes.map((n) => randomFillSync(new Uint8Array(n)))
    yield* Effect.forkChild(Effect.gen(function*() {
      for (let i = 0; i < sizes.length; i++) {
        const frame = yield* Queue.take(raw.incoming)
        yield* raw.send(frame)
      }
    }))
    const serializer = new Serializer.Serializer({ mask: true })
    const parts: Array<Uint8Array> = []
    serializer.serializeBatch(sent.map((payload) => Frame.binary(payload)), parts)
    client.write(Serializer.concat(parts))
    const echoed = yield* readFrames(client, sizes.length)
    assert.deepStrictEqual(echoed.map((f) => f.payload.length), sizes)
    for (let i = 0; i < sizes.length; i++) assert.isTrue(Buffer.from(echoed[i]!.payload).equals(sent[i]!), `message ${i}`)
    assert.isAbove(released, 0)
  })

/** A connected pair of TLS sockets over loopback (the test certificate for localhost). */
const tlsPair = Effect.gen(function*() {
  const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url))
  const { server: tcpServer, client: tcpClient } = yield* socketPair
  const server = new Tls.TLSSocket(tcpServer, { isServer: true, key: fixture("localhost.key"), cert: fixture("localhost.crt") })
  const client = Tls.connect({ socket: tcpClient, servername: "localhost", ca: fixture("localhost.crt") })
  server.on("error", () => {})
  client.on("error", () => {})
  yield* Effect.callback<void>((resume) => {
    client.once("secureConnect", () => resume(Effect.void))
  })
  yield* Effect.addFinalizer(() => Effect.sync(() => {
    client.destroy()
    server.destroy()
  }))
  return { client: client as Net.Socket, server: server as Net.Socket } as const
})

const reasonOf = <A>(exit: Exit.Exit<A, { readonly reason: string }>) =>
  Exit.isFailure(exit) ? exit.cause.reasons.flatMap((r) => (r._tag === "Fail" ? [r.error.reason] : [])) : ["success"]

describe("NodeTransport", () => {
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

  it.live("holds no input buffer until data arrives, then reads it in order (with and without initial bytes)", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const b = yield* NodeTransport.make(server)
      assert.strictEqual(b.bufferedInput(), 0)
      let woken = 0
      assert.isUndefined(b.poll(() => woken++))
      client.write("one")
      yield* eventually(() => woken === 1)
      assert.strictEqual(text(yield* readBytes(b, 3)), "one")
      client.write("two")
      assert.strictEqual(text(yield* readBytes(b, 3)), "two")
    }))

  it.live("calls onClose once with the socket from its own close listener, instead of a listener of the owner's", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const seen: Array<Net.Socket> = []
      const listeners = server.listenerCount("close")
      const b = yield* NodeTransport.make(server, { onClose: (socket) => seen.push(socket) })
      assert.strictEqual(server.listenerCount("close"), listeners + 1) // the transport's, nothing more
      const ended = yield* Effect.forkChild(b.ended, { startImmediately: true })
      client.resetAndDestroy()
      assert.strictEqual((yield* Fiber.join(ended)).reason, "Reset")
      assert.deepStrictEqual(seen, [server])
      yield* b.destroy
      assert.deepStrictEqual(seen, [server])
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

  it.live("release detaches a whole socket chunk at once, and leaves initial bytes, views and shared sockets alone", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const initialBytes = latin1("head")
      const b = yield* NodeTransport.make(server, { initialBytes })
      client.write(new Uint8Array(1000).fill(1))
      const first = yield* b.read
      assert.strictEqual(first, initialBytes)
      b.release(first)
      assert.strictEqual(text(first), "head")
      const chunk = yield* b.read
      // Node allocates one ArrayBuffer per read: that is what makes detaching safe.
      assert.strictEqual(chunk.byteOffset, 0)
      assert.strictEqual(chunk.byteLength, chunk.buffer.byteLength)
      b.release(chunk.subarray(1)) // a view into a buffer: left alone
      assert.isAbove(chunk.byteLength, 0)
      b.release(chunk)
      assert.strictEqual(chunk.byteLength, 0)
      assert.strictEqual(chunk.buffer.byteLength, 0)
      // Someone else listens to `data` (and may hold the chunk): nothing is detached.
      const onData = () => {}
      server.on("data", onData)
      client.write(latin1("more"))
      const shared = yield* b.read
      b.release(shared)
      assert.strictEqual(text(shared), "more")
      server.off("data", onData)
      // A buffer Node marked as not detachable is left alone, without an exception.
      const pinned = new ArrayBuffer(8)
      markAsUntransferable(pinned)
      b.release(new Uint8Array(pinned))
      assert.strictEqual(pinned.byteLength, 8)
    }))

  it.live("a session over TCP echoes large masked messages intact while releasing chunks", () =>
    Effect.flatMap(socketPair, (pair) => echoesIntact(pair.client, pair.server)))

  it.live("a session over TLS echoes large masked messages intact while releasing chunks", () =>
    Effect.flatMap(tlsPair, (pair) => echoesIntact(pair.client, pair.server)))

  it.live("closing the scope destroys the socket", () =>
    Effect.gen(function*() {
      const { client, server } = yield* socketPair
      const b = yield* NodeTransport.make(server)
      yield* Effect.scoped(NodeTransport.make(client))
      assert.isTrue(client.destroyed)
      assert.oneOf(reasonOf(yield* Effect.exit(b.read))[0], ["Eof", "Reset"])
    }))
})
