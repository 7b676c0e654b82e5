/**
 * permessage-deflate on each zlib engine (issue #22, item 5): this file runs in the
 * `node-adapter` project (the native handle's fast path, chosen by the self-test on Node 24) and
 * in `node-adapter (zlib public API)` (`EFFECT_WS_ZLIB_PUBLIC_API=1`). Over 127.0.0.1 with a TCP
 * relay in between that records both directions, a compressed echo is checked on the wire: RSV1
 * on the first frame, and far fewer bytes than the message. Also: a throwing `compressIf` is
 * asked once and fails that send with `ExtensionError`; the session goes on.
 */
import { assert, describe, it } from "@effect/vitest"
import { ExtensionHeader, Frame } from "@effect-ws/codec"
import { DefaultWebSocketSession, type Extension } from "@effect-ws/core"
import { Effect, Exit, Scope } from "effect"
import * as Net from "node:net"
import * as Zlib from "node:zlib"
import * as PerMessageDeflate from "../src/PerMessageDeflate.ts"
import * as WebSocketClient from "../src/WebSocketClient.ts"
import * as WebSocketServer from "../src/WebSocketServer.ts"
import { echo } from "./helpers.ts"

const EXPECTED_ENGINE = process.env.EFFECT_WS_ZLIB_PUBLIC_API === "1" ? "public" : "handle"

const textOf = (message: Extension.Message) =>
  message._tag === "Text" ? DefaultWebSocketSession.readText(message) : `bin:${Buffer.from(message.payload).toString("hex")}`

/** Compressible text of `size` bytes. */
const sample = (size: number, seed = 0) => {
  let s = ""
  for (let i = 0; s.length < size; i++) s += `message ${seed} line ${i % 97} lorem ipsum dolor sit amet; `
  return s.slice(0, size)
}

/** A TCP relay on 127.0.0.1 to `port` that records what goes up (client → server) and down; closed with the scope. */
const relay = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: Net.Server; readonly port: number; readonly up: Array<Buffer>; readonly down: Array<Buffer>; readonly sockets: Set<Net.Socket> }>(
      (resume) => {
        const up: Array<Buffer> = []
        const down: Array<Buffer> = []
        const sockets = new Set<Net.Socket>()
        const server = Net.createServer((client) => {
          const upstream = Net.connect(port, "127.0.0.1")
          for (const s of [client, upstream]) {
            sockets.add(s)
            s.on("error", () => {})
            s.on("close", () => {
              client.destroy()
              upstream.destroy()
            })
          }
          client.on("data", (b: Buffer) => {
            up.push(b)
            upstream.write(b)
          })
          upstream.on("data", (b: Buffer) => {
            down.push(b)
            client.write(b)
          })
        })
        server.listen(0, "127.0.0.1", () => {
          resume(Effect.succeed({ server, port: (server.address() as Net.AddressInfo).port, up, down, sockets }))
        })
      }
    ),
    ({ server, sockets }) =>
      Effect.sync(() => {
        for (const s of sockets) s.destroy()
        server.close()
      })
  )

/** The bytes after the HTTP head, and the first WebSocket frame's header bits. */
const framesAfterHead = (chunks: ReadonlyArray<Buffer>) => {
  const all = Buffer.concat(chunks)
  const head = all.indexOf("\r\n\r\n")
  assert.isAbove(head, 0, "an HTTP head")
  const frames = all.subarray(head + 4)
  assert.isAbove(frames.length, 2)
  return { bytes: frames.length, fin: (frames[0]! & 0x80) !== 0, rsv1: (frames[0]! & 0x40) !== 0, opcode: frames[0]! & 0x0f }
}

const offers = (header: string): ReadonlyArray<ExtensionHeader.WebSocketExtensionHeader> => {
  const parsed = ExtensionHeader.parseWebSocketExtensions(header)
  if (ExtensionHeader.isExtensionHeaderError(parsed)) throw new Error(parsed.message)
  return parsed
}

describe(`PerMessageDeflate on the ${EXPECTED_ENGINE === "handle" ? "native handle" : "public API"} of node:zlib`, () => {
  it("is the engine this project asked for", () => {
    assert.strictEqual(PerMessageDeflate.zlibEngine(), EXPECTED_ENGINE)
    assert.isTrue(PerMessageDeflate.isSupported())
  })

  const configs: ReadonlyArray<readonly [string, PerMessageDeflate.PerMessageDeflateConfig]> = [
    ["context takeover", {}],
    ["no context takeover", { clientNoContextTakeover: true, serverNoContextTakeover: true }]
  ]
  for (const [name, config] of configs) {
    it.live(`a 64 KiB message goes compressed both ways over 127.0.0.1 (${name})`, () =>
      Effect.gen(function*() {
        const base = PerMessageDeflate.liveZlibContexts()
        const scope = yield* Scope.make()
        const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", extensions: PerMessageDeflate.extensions(config) })
          .pipe(Scope.provide(scope))
        const wire = yield* relay(server.port).pipe(Scope.provide(scope))
        const { extensions, session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${wire.port}/`, {
          extensions: PerMessageDeflate.extensions(config)
        }).pipe(Scope.provide(scope))
        assert.strictEqual(extensions.length, 1)
        const message = sample(64 * 1024)
        yield* session.send(message)
        assert.strictEqual(textOf(yield* session.receive), message)
        for (const [direction, chunks] of [["client → server", wire.up], ["server → client", wire.down]] as const) {
          const frames = framesAfterHead(chunks)
          assert.isTrue(frames.rsv1, `${direction}: RSV1 on the first frame`)
          assert.strictEqual(frames.opcode, 1, `${direction}: a Text frame`)
          assert.isBelow(frames.bytes, 64 * 1024 / 16, `${direction}: ${frames.bytes} bytes on the wire for 64 KiB`)
        }
        // and a second message after the first, as small
        const first = framesAfterHead(wire.up).bytes
        yield* session.send(message)
        assert.strictEqual(textOf(yield* session.receive), message)
        assert.isAtMost(framesAfterHead(wire.up).bytes - first, first + 16)
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual(PerMessageDeflate.liveZlibContexts(), base)
      }), 20_000)
  }

  for (const offer of ["permessage-deflate", "permessage-deflate; client_no_context_takeover"]) {
    it.effect(`a deflate bomb stops at maxMessageSize, never inflated in full (${offer})`, () =>
      Effect.gen(function*() {
        const bomb = Zlib.deflateRawSync(Buffer.alloc(64 * 1024 * 1024), { finishFlush: Zlib.constants.Z_SYNC_FLUSH })
        const frame = Frame.binary(bomb.subarray(0, -4), { rsv1: true })
        for (const limit of [100 * 1024, 1024 * 1024]) {
          const ext = PerMessageDeflate.PerMessageDeflate.install({ maxMessageSize: limit })
          assert.strictEqual(ext.serverNegotiation(offers(offer)).length, 1)
          const before = process.memoryUsage().arrayBuffers
          const error = yield* Effect.flip(ext.processIncomingMessage(frame))
          assert.strictEqual(error._tag, "FrameTooBig")
          assert.isBelow(process.memoryUsage().arrayBuffers - before, 16 * 1024 * 1024, "never held the inflated size")
          assert.strictEqual(ext.allocatedContexts, 0)
          // a message of exactly the limit inflates
          const exact = Zlib.deflateRawSync(Buffer.alloc(limit, 7), { finishFlush: Zlib.constants.Z_SYNC_FLUSH })
          const fresh = PerMessageDeflate.PerMessageDeflate.install({ maxMessageSize: limit })
          assert.strictEqual(fresh.serverNegotiation(offers(offer)).length, 1)
          const inflated = yield* fresh.processIncomingMessage(Frame.binary(exact.subarray(0, -4), { rsv1: true }))
          assert.strictEqual(inflated.payload.length, limit)
          yield* PerMessageDeflate.releaseExtensions([ext, fresh])
        }
      }))
  }

  for (const offer of ["permessage-deflate", "permessage-deflate; client_no_context_takeover"]) {
    it.effect(`a message ending with a BFINAL block inflates; data after that block is 1002 (${offer})`, () =>
      Effect.gen(function*() {
        const ext = PerMessageDeflate.PerMessageDeflate.install({})
        assert.strictEqual(ext.serverNegotiation(offers(offer)).length, 1)
        const final = Zlib.deflateRawSync(Buffer.from("first message")) // BFINAL, no sync flush
        assert.strictEqual(textOf(yield* ext.processIncomingMessage(Frame.text(final, { rsv1: true }))), "first message")
        const next = Zlib.deflateRawSync(Buffer.from("second message"), { finishFlush: Zlib.constants.Z_SYNC_FLUSH })
        assert.strictEqual(textOf(yield* ext.processIncomingMessage(Frame.text(next.subarray(0, -4), { rsv1: true }))), "second message")
        const trailing = Buffer.concat([Zlib.deflateRawSync(Buffer.from("x")), Buffer.from([0x4b, 0x04, 0x00])])
        const error = yield* Effect.flip(ext.processIncomingMessage(Frame.text(trailing, { rsv1: true })))
        assert.strictEqual(error._tag, "ProtocolViolation")
        assert.strictEqual(error._tag === "ProtocolViolation" ? error.kind : "", "InvalidCompressedData")
        yield* ext.release
      }))
  }

  it.live("a throwing compressIf is asked once; that send fails with ExtensionError, the session goes on", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", extensions: PerMessageDeflate.extensions() })
        .pipe(Scope.provide(scope))
      let asked = 0
      const boom = new Error("boom")
      const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${server.port}/`, {
        extensions: PerMessageDeflate.extensions({
          compressIf: () => {
            if (++asked === 1) throw boom
            return true
          }
        })
      }).pipe(Scope.provide(scope))
      const error = yield* Effect.flip(session.send(sample(2000, 1)))
      assert.strictEqual(error._tag, "ExtensionError")
      assert.strictEqual(error._tag === "ExtensionError" ? error.cause : undefined, boom)
      assert.strictEqual(asked, 1, "asked once")
      yield* session.send(sample(2000, 2))
      assert.strictEqual(asked, 2)
      assert.strictEqual(textOf(yield* session.receive), sample(2000, 2))
      yield* Scope.close(scope, Exit.void)
    }), 20_000)

  it.effect("a throwing compressIf: outgoingUnchanged does not throw, the hook fails without asking again", () =>
    Effect.gen(function*() {
      let asked = 0
      const ext = PerMessageDeflate.PerMessageDeflate.install({
        compressIf: () => {
          asked++
          throw new Error("boom")
        }
      })
      assert.strictEqual(ext.serverNegotiation(offers("permessage-deflate")).length, 1)
      const message = Frame.text(sample(100))
      assert.isFalse(ext.outgoingUnchanged(message), "the hook will report it")
      assert.strictEqual(asked, 1)
      const error = yield* Effect.flip(ext.processOutgoingMessage(message))
      assert.strictEqual(error._tag, "ExtensionError")
      assert.strictEqual(asked, 1, "not asked again by the hook")
      // called without outgoingUnchanged first: asked once, same failure
      assert.strictEqual((yield* Effect.flip(ext.processOutgoingMessage(Frame.text(sample(100))))).message.slice(0, 18), "compressIf threw: ")
      assert.strictEqual(asked, 2)
      yield* ext.release
    }))
})
