import { assert, describe, it } from "@effect/vitest"
import { ExtensionHeader, Frame, Handshake } from "@effect-ws/codec"
import { DefaultWebSocketSession, type Extension } from "@effect-ws/core"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Zlib from "node:zlib"
import { type PerMessageDeflateOptions, WebSocket as WsClient, WebSocketServer as WsServer } from "ws"
import * as PerMessageDeflate from "../src/PerMessageDeflate.ts"
import * as WebSocketClient from "../src/WebSocketClient.ts"
import * as WebSocketRoute from "../src/WebSocketRoute.ts"
import * as WebSocketServer from "../src/WebSocketServer.ts"
import { echo, eventually } from "./helpers.ts"

const offers = (header: string): ReadonlyArray<ExtensionHeader.WebSocketExtensionHeader> => {
  const parsed = ExtensionHeader.parseWebSocketExtensions(header)
  if (ExtensionHeader.isExtensionHeaderError(parsed)) throw new Error(parsed.message)
  return parsed
}

/** A server-role instance negotiated from `offer`. */
const serverInstance = (offer: string, config: PerMessageDeflate.PerMessageDeflateConfig = {}) => {
  const ext = PerMessageDeflate.PerMessageDeflate.install(config)
  const answer = ext.serverNegotiation(offers(offer))
  return { ext, answer: ExtensionHeader.formatWebSocketExtensions(answer) }
}

const textOf = (message: Extension.Message) =>
  message._tag === "Text" ? DefaultWebSocketSession.readText(message) : `bin:${Buffer.from(message.payload).toString("hex")}`

/** Compressible text of `size` bytes. */
const sample = (size: number, seed = 0) => {
  let s = ""
  for (let i = 0; s.length < size; i++) s += `message ${seed} line ${i % 97} lorem ipsum dolor sit amet; `
  return s.slice(0, size)
}

const SIZES = [16, 100, 1024, 16 * 1024, 128 * 1024]

describe("PerMessageDeflate negotiation (conformance §12–13 offers)", () => {
  it("answers each offer variant; declines the unacceptable ones and picks the next", () => {
    const cases: ReadonlyArray<readonly [string, string, PerMessageDeflate.PerMessageDeflateConfig?]> = [
      ["permessage-deflate", "permessage-deflate"],
      ["permessage-deflate; client_max_window_bits", "permessage-deflate"],
      ["permessage-deflate; client_max_window_bits=10", "permessage-deflate; client_max_window_bits=10"],
      ["permessage-deflate; server_max_window_bits=9", "permessage-deflate; server_max_window_bits=9"],
      ["permessage-deflate; server_max_window_bits=15", "permessage-deflate; server_max_window_bits=15"],
      ["permessage-deflate; client_no_context_takeover", "permessage-deflate; client_no_context_takeover"],
      ["permessage-deflate; server_no_context_takeover", "permessage-deflate; server_no_context_takeover"],
      [
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"
      ],
      // 8 is honoured (we deflate with 9, whose matches reach back at most 250 bytes)
      ["permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9", "permessage-deflate; server_max_window_bits=8"],
      ["permessage-deflate; server_max_window_bits=7, permessage-deflate", "permessage-deflate"],
      ["x-foo, permessage-deflate; bogus=1, permessage-deflate; client_max_window_bits", "permessage-deflate"],
      ["permessage-deflate; server_max_window_bits=8", "permessage-deflate; server_max_window_bits=8"],
      ["permessage-deflate; server_max_window_bits", ""],
      ["permessage-deflate; client_no_context_takeover=1", ""],
      // server configuration imposes its limits
      ["permessage-deflate; client_max_window_bits", "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11", {
        serverNoContextTakeover: true,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 11
      }]
    ]
    for (const [offer, expected, config] of cases) {
      const { answer, ext } = serverInstance(offer, config)
      assert.strictEqual(answer, expected, offer)
      assert.strictEqual(ext.params === undefined, expected === "", offer)
    }
  })

  it("client: offers its config, accepts valid responses, refuses invalid ones", () => {
    const ext = PerMessageDeflate.PerMessageDeflate.install({ serverMaxWindowBits: 10, clientNoContextTakeover: true })
    assert.strictEqual(
      ExtensionHeader.formatWebSocketExtensions(ext.protocols),
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
    )
    const fresh = () => PerMessageDeflate.PerMessageDeflate.install({ serverMaxWindowBits: 10 })
    assert.isTrue(fresh().clientNegotiation(offers("permessage-deflate; server_max_window_bits=9")))
    assert.isFalse(fresh().clientNegotiation(offers("permessage-deflate")), "lacks the asked server_max_window_bits")
    assert.isFalse(fresh().clientNegotiation(offers("permessage-deflate; server_max_window_bits=12")))
    assert.isTrue(fresh().clientNegotiation(offers("permessage-deflate; server_max_window_bits=9; client_max_window_bits=8")))
    assert.isFalse(fresh().clientNegotiation(offers("permessage-deflate; server_max_window_bits=9; client_max_window_bits=7")))
    assert.isFalse(
      fresh().clientNegotiation(offers("permessage-deflate; server_max_window_bits=9, permessage-deflate; server_max_window_bits=9"))
    )
    assert.isFalse(fresh().clientNegotiation(offers("x-other")))
  })
})

describe("PerMessageDeflate messages", () => {
  it.effect("tail removed on send, restored on receive; context takeover observable in the bytes; lazy contexts, released", () =>
    Effect.gen(function*() {
      const base = PerMessageDeflate.liveZlibContexts()
      const message = Frame.text(sample(2000))
      const takeover = serverInstance("permessage-deflate").ext
      const reset = serverInstance("permessage-deflate; server_no_context_takeover").ext
      assert.strictEqual(takeover.allocatedContexts + reset.allocatedContexts, 0, "nothing allocated before use")
      const t1 = yield* takeover.processOutgoingMessage(message)
      const t2 = yield* takeover.processOutgoingMessage(message)
      const r1 = yield* reset.processOutgoingMessage(message)
      const r2 = yield* reset.processOutgoingMessage(message)
      assert.isTrue(t1.rsv1 && t2.rsv1 && r1.rsv1 && r2.rsv1)
      assert.isBelow(t2.payload.length, t1.payload.length / 4, "the second message refers to the first")
      assert.deepStrictEqual(Buffer.from(r2.payload), Buffer.from(r1.payload), "no context: identical bytes")
      assert.deepStrictEqual(Buffer.from(t1.payload), Buffer.from(r1.payload))
      const tail = Buffer.from(t1.payload.subarray(-4)).toString("hex")
      assert.notStrictEqual(tail, "0000ffff")
      const inflated = Zlib.inflateRawSync(Buffer.concat([t1.payload, Buffer.from([0, 0, 0xff, 0xff])]), {
        finishFlush: Zlib.constants.Z_SYNC_FLUSH
      })
      assert.strictEqual(inflated.toString(), sample(2000))
      assert.strictEqual(takeover.allocatedContexts, 1, "deflate only")
      assert.strictEqual(reset.allocatedContexts, 0, "no takeover: the context went back to the pool")
      assert.strictEqual(PerMessageDeflate.liveZlibContexts(), base + 1)
      // node:zlib's public API pools nothing (a one-shot call per message without takeover)
      assert.isAtLeast(PerMessageDeflate.pooledZlibContexts(), PerMessageDeflate.zlibEngine() === "handle" ? 1 : 0)
      assert.isAtMost(PerMessageDeflate.pooledZlibContexts(), 4 * 8, "the pool is bounded per configuration")

      // a client instance inflates both (its inflater keeps the server's context)
      const client = PerMessageDeflate.PerMessageDeflate.install({})
      assert.isTrue(client.clientNegotiation(offers("permessage-deflate")))
      const back1 = yield* client.processIncomingMessage(t1)
      const back2 = yield* client.processIncomingMessage(t2)
      assert.isFalse(back1.rsv1)
      assert.strictEqual(textOf(back1), sample(2000))
      assert.strictEqual(textOf(back2), sample(2000))
      const plain = yield* client.processIncomingMessage(Frame.text("plain"))
      assert.strictEqual(textOf(plain), "plain")

      yield* PerMessageDeflate.releaseExtensions([takeover, reset, client])
      assert.strictEqual(PerMessageDeflate.liveZlibContexts(), base)
      assert.strictEqual(takeover.allocatedContexts, 0)
      const after = yield* Effect.flip(takeover.processOutgoingMessage(message))
      assert.strictEqual(after._tag, "ExtensionError")
    }))

  it.effect("compressIfBiggerThan and compressIf leave messages uncompressed (and allocate nothing)", () =>
    Effect.gen(function*() {
      const { ext } = serverInstance("permessage-deflate", {
        compressIfBiggerThan: 10,
        compressIf: (m) => m._tag === "Text"
      })
      assert.isFalse((yield* ext.processOutgoingMessage(Frame.text("0123456789"))).rsv1)
      assert.isFalse((yield* ext.processOutgoingMessage(Frame.binary(new Uint8Array(100)))).rsv1)
      assert.strictEqual(ext.allocatedContexts, 0)
      assert.isTrue((yield* ext.processOutgoingMessage(Frame.text("0123456789a"))).rsv1)
      yield* ext.release
    }))

  it.effect("outgoingUnchanged and incomingUnchanged hold exactly for the messages the hooks pass through", () =>
    Effect.gen(function*() {
      const unnegotiated = PerMessageDeflate.PerMessageDeflate.install({})
      assert.isTrue(unnegotiated.outgoingUnchanged(Frame.text(sample(5000))), "nothing to compress with before negotiation")
      const { ext } = serverInstance("permessage-deflate", { compressIfBiggerThan: 10, compressIf: (m) => m._tag === "Text" })
      const messages = [
        Frame.text("0123456789"),
        Frame.text("0123456789a"),
        Frame.binary(new Uint8Array(100)),
        Frame.text("already compressed", { rsv1: true })
      ]
      for (const message of messages) {
        const out = yield* ext.processOutgoingMessage(message)
        assert.strictEqual(ext.outgoingUnchanged(message), out === message, textOf(message))
      }
      assert.deepStrictEqual(messages.map((m) => ext.outgoingUnchanged(m)), [true, false, true, true])
      const plain = Frame.binary(new Uint8Array([1, 2, 3]))
      assert.isTrue(ext.incomingUnchanged(plain))
      assert.strictEqual(yield* ext.processIncomingMessage(plain), plain)
      assert.isFalse(ext.incomingUnchanged(Frame.binary(new Uint8Array([1, 2, 3]), { rsv1: true })))
      yield* ext.release
    }))

  it.effect("a small plain message sent right after a large compressed one arrives after it, both ways", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const config = { compressIfBiggerThan: 1023 }
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", extensions: PerMessageDeflate.extensions(config) })
        .pipe(Scope.provide(scope))
      let asked = 0
      const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${server.port}/`, {
        extensions: PerMessageDeflate.extensions({ ...config, compressIf: () => ++asked > 0 })
      }).pipe(Scope.provide(scope))
      // Compressing it takes several steps: the small ones are sent while the send gate is held.
      const big = sample(PerMessageDeflate.STEP_BYTES * 3 + 5, 1)
      const senders = [
        yield* Effect.forkChild(session.send(big), { startImmediately: true }),
        yield* Effect.forkChild(session.send("small 1"), { startImmediately: true }),
        yield* Effect.forkChild(session.send(Buffer.from("small 2")), { startImmediately: true })
      ]
      for (const sender of senders) yield* Fiber.join(sender)
      const received = [yield* session.receive, yield* session.receive, yield* session.receive]
      assert.deepStrictEqual(received.map((m) => textOf(m).slice(0, 20)), [big.slice(0, 20), "small 1", `bin:${Buffer.from("small 2").toString("hex")}`])
      assert.strictEqual(textOf(received[0]!), big)
      assert.strictEqual(asked, 1, "compressIf is asked once, for the big message only (the small ones are below the threshold)")
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("a fragmented message sent while a large one is being compressed neither overtakes it nor lets a later send in between (issue #22)", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", extensions: PerMessageDeflate.extensions() })
        .pipe(Scope.provide(scope))
      const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${server.port}/`, {
        extensions: PerMessageDeflate.extensions()
      }).pipe(Scope.provide(scope))
      // Compressing it takes several steps: the fragments and the small one are sent while the send gate is held.
      const big = sample(PerMessageDeflate.STEP_BYTES * 3 + 5, 2)
      const senders = [
        yield* Effect.forkChild(session.send(big), { startImmediately: true }),
        yield* Effect.forkChild(
          Effect.andThen(
            session.sendFrame(Frame.text("frag a ", { fin: false })),
            Effect.andThen(Effect.yieldNow, session.sendFrame(Frame.continuation(Buffer.from("frag b"))))
          ),
          { startImmediately: true }
        ),
        yield* Effect.forkChild(session.send("small after"), { startImmediately: true })
      ]
      for (const sender of senders) yield* Fiber.join(sender)
      const received = [yield* session.receive, yield* session.receive, yield* session.receive]
      assert.deepStrictEqual(received.map((m) => textOf(m).slice(0, 20)), [big.slice(0, 20), "frag a frag b", "small after"])
      assert.strictEqual(textOf(received[0]!), big)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("H7: a deflate bomb stops at maxMessageSize without inflating it (FrameTooBig 1009); corrupt data is 1002", () =>
    Effect.gen(function*() {
      const bomb = Zlib.deflateRawSync(Buffer.alloc(256 * 1024 * 1024), { level: 9 }) // ~256 KB
      const { ext } = serverInstance("permessage-deflate", { maxMessageSize: 1024 * 1024 })
      const before = process.memoryUsage().arrayBuffers
      const started = Date.now()
      const error = yield* Effect.flip(ext.processIncomingMessage(Frame.binary(bomb, { rsv1: true })))
      assert.strictEqual(error._tag, "FrameTooBig")
      assert.strictEqual(error._tag === "FrameTooBig" ? error.code : 0, 1009)
      assert.isBelow(process.memoryUsage().arrayBuffers - before, 32 * 1024 * 1024, "never held the inflated size")
      assert.isBelow(Date.now() - started, 2000)
      assert.strictEqual(ext.allocatedContexts, 0, "the inflater was dropped")

      const corrupt = yield* Effect.flip(
        serverInstance("permessage-deflate").ext.processIncomingMessage(Frame.text(new Uint8Array([0xff, 0xff, 0xff]), { rsv1: true }))
      )
      assert.strictEqual(corrupt._tag, "ProtocolViolation")
      assert.strictEqual(corrupt._tag === "ProtocolViolation" ? corrupt.code : 0, 1002)
      assert.strictEqual(corrupt._tag === "ProtocolViolation" ? corrupt.kind : "", "InvalidCompressedData")
    }), 20_000) // making the bomb (deflating 256 MiB) alone takes seconds on a busy machine

  it.effect("the session's maxMessageSize lowers the inflated-size limit (limitIncomingMessageSize), never raises it", () =>
    Effect.gen(function*() {
      const zeros = Zlib.deflateRawSync(Buffer.alloc(1024 * 1024)) // 1 MiB inflated, ~1 KB on the wire
      const message = () => Frame.binary(zeros.slice(), { rsv1: true })
      const unlimited = serverInstance("permessage-deflate").ext
      assert.strictEqual((yield* unlimited.processIncomingMessage(message())).payload.length, 1024 * 1024)
      const lowered = serverInstance("permessage-deflate").ext
      lowered.limitIncomingMessageSize!(64 * 1024)
      const error = yield* Effect.flip(lowered.processIncomingMessage(message()))
      assert.strictEqual(error._tag === "FrameTooBig" ? error.code : 0, 1009)
      const kept = serverInstance("permessage-deflate", { maxMessageSize: 64 * 1024 }).ext
      kept.limitIncomingMessageSize!(64 * 1024 * 1024)
      assert.strictEqual((yield* Effect.flip(kept.processIncomingMessage(message())))._tag, "FrameTooBig")
    }))
})

describe("PerMessageDeflate synchronous zlib", () => {
  /** Each payload inflated on its own (a message compressed without reference to earlier ones). */
  const inflateAll = (payloads: ReadonlyArray<Uint8Array>) =>
    payloads.map((p) =>
      Zlib.inflateRawSync(Buffer.concat([p, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: Zlib.constants.Z_SYNC_FLUSH }).toString()
    )

  it.effect("without context takeover, connections borrow pooled contexts and hold none between messages", () =>
    Effect.gen(function*() {
      assert.isTrue(PerMessageDeflate.isSupported())
      const base = PerMessageDeflate.liveZlibContexts()
      const instances = Array.from({ length: 20 }, () =>
        serverInstance("permessage-deflate; server_no_context_takeover; client_no_context_takeover", { level: 3 }).ext)
      for (const ext of instances) {
        const out = yield* ext.processOutgoingMessage(Frame.text(sample(3000, 7)))
        const back = yield* ext.processIncomingMessage(Frame.text(out.payload, { rsv1: true }))
        assert.strictEqual(textOf(back), sample(3000, 7))
        assert.strictEqual(ext.allocatedContexts, 0)
      }
      assert.strictEqual(PerMessageDeflate.liveZlibContexts(), base, "no connection holds a context")
      assert.isAtMost(PerMessageDeflate.pooledZlibContexts(), 4 * 8)
      yield* PerMessageDeflate.releaseExtensions(instances)
    }))

  it.effect("large messages take several steps; concurrent ones on shared and owned contexts stay intact and ordered", () =>
    Effect.gen(function*() {
      const big = (seed: number) => sample(PerMessageDeflate.STEP_BYTES * 3 + 123, seed)
      const shared = [0, 1, 2].map(() => serverInstance("permessage-deflate; server_no_context_takeover").ext)
      const owned = serverInstance("permessage-deflate").ext
      const outs = yield* Effect.all(
        [...shared.map((ext, i) => ext.processOutgoingMessage(Frame.text(big(i)))),
          ...[3, 4, 5].map((seed) => owned.processOutgoingMessage(Frame.text(big(seed))))],
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(inflateAll(outs.slice(0, 3).map((m) => m.payload)), [big(0), big(1), big(2)])
      // the owned context's messages form one stream, in the order they were submitted
      const client = PerMessageDeflate.PerMessageDeflate.install({})
      assert.isTrue(client.clientNegotiation(offers("permessage-deflate")))
      for (const [i, seed] of [3, 4, 5].entries()) {
        assert.strictEqual(textOf(yield* client.processIncomingMessage(outs[3 + i]!)), big(seed))
      }
      yield* PerMessageDeflate.releaseExtensions([...shared, owned, client])
    }))

  it.effect("an interrupted multi-step message leaves a usable context behind", () =>
    Effect.gen(function*() {
      const ext = serverInstance("permessage-deflate").ext
      const fiber = yield* Effect.forkChild(ext.processOutgoingMessage(Frame.text(sample(PerMessageDeflate.STEP_BYTES * 8, 1))))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(fiber)
      const out = yield* ext.processOutgoingMessage(Frame.text(sample(5000, 2)))
      assert.deepStrictEqual(inflateAll([out.payload]), [sample(5000, 2)], "a fresh stream after the interruption")
      yield* ext.release
    }))

  it.effect("a message ending with a BFINAL block is accepted and resets the inflater; data after it is 1002", () =>
    Effect.gen(function*() {
      const ext = serverInstance("permessage-deflate").ext
      const final = Zlib.deflateRawSync(Buffer.from("first message")) // ends with BFINAL, no sync flush
      assert.strictEqual(textOf(yield* ext.processIncomingMessage(Frame.text(final, { rsv1: true }))), "first message")
      const next = Zlib.deflateRawSync(Buffer.from("second message"), { finishFlush: Zlib.constants.Z_SYNC_FLUSH }).subarray(0, -4)
      assert.strictEqual(textOf(yield* ext.processIncomingMessage(Frame.text(next, { rsv1: true }))), "second message")
      const trailing = Buffer.concat([Zlib.deflateRawSync(Buffer.from("x")), Buffer.from([0x4b, 0x04, 0x00])])
      const error = yield* Effect.flip(ext.processIncomingMessage(Frame.text(trailing, { rsv1: true })))
      assert.strictEqual(error._tag, "ProtocolViolation")
      assert.strictEqual(error._tag === "ProtocolViolation" ? error.kind : "", "InvalidCompressedData")
      yield* ext.release
    }))
})

/** Our client and server exchange every size, text and binary, then close; the zlib contexts are gone afterwards. */
const roundTrip = (
  serverConfig: PerMessageDeflate.PerMessageDeflateConfig,
  clientConfig: PerMessageDeflate.PerMessageDeflateConfig,
  fragment: number | undefined
) =>
  Effect.gen(function*() {
    const base = PerMessageDeflate.liveZlibContexts()
    const scope = yield* Scope.make()
    const session = fragment === undefined ? {} : { outgoingFragmentSize: fragment }
    const server = yield* WebSocketServer.make(echo, {
      host: "127.0.0.1",
      extensions: PerMessageDeflate.extensions(serverConfig),
      session
    }).pipe(Scope.provide(scope))
    const connection = yield* WebSocketClient.connect(`ws://127.0.0.1:${server.port}/`, {
      extensions: PerMessageDeflate.extensions(clientConfig),
      session
    }).pipe(Scope.provide(scope))
    assert.strictEqual(connection.extensions.length, 1)
    for (let round = 0; round < 3; round++) {
      for (const size of SIZES) {
        yield* connection.session.send(sample(size, round))
        yield* connection.session.send(Buffer.from(sample(size, round + 10)))
      }
    }
    for (let round = 0; round < 3; round++) {
      for (const size of SIZES) {
        assert.strictEqual(textOf(yield* connection.session.receive), sample(size, round))
        const binary = yield* connection.session.receive
        assert.strictEqual(Buffer.from(binary.payload).toString(), sample(size, round + 10))
      }
    }
    const params = (connection.extensions[0] as PerMessageDeflate.PerMessageDeflateExtension).params!
    const takenOver = (params.serverNoContextTakeover ? 0 : 1) + (params.clientNoContextTakeover ? 0 : 1)
    assert.strictEqual(
      PerMessageDeflate.liveZlibContexts(),
      base + 2 * takenOver,
      "each side holds a context per direction with context takeover, none for the others"
    )
    yield* Scope.close(scope, Exit.void)
    yield* eventually(() => PerMessageDeflate.liveZlibContexts() === base)
  })

describe("PerMessageDeflate interop", () => {
  const combos: ReadonlyArray<readonly [string, PerMessageDeflate.PerMessageDeflateConfig, PerMessageDeflate.PerMessageDeflateConfig, number?]> = [
    ["defaults", {}, {}],
    ["defaults, fragmented both ways", {}, {}, 1000],
    ["server_no_context_takeover asked by client", {}, { serverNoContextTakeover: true }],
    ["client_no_context_takeover imposed by server", { clientNoContextTakeover: true }, {}],
    ["server windows 9", {}, { serverMaxWindowBits: 9 }],
    ["client window 9 imposed, fragmented", { clientMaxWindowBits: 9 }, {}, 333],
    ["both small windows, no takeover, level 1, memLevel 1", { serverMaxWindowBits: 10, level: 1, memLevel: 1 }, {
      clientMaxWindowBits: 11,
      clientNoContextTakeover: true,
      serverNoContextTakeover: true,
      level: 9
    }]
  ]
  for (const [name, serverConfig, clientConfig, fragment] of combos) {
    it.live(`our client ↔ our server: ${name}`, () => roundTrip(serverConfig, clientConfig, fragment), 20_000)
  }

  it.live("our client asking server_max_window_bits=8 gets it; compressed echo both ways", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", extensions: PerMessageDeflate.extensions() })
      const connection = yield* WebSocketClient.connect(`ws://127.0.0.1:${server.port}/`, {
        extensions: PerMessageDeflate.extensions({ serverMaxWindowBits: 8 })
      })
      assert.strictEqual(connection.headers["sec-websocket-extensions"], "permessage-deflate; server_max_window_bits=8")
      for (const text of ["hi", sample(20_000), sample(70_000, 1)]) {
        yield* connection.session.send(text)
        assert.strictEqual(textOf(yield* connection.session.receive), text)
      }
    }))

  const wsOptions: ReadonlyArray<PerMessageDeflateOptions> = [
    {},
    { serverNoContextTakeover: true },
    { clientNoContextTakeover: true },
    { serverMaxWindowBits: 9, clientMaxWindowBits: 10 },
    { serverMaxWindowBits: 8 }, // ws inflates with an 8-bit window what we deflate with 9
    { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 12, clientMaxWindowBits: 9 }
  ]
  for (const options of wsOptions) {
    it.live(`our server ↔ ws client ${JSON.stringify(options)}, incl. fragmented compressed messages both ways`, () =>
      Effect.gen(function*() {
        const server = yield* WebSocketServer.make(echo, {
          host: "127.0.0.1",
          extensions: PerMessageDeflate.extensions(),
          session: { outgoingFragmentSize: 4096 }
        })
        const { ws, received } = yield* Effect.acquireRelease(
          Effect.callback<{ readonly ws: WsClient; readonly received: Array<string> }, Error>((resume) => {
            const ws = new WsClient(`ws://127.0.0.1:${server.port}/`, { perMessageDeflate: { threshold: 0, ...options } })
            const received: Array<string> = []
            ws.on("message", (data, isBinary) => received.push(isBinary ? `bin:${Buffer.from(data as Buffer).toString()}` : data.toString()))
            ws.once("open", () => resume(Effect.succeed({ ws, received })))
            ws.once("error", (e) => resume(Effect.fail(e)))
          }),
          ({ ws }) => Effect.sync(() => ws.terminate())
        )
        const expected: Array<string> = []
        assert.isTrue(ws.extensions.startsWith("permessage-deflate"), ws.extensions)
        for (let round = 0; round < 2; round++) {
          for (const size of SIZES) {
            ws.send(sample(size, round))
            expected.push(sample(size, round))
            ws.send(Buffer.from(sample(size, round + 5)), { binary: true })
            expected.push(`bin:${sample(size, round + 5)}`)
          }
        }
        ws.send("frag", { fin: false })
        ws.send(sample(20_000), { fin: false })
        ws.send("end", { fin: true })
        expected.push(`frag${sample(20_000)}end`)
        yield* eventually(() => received.length >= expected.length, 1000)
        assert.deepStrictEqual(received, expected)
      }), 20_000)
  }

  const wsServerOptions: ReadonlyArray<readonly [PerMessageDeflateOptions, PerMessageDeflate.PerMessageDeflateConfig]> = [
    [{}, {}],
    [{ serverNoContextTakeover: true, clientNoContextTakeover: true }, {}],
    [{ serverMaxWindowBits: 10, clientMaxWindowBits: 9 }, {}],
    [{}, { serverNoContextTakeover: true, serverMaxWindowBits: 11, clientMaxWindowBits: 12 }]
  ]
  for (const [options, ours] of wsServerOptions) {
    it.live(`our client ${JSON.stringify(ours)} ↔ ws server ${JSON.stringify(options)}, fragmented compressed both ways`, () =>
      Effect.gen(function*() {
        const base = PerMessageDeflate.liveZlibContexts()
        const ws = yield* Effect.acquireRelease(
          Effect.callback<{ readonly server: WsServer; readonly port: number }>((resume) => {
            const server = new WsServer({ port: 0, host: "127.0.0.1", perMessageDeflate: { threshold: 0, ...options } })
            server.on("connection", (socket) => {
              socket.on("message", (data, isBinary) => {
                const bytes = Buffer.from(data as Buffer)
                if (bytes.length > 3000) {
                  // echo fragmented: one deflate stream, RSV1 on the first frame only
                  socket.send(bytes.subarray(0, 1000), { binary: isBinary, fin: false })
                  socket.send(bytes.subarray(1000), { binary: isBinary, fin: true })
                } else socket.send(bytes, { binary: isBinary })
              })
            })
            server.on("listening", () => resume(Effect.succeed({ server, port: (server.address() as Net.AddressInfo).port })))
          }),
          ({ server }) =>
            Effect.sync(() => {
              for (const c of server.clients) c.terminate()
              server.close()
            })
        )
        const scope = yield* Scope.make()
        const connection = yield* WebSocketClient.connect(`ws://127.0.0.1:${ws.port}/`, {
          extensions: PerMessageDeflate.extensions(ours),
          session: { outgoingFragmentSize: 5000 }
        }).pipe(Scope.provide(scope))
        assert.strictEqual(connection.extensions.length, 1)
        for (let round = 0; round < 2; round++) {
          for (const size of SIZES) {
            yield* connection.session.send(sample(size, round))
            assert.strictEqual(textOf(yield* connection.session.receive), sample(size, round))
            yield* connection.session.send(Buffer.from(sample(size, round + 3)))
            assert.strictEqual(Buffer.from((yield* connection.session.receive).payload).toString(), sample(size, round + 3))
          }
        }
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual(PerMessageDeflate.liveZlibContexts(), base)
      }), 20_000)
  }

  it.live("H7 end to end: a bomb from a client closes with 1009; a session that never compresses allocates nothing", () =>
    Effect.gen(function*() {
      const base = PerMessageDeflate.liveZlibContexts()
      const server = yield* WebSocketServer.make(echo, {
        host: "127.0.0.1",
        extensions: PerMessageDeflate.extensions({ maxMessageSize: 1024 * 1024, compressIfBiggerThan: 1 << 30 })
      })
      // compressIf false: our client passes the pre-compressed frame through as it is
      const connection = yield* WebSocketClient.connect(`ws://127.0.0.1:${server.port}/`, {
        extensions: PerMessageDeflate.extensions({ compressIf: () => false })
      })
      assert.strictEqual(connection.extensions.length, 1)
      yield* connection.session.send("small")
      assert.strictEqual(textOf(yield* connection.session.receive), "small")
      assert.strictEqual(PerMessageDeflate.liveZlibContexts(), base, "no context for uncompressed traffic")
      const bomb = Zlib.deflateRawSync(Buffer.alloc(64 * 1024 * 1024))
      yield* connection.session.sendFrame(Frame.binary(bomb.subarray(0, bomb.length - 4), { rsv1: true }))
      const reason = yield* connection.session.awaitClose
      assert.strictEqual(reason.code, 1009)
    }), 20_000)

  it.live("our client fails the handshake when the server's permessage-deflate answer is invalid (client_max_window_bits=7)", () =>
    Effect.gen(function*() {
      const port = yield* Effect.acquireRelease(
        Effect.callback<{ readonly server: Http.Server; readonly port: number }>((resume) => {
          const server = Http.createServer()
          server.on("upgrade", (request: Http.IncomingMessage, socket: Net.Socket) => {
            const key = String(request.headers["sec-websocket-key"])
            socket.end(
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                `Sec-WebSocket-Accept: ${Handshake.computeAccept(key)}\r\n` +
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=7\r\n\r\n"
            )
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, port: (server.address() as Net.AddressInfo).port })))
        }),
        ({ server }) => Effect.sync(() => server.close())
      ).pipe(Effect.map((s) => s.port))
      const failure = yield* Effect.flip(
        WebSocketClient.connect(`ws://127.0.0.1:${port}/`, { extensions: PerMessageDeflate.extensions() })
      )
      assert.strictEqual(failure._tag, "WebSocketUpgradeFailed")
      assert.strictEqual(failure._tag === "WebSocketUpgradeFailed" ? failure.kind : "", "InvalidExtensions")
    }))

  it.live("WebSocketRoute: compressed echo with a ws client; the server's zlib contexts are released when the connection ends", () =>
    Effect.gen(function*() {
      const base = PerMessageDeflate.liveZlibContexts()
      const context = yield* Layer.build(
        HttpRouter.serve(
          HttpRouter.add("GET", "/z", WebSocketRoute.handler(echo, { extensions: PerMessageDeflate.extensions() })),
          { disableLogger: true, disableListenLog: true }
        ).pipe(
          Layer.provideMerge(
            NodeHttpServer.layer(() => WebSocketRoute.createServer(), { port: 0, host: "127.0.0.1", gracefulShutdownTimeout: "300 millis" })
          )
        )
      )
      const address = Context.get(context, HttpServer.HttpServer).address
      if (address._tag === "UnixPathAddress") throw new Error("expected an IP address")
      const ws = new WsClient(`ws://127.0.0.1:${address.port}/z`, { perMessageDeflate: { threshold: 0 } })
      const reply = yield* Effect.promise(() =>
        new Promise<string>((resolve, reject) => {
          ws.once("open", () => ws.send(sample(5000)))
          ws.once("message", (data) => resolve(String(data)))
          ws.once("error", reject)
        })
      )
      assert.strictEqual(reply, sample(5000))
      assert.strictEqual(ws.extensions, "permessage-deflate")
      assert.strictEqual(PerMessageDeflate.liveZlibContexts(), base + 2)
      ws.close(1000)
      yield* eventually(() => PerMessageDeflate.liveZlibContexts() === base)
    }))
})
