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
 *   (`_handle.writeSync`, the call node:zlib's own `*Sync` functions make). That handle is
 *   private (present on Node 22, Node 24 and Bun 1.4), so it is used only after a self-test (a
 *   round trip through it, once per process, at first use); where it fails (a later Node, Deno)
 *   node:zlib's public API does the same work with the same bytes on the wire, slower (see
 *   `zlibEngine`; `EFFECT_WS_ZLIB_PUBLIC_API=1` forces it, for tests). Doing the work inline
 *   also means there is no queue of zlib jobs to bound: a connection compresses or inflates
 *   while its own fiber runs, and TCP backpressure bounds what waits. Measured on a 2-core
 *   machine (Node 24, level 6, 16 KiB JSON-ish text, one message after another): a deflate
 *   ~60 µs and an inflate ~35–55 µs on the handle, against ~120 µs and ~90–180 µs on the public
 *   API (a one-shot `*Sync` call without context takeover, a threadpool round trip with it).
 * - A message cut short (its hook's effect interrupted, or never run) leaves no trace: the
 *   context it was fed to is dropped before anything else uses it, never pooled; an inflater
 *   with context takeover that lost part of the peer's stream fails later messages with
 *   `ExtensionError` (see `ZlibContext`).
 * - Contexts are lazy: a connection allocates a deflate context only when it first compresses
 *   and an inflate context only when it first receives a compressed message. `release` (run by
 *   the adapter when the session's scope closes) frees both; `liveZlibContexts` counts them.
 *   Output goes through one process-wide scratch buffer (copied out at the message's size), so a
 *   context holds no output buffer of its own.
 * - Inflation stops as soon as the output exceeds `maxMessageSize` (one scratch buffer past it at
 *   most is ever held; on the public API one output chunk, a one-shot call inflating at most a
 *   step's worth before a stream takes over) and fails with `FrameTooBig` (1009): a decompression
 *   bomb never allocates its inflated size (hostile-inputs H7). The inflated bytes of a text
 *   message are validated as UTF-8 as zlib produces them (each step's output, each stream chunk;
 *   a one-shot call's result at once), and inflation stops at the first invalid byte with
 *   `InvalidUtf8` (1007); the session does not check them again (`validatesIncomingUtf8`).
 *   Inflation starts only once the whole compressed message has arrived (the extension API hands
 *   hooks whole messages), so for compressed messages "fail fast" means within the message's
 *   inflation, not as its frames arrive. A message whose deflate stream ends (a block with
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
import { Effect } from "effect"
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
  /**
   * Compress an outgoing message only when this holds (ANDed with `compressIfBiggerThan`); asked
   * once per message. When it throws, that message is not sent: `send` fails with
   * `ExtensionError` (its `cause` is what was thrown) and the session goes on.
   */
  readonly compressIf?: (message: Extension.Message) => boolean
  /**
   * Largest inflated message in bytes (default `DEFAULT_MAX_MESSAGE_SIZE`); inflation stops as
   * soon as it is exceeded and the session closes with 1009. A default session lowers it to its
   * own `maxMessageSize` when that is smaller (`limitIncomingMessageSize`), so setting the
   * session's limit is enough.
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
   * would compress it (RSV1 not yet set, larger than `compressIfBiggerThan`, `compressIf` holds
   * or throws: the hook then fails with `ExtensionError`). Never throws.
   */
  readonly outgoingUnchanged: (message: Extension.Message) => boolean
  /** Whether an incoming message comes in as it is: true when RSV1 is clear (not compressed). Never throws. */
  readonly incomingUnchanged: (message: Extension.Message) => boolean
}

// ---- node:zlib's native handle (not public API: used only after `zlibEngine`'s self-test) ----

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

/**
 * The environment variable that, set to `1`, makes permessage-deflate use node:zlib's public
 * API even where the native handle works (for tests and diagnostics). Read once, at first use.
 */
const PUBLIC_API_VARIABLE = "EFFECT_WS_ZLIB_PUBLIC_API"

let engine: "handle" | "public" | undefined = undefined

/**
 * How permessage-deflate drives zlib in this process, decided once, at first use:
 * - `"handle"`: synchronously, on the native handle behind a node:zlib stream (the call
 *   node:zlib's own `*Sync` functions make). It is not public API, so it is used only after a
 *   self-test passed: a round trip through it, checked against the public API.
 * - `"public"`: node:zlib's public API, with the same bytes on the wire: a one-shot
 *   `deflateRawSync`/`inflateRawSync` (`finishFlush: Z_SYNC_FLUSH`) for a message of at most half
 *   a step without context takeover, otherwise a stream written the message and flushed with
 *   `Z_SYNC_FLUSH` (on libuv's threadpool; kept across messages with context takeover). Used
 *   where the self-test fails (a runtime whose node:zlib lacks or changed the handle; a warning
 *   says so) or where the environment variable `EFFECT_WS_ZLIB_PUBLIC_API` is `1`.
 *
 * Never throws.
 */
export const zlibEngine = (): "handle" | "public" => engine ??= selectEngine()

const selectEngine = (): "handle" | "public" => {
  let forced = false
  try {
    forced = globalThis.process?.env?.[PUBLIC_API_VARIABLE] === "1"
  } catch {
    // a runtime that guards its environment (Deno without --allow-env): not forced
  }
  if (forced) return "public"
  if (handleWorks()) return "handle"
  try {
    process.emitWarning(
      "node:zlib's native handle failed its self-test: permessage-deflate uses node:zlib's public API (slower)",
      "EffectWsWarning"
    )
  } catch {
    // no warning channel: nothing else to do
  }
  return "public"
}

/**
 * The self-test of the native handle: a sync-flushed deflate through it that the public API
 * inflates back, an inflate through it of what the public API deflated, and a reset after which
 * the same input deflates to the same bytes. Never throws.
 */
const handleWorks = (): boolean => {
  let deflate: ZlibStream | undefined = undefined
  let inflate: ZlibStream | undefined = undefined
  try {
    deflate = Zlib.createDeflateRaw({ chunkSize: MIN_CHUNK })
    inflate = Zlib.createInflateRaw({ chunkSize: MIN_CHUNK })
    const text = Buffer.from("permessage-deflate self-test; ".repeat(40))
    const packed = runOnce(deflate, text)
    if (packed === undefined || packed.length >= text.length || !packed.subarray(-4).equals(TAIL)) return false
    if (!Zlib.inflateRawSync(packed, { finishFlush: SYNC_FLUSH }).equals(text)) return false
    const unpacked = runOnce(inflate, Zlib.deflateRawSync(text, { finishFlush: SYNC_FLUSH }))
    if (unpacked === undefined || !unpacked.equals(text)) return false
    internalsOf(deflate)._handle!.reset()
    const again = runOnce(deflate, text)
    return again !== undefined && again.equals(packed)
  } catch {
    return false
  } finally {
    try {
      deflate?.close()
      inflate?.close()
    } catch {
      // closing a broken stream: nothing to free
    }
  }
}

/** One sync-flushed call with a generous buffer (for the self-test): the output, if all input was taken. */
const runOnce = (stream: ZlibStream, input: Buffer): Buffer | undefined => {
  const { _handle: handle, _writeState: state } = internalsOf(stream)
  if (typeof handle?.writeSync !== "function" || typeof handle.reset !== "function") return undefined
  if (!(state instanceof Uint32Array) || state.length < 2) return undefined
  const output = Buffer.alloc(4096)
  handle.writeSync(SYNC_FLUSH, input, 0, input.length, output, 0, output.length)
  if (stream.destroyed || state[1] !== 0 || state[0]! === 0 || state[0]! > output.length) return undefined
  return output.subarray(0, output.length - state[0]!)
}

/**
 * Whether permessage-deflate can be offered and accepted on this runtime: always, since it
 * falls back to node:zlib's public API where the faster native handle is unavailable (see
 * `zlibEngine`). Never throws.
 */
export const isSupported = (): boolean => true

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
  | { readonly _tag: "Lost" }
  | { readonly _tag: "InvalidUtf8" }

const LOST: ZlibOutcome = { _tag: "Lost" }
const INVALID_UTF8: ZlibOutcome = { _tag: "InvalidUtf8" }

/**
 * Validates inflated text as it is produced: one validator serves every operation (steps are
 * synchronous), each operation keeps only the validator's state between steps (`Operation.utf8`).
 */
const validator = new Utf8.Utf8Validator()

/**
 * Feeds `bytes[start, end)` of `op`'s output to the UTF-8 validator; false at the first invalid
 * byte. The bounds are small integers (`| 0`): a non-Smi argument would deoptimize the validator
 * shared with the frame parser into slower code for everyone.
 */
const validText = (op: Operation, bytes: Uint8Array, start: number, end: number): boolean => {
  validator.state = op.utf8
  if (validator.update(bytes, start | 0, end | 0) !== -1) return false
  op.utf8 = validator.state
  return true
}

/** One message going through a context: its input pieces, where it is, what it produced. */
class Operation {
  readonly chunks: Array<Buffer> = []
  total = 0
  index = 0
  offset = 0
  ended = false
  /**
   * Where the message stands on its context: `new` (its input not given to zlib, or taken back
   * by a restart), `fed` (its first step ran during the hook call and the rest waits for the
   * effect the hook returned), `running` (that effect runs and holds the context), `done`.
   */
  state: "new" | "fed" | "running" | "done" = "new"
  /** The message's place among those started on its context (1, 2, ...). */
  seq = 0
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

  /** Forgets the progress (the context it was fed to was dropped): the message starts over. */
  restart(): void {
    this.chunks.length = 0
    this.total = 0
    this.index = 0
    this.offset = 0
    this.ended = false
    this.utf8 = 0
    this.state = "new"
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
 *
 * A message larger than one step is fed during the hook call (its first step) and finished by
 * the effect the hook returns. That effect may never run (its fiber is interrupted first) or be
 * interrupted between steps: zlib then holds part of a message that will never be finished.
 * Such a context is never used again nor pooled: it is dropped (closed) when the effect is
 * interrupted, or, when the effect never ran, by the next message before it feeds anything (a
 * message `fed` but not `running` when another one needs the context has lost its
 * continuation, or will find its progress gone and start over when it does run). A fresh
 * deflate context is always decodable by the peer (whose history only grows); an inflater with
 * context takeover that lost part of the peer's stream (a message abandoned midway, or skipped:
 * one that starts before an earlier one ran) cannot decode what follows, or worse, could
 * silently copy from the wrong history, so it fails every later message with `Lost` (an
 * `ExtensionError`). Messages on one context never
 * interleave: while one runs, the others wait for it, in order.
 *
 * On node:zlib's public API (`zlibEngine() === "public"`) nothing is pooled: a direction without
 * context takeover deflates or inflates a small message in one `*Sync` call (its own short-lived
 * context) and a larger one through a stream of its own; one with context takeover keeps a
 * stream. Either way the message's input goes to zlib only while its effect runs.
 */
class ZlibContext {
  private stream: ZlibStream | undefined = undefined
  /** The message zlib holds part of (`fed` or `running`), if any. */
  private current: Operation | undefined = undefined
  /** Messages waiting for the running one to finish, in order (woken all at once; the first goes). */
  private waiters: Array<() => void> | undefined = undefined
  private released = false
  /** An inflater with context takeover lost part of the peer's stream: later messages are `Lost`. */
  private lost = false
  /** Messages started on this context, and the place of the one expected to run next. */
  private started = 0
  private expected = 1
  private readonly kind: "deflate" | "inflate"
  private readonly options: Zlib.ZlibOptions
  /** No context takeover: borrow a pooled context per message. */
  private readonly shared: boolean
  private readonly poolKey: string
  /** The synchronous fast path on the native handle (`zlibEngine() === "handle"`), or node:zlib's public API. */
  private readonly handle: boolean
  /** Public API: where the running message's output goes, and its failure (the stream's events). */
  private sink: ((chunk: Buffer) => void) | undefined = undefined
  private failure: ((error: Error) => void) | undefined = undefined

  constructor(kind: "deflate" | "inflate", options: Zlib.ZlibOptions, resetAfterMessage: boolean) {
    this.kind = kind
    this.handle = zlibEngine() === "handle"
    this.options = this.handle ? { ...options, chunkSize: MIN_CHUNK } : options
    this.shared = resetAfterMessage
    this.poolKey = `${kind}:${options.windowBits}:${options.level}:${options.memLevel}`
  }

  get allocated(): boolean {
    return this.stream !== undefined
  }

  /** Frees the context; a message between steps fails at its next step, one in zlib's threadpool at once. */
  release(): void {
    this.released = true
    const failure = this.failure
    this.drop()
    failure?.(new Error("the zlib context was released"))
  }

  private drop(): void {
    const stream = this.stream
    if (stream === undefined) return
    this.stream = undefined
    liveContexts--
    stream.close()
  }

  /**
   * The context lost the message it held part of: dropped, and an inflater that keeps the
   * peer's context can no longer decode the peer's stream.
   */
  private abandon(op: Operation): void {
    if (this.current === op) this.current = undefined
    this.sink = undefined
    this.failure = undefined
    this.drop()
    if (this.kind === "inflate" && !this.shared) this.lost = true
  }

  private open(): ZlibStream {
    if (this.stream !== undefined) return this.stream
    const pooled = this.shared && this.handle ? pool.get(this.poolKey)?.pop() : undefined
    let stream: ZlibStream
    if (pooled !== undefined) {
      pooledContexts--
      stream = pooled
    } else if (this.handle) {
      stream = this.kind === "deflate" ? Zlib.createDeflateRaw(this.options) : Zlib.createInflateRaw(this.options)
      // A zlib error destroys the stream, which then emits it: the step reports it instead.
      stream.on("error", () => {})
    } else {
      const created = this.kind === "deflate" ? Zlib.createDeflateRaw(this.options) : Zlib.createInflateRaw(this.options)
      // Output and errors go to the running message, and only while the stream is this context's.
      created.on("data", (chunk: Buffer) => {
        if (this.stream === created) this.sink?.(chunk)
      })
      created.on("error", (error: Error) => {
        if (this.stream === created) this.failure?.(error)
      })
      stream = created
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
   * bytes did (the context is dropped in both cases), or `Lost` (see the class), or, with
   * `text`, `InvalidUtf8` at the first output byte that is not valid UTF-8 (context dropped) or
   * an output that ends inside a character.
   */
  start(
    input: ReadonlyArray<Uint8Array>,
    limit: number,
    trailer: number,
    text = false
  ): ZlibOutcome | Effect.Effect<ZlibOutcome> {
    const op = new Operation(input, limit, trailer, text)
    op.seq = ++this.started
    if (this.current === undefined && this.waiters === undefined) {
      // The common case: nothing else in progress and the message fits in one step.
      if (this.handle) {
        this.checkOrder(op)
        const outcome = this.step(op)
        if (outcome !== undefined) return outcome
        op.state = "fed"
        this.current = op
      } else if (this.shared) {
        const outcome = this.oneShot(op)
        if (outcome !== undefined) return outcome
      }
    }
    return Effect.uninterruptibleMask((restore) => this.turn(op, restore))
  }

  /**
   * Runs `op` once the context is its to use: now when zlib holds part of it or of nothing, or
   * of a message whose continuation is not running (which loses it); later when another
   * message is running. Interruptible only while waiting and between steps.
   */
  private turn(
    op: Operation,
    restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  ): Effect.Effect<ZlibOutcome> {
    const current = this.current
    if (current !== undefined && current !== op) {
      if (current.state === "running") return Effect.flatMap(restore(this.waitTurn()), () => this.turn(op, restore))
      // Fed during its hook call, but its continuation is not running: it may never run (its
      // fiber was interrupted first). The context is dropped; if it does run, it starts over.
      this.abandon(current)
      current.restart()
    }
    const fed = op.state === "fed"
    if (!fed) this.checkOrder(op)
    op.state = "running"
    this.current = op
    return Effect.onExit(restore(this.steps(op, fed)), () =>
      Effect.sync(() => {
        // Interrupted (or a defect) between steps: zlib holds part of a message nobody will finish.
        if (op.state !== "done") this.abandon(op)
        this.wakeAll()
      }))
  }

  /** An inflater with context takeover must see the peer's messages in order: one that was skipped is lost. */
  private checkOrder(op: Operation): void {
    if (op.seq !== this.expected && this.kind === "inflate" && !this.shared) this.lost = true
  }

  /** Waits until the running message finishes (or gives up: then nothing is owed to anyone). */
  private waitTurn(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      const waiter = () => resume(Effect.void)
      ;(this.waiters ??= []).push(waiter)
      return Effect.sync(() => {
        const waiters = this.waiters
        const i = waiters === undefined ? -1 : waiters.indexOf(waiter)
        if (i !== -1) waiters!.splice(i, 1)
        if (waiters?.length === 0) this.waiters = undefined
      })
    })
  }

  private wakeAll(): void {
    const waiters = this.waiters
    if (waiters === undefined) return
    this.waiters = undefined
    for (const waiter of waiters) waiter()
  }

  /** The steps of a message, yielding between them (first, when its first step ran during the hook call). */
  private steps(op: Operation, yieldFirst: boolean): Effect.Effect<ZlibOutcome> {
    if (!this.handle) {
      return Effect.suspend(() => {
        const outcome = this.shared ? this.oneShot(op) : undefined
        return outcome === undefined ? this.streamed(op) : Effect.succeed(outcome)
      })
    }
    const loop: Effect.Effect<ZlibOutcome> = Effect.suspend(() => {
      const outcome = this.step(op)
      return outcome === undefined ? Effect.andThen(Effect.yieldNow, loop) : Effect.succeed(outcome)
    })
    return yieldFirst ? Effect.andThen(Effect.yieldNow, loop) : loop
  }

  /** One synchronous step: the outcome, or `undefined` when the step budget ran out first. */
  private step(op: Operation): ZlibOutcome | undefined {
    const outcome = this.stepOnce(op)
    return outcome === undefined ? undefined : this.settle(op, outcome)
  }

  /** The message is over (whatever its outcome): the context is free. */
  private settle(op: Operation, outcome: ZlibOutcome): ZlibOutcome {
    op.state = "done"
    this.expected = op.seq + 1
    if (this.current === op) this.current = undefined
    return outcome
  }

  /**
   * Public API without context takeover: a message of at most half a step in one `*Sync` call
   * (zlib's own context, freed at once), inflating at most `min(limit, STEP_BYTES)` bytes. The
   * outcome, or `undefined` when the message is larger (it is then streamed).
   */
  private oneShot(op: Operation): ZlibOutcome | undefined {
    let length = 0
    for (const piece of op.input) length += piece.length
    if (length > STEP_BYTES / 2) return undefined
    if (this.released) return this.settle(op, { _tag: "Failed", error: new Error("the zlib context was released") })
    const input = op.input.length === 1 ? op.input[0]! : Buffer.concat(op.input, length)
    const cap = Math.min(op.limit, STEP_BYTES)
    let outcome: ZlibOutcome
    try {
      if (this.kind === "deflate") {
        outcome = { _tag: "Done", output: ownCopy(Zlib.deflateRawSync(input, { ...this.options, finishFlush: SYNC_FLUSH })) }
      } else {
        const result = Zlib.inflateRawSync(input, {
          windowBits: this.options.windowBits!,
          finishFlush: SYNC_FLUSH,
          maxOutputLength: Math.max(1, cap),
          info: true
        }) as unknown as { readonly buffer: Buffer; readonly engine: Zlib.InflateRaw }
        if (result.buffer.length > op.limit) outcome = { _tag: "TooBig", limit: op.limit }
        else if (length - result.engine.bytesWritten > op.trailer) {
          outcome = { _tag: "Failed", error: new Error("data after the final deflate block") }
        } else if (op.text && !Utf8.isValidUtf8(result.buffer)) outcome = INVALID_UTF8
        else outcome = { _tag: "Done", output: ownCopy(result.buffer) }
      }
    } catch (error) {
      if ((error as { readonly code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") {
        if (op.limit > cap) return undefined // more than a step's worth: stream it, stopping at the limit
        outcome = { _tag: "TooBig", limit: op.limit }
      } else {
        outcome = { _tag: "Failed", error: error instanceof Error ? error : new Error(String(error)) }
      }
    }
    return this.settle(op, outcome)
  }

  /**
   * Public API: the message through a stream (this direction's, with context takeover; a new
   * one, closed afterwards, without), written whole and flushed with `Z_SYNC_FLUSH`. The output
   * arrives as the stream's `data` events before the flush completes; inflation stops at the
   * first chunk past `limit` (the stream is closed). A stream that ended (BFINAL) is replaced.
   */
  private streamed(op: Operation): Effect.Effect<ZlibOutcome> {
    return Effect.callback<ZlibOutcome>((resume) => {
      let settled = false
      const finish = (outcome: ZlibOutcome) => {
        if (settled) return
        settled = true
        this.sink = undefined
        this.failure = undefined
        resume(Effect.succeed(this.settle(op, outcome)))
      }
      if (this.released) return finish({ _tag: "Failed", error: new Error("the zlib context was released") })
      if (this.lost) return finish(LOST)
      const stream = this.open()
      const input = op.input.length === 1 ? op.input[0]! : Buffer.concat(op.input)
      const before = stream.bytesWritten
      const fail = (error: Error) => {
        if (settled) return
        this.drop()
        finish({ _tag: "Failed", error })
      }
      this.sink = (chunk) => {
        if (settled) return
        op.total += chunk.length
        if (op.total > op.limit) {
          this.drop()
          finish({ _tag: "TooBig", limit: op.limit })
        } else if (op.text && !validText(op, chunk, 0, chunk.length)) {
          this.drop() // mid-message: the context's state is of no use any more
          finish(INVALID_UTF8)
        } else {
          op.chunks.push(chunk)
        }
      }
      this.failure = fail
      stream.write(input)
      stream.flush(SYNC_FLUSH, () => {
        if (settled || this.stream !== stream) return
        if (stream.errored != null || stream.destroyed) return fail(stream.errored ?? new Error("zlib failed"))
        const unconsumed = input.length - (stream.bytesWritten - before)
        if (unconsumed > op.trailer) return fail(new Error("data after the final deflate block"))
        // Nothing carries over, or the peer's stream ended (its next message starts a new one).
        if (this.shared || unconsumed > 0) this.drop()
        // The whole message was inflated; its text must not end inside a character.
        finish(op.text && op.utf8 !== 0 ? INVALID_UTF8 : { _tag: "Done", output: Buffer.concat(op.chunks, op.total) })
      })
    })
  }

  private stepOnce(op: Operation): ZlibOutcome | undefined {
    if (this.released) return { _tag: "Failed", error: new Error("the zlib context was released") }
    if (this.lost) return LOST
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
      if (op.text && produced > 0 && !validText(op, scratch, used, used + produced)) {
        op.chunks.length = 0
        this.drop() // mid-message: the context's state is of no use any more
        return INVALID_UTF8
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

/** `buffer`, or a copy at its size when it is a small view of a larger allocation (node:zlib's output chunk). */
const ownCopy = (buffer: Buffer): Buffer => buffer.byteLength * 2 < buffer.buffer.byteLength ? Buffer.from(buffer) : buffer

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
  /** The inflated-size limit: the configured one, lowered to the session's (`limitIncomingMessageSize`). */
  private maxMessageSize: number
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

  /** Lowers the inflated-size limit to the session's `maxMessageSize` when that is smaller. */
  limitIncomingMessageSize(bytes: number): void {
    if (bytes < this.maxMessageSize) this.maxMessageSize = Math.max(0, bytes)
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

  /** Whether to compress `message`: true, false, or what `compressIf` threw (wrapped, to tell it from a value). */
  private shouldCompress(message: Extension.Message): boolean | { readonly thrown: unknown } {
    if (message.rsv1) return false
    if (message.payload.length <= this.threshold) return false
    if (this.config.compressIf === undefined) return true
    try {
      return this.config.compressIf(message)
    } catch (thrown) {
      return { thrown }
    }
  }

  /**
   * The message `outgoingUnchanged` last found not to pass through, and why (compress it, or
   * `compressIf` threw): its hook call does not ask `compressIf` again.
   */
  private toCompress: Extension.Message | undefined = undefined
  private decision: true | { readonly thrown: unknown } = true

  // Methods (the session calls them on the extension), so an instance holds no closures for them.
  outgoingUnchanged(message: Extension.Message): boolean {
    const decision = this.deflater === undefined ? false : this.shouldCompress(message)
    // A throwing compressIf: the hook reports it (`ExtensionError`), so this never throws.
    this.toCompress = decision === false ? undefined : message
    if (decision !== false) this.decision = decision
    return decision === false
  }

  incomingUnchanged(message: Extension.Message): boolean {
    return !message.rsv1
  }

  readonly processOutgoingMessage = (
    message: Extension.Message
  ): Effect.Effect<Extension.Message, Errors.ExtensionError> => {
    const deflater = this.deflater
    const decision = this.toCompress === message ? this.decision : deflater === undefined ? false : this.shouldCompress(message)
    this.toCompress = undefined
    if (deflater === undefined || decision === false) return Effect.succeed(message)
    if (decision !== true) {
      return Effect.fail(extensionError(`compressIf threw: ${String(decision.thrown)}`.slice(0, 120), decision.thrown))
    }
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
): Effect.Effect<Extension.Message, Errors.ProtocolViolation | Errors.FrameTooBig | Errors.ExtensionError> => {
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
    case "Lost":
      return Effect.fail(extensionError("A message was abandoned mid-inflation: the peer's compressed stream cannot be decoded"))
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
