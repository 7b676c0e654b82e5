/**
 * `PerMessageDeflate`: the permessage-deflate extension (RFC 7692) on node:zlib, for servers and
 * clients through core's extension API. Negotiation is the codec's pure `PerMessageDeflateNegotiation`
 * (the server accepts the first acceptable offer and declines the rest, the client validates the
 * response); the hooks compress and inflate whole messages: one raw deflate stream per message
 * ended by a sync flush whose `00 00 FF FF` tail is removed on send and restored on receive, RSV1
 * on the first frame (core fragments after the hook, so fragmented compressed messages work both
 * ways), and each direction's LZ77 context kept across messages unless `*_no_context_takeover`
 * was negotiated for it.
 *
 * Design:
 * - zlib work runs on libuv's threadpool (node:zlib streams; there is no public synchronous API
 *   for a context that persists across messages), at most `zlibConcurrency()` operations at a
 *   time per process (default `DEFAULT_ZLIB_CONCURRENCY`; `setZlibConcurrency` changes it), and
 *   one operation at a time per direction of a connection. Measured on this machine (Node 20,
 *   level 6): one context fed message after message costs ~70 µs CPU per 32 B message and
 *   ~80 µs per 16 KiB message through the stream API (~19 µs per 32 B message when 100
 *   connections compress at once), against ~12 µs and ~53 µs for a synchronous one-shot
 *   `deflateRawSync` (a new context per message, so only usable without context takeover).
 *   The event loop is never blocked by compression, at the price of per-message overhead.
 * - Contexts are lazy: a connection allocates a deflate context only when it first compresses
 *   and an inflate context only when it first receives a compressed message. `release` (run by
 *   the adapter when the session's scope closes) frees both; `liveZlibContexts` counts them.
 * - Inflation stops as soon as the output exceeds `maxMessageSize` (one zlib output chunk past
 *   it at most is ever held) and fails with `FrameTooBig` (1009): a decompression bomb never
 *   allocates its inflated size (hostile-inputs H7).
 * - Windows: zlib cannot deflate with an 8-bit window, so the negotiation never lets us agree to
 *   compress with 8 (RFC 7692 §7.1.2 lets the server decline such an offer, and the client
 *   never offers it). We inflate with at least a 9-bit window: a larger window than the peer's
 *   decodes the same stream (RFC 7692 §7.1.2.1) and tolerates peers whose zlib silently used 9.
 *
 * @module
 */
import { Frame, PerMessageDeflateNegotiation as Negotiation } from "@effect-ws/codec"
import type { ExtensionHeader } from "@effect-ws/codec"
import { Errors, Extension } from "@effect-ws/core"
import { Effect, Semaphore } from "effect"
import * as Zlib from "node:zlib"

/** The extension's key and name (`permessage-deflate`). */
export const KEY = Negotiation.PERMESSAGE_DEFLATE

/** The default limit on concurrent zlib operations in the process. */
export const DEFAULT_ZLIB_CONCURRENCY = 10

/** The default limit on an inflated message (64 MiB, core's default frame limit). */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

/**
 * Configuration of `PerMessageDeflate`, the same object for servers and clients. The window and
 * context-takeover settings mean, on a server, what it accepts and imposes (see the codec's
 * `DeflateServerConfig`) and, on a client, what it offers (`DeflateClientConfig`).
 */
export interface PerMessageDeflateConfig {
  /** zlib compression level, -1 (zlib's default, 6) or 0..9 (default -1). */
  readonly level?: number
  /** zlib memory level 1..9 (default 8): memory of the deflate state against speed and ratio. */
  readonly memLevel?: number
  /** Server: always reset our compression context per message. Client: ask the server to. */
  readonly serverNoContextTakeover?: boolean
  /** Server: require the client to reset its context per message. Client: reset ours and announce it. */
  readonly clientNoContextTakeover?: boolean
  /** Server: compress with at most this window (9..15). Client: ask the server for at most this window (8..15). */
  readonly serverMaxWindowBits?: number
  /** Server: limit the client's window when it offers `client_max_window_bits`. Client: compress with at most this window (9..15). */
  readonly clientMaxWindowBits?: number
  /** Send messages whose payload is at most this many bytes uncompressed (default: compress every message). */
  readonly compressIfBiggerThan?: number
  /** Compress an outgoing message only when this holds (ANDed with `compressIfBiggerThan`). */
  readonly compressIf?: (message: Extension.Message) => boolean
  /**
   * Largest inflated message in bytes (default `DEFAULT_MAX_MESSAGE_SIZE`); inflation stops as
   * soon as it is exceeded and the session closes with 1009. Set it to the session's
   * `maxMessageSize` (which core re-checks after the extensions) when that is smaller.
   */
  readonly maxMessageSize?: number
}

/** One connection's permessage-deflate instance; `params` is set once negotiated. */
export interface PerMessageDeflateExtension extends Extension.WebSocketExtension {
  /** The agreed parameters, `undefined` before negotiation (or when it failed). */
  readonly params: Negotiation.DeflateParameters | undefined
  /** Our side of the negotiation, once known. */
  readonly role: "server" | "client" | undefined
  /** How many zlib contexts this connection holds now (0..2). */
  readonly allocatedContexts: number
  /** Frees the zlib contexts (idempotent; later use fails with `ExtensionError`). Never fails. */
  readonly release: Effect.Effect<void>
}

// ---- Process-wide zlib accounting and limit ----

let liveContexts = 0
let concurrency = DEFAULT_ZLIB_CONCURRENCY
const limiter = Semaphore.makeUnsafe(DEFAULT_ZLIB_CONCURRENCY)

/** How many zlib contexts permessage-deflate connections hold in this process now. */
export const liveZlibContexts = (): number => liveContexts

/** The current process-wide limit on concurrent zlib operations. */
export const zlibConcurrency = (): number => concurrency

/**
 * Sets the process-wide limit on concurrent zlib operations (an integer ≥ 1; otherwise dies
 * with a `RangeError`). Operations already running are not affected.
 */
export const setZlibConcurrency = (permits: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (!Number.isInteger(permits) || permits < 1) {
      return Effect.die(new RangeError(`zlib concurrency must be an integer ≥ 1, got ${permits}`))
    }
    concurrency = permits
    return Semaphore.resize(limiter, permits)
  })

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])

/** Why one zlib operation did not complete. */
type ZlibOutcome =
  | { readonly _tag: "Done"; readonly output: Buffer }
  | { readonly _tag: "TooBig"; readonly limit: number }
  | { readonly _tag: "Failed"; readonly error: Error }

/**
 * One direction's zlib context: created on first use, reset per message when the context is not
 * taken over, dropped after a failure or an interruption (a fresh deflate context is always
 * decodable by the peer; a dropped inflate context means the session is failing anyway).
 */
class ZlibContext {
  private stream: Zlib.DeflateRaw | Zlib.InflateRaw | undefined = undefined
  private readonly mutex = Semaphore.makeUnsafe(1)
  private released = false
  private broken = false
  private readonly kind: "deflate" | "inflate"
  private readonly options: Zlib.ZlibOptions
  private readonly resetAfterMessage: boolean

  constructor(kind: "deflate" | "inflate", options: Zlib.ZlibOptions, resetAfterMessage: boolean) {
    this.kind = kind
    this.options = options
    this.resetAfterMessage = resetAfterMessage
  }

  get allocated(): boolean {
    return this.stream !== undefined
  }

  /** Frees the context (an operation in flight finishes on the threadpool first, inside zlib). */
  release(): void {
    this.released = true
    this.drop()
  }

  private drop(): void {
    const stream = this.stream
    if (stream === undefined) return
    this.stream = undefined
    liveContexts--
    stream.close()
  }

  private open(): Zlib.DeflateRaw | Zlib.InflateRaw {
    if (this.stream !== undefined) return this.stream
    const stream = this.kind === "deflate" ? Zlib.createDeflateRaw(this.options) : Zlib.createInflateRaw(this.options)
    // Errors are reported to the operation that caused them; a stream must never emit unheard.
    stream.on("error", () => {})
    this.stream = stream
    liveContexts++
    return stream
  }

  /**
   * Feeds `input` and sync-flushes; the output of this message, or `TooBig` once it exceeds
   * `limit` (the context is then dropped), or `Failed` on a zlib error (dropped too).
   */
  process(input: ReadonlyArray<Uint8Array>, limit: number): Effect.Effect<ZlibOutcome> {
    const run = Effect.callback<ZlibOutcome>((resume) => {
      if (this.released) {
        return resume(Effect.succeed({ _tag: "Failed", error: new Error("the zlib context was released") }))
      }
      if (this.broken) {
        this.broken = false
        this.drop()
      }
      const stream = this.open()
      const chunks: Array<Buffer> = []
      let total = 0
      let finished = false
      const finish = (outcome: ZlibOutcome): void => {
        if (finished) return
        finished = true
        stream.off("data", onData)
        stream.off("error", onError)
        if (outcome._tag !== "Done") this.drop()
        else if (this.resetAfterMessage && this.stream === stream) stream.reset()
        resume(Effect.succeed(outcome))
      }
      const onData = (chunk: Buffer): void => {
        total += chunk.length
        if (total > limit) return finish({ _tag: "TooBig", limit })
        chunks.push(chunk)
      }
      const onError = (error: Error): void => finish({ _tag: "Failed", error })
      stream.on("data", onData)
      stream.on("error", onError)
      for (const part of input) stream.write(part)
      stream.flush(Zlib.constants.Z_SYNC_FLUSH, () => {
        if (!finished) finish({ _tag: "Done", output: Buffer.concat(chunks, total) })
      })
      return Effect.sync(() => {
        if (finished) return
        finished = true
        stream.off("data", onData)
        stream.off("error", onError)
        // Interrupted mid-message: the context's state is unknown, start afresh next time.
        this.broken = true
      })
    })
    return Semaphore.withPermit(this.mutex, Semaphore.withPermit(limiter, run))
  }
}

const clampInt = (value: number | undefined, min: number, max: number, fallback: number): number =>
  value === undefined || !Number.isFinite(value) ? fallback : Math.min(max, Math.max(min, Math.trunc(value)))

const serverConfigOf = (config: PerMessageDeflateConfig): Negotiation.DeflateServerConfig => ({
  ...(config.serverNoContextTakeover === undefined ? {} : { serverNoContextTakeover: config.serverNoContextTakeover }),
  ...(config.clientNoContextTakeover === undefined ? {} : { clientNoContextTakeover: config.clientNoContextTakeover }),
  ...(config.serverMaxWindowBits === undefined ? {} : { serverMaxWindowBits: config.serverMaxWindowBits }),
  ...(config.clientMaxWindowBits === undefined ? {} : { clientMaxWindowBits: config.clientMaxWindowBits })
})

/** The client's negotiation config is the same four settings. */
const clientConfigOf: (config: PerMessageDeflateConfig) => Negotiation.DeflateClientConfig = serverConfigOf

const extensionError = (message: string, cause?: unknown): Errors.ExtensionError =>
  new Errors.ExtensionError({ extension: KEY, message, ...(cause === undefined ? {} : { cause }) })

class Instance implements PerMessageDeflateExtension {
  readonly key = KEY
  readonly rsv1 = true
  readonly rsv2 = false
  readonly rsv3 = false
  readonly protocols: ReadonlyArray<ExtensionHeader.WebSocketExtensionHeader>
  params: Negotiation.DeflateParameters | undefined = undefined
  role: "server" | "client" | undefined = undefined
  private deflater: ZlibContext | undefined = undefined
  private inflater: ZlibContext | undefined = undefined
  private released = false
  private readonly level: number
  private readonly memLevel: number
  private readonly threshold: number
  private readonly maxMessageSize: number
  private readonly config: PerMessageDeflateConfig

  constructor(config: PerMessageDeflateConfig) {
    this.config = config
    this.protocols = [Negotiation.makeDeflateOffer(clientConfigOf(config))]
    this.level = clampInt(config.level, -1, 9, Zlib.constants.Z_DEFAULT_COMPRESSION)
    this.memLevel = clampInt(config.memLevel, 1, 9, 8)
    this.threshold = config.compressIfBiggerThan === undefined || Number.isNaN(config.compressIfBiggerThan)
      ? -1
      : config.compressIfBiggerThan
    this.maxMessageSize = config.maxMessageSize === undefined || Number.isNaN(config.maxMessageSize)
      ? DEFAULT_MAX_MESSAGE_SIZE
      : Math.max(0, config.maxMessageSize)
  }

  get allocatedContexts(): number {
    return (this.deflater?.allocated === true ? 1 : 0) + (this.inflater?.allocated === true ? 1 : 0)
  }

  readonly clientNegotiation = (negotiated: ReadonlyArray<ExtensionHeader.WebSocketExtensionHeader>): boolean => {
    const answers = negotiated.filter((h) => h.name === KEY)
    // More than one answer for one offer is invalid (RFC 7692 §5); the adapter then fails the handshake.
    if (answers.length !== 1) return false
    const params = Negotiation.acceptDeflateResponse(answers[0]!, clientConfigOf(this.config))
    if (Negotiation.isDeflateNegotiationError(params)) return false
    this.setup("client", params)
    return true
  }

  readonly serverNegotiation = (
    requested: ReadonlyArray<ExtensionHeader.WebSocketExtensionHeader>
  ): ReadonlyArray<ExtensionHeader.WebSocketExtensionHeader> => {
    const agreement = Negotiation.negotiateDeflateServer(requested, serverConfigOf(this.config))
    if (agreement === undefined) return []
    this.setup("server", agreement.params)
    return [agreement.response]
  }

  private setup(role: "server" | "client", params: Negotiation.DeflateParameters): void {
    this.role = role
    this.params = params
    const server = role === "server"
    const ourBits = server ? params.serverMaxWindowBits : params.clientMaxWindowBits
    const peerBits = server ? params.clientMaxWindowBits : params.serverMaxWindowBits
    this.deflater = new ZlibContext(
      "deflate",
      {
        level: this.level,
        memLevel: this.memLevel,
        windowBits: Math.max(Negotiation.MIN_DEFLATE_WINDOW_BITS, ourBits)
      },
      server ? params.serverNoContextTakeover : params.clientNoContextTakeover
    )
    this.inflater = new ZlibContext(
      "inflate",
      { windowBits: Math.max(Negotiation.MIN_DEFLATE_WINDOW_BITS, peerBits) },
      server ? params.clientNoContextTakeover : params.serverNoContextTakeover
    )
  }

  private shouldCompress(message: Extension.Message): boolean {
    if (message.rsv1) return false
    if (message.payload.length <= this.threshold) return false
    return this.config.compressIf === undefined || this.config.compressIf(message)
  }

  readonly processOutgoingMessage = (
    message: Extension.Message
  ): Effect.Effect<Extension.Message, Errors.ExtensionError> => {
    const deflater = this.deflater
    if (deflater === undefined || !this.shouldCompress(message)) return Effect.succeed(message)
    if (this.released) return Effect.fail(extensionError("permessage-deflate used after release"))
    return Effect.flatMap(deflater.process([message.payload], Number.POSITIVE_INFINITY), (outcome) => {
      if (outcome._tag !== "Done") {
        return Effect.fail(
          extensionError(`Compression failed: ${outcome._tag === "Failed" ? outcome.error.message : "too big"}`)
        )
      }
      const out = outcome.output
      // A sync flush always ends with an empty stored block, 00 00 FF FF (RFC 7692 §7.2.1).
      const n = out.length
      const payload = n >= 4 && out[n - 4] === 0 && out[n - 3] === 0 && out[n - 2] === 0xff && out[n - 1] === 0xff
        ? out.subarray(0, n - 4)
        : out
      return Effect.succeed(makeMessage(message, true, payload))
    })
  }

  readonly processIncomingMessage = (
    message: Extension.Message
  ): Effect.Effect<Extension.Message, Errors.ProtocolViolation | Errors.FrameTooBig | Errors.ExtensionError> => {
    const inflater = this.inflater
    if (!message.rsv1) return Effect.succeed(message)
    if (inflater === undefined) {
      return Effect.fail(
        new Errors.ProtocolViolation({ kind: "ReservedBits", code: 1002, message: "RSV1 set without permessage-deflate" })
      )
    }
    if (this.released) return Effect.fail(extensionError("permessage-deflate used after release"))
    const limit = this.maxMessageSize
    return Effect.flatMap(inflater.process([message.payload, TAIL], limit), (
      outcome
    ): Effect.Effect<Extension.Message, Errors.ProtocolViolation | Errors.FrameTooBig> => {
      switch (outcome._tag) {
        case "Done":
          return Effect.succeed(makeMessage(message, false, outcome.output))
        case "TooBig":
          return Effect.fail(
            new Errors.FrameTooBig({ kind: "MessageTooBig", message: `Inflated message exceeds ${limit} bytes` })
          )
        case "Failed":
          return Effect.fail(
            new Errors.ProtocolViolation({
              kind: "InvalidCompressedData",
              code: 1002,
              message: `Invalid permessage-deflate data: ${outcome.error.message}`.slice(0, 120)
            })
          )
      }
    })
  }

  get release(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.released = true
      this.deflater?.release()
      this.inflater?.release()
    })
  }
}

const makeMessage = (message: Extension.Message, rsv1: boolean, payload: Uint8Array): Extension.Message =>
  Frame.make(message._tag, true, rsv1, message.rsv2, message.rsv3, payload)

/**
 * The permessage-deflate factory (claims RSV1). `install(config)` builds one connection's
 * instance; nothing is allocated until the extension is negotiated and a message is compressed
 * or a compressed message arrives.
 */
export const PerMessageDeflate: Extension.WebSocketExtensionFactory<PerMessageDeflateConfig, PerMessageDeflateExtension> = {
  key: KEY,
  rsv1: true,
  rsv2: false,
  rsv3: false,
  install: (config) => new Instance(config)
}

/**
 * Adds permessage-deflate to an extensions config. Fails with `ExtensionConflict` when another
 * installed extension claims RSV1.
 */
export const install = (
  self: Extension.WebSocketExtensionsConfig,
  config: PerMessageDeflateConfig = {}
): Effect.Effect<Extension.WebSocketExtensionsConfig, Errors.ExtensionConflict> =>
  Extension.install(self, PerMessageDeflate, config)

/**
 * An extensions config with only permessage-deflate (for `extensions` of servers, routes and
 * clients). Never fails.
 */
export const extensions = (config: PerMessageDeflateConfig = {}): Extension.WebSocketExtensionsConfig => ({
  installers: [{ key: KEY, rsv1: true, rsv2: false, rsv3: false, build: () => PerMessageDeflate.install(config) }]
})

/** Whether an extension instance holds releasable resources (a `release` effect). */
const isReleasable = (
  extension: Extension.WebSocketExtension
): extension is Extension.WebSocketExtension & { readonly release: Effect.Effect<void> } =>
  Effect.isEffect((extension as { readonly release?: unknown }).release)

/**
 * Runs `release` of every extension that has one (such as permessage-deflate's zlib contexts).
 * The adapter registers it on the connection's scope after the handshake. Never fails.
 */
export const releaseExtensions = (extensions: ReadonlyArray<Extension.WebSocketExtension>): Effect.Effect<void> =>
  Effect.suspend(() => {
    const releases = extensions.filter(isReleasable).map((e) => e.release)
    return releases.length === 0 ? Effect.void : Effect.all(releases, { discard: true })
  })
