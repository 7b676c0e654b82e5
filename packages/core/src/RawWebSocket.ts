/**
 * `RawWebSocket`: a WebSocket session that exchanges frames as they are (Ktor's
 * `RawWebSocket`): no automatic Pong, no Close echo, no reassembly, no extensions applied.
 * A `WebSocketReader` feeds `incoming` (created on first use: a default session on top
 * takes the frames straight from the reader instead); a `WebSocketWriter` drains the outgoing
 * mailbox. Each runs a fiber only while it has work (over a transport with `poll`; otherwise the
 * reader keeps one fiber waiting on `read`), so an idle session holds no fiber; both are tied to
 * the caller's scope. A protocol violation from the peer sends the right Close (1002/1007/1009)
 * and fails `incoming`.
 *
 * @module
 */
import { type CloseReason, Frame, FrameParser } from "@effect-ws/codec"
import { type Cause, Context, Effect, type Fiber, type Queue, Scope, Sink } from "effect"
import * as ChannelsConfig from "./ChannelsConfig.ts"
import type { ChannelOverflow, ExtensionConflict, OutgoingClosed } from "./Errors.ts"
import { checkConflicts, claimedBits, type WebSocketExtension } from "./Extension.ts"
import type { Transport } from "./Transport.ts"
import { type RawIncomingError, WebSocketReader } from "./WebSocketReader.ts"
import { WebSocketWriter } from "./WebSocketWriter.ts"

/** Which end of the connection this session is: servers read masked frames and write unmasked ones, clients the reverse. */
export type Role = FrameParser.Role

/** Options of `RawWebSocket.make`. */
export interface RawWebSocketOptions {
  readonly role: Role
  /** Mask outgoing frames (default: true for clients, false for servers, as RFC 6455 §5.1 requires). */
  readonly masking?: boolean
  /** Largest payload of one incoming frame; a larger header fails 1009 before its payload is buffered (default 64 MiB). */
  readonly maxFrameSize?: number
  /** Queue capacities and overflow policies (default `ChannelsConfig.DEFAULT`). */
  readonly channels?: ChannelsConfig.ChannelsConfig
  /** Negotiated extensions. The raw session lets their RSV bits through but does not apply them. */
  readonly extensions?: ReadonlyArray<WebSocketExtension>
}

/** The errors a raw `send` can fail with. */
export type SendError = OutgoingClosed | ChannelOverflow

/** A frame-level WebSocket session. */
export interface RawWebSocket {
  readonly role: Role
  /** Whether outgoing frames are masked. */
  readonly masking: boolean
  /** Negotiated extensions (not applied by the raw session). */
  readonly extensions: ReadonlyArray<WebSocketExtension>
  readonly channels: ChannelsConfig.ChannelsConfig
  /** Largest accepted incoming frame payload; may be changed while the session runs. */
  maxFrameSize: number
  /**
   * Frames as received, in order. Ends (`Cause.Done`) after a Close frame, which is the last
   * frame delivered. Fails with `ProtocolViolation`/`FrameTooBig` (after the frames parsed
   * before the violation; a Close with the matching code was sent), `AbnormalClosure` (input
   * ended without a Close) or `ChannelOverflow` (a `"fail"` incoming queue was full; Close 1008 sent).
   */
  readonly incoming: Queue.Dequeue<Frame.Frame, RawIncomingError | Cause.Done>
  /**
   * Queues a frame for writing as it is. Fails with `OutgoingClosed` after a Close frame was
   * sent, or `ChannelOverflow` when the outgoing queue is full with policy `"fail"`; suspends
   * when it is full with policy `"suspend"`.
   */
  readonly send: (frame: Frame.Frame) => Effect.Effect<void, SendError>
  /** A sink that sends every frame it receives (see `send`). */
  readonly outgoing: Sink.Sink<void, Frame.Frame, never, SendError>
  /** Completes once every frame sent before it was handed to the transport (or the writer stopped). Never fails. */
  readonly flush: Effect.Effect<void>
  /** Ends the session at once without a Close frame: the transport is destroyed, `incoming` fails with `AbnormalClosure`. */
  readonly terminate: Effect.Effect<void>
  /** Completes when both the reader and the writer have stopped. */
  readonly closed: Effect.Effect<void>
  /** The transport this session runs over. */
  readonly transport: Transport
  /** The reader state (for sessions built on top of this one). */
  readonly reader: WebSocketReader
  /** The writer state (for sessions built on top of this one). */
  readonly writer: WebSocketWriter
  /**
   * The reader and writer fibers running now (for diagnostics and tests). Each runs only while
   * it has work (see `WebSocketReader` and `WebSocketWriter`): an idle session has none.
   */
  readonly fibers: ReadonlyArray<Fiber.Fiber<void>>
}

/** The extensions of a session without any (shared: a session keeps its list). */
const NO_EXTENSIONS: ReadonlyArray<WebSocketExtension> = Object.freeze([])

/** Bits of `Raw.bits`. */
const CLIENT = 1
const MASKING = 2

/** The raw session object: state in fields, the API as getters (nothing allocated until used). */
class Raw implements RawWebSocket {
  /** The role (`CLIENT`) and `masking` (`MASKING`), one bit each. */
  private readonly bits: number
  readonly extensions: ReadonlyArray<WebSocketExtension>
  readonly channels: ChannelsConfig.ChannelsConfig
  readonly transport: Transport
  readonly reader: WebSocketReader
  readonly writer: WebSocketWriter
  private boundSend: RawWebSocket["send"] | undefined = undefined
  /** A session on top that says goodbye from this session's finalizer (see `closeFirst`). */
  before: ScopeCloseHook | undefined = undefined
  /** The finalizer `make` registers (`closeScope` bound: no closure context per session). */
  readonly finalizer: () => Effect.Effect<void> = this.closeScope.bind(this)

  constructor(
    role: Role,
    masking: boolean,
    extensions: ReadonlyArray<WebSocketExtension>,
    channels: ChannelsConfig.ChannelsConfig,
    transport: Transport,
    parser: FrameParser.FrameParser,
    writer: WebSocketWriter,
    services: Context.Context<never>
  ) {
    this.bits = (role === "client" ? CLIENT : 0) | (masking ? MASKING : 0)
    this.extensions = extensions
    this.channels = channels
    this.transport = transport
    this.writer = writer
    this.reader = new WebSocketReader(transport, parser, channels.incoming, this, services)
  }

  get role(): Role {
    return (this.bits & CLIENT) !== 0 ? "client" : "server"
  }

  get masking(): boolean {
    return (this.bits & MASKING) !== 0
  }


  /** The reader's `SendClose`: a Close frame on behalf of the reader (violations, overflow). */
  sendClose(reason: CloseReason.CloseReason): boolean {
    return this.writer.tryEnqueue(Frame.close(reason), true)
  }

  /** What closing the scope runs: the hook of a session on top (if any), then `shutdown`. */
  closeScope(): Effect.Effect<void> {
    const before = this.before
    if (before === undefined) return this.shutdown()
    // As two finalizers would: the hook first, the shutdown even if it failed, its exit kept.
    return Effect.flatMap(Effect.exit(Effect.suspend(() => before.onScopeClose())), (exit) =>
      Effect.andThen(Effect.suspend(() => this.shutdown()), exit))
  }

  /** The scope finalizer: stops the reader, then the writer, then destroys the transport. */
  shutdown(): Effect.Effect<void> {
    return Effect.andThen(this.reader.shutdown(), Effect.andThen(Effect.suspend(() => this.writer.shutdown()), this.transport.destroy))
  }

  get maxFrameSize(): number {
    return this.reader.parser.maxFrameSize
  }

  set maxFrameSize(size: number) {
    this.reader.parser.maxFrameSize = size
  }

  get incoming(): Queue.Dequeue<Frame.Frame, RawIncomingError | Cause.Done> {
    return this.reader.incoming
  }

  get send(): RawWebSocket["send"] {
    return this.boundSend ??= (frame) => this.writer.enqueue(frame)
  }

  get outgoing(): Sink.Sink<void, Frame.Frame, never, SendError> {
    return Sink.forEach(this.send)
  }

  get flush(): Effect.Effect<void> {
    return this.writer.flush
  }

  get terminate(): Effect.Effect<void> {
    return this.transport.destroy
  }

  get closed(): Effect.Effect<void> {
    return Effect.andThen(this.writer.done, this.reader.done)
  }

  get fibers(): ReadonlyArray<Fiber.Fiber<void>> {
    const reading = this.reader.currentFiber
    const writing = this.writer.currentFiber
    const fibers: Array<Fiber.Fiber<void>> = []
    if (reading !== undefined) fibers.push(reading)
    if (writing !== undefined) fibers.push(writing)
    return fibers
  }
}

/**
 * Starts a raw session over a transport in the current scope: a reader and a writer whose fibers
 * (while they run) are interrupted when the scope closes, after which the transport is destroyed. No Close is sent on
 * scope close (raw sessions do their own close handshake). Reading starts at the next scheduler
 * turn, so a default session made on it in the same step gets every frame. Fails with `ExtensionConflict` when two
 * extensions claim the same RSV bit.
 */
export const make = (
  transport: Transport,
  options: RawWebSocketOptions
): Effect.Effect<RawWebSocket, ExtensionConflict, Scope.Scope> => {
  const extensions = options.extensions ?? NO_EXTENSIONS
  // Built synchronously in one step (no generator): this runs once per connection.
  const start = Effect.contextWith((services: Context.Context<Scope.Scope>) => {
    const channels = options.channels ?? ChannelsConfig.DEFAULT
    const masking = options.masking ?? options.role === "client"
    const parser = new FrameParser.FrameParser(parserOptionsOf(options, transport, extensions))
    const writer = new WebSocketWriter(transport, masking, channels.outgoing)
    const raw = new Raw(options.role, masking, extensions, channels, transport, parser, writer, services)
    // One finalizer for the whole session (not one per part): reader, then writer, then transport.
    return Effect.map(Scope.addFinalizerExit(Context.get(services, Scope.Scope), raw.finalizer), () => {
      writer.startWith(services)
      // At the next turn: a session made on `raw` in the same step attaches first (see `startSoon`).
      raw.reader.startSoon()
      return raw
    })
  })
  // One extension cannot conflict with itself.
  return extensions.length < 2 ? start : Effect.andThen(checkConflicts(extensions), start)
}

type MutableParserOptions = { -readonly [K in keyof FrameParser.FrameParserOptions]: FrameParser.FrameParserOptions[K] }

/** The parser options of the common case (only a role and the transport's `allocate`), one frozen object per role and `allocate`. */
const sharedParserOptions: Record<Role, Array<FrameParser.FrameParserOptions>> = { server: [], client: [] }

/** The `FrameParser` options of a session: shared when only the role and `allocate` are set (most sessions). */
const parserOptionsOf = (
  options: RawWebSocketOptions,
  transport: Transport,
  extensions: ReadonlyArray<WebSocketExtension>
): FrameParser.FrameParserOptions => {
  const allocate = transport.allocate
  if (options.maxFrameSize === undefined && extensions.length === 0) {
    const shared = sharedParserOptions[options.role]
    for (const candidate of shared) if (candidate.allocate === allocate) return candidate
    const made: MutableParserOptions = { role: options.role }
    if (allocate !== undefined) made.allocate = allocate
    // Bounded: transports usually share one `allocate` (a prototype method); others get their own object.
    if (shared.length < 4) shared.push(Object.freeze(made))
    return made
  }
  const parserOptions: MutableParserOptions = { role: options.role }
  if (options.maxFrameSize !== undefined) parserOptions.maxFrameSize = options.maxFrameSize
  if (allocate !== undefined) parserOptions.allocate = allocate
  if (extensions.length > 0) parserOptions.allowedRsv = claimedBits(extensions)
  return parserOptions
}

/** What a session built on a raw session runs first when their scope closes (see `closeFirst`). */
export interface ScopeCloseHook {
  /**
   * Runs first when the raw session's scope closes, while its reader and writer still run; the
   * raw shutdown (reader, writer, transport) follows even if this effect dies.
   */
  onScopeClose(): Effect.Effect<void>
}

/**
 * Lets a session built on `raw` say goodbye from `raw`'s own scope finalizer (`hook` first, then
 * the raw shutdown, as two finalizers would run) instead of registering a finalizer of its own, so
 * a connection's scope holds one finalizer instead of two. Only when `raw` was made by `make` in
 * `scope`, its finalizer is still the scope's only one (nothing registered after it could run in
 * between) and the scope closes sequentially, and only once; returns whether it did.
 */
export const closeFirst = (raw: RawWebSocket, scope: Scope.Scope, hook: ScopeCloseHook): boolean => {
  if (!(raw instanceof Raw) || raw.before !== undefined || scope.strategy !== "sequential") return false
  const state = scope.state
  if (state._tag !== "Open" || state.finalizer !== raw.finalizer) return false
  raw.before = hook
  return true
}
