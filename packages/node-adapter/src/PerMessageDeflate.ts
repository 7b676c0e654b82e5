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
 * - zlib runs synchronously on the calling thread, in steps of at most `STEP_BYTES` of input plus
 *   output, yielding to the event loop between steps (so a large message or a decompression bomb
 *   never blocks it for long). node:zlib has no public synchronous API for a context that
 *   persists across messages, so this drives the native handle behind a zlib stream
 *   (`_handle.writeSync`, the call node:zlib's own `*Sync` functions make); `isSupported()` checks
 *   it once, and where it is missing (another runtime) permessage-deflate is never offered nor
 *   accepted, so connections still work, uncompressed. Measured on this machine (Node 24,
 *   level 6, 16 KiB JSON-ish text): a deflate with context takeover ~36 µs and an inflate
 *   ~10 µs synchronously, against ~67 µs and ~60 µs of CPU for the same work through a zlib
 *   stream on libuv's threadpool (one round trip per message). Doing the work inline also means
 *   there is no queue of zlib jobs to bound: a connection compresses or inflates while its own
 *   fiber runs, and TCP backpressure bounds what waits.
 * - Contexts are lazy: a connection allocates a deflate context only when it first compresses
 *   and an inflate context only when it first receives a compressed message. `release` (run by
 *   the adapter when the session's scope closes) frees both; `liveZlibContexts` counts them.
 *   Output goes through one process-wide scratch buffer (copied out at the message's size), so a
 *   context holds no output buffer of its own.
 * - Inflation stops as soon as the output exceeds `maxMessageSize` (one scratch buffer past it at
 *   most is ever held) and fails with `FrameTooBig` (1009): a decompression bomb never allocates
 *   its inflated size (hostile-inputs H7). The inflated bytes of a text message are validated as
 *   UTF-8 as each zlib call produces them (while they are in cache), and inflation stops at the
 *   first invalid byte with `InvalidUtf8` (1007); the session does not check them again
 *   (`validatesIncomingUtf8`). Inflation starts only once the whole compressed message has
 *   arrived (the extension API hands hooks whole messages), so for compressed messages "fail
 *   fast" means within the message's inflation, not as its frames arrive. A message whose deflate stream ends (a block with
 *   BFINAL set) before its last byte is invalid (1002); one that ends exactly at its end resets
 *   the inflater, since the peer's next message starts a new stream.
 * - Messages it leaves alone (outgoing ones it would not compress, incoming ones without RSV1)
 *   are announced by `outgoingUnchanged`/`incomingUnchanged`: the session skips the hooks for
 *   them, so a message below the threshold costs what it costs without the extension.
 * - Windows: zlib cannot deflate with an 8-bit window, so the negotiation never lets us agree to
 *   compress with 8 (RFC 7692 §7.1.2 lets the server decline such an offer, and the client
 *   never offers it). We inflate with at least a 9-bit window: a larger window than the peer's
 *   decodes the same stream (RFC 7692 §7.1.2.1) and tolerates peers whose zlib silently used 9.
 *
 * @module
 */
import { Frame, PerMessageDeflateNegotiation as Negotiation, Utf8 } from "@effect-ws/codec"
import type { ExtensionHeader } from "@effect-ws/codec"
import { Errors, Extension } from "@effect-ws/core"
import { Effect, Semaphore } from "effect"
import * as Zlib from "node:zlib"

/** The extension's key and name (`permessage-deflate`). */
export const KEY = Negotiation.PERMESSAGE_DEFLATE

/** The default limit on an inflated message (64 MiB, core's default frame limit). */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

/** Input plus output bytes one synchronous zlib step handles before yielding to the event loop. */
export const STEP_BYTES = 128 * 1024

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
  /** Compress an outgoing message only when this holds (ANDed with `compressIfBiggerThan`); asked once per message. */
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
  /**
   * Whether an outgoing message goes out as it is: true unless the extension is negotiated and
   * would compress it (RSV1 not yet set, larger than `compressIfBiggerThan`, `compressIf` holds).
   * Never throws (unless `compressIf` does).
   */
  readonly outgoingUnchanged: (message: Extension.Message) => boolean
  /** Whether an incoming message comes in as it is: true when RSV1 is clear (not compressed). Never throws. */
  readonly incomingUnchanged: (message: Extension.Message) => boolean
}

// ---- node:zlib's native handle (not public API: checked once by `isSupported`) ----

/** The native zlib handle behind a node:zlib stream. */
interface ZlibHandle {
  /** One zlib call; afterwards the stream's `_writeState` holds [avail_out, avail_in]. */
  writeSync(
    flush: number,
    input: Uint8Array,
    inOffset: number,
    inLength: number,
    output: Uint8Array,
    outOffset: number,
    outLength: number
  ): void
  reset(): void
}

/** The fields of a node:zlib stream this module relies on. */
interface ZlibStreamInternals {
  readonly _handle: ZlibHandle | null | undefined
  readonly _writeState: Uint32Array | undefined
}

type ZlibStream = Zlib.DeflateRaw | Zlib.InflateRaw

const internalsOf = (stream: ZlibStream): ZlibStreamInternals => stream as unknown as ZlibStreamInternals

/** The smallest chunk size node:zlib accepts: the stream's own output buffer, unused here. */
const MIN_CHUNK = 64

const NO_FLUSH = Zlib.constants.Z_NO_FLUSH
const SYNC_FLUSH = Zlib.constants.Z_SYNC_FLUSH

let supported: boolean | undefined = undefined

/**
 * Whether this runtime's node:zlib exposes the synchronous handle this module drives (checked
 * once with a small round trip). When it does not, `PerMessageDeflate` neither offers nor
 * accepts the extension and connections run uncompressed. Never throws.
 */
export const isSupported = (): boolean => {
  if (supported !== undefined) return supported
  try {
    const deflate = Zlib.createDeflateRaw({ chunkSize: MIN_CHUNK })
    const inflate = Zlib.createInflateRaw({ chunkSize: MIN_CHUNK })
    const text = Buffer.from("permessage-deflate permessage-deflate")
    const packed = runOnce(deflate, text)
    const unpacked = packed === undefined ? undefined : runOnce(inflate, packed)
    deflate.close()
    inflate.close()
    supported = unpacked !== undefined && unpacked.equals(text)
  } catch {
    supported = false
  }
  if (!supported) {
    process.emitWarning("node:zlib lacks the synchronous handle API: permessage-deflate is disabled", "EffectWsWarning")
  }
  return supported
}

/** One sync-flushed call on a fresh stream with a generous buffer (for `isSupported`). */
const runOnce = (stream: ZlibStream, input: Buffer): Buffer | undefined => {
  const { _handle: handle, _writeState: state } = internalsOf(stream)
  if (typeof handle?.writeSync !== "function" || !(state instanceof Uint32Array) || state.length < 2) return undefined
  const output = Buffer.alloc(1024)
  handle.writeSync(SYNC_FLUSH, input, 0, input.length, output, 0, output.length)
  return stream.destroyed ? undefined : output.subarray(0, output.length - state[0]!)
}

// ---- Process-wide accounting and output scratch ----

let liveContexts = 0

/** How many zlib contexts permessage-deflate connections hold in this process now. */
export const liveZlibContexts = (): number => liveContexts

const SCRATCH_SIZE = 64 * 1024
/** Zlib output lands here first (steps are synchronous, so one buffer serves every context). */
let scratch = Buffer.allocUnsafeSlow(SCRATCH_SIZE)
/** Below this much room zlib could split a sync-flush marker: start a fresh scratch instead. */
const MIN_ROOM = 64

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])

/** Why one zlib operation did not complete. */
type ZlibOutcome =
  | { readonly _tag: "Done"; readonly output: Buffer }
  | { readonly _tag: "TooBig"; readonly limit: number }
  | { readonly _tag: "Failed"; readonly error: Error }
  | { readonly _tag: "InvalidUtf8" }

const INVALID_UTF8: ZlibOutcome = { _tag: "InvalidUtf8" }

/**
 * Validates inflated text as it is produced: one validator serves every operation (steps are
 * synchronous), each operation keeps only the validator's state between steps (`Operation.utf8`).
 */
const validator = new Utf8.Utf8Validator()

/** One message going through a context: its input pieces, where it is, what it produced. */
class Operation {
  readonly chunks: Array<Buffer> = []
  total = 0
  index = 0
  offset = 0
  ended = false
  readonly input: ReadonlyArray<Uint8Array>
  readonly limit: number
  /** Bytes at the end of the input that may stay unconsumed when the stream ends (the restored tail). */
  readonly trailer: number
  /** The output must be valid UTF-8 (an inflated text message). */
  readonly text: boolean
  /** The UTF-8 validator's state after the output so far (`Utf8Validator.state`). */
  utf8 = 0

  constructor(input: ReadonlyArray<Uint8Array>, limit: number, trailer: number, text: boolean) {
    this.input = input
    this.limit = limit
    this.trailer = trailer
    this.text = text
  }

  /** Input bytes not yet consumed, from the current piece on. */
  unconsumed(availIn: number): number {
    let rest = availIn
    for (let i = this.index + 1; i < this.input.length; i++) rest += this.input[i]!.length
    return rest
  }

  /** Moves the first `used` bytes of the scratch into the result (a copy at their size). */
  keep(used: number): void {
    if (used === 0) return
    const copy = Buffer.allocUnsafe(used)
    scratch.copy(copy, 0, 0, used)
    this.chunks.push(copy)
  }

  output(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total)
  }
}

/** Contexts kept per configuration for directions without context takeover. */
const MAX_POOLED = 4
const pool = new Map<string, Array<ZlibStream>>()
let pooledContexts = 0

/**
 * How many zlib contexts wait in the process-wide pool that directions without context
 * takeover borrow from (at most `MAX_POOLED` per configuration).
 */
export const pooledZlibContexts = (): number => pooledContexts

/**
 * One direction's zlib context. With context takeover the connection owns it: created on first
 * use, kept between messages. Without, nothing carries over between messages, so the connection
 * borrows a context from a process-wide pool for each message and gives it back reset: such a
 * direction holds no zlib memory between messages, however many connections there are.
 * A context is dropped after a failure or an interruption mid-message (a fresh deflate context
 * is always decodable by the peer; a dropped inflate context means the session is failing
 * anyway). Operations on one context never interleave: a message that needs several steps holds
 * the context's mutex, and operations arriving meanwhile wait for it.
 */
class ZlibContext {
  private stream: ZlibStream | undefined = undefined
  private readonly mutex = Semaphore.makeUnsafe(1)
  /** Operations started (running or waiting) that did not finish within their first step. */
  private pending = 0
  private released = false
  private broken = false
  private readonly kind: "deflate" | "inflate"
  private readonly options: Zlib.ZlibOptions
  /** No context takeover: borrow a pooled context per message. */
  private readonly shared: boolean
  private readonly poolKey: string

  constructor(kind: "deflate" | "inflate", options: Zlib.ZlibOptions, resetAfterMessage: boolean) {
    this.kind = kind
    this.options = { ...options, chunkSize: MIN_CHUNK }
    this.shared = resetAfterMessage
    this.poolKey = `${kind}:${options.windowBits}:${options.level}:${options.memLevel}`
  }

  get allocated(): boolean {
    return this.stream !== undefined
  }

  /** Frees the context; an operation between steps fails at its next step. */
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

  private open(): ZlibStream {
    if (this.stream !== undefined) return this.stream
    const pooled = this.shared ? pool.get(this.poolKey)?.pop() : undefined
    let stream: ZlibStream
    if (pooled !== undefined) {
      pooledContexts--
      stream = pooled
    } else {
      stream = this.kind === "deflate" ? Zlib.createDeflateRaw(this.options) : Zlib.createInflateRaw(this.options)
      // A zlib error destroys the stream, which then emits it: the step reports it instead.
      stream.on("error", () => {})
    }
    this.stream = stream
    liveContexts++
    return stream
  }

  /** After a message: reset the context when nothing carries over, and give a borrowed one back. */
  private endMessage(handle: ZlibHandle, ended: boolean): void {
    if (!this.shared) {
      if (ended) handle.reset()
      return
    }
    handle.reset()
    const stream = this.stream!
    this.stream = undefined
    liveContexts--
    let free = pool.get(this.poolKey)
    if (free === undefined) pool.set(this.poolKey, free = [])
    if (free.length < MAX_POOLED) {
      free.push(stream)
      pooledContexts++
    } else {
      stream.close()
    }
  }

  /**
   * Starts one message: feeds `input` and sync-flushes. When nothing else is in progress and the
   * message fits in one step, the work is done during the call and the outcome returned;
   * otherwise an effect that waits for the context and finishes the message in steps. Call it
   * once per message, in order. The outcome: the message's output, or `TooBig` once it exceeds
   * `limit`, or `Failed` on a zlib error or a stream that ends before the input minus `trailer`
   * bytes did (the context is dropped in both cases), or, with `text`, `InvalidUtf8` at the first
   * output byte that is not valid UTF-8 (context dropped) or an output that ends inside a character.
   */
  start(
    input: ReadonlyArray<Uint8Array>,
    limit: number,
    trailer: number,
    text = false
  ): ZlibOutcome | Effect.Effect<ZlibOutcome> {
    const op = new Operation(input, limit, trailer, text)
    if (this.pending === 0) {
      // The common case: nothing else in progress and the message fits in one step.
      return this.step(op) ?? this.exclusive(this.resume(op))
    }
    return this.exclusive(Effect.suspend(() => {
      const outcome = this.step(op)
      return outcome === undefined ? this.resume(op) : Effect.succeed(outcome)
    }))
  }

  /** Runs `effect` holding the context (later operations wait for it). */
  private exclusive(effect: Effect.Effect<ZlibOutcome>): Effect.Effect<ZlibOutcome> {
    this.pending++
    return Effect.ensuring(
      Semaphore.withPermit(this.mutex, effect),
      Effect.sync(() => {
        this.pending--
      })
    )
  }

  /** The remaining steps of an operation, yielding between them. */
  private resume(op: Operation): Effect.Effect<ZlibOutcome> {
    const loop: Effect.Effect<ZlibOutcome> = Effect.flatMap(Effect.yieldNow, () => {
      const outcome = this.step(op)
      return outcome === undefined ? loop : Effect.succeed(outcome)
    })
    return Effect.onInterrupt(loop, () =>
      Effect.sync(() => {
        // Interrupted mid-message: the context's state is unknown, start afresh next time.
        this.broken = true
      }))
  }

  /** One synchronous step: the outcome, or `undefined` when the step budget ran out first. */
  private step(op: Operation): ZlibOutcome | undefined {
    if (this.released) return { _tag: "Failed", error: new Error("the zlib context was released") }
    if (this.broken) {
      this.broken = false
      this.drop()
    }
    const stream = this.open()
    const { _handle: handle, _writeState: state } = internalsOf(stream)
    if (handle == null || state === undefined) return this.fail(op, new Error("the zlib handle is closed"))
    let used = 0
    let budget = STEP_BYTES
    for (;;) {
      const piece = op.input[op.index]!
      const inLength = Math.min(piece.length - op.offset, STEP_BYTES)
      const ends = op.index === op.input.length - 1 && op.offset + inLength === piece.length
      if (scratch.length - used < MIN_ROOM) {
        op.keep(used)
        used = 0
      }
      const outLength = scratch.length - used
      handle.writeSync(ends ? SYNC_FLUSH : NO_FLUSH, piece, op.offset, inLength, scratch, used, outLength)
      if (stream.destroyed) return this.fail(op, stream.errored ?? new Error("zlib failed"))
      const availOut = state[0]!
      const availIn = state[1]!
      const produced = outLength - availOut
      const consumed = inLength - availIn
      if (op.text && produced > 0) {
        validator.state = op.utf8
        // Small integers (`| 0`): the counts come from a Uint32Array, and a non-Smi argument would
        // deoptimize the validator shared with the frame parser into slower code for everyone.
        if (validator.update(scratch, used | 0, (used + produced) | 0) !== -1) {
          op.chunks.length = 0
          this.drop() // mid-message: the context's state is of no use any more
          return INVALID_UTF8
        }
        op.utf8 = validator.state
      }
      used += produced
      op.total += produced
      op.offset += consumed
      budget -= produced + consumed
      if (op.total > op.limit) {
        this.drop()
        return { _tag: "TooBig", limit: op.limit }
      }
      if (availOut === 0) {
        // The scratch is full: it becomes part of the output and a fresh one takes its place.
        op.chunks.push(used === scratch.length ? scratch : scratch.subarray(0, used))
        scratch = Buffer.allocUnsafeSlow(SCRATCH_SIZE)
        used = 0
      } else if (availIn > 0) {
        // zlib stopped with room to spare before the input's end: the deflate stream ended.
        if (op.unconsumed(availIn) > op.trailer) return this.fail(op, new Error("data after the final deflate block"))
        op.ended = true
        break
      } else if (ends) {
        break
      } else if (op.offset === piece.length) {
        op.index++
        op.offset = 0
      }
      if (budget <= 0) {
        op.keep(used)
        return undefined
      }
    }
    op.keep(used)
    this.endMessage(handle, op.ended)
    // The whole message was inflated (the context is fine); its text must not end inside a character.
    if (op.text && op.utf8 !== 0) return INVALID_UTF8
    return { _tag: "Done", output: op.output() }
  }

  private fail(op: Operation, error: Error): ZlibOutcome {
    op.chunks.length = 0
    this.drop()
    return { _tag: "Failed", error }
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
  readonly validatesIncomingUtf8 = true
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
    this.protocols = isSupported() ? [Negotiation.makeDeflateOffer(clientConfigOf(config))] : []
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
    if (this.protocols.length === 0) return false
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
    if (!isSupported()) return []
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

  /** The message `outgoingUnchanged` last found to need compressing: its hook call does not ask `compressIf` again. */
  private toCompress: Extension.Message | undefined = undefined

  // Methods (the session calls them on the extension), so an instance holds no closures for them.
  outgoingUnchanged(message: Extension.Message): boolean {
    const unchanged = this.deflater === undefined || !this.shouldCompress(message)
    this.toCompress = unchanged ? undefined : message
    return unchanged
  }

  incomingUnchanged(message: Extension.Message): boolean {
    return !message.rsv1
  }

  readonly processOutgoingMessage = (
    message: Extension.Message
  ): Effect.Effect<Extension.Message, Errors.ExtensionError> => {
    const deflater = this.deflater
    const decided = this.toCompress === message
    this.toCompress = undefined
    if (deflater === undefined || !(decided || this.shouldCompress(message))) return Effect.succeed(message)
    if (this.released) return Effect.fail(extensionError("permessage-deflate used after release"))
    const started = deflater.start([message.payload], Number.POSITIVE_INFINITY, 0)
    return Effect.isEffect(started) ? Effect.flatMap(started, (o) => compressed(message, o)) : compressed(message, started)
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
    const started = inflater.start([message.payload, TAIL], this.maxMessageSize, TAIL.length, message._tag === "Text")
    return Effect.isEffect(started) ? Effect.flatMap(started, (o) => inflated(message, o)) : inflated(message, started)
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

/** The compressed message (RSV1, tail removed), or `ExtensionError` (1011). */
const compressed = (message: Extension.Message, outcome: ZlibOutcome): Effect.Effect<Extension.Message, Errors.ExtensionError> => {
  if (outcome._tag !== "Done") {
    return Effect.fail(extensionError(`Compression failed: ${outcome._tag === "Failed" ? outcome.error.message : "too big"}`))
  }
  const out = outcome.output
  // A sync flush always ends with an empty stored block, 00 00 FF FF (RFC 7692 §7.2.1).
  const n = out.length
  const payload = n >= 4 && out[n - 4] === 0 && out[n - 3] === 0 && out[n - 2] === 0xff && out[n - 1] === 0xff
    ? out.subarray(0, n - 4)
    : out
  return Effect.succeed(makeMessage(message, true, payload))
}

/** The inflated message, or `FrameTooBig` (1009) past the limit, or `ProtocolViolation` (1002) for invalid data. */
const inflated = (
  message: Extension.Message,
  outcome: ZlibOutcome
): Effect.Effect<Extension.Message, Errors.ProtocolViolation | Errors.FrameTooBig> => {
  switch (outcome._tag) {
    case "Done":
      return Effect.succeed(makeMessage(message, false, outcome.output))
    case "TooBig":
      return Effect.fail(
        new Errors.FrameTooBig({ kind: "MessageTooBig", message: `Inflated message exceeds ${outcome.limit} bytes` })
      )
    case "Failed":
      return Effect.fail(
        new Errors.ProtocolViolation({
          kind: "InvalidCompressedData",
          code: 1002,
          message: `Invalid permessage-deflate data: ${outcome.error.message}`.slice(0, 120)
        })
      )
    case "InvalidUtf8":
      return Effect.fail(new Errors.ProtocolViolation({ kind: "InvalidUtf8", code: 1007, message: "Text message is not valid UTF-8" }))
  }
}

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
