/**
 * permessage-deflate when a message's work is cut short (issue #22, item 3). A message larger
 * than one zlib step is fed to its context synchronously during the hook call, and finished by
 * the effect the hook returns; these tests drop that effect (its fiber is interrupted before it
 * runs, or it is never run) or interrupt it between steps, then check that the next message on
 * the same context, and on a context borrowed from the same pool, carries nothing of the
 * abandoned one: the peer inflates exactly the next message, or the inflater fails with a typed
 * `ExtensionError` when the peer's stream can no longer be decoded.
 */
import { assert, describe, it } from "@effect/vitest"
import { ExtensionHeader, Frame } from "@effect-ws/codec"
import { DefaultWebSocketSession, type Extension } from "@effect-ws/core"
import { Effect, Exit, Fiber, Scope } from "effect"
import * as Zlib from "node:zlib"
import * as PerMessageDeflate from "../src/PerMessageDeflate.ts"
import * as WebSocketClient from "../src/WebSocketClient.ts"
import * as WebSocketServer from "../src/WebSocketServer.ts"
import { echo } from "./helpers.ts"

const offers = (header: string): ReadonlyArray<ExtensionHeader.WebSocketExtensionHeader> => {
  const parsed = ExtensionHeader.parseWebSocketExtensions(header)
  if (ExtensionHeader.isExtensionHeaderError(parsed)) throw new Error(parsed.message)
  return parsed
}

/** A server-role instance negotiated from `offer`. */
const serverInstance = (offer: string, config: PerMessageDeflate.PerMessageDeflateConfig = {}) => {
  const ext = PerMessageDeflate.PerMessageDeflate.install(config)
  assert.strictEqual(ext.serverNegotiation(offers(offer)).length, 1)
  return ext
}

/** A client-role instance that accepted `answer`. */
const clientInstance = (answer: string) => {
  const ext = PerMessageDeflate.PerMessageDeflate.install({
    serverNoContextTakeover: answer.includes("server_no_context_takeover"),
    clientNoContextTakeover: answer.includes("client_no_context_takeover")
  })
  assert.isTrue(ext.clientNegotiation(offers(answer)))
  return ext
}

const textOf = (message: Extension.Message) =>
  message._tag === "Text" ? DefaultWebSocketSession.readText(message) : `bin:${Buffer.from(message.payload).toString("hex")}`

/** Compressible text of `size` bytes. */
const sample = (size: number, seed = 0) => {
  let s = ""
  for (let i = 0; s.length < size; i++) s += `message ${seed} line ${i % 97} lorem ipsum dolor sit amet; `
  return s.slice(0, size)
}

/** `actual === expected`, reported briefly (these texts are up to 1 MiB). */
const sameText = (actual: string, expected: string, what = "") =>
  assert.isTrue(
    actual === expected,
    `${what} got ${actual.length} chars starting ${JSON.stringify(actual.slice(0, 24))}, expected ${expected.length} starting ${
      JSON.stringify(expected.slice(0, 24))
    }`
  )

const BIG = 1024 * 1024
const SYNC = { finishFlush: Zlib.constants.Z_SYNC_FLUSH }
const TAIL = Buffer.from([0, 0, 0xff, 0xff])
/** A payload inflated on its own (a message compressed without reference to earlier ones). */
const inflateAlone = (payload: Uint8Array) => Zlib.inflateRawSync(Buffer.concat([payload, TAIL]), SYNC).toString()

/** Calls the hook (its synchronous part runs: the first zlib step) and never runs the effect it returns. */
const abandonOutgoing = (ext: PerMessageDeflate.PerMessageDeflateExtension, message: Extension.Message) =>
  Effect.sync(() => {
    const started = ext.processOutgoingMessage(message)
    assert.isFalse(Exit.isExit(started), "a message larger than one step is not finished during the call")
  })

const abandonIncoming = (ext: PerMessageDeflate.PerMessageDeflateExtension, message: Extension.Message) =>
  Effect.sync(() => {
    const started = ext.processIncomingMessage(message)
    assert.isFalse(Exit.isExit(started), "a message larger than one step is not finished during the call")
  })

describe("PerMessageDeflate: a message cut short leaves no trace in the next one", () => {
  for (const offer of ["permessage-deflate", "permessage-deflate; server_no_context_takeover"]) {
    const takeover = !offer.includes("no_context")
    it.effect(`outgoing, continuation never run (${offer}): the peer inflates exactly the next messages`, () =>
      Effect.gen(function*() {
        const ext = serverInstance(offer)
        const peer = clientInstance(offer)
        yield* abandonOutgoing(ext, Frame.text(sample(BIG, 1)))
        const second = yield* ext.processOutgoingMessage(Frame.text(sample(5000, 2)))
        sameText(inflateAlone(second.payload), sample(5000, 2), "a fresh deflate stream, nothing of the abandoned message")
        sameText(textOf(yield* peer.processIncomingMessage(second)), sample(5000, 2))
        // and the context goes on working, with takeover across the following messages
        const third = yield* ext.processOutgoingMessage(Frame.text(sample(5000, 2)))
        sameText(textOf(yield* peer.processIncomingMessage(third)), sample(5000, 2))
        if (takeover) assert.isBelow(third.payload.length, second.payload.length / 4, "the third refers to the second")
        // a large one, in several steps, after the abandoned one
        const big = yield* ext.processOutgoingMessage(Frame.text(sample(BIG, 3)))
        sameText(textOf(yield* peer.processIncomingMessage(big)), sample(BIG, 3))

        // Abandoned again, then released: the half-fed context is closed, never pooled.
        yield* abandonOutgoing(ext, Frame.text(sample(BIG, 4)))
        const pooled = PerMessageDeflate.pooledZlibContexts()
        yield* PerMessageDeflate.releaseExtensions([ext, peer])
        assert.strictEqual(PerMessageDeflate.pooledZlibContexts(), pooled, "released: nothing went back to the pool")
        // Another connection borrowing from the same pool compresses from a clean context.
        const other = serverInstance(offer)
        const out = yield* other.processOutgoingMessage(Frame.text(sample(3000, 5)))
        sameText(inflateAlone(out.payload), sample(3000, 5))
        yield* other.release
      }))

    it.effect(`outgoing, sending fiber interrupted right after the first step (${offer})`, () =>
      Effect.gen(function*() {
        const ext = serverInstance(offer)
        const peer = clientInstance(offer)
        // The hook runs in the sending fiber; interrupting that fiber from inside the call takes
        // effect as soon as the call returns, so the effect it returned never starts.
        const fiber = yield* Effect.forkChild(
          Effect.suspend(() => {
            const started = ext.processOutgoingMessage(Frame.text(sample(BIG, 1)))
            Fiber.getCurrent()!.interruptUnsafe()
            return started
          }),
          { startImmediately: true }
        )
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.hasInterrupts(exit))
        const second = yield* ext.processOutgoingMessage(Frame.text(sample(5000, 2)))
        sameText(textOf(yield* peer.processIncomingMessage(second)), sample(5000, 2))
        yield* PerMessageDeflate.releaseExtensions([ext, peer])
      }))

    it.effect(`outgoing, interrupted between steps (${offer}): a fresh stream next`, () =>
      Effect.gen(function*() {
        const ext = serverInstance(offer)
        const peer = clientInstance(offer)
        const fiber = yield* Effect.forkChild(ext.processOutgoingMessage(Frame.text(sample(BIG, 1))), { startImmediately: true })
        // startImmediately ran the first step and stopped at the yield after it
        yield* Fiber.interrupt(fiber)
        const second = yield* ext.processOutgoingMessage(Frame.text(sample(5000, 2)))
        sameText(inflateAlone(second.payload), sample(5000, 2))
        sameText(textOf(yield* peer.processIncomingMessage(second)), sample(5000, 2))
        yield* PerMessageDeflate.releaseExtensions([ext, peer])
      }))
  }

  it.effect("incoming with context takeover, continuation never run: the next message fails with ExtensionError", () =>
    Effect.gen(function*() {
      const peer = clientInstance("permessage-deflate")
      const ext = serverInstance("permessage-deflate")
      const first = yield* peer.processOutgoingMessage(Frame.text(sample(BIG, 1)))
      const second = yield* peer.processOutgoingMessage(Frame.text(sample(BIG, 1)))
      yield* abandonIncoming(ext, first)
      // The peer's second message refers to its first, which was never inflated to the end: it
      // cannot be decoded, and that is our fault, not the peer's (not a 1002).
      const error = yield* Effect.flip(ext.processIncomingMessage(second))
      assert.strictEqual(error._tag, "ExtensionError")
      yield* PerMessageDeflate.releaseExtensions([peer, ext])
    }))

  it.effect("incoming with context takeover, a message skipped (its effect never run): the later ones fail, never decode wrongly", () =>
    Effect.gen(function*() {
      const peer = clientInstance("permessage-deflate")
      const ext = serverInstance("permessage-deflate")
      const first = yield* peer.processOutgoingMessage(Frame.text(sample(BIG, 1)))
      const second = yield* peer.processOutgoingMessage(Frame.text(sample(5000, 2)))
      const third = yield* peer.processOutgoingMessage(Frame.text(sample(5000, 2))) // refers to the second
      const running = ext.processIncomingMessage(first)
      assert.isFalse(Exit.isExit(running))
      yield* abandonIncoming(ext, second) // started while the first runs: waits; then never run
      sameText(textOf(yield* running), sample(BIG, 1))
      // The third refers to the second, which the inflater never saw: copying from its history
      // instead would be silent corruption.
      const error = yield* Effect.flip(ext.processIncomingMessage(third))
      assert.strictEqual(error._tag, "ExtensionError")
      yield* PerMessageDeflate.releaseExtensions([peer, ext])
    }))

  it.effect("incoming without context takeover, never run or interrupted by its scope closing: the next one inflates", () =>
    Effect.gen(function*() {
      const peer = clientInstance("permessage-deflate; client_no_context_takeover")
      const ext = serverInstance("permessage-deflate; client_no_context_takeover")
      const first = yield* peer.processOutgoingMessage(Frame.text(sample(BIG, 1)))
      const second = yield* peer.processOutgoingMessage(Frame.text(sample(5000, 2)))
      yield* abandonIncoming(ext, first)
      sameText(textOf(yield* ext.processIncomingMessage(second)), sample(5000, 2))
      // interrupted between steps by the closing of its scope (a session closing mid-inflation)
      const scope = yield* Scope.make()
      yield* Effect.forkIn(ext.processIncomingMessage(first), scope, { startImmediately: true })
      yield* Scope.close(scope, Exit.void)
      sameText(textOf(yield* ext.processIncomingMessage(second)), sample(5000, 2))
      sameText(textOf(yield* ext.processIncomingMessage(first)), sample(BIG, 1))
      // abandoned, then released with the connection: the half-fed context is not pooled
      yield* abandonIncoming(ext, first)
      const before = PerMessageDeflate.pooledZlibContexts()
      yield* PerMessageDeflate.releaseExtensions([peer, ext])
      assert.strictEqual(PerMessageDeflate.pooledZlibContexts(), before)
      const other = serverInstance("permessage-deflate; client_no_context_takeover")
      sameText(textOf(yield* other.processIncomingMessage(second)), sample(5000, 2))
      yield* other.release
    }))
})

describe("PerMessageDeflate: released with a message in progress", () => {
  for (const offer of ["permessage-deflate", "permessage-deflate; client_no_context_takeover"]) {
    it.effect(`the message fails, nothing waits forever (${offer})`, () =>
      Effect.gen(function*() {
        const peer = clientInstance(offer)
        const ext = serverInstance(offer)
        const big = yield* peer.processOutgoingMessage(Frame.text(sample(BIG, 1)))
        // started, and waiting (between steps, or on zlib's threadpool)
        const fiber = yield* Effect.forkChild(ext.processIncomingMessage(big), { startImmediately: true })
        yield* ext.release
        const exit = yield* Fiber.await(fiber).pipe(Effect.timeout("2 seconds"))
        assert.isTrue(Exit.isFailure(exit) && !Exit.hasInterrupts(exit), "failed, not interrupted nor hanging")
        assert.strictEqual(ext.allocatedContexts, 0)
        yield* peer.release
      }))
  }
})

describe("PerMessageDeflate over real sockets: a send interrupted mid-compression", () => {
  for (const clientNoContextTakeover of [false, true]) {
    it.live(`the next message arrives exactly (clientNoContextTakeover: ${clientNoContextTakeover})`, () =>
      Effect.gen(function*() {
        const base = PerMessageDeflate.liveZlibContexts()
        const scope = yield* Scope.make()
        const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", extensions: PerMessageDeflate.extensions() })
          .pipe(Scope.provide(scope))
        let interrupts = 0
        const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${server.port}/`, {
          extensions: PerMessageDeflate.extensions({
            clientNoContextTakeover,
            // A deterministic hook: asked in the sending fiber just before the first zlib step of
            // the 1 MiB message, it interrupts that fiber, which stops as soon as the step is done.
            compressIf: (message) => {
              if (message.payload.length === BIG && interrupts++ === 0) Fiber.getCurrent()!.interruptUnsafe()
              return true
            }
          })
        }).pipe(Scope.provide(scope))
        const sender = yield* Effect.forkChild(session.send(sample(BIG, 1)), { startImmediately: true })
        assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(sender)))
        assert.strictEqual(interrupts, 1)
        yield* session.send(sample(5000, 2))
        sameText(textOf(yield* session.receive), sample(5000, 2))
        yield* session.send(sample(BIG, 3))
        sameText(textOf(yield* session.receive), sample(BIG, 3))
        yield* session.send(sample(5000, 2))
        sameText(textOf(yield* session.receive), sample(5000, 2))
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual(PerMessageDeflate.liveZlibContexts(), base)
      }), 20_000)
  }
})
