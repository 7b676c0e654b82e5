/**
 * `DefaultWebSocketSession`: the message-level session (Ktor's `DefaultWebSocketSession`).
 * On top of a `RawWebSocket` it reassembles fragmented messages (validating text as UTF-8 as the
 * bytes arrive), answers every Ping with its own Pong (reading pauses while more than
 * `maxPendingPongBytes` of them wait to be written), optionally sends Pings of its own, applies
 * extensions to whole messages (and optionally fragments large outgoing ones), runs the close
 * handshake with a timeout, and completes `closeReason` exactly once on every path a session
 * can end by.
 *
 * Footprint: the incoming frames are processed inside the raw reader's fiber and Pings are
 * answered by the raw writer, so a session adds no fiber to the raw session's (which run only
 * while there is input or output to handle: an idle session has none). Messages wait in a small
 * inbox that `receive` and `messages` take from; the `incoming` `Queue` is only created (and the
 * inbox moved into it) when it is first read. A session made in the raw session's scope closes
 * from the raw session's finalizer (one finalizer per connection), the reassembly state exists
 * only once a fragmented message arrived, and `closeReason` is created when first read.
 * `scripts/bench/session-memory.ts` measures the bytes per session.
 *
 * Close reasons (RFC 6455 §7.1.5 and design.md §5):
 * - the peer sent the first Close: its code and reason (1005 when it had no code), echoed back;
 * - we sent the first Close (`close`, `closeExceptionally`, `run`, scope close): the reason we sent,
 *   once the peer's Close arrived (a server closing its scope does not wait for it);
 * - a violation, a too-big message or an incoming overflow: the code we sent (1002/1007/1009/1008);
 * - ping timeout: 1011 "Ping timeout"; close timeout or EOF/reset without a Close: 1006 (never sent).
 *   Also when our Close went out and the peer then dropped the connection (EOF or reset) without
 *   its own, as `ws` does: the handshake did not complete. The session ends with `AbnormalClosure`,
 *   whose `sent` is the Close we had sent.
 *
 * Replies before the Close: when the peer's input turns bad (a frame with RSV bits no extension
 * claims, a reserved opcode, a continuation with nothing to continue, invalid UTF-8, a message
 * too big, an extension failing on it) after valid messages, those messages are still delivered
 * and our Close (1002/1007/1009/1011) waits until the handler has taken them:
 * - `consumeEach`: until `f` completed on each of them (it is back for the next batch);
 * - `messages`: until the stream pulls again after the chunk holding the last of them (so
 *   `Stream.runForEach` ran its `f` on each);
 * - `receive`, and `incoming` taken directly: until the last of them was returned (takes straight
 *   from the `incoming` queue are checked every 10 ms).
 * The taker then has one more scheduler turn: a reply it sends without waiting for anything else
 * is queued, and written, before the Close; one sent after the Close fails with `OutgoingClosed`.
 * The wait is bounded by `closeTimeout`: after it the Close goes out anyway and the messages not
 * taken yet are dropped (takers get the failure); the close handshake then has its own
 * `closeTimeout`. `close` and the scope closing end the wait at once, sending the failure's
 * Close instead of their own; `terminate` ends it without a Close. Nothing after the bad input is
 * processed, and the session ends with the failure (`ProtocolViolation` with code 1002, …), its
 * code in `closeReason`. Not held back: an incoming overflow (1008, the application is the slow
 * party), and a failure after our own Close (nothing can be answered any more).
 *
 * @module
 */
import { CloseReason, Frame, type FrameParser, Utf8 } from "@effect-ws/codec"
import type * as Arr from "effect/Array"
import { Cause, Context, Deferred, Duration, Effect, Exit, Fiber, Queue, Scheduler, Scope, Sink, Stream } from "effect"
import * as ChannelsConfig from "./ChannelsConfig.ts"
import { defineFlags } from "./internal/flags.ts"
import {
  AbnormalClosure,
  ChannelOverflow,
  CloseTimeout,
  type ExtensionNotFound,
  ConnectionClosed,
  ExtensionError,
  FrameTooBig,
  InvalidCloseReason,
  OutgoingClosed,
  PingTimeout,
  ProtocolViolation,
  type SessionError
} from "./Errors.ts"
import {
  findExtension,
  getExtension,
  type Message,
  type WebSocketExtension,
  type WebSocketExtensionFactory
} from "./Extension.ts"
import { closeFirst, type RawWebSocket, type Role } from "./RawWebSocket.ts"
import type { FrameHandler, RawIncomingError } from "./WebSocketReader.ts"
import type { WebSocketWriter } from "./WebSocketWriter.ts"

/** A whole message: a Text or Binary frame with `fin` set (re-exported from `Extension`). */
export type { Message } from "./Extension.ts"

/** Options of `DefaultWebSocketSession.make`. */
export interface DefaultWebSocketSessionOptions {
  /** Send a Ping this often (default: never). The first Ping goes out one interval after the start. */
  readonly pingInterval?: Duration.Input
  /** How long to wait for the Pong (from sending the Ping) before closing with 1011 (default 15 s). */
  readonly pingTimeout?: Duration.Input
  /**
   * How long the close handshake may take once it started before the transport is destroyed
   * (default `DEFAULT_CLOSE_TIMEOUT`, 10 s). A client also waits this long at most for the
   * server's Close and EOF when its scope closes or `run` ends (RFC 6455 §7.1.1: the server closes
   * the TCP connection first); if they do not come, `closeReason` is 1006 "Close handshake timed out".
   * It also bounds how long a failure caused by the peer's input waits for the handler to take the
   * messages that arrived before it (see "Replies before the Close" in the module notes).
   */
  readonly closeTimeout?: Duration.Input
  /**
   * Largest message in bytes (default: the raw session's `maxFrameSize` when the session is made).
   * Checked by the raw parser at every data frame header, against the frame's declared length
   * plus what the message's earlier frames declared, so an over-long message fails 1009 before
   * its bytes are buffered; a message an extension transformed is checked again after it, and
   * each extension is told the limit (`limitIncomingMessageSize`: permessage-deflate stops
   * inflating as soon as the output passes it).
   */
  readonly maxMessageSize?: number
  /** Most fragments one message may have; more fails 1009 (default 1,048,576). */
  readonly maxFragments?: number
  /** The Close sent when the session's scope closes while it is open (default 1001 for servers, 1000 for clients). */
  readonly scopeCloseReason?: CloseReason.CloseReason
  /**
   * Split every outgoing message whose payload (after the extensions) is larger than this into
   * frames of at most this many payload bytes: the first keeps the message's opcode and RSV bits,
   * the rest are Continuation frames without RSV bits, and no other data frame is sent between
   * them. An integer ≥ 1 (else `make` dies with a `RangeError`). Default: no fragmentation.
   */
  readonly outgoingFragmentSize?: number
  /**
   * Every Ping is answered by its own Pong, in order; this bounds the Pongs waiting to be written
   * (their bytes on the wire, headers included). Past it the session stops reading from the
   * transport until the writer has handed enough of them over (see `DEFAULT_MAX_PENDING_PONG_BYTES`
   * for why it pauses rather than closing). A number ≥ 0 (else `make` dies with a `RangeError`);
   * `Infinity` never pauses. Default `DEFAULT_MAX_PENDING_PONG_BYTES` (64 KiB).
   */
  readonly maxPendingPongBytes?: number
}

/** The errors sending a message can fail with. */
export type SendError = OutgoingClosed | ChannelOverflow | ExtensionError

/** A message-level WebSocket session. Every `Effect` here fails only with the tagged errors it names. */
export interface WebSocketSession {
  readonly role: Role
  /** The raw session underneath (frames as they are). Do not read its `incoming`. */
  readonly raw: RawWebSocket
  /** The negotiated extensions, applied to every message in order. */
  readonly extensions: ReadonlyArray<WebSocketExtension>
  /** The installed extension built by `factory`; fails with `ExtensionNotFound` when there is none (Ktor's `extension`). */
  readonly extension: <Ext extends WebSocketExtension>(
    factory: WebSocketExtensionFactory<never, Ext>
  ) => Effect.Effect<Ext, ExtensionNotFound>
  /** The installed extension built by `factory`, or `null` (Ktor's `extensionOrNull`). */
  readonly extensionOrNull: <Ext extends WebSocketExtension>(factory: WebSocketExtensionFactory<never, Ext>) => Ext | null
  /**
   * Whole messages as received (Text payloads are valid UTF-8). When the session ends, messages
   * already received are still delivered, then every taker fails with the one `SessionError` that
   * ended it (`ConnectionClosed` for a completed close handshake). Created when first read (taking
   * over the messages waiting in the session's inbox); `receive` and `messages` need no queue.
   * After the peer's bad input, our Close waits until this queue is empty (checked every 10 ms;
   * at most `closeTimeout`; see the module notes).
   */
  readonly incoming: Queue.Dequeue<Message, SessionError>
  /**
   * The next message; fails with the `SessionError` that ended the session once it has ended. After
   * the peer's bad input, our Close waits until the messages before it were received, plus one
   * scheduler turn for an immediate reply (at most `closeTimeout`; see the module notes).
   */
  readonly receive: Effect.Effect<Message, SessionError>
  /**
   * The messages as a stream; ends after a normal close (`ConnectionClosed`), fails with any other
   * `SessionError`. After the peer's bad input, our Close waits until the stream pulled again after
   * the messages before it, i.e. they were handled (at most `closeTimeout`; see the module notes).
   */
  readonly messages: Stream.Stream<Message, Exclude<SessionError, ConnectionClosed>>
  /**
   * Runs `f` on every message, in order, each after the previous one's effect completed, until the
   * session ends (Ktor's `incoming.consumeEach`). Succeeds after a normal close
   * (`ConnectionClosed`); fails with the first failure of `f`, or with any other `SessionError`.
   * Does what `Stream.runForEach(messages, f)` does without the stream machinery: the cheapest
   * way to serve a connection (about 1.1 KB less heap per waiting connection). After the peer's
   * bad input, our Close waits until `f` completed on every message before it, so the replies `f`
   * sends go out first (at most `closeTimeout`; see the module notes).
   */
  consumeEach<E, R>(
    f: (message: Message) => Effect.Effect<unknown, E, R>
  ): Effect.Effect<void, E | Exclude<SessionError, ConnectionClosed>, R>
  /** Sends a Text (string) or Binary (bytes) message; see `SendError`. Suspends while the outgoing queue is full (policy `"suspend"`). */
  readonly send: (data: string | Uint8Array) => Effect.Effect<void, SendError>
  /**
   * Sends a frame. Whole Text/Binary messages go through the extensions; fragments, Ping and Pong
   * are sent as they are; a Close frame is `close` with its reason (`InvalidCloseReason` if the
   * payload is not a sendable Close payload).
   *
   * A fragmented message (a Text/Binary frame without `fin`, then Continuation frames up to one
   * with `fin`) holds the send gate from its first frame until its final one was queued: whole
   * messages (`send`, `sendFrame`, `outgoing`) and other fragmented messages sent meanwhile by
   * other fibers wait, in call order, and go out after the final fragment; none can come between
   * two fragments or overtake a message the extensions are still processing. Its first frame
   * waits for the gate like a whole message. Ping, Pong and Close are not held (RFC 6455 §5.4
   * allows control frames between fragments). A Continuation while no message is open is sent
   * as it is (the peer fails it with 1002).
   *
   * The bound: the message belongs to the fiber that sent its latest fragment (so it can be
   * handed over: another fiber may send the next fragment, and then owns it). When that fiber
   * ends (returns, fails or is interrupted) before the final fragment was queued, or sends a new
   * whole or fragmented message itself while its message is open, the message is abandoned: the
   * session closes with 1011 "Fragmented message left open" (a Close may come between fragments;
   * a truncated message is never completed on the peer's side), the gate is passed on, and every
   * sender waiting for it fails with `OutgoingClosed`, as does the new message. The session
   * ending any other way also releases the gate. A session that never sends fragments pays
   * nothing for this (one bit test per whole message without extensions).
   */
  readonly sendFrame: (frame: Frame.Frame) => Effect.Effect<void, SendError | InvalidCloseReason>
  /** A sink that sends every string (Text) or byte array (Binary) it receives. */
  readonly outgoing: Sink.Sink<void, string | Uint8Array, never, SendError>
  /**
   * Completes once every frame sent before it was handed to the transport, or once the writer
   * stopped (the scope closed or the transport failed: those frames may never be written). Never fails.
   */
  readonly flush: Effect.Effect<void>
  /**
   * Starts the close handshake with `reason` (default 1000) and waits until our Close is handed to
   * the transport; a no-op if the session is already closing. Fails with `InvalidCloseReason` for a
   * code an endpoint may not send (1005, 1006, 1015, reserved ranges) or a reason over 123 bytes.
   */
  readonly close: (reason?: CloseReason.CloseReason) => Effect.Effect<void, InvalidCloseReason>
  /** Closes with 1011 and the cause's message (cut to 123 bytes). Never fails. */
  readonly closeExceptionally: (cause: unknown) => Effect.Effect<void>
  /** Completed exactly once, with the reason the session ended (see the module notes). */
  readonly closeReason: Deferred.Deferred<CloseReason.CloseReason>
  /**
   * Waits for `closeReason`. Do not wait for it in a finalizer of the handler given to `run` (or to a
   * server): an interrupted handler's finalizers run before the session can end, so that wait would
   * never finish. Fork the wait instead; `closeReason` completes on every ending path.
   */
  readonly awaitClose: Effect.Effect<CloseReason.CloseReason>
  /** Ends the session at once without a Close frame (the transport is destroyed). */
  readonly terminate: Effect.Effect<void>
  /**
   * Runs a handler with this session (Ktor's server `webSocket { }`): when it succeeds the session
   * closes with 1000, when it fails with 1011 (its error is then re-raised); either way it waits
   * until the session has ended and our last Close frame was handed to the transport (bounded by
   * the close timeout). A client then also waits for the server to close the connection (its EOF),
   * bounded by the close timeout, and destroys the transport. On interruption it does nothing: the
   * scope's finalizer closes the session.
   */
  readonly run: <A, E, R>(handler: (session: WebSocketSession) => Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * The raw reader and writer fibers running now plus the session's own (pinger, closer, when
   * running), for diagnostics: an idle session without a pinger over a transport with `poll` runs
   * none; none is running once the scope closed.
   */
  readonly fibers: () => ReadonlyArray<Fiber.Fiber<unknown, unknown>>
}

const DEFAULT_PING_TIMEOUT = Duration.seconds(15)

/** The default `closeTimeout`: how long a close handshake may take before the transport is destroyed (10 s). */
export const DEFAULT_CLOSE_TIMEOUT: Duration.Duration = Duration.seconds(10)
const DEFAULT_MAX_FRAGMENTS = 1 << 20

/**
 * The default `maxPendingPongBytes`: 64 KiB of Pongs waiting to be written, about 500 Pongs with
 * 125-byte payloads (an Autobahn burst is 10), and the default high-water mark of Node's
 * streams and of `TestTransport`: a peer that reads its Pongs never meets it, while a flooded
 * connection holds at most this much (plus one Pong) beyond what any connection holds in its
 * socket buffers.
 *
 * Past the bound the session **pauses reading** instead of failing with 1008 (Policy Violation):
 * TCP then pushes back on the sender, exactly as a full incoming queue does. A peer that pings
 * fast but reads our Pongs is merely fast: it loses nothing and is not disconnected, and it slows
 * down to the rate at which it takes its Pongs; a peer that pings and never reads stalls its own
 * connection (its data frames wait behind its Pings), costing us a bounded buffer until the
 * application, a ping timeout or the close timeout ends it. Closing with 1008 would be cheaper
 * only for that last case, at the price of disconnecting a legitimate burst on a slow link.
 * Ktor does the same with its ponger's queue of 5 Pings, which suspends the reader when full.
 */
export const DEFAULT_MAX_PENDING_PONG_BYTES = 64 * 1024
/**
 * How often a session holding back a failure checks whether the `incoming` queue was emptied
 * (takes straight from that queue are not seen otherwise; see `Session.failAfterDrain`).
 */
const QUEUE_CHECK_INTERVAL = Duration.millis(10)

const NORMAL = CloseReason.CloseReason(1000)
const GOING_AWAY = CloseReason.CloseReason(1001)
const EMPTY = new Uint8Array(0)
const ABNORMAL_EOF = CloseReason.CloseReason(1006, "Connection closed without a Close frame")
const ABNORMAL_TIMEOUT = CloseReason.CloseReason(1006, "Close handshake timed out")
const PING_TIMEOUT = CloseReason.CloseReason(1011, "Ping timeout")
const INCOMING_OVERFLOW = CloseReason.CloseReason(1008, "Incoming queue overflow")
const FRAGMENT_LEFT_OPEN = CloseReason.CloseReason(1011, "Fragmented message left open")

/** Whether an effect is already a successful `Exit` (an extension hook that completed during its call). */
const completed = <A, E>(effect: Effect.Effect<A, E>): effect is Exit.Success<A, E> =>
  Exit.isExit(effect) && Exit.isSuccess(effect)

/** An extension's outgoing step in an effect chain: its hook, or the message itself when `outgoingUnchanged` accepts it. */
const outgoingHook = (extension: WebSocketExtension) => (message: Message): Effect.Effect<Message, ExtensionError> =>
  extension.outgoingUnchanged?.(message) === true ? Effect.succeed(message) : extension.processOutgoingMessage(message)

const violation = (kind: ProtocolViolation["kind"], code: 1002 | 1007, message: string): ProtocolViolation =>
  new ProtocolViolation({ kind, code, message })

const reasonOf = (code: number, message: string): CloseReason.CloseReason =>
  CloseReason.CloseReason(code, CloseReason.truncateReason(message))

/** Validates a reason we are about to send. */
const validateOutgoingReason = (reason: CloseReason.CloseReason): InvalidCloseReason | undefined =>
  !CloseReason.isSendable(reason.code) || Utf8.utf8Length(reason.message) > CloseReason.MAX_REASON_BYTES
    ? new InvalidCloseReason({ code: reason.code, message: reason.message })
    : undefined

/** The text of a failure cause, for a 1011 close reason. */
const describe = (cause: unknown): string => {
  if (cause instanceof Error) return cause.message === "" ? cause.name : `${cause.name}: ${cause.message}`
  if (typeof cause === "object" && cause !== null && "_tag" in cause) return String((cause as { _tag: unknown })._tag)
  return String(cause)
}

/** Splits a message into frames of at most `size` payload bytes (RSV bits on the first only). */
const fragment = (message: Message, size: number): Array<Frame.Frame> => {
  const payload = message.payload
  const count = Math.ceil(payload.length / size)
  const frames: Array<Frame.Frame> = []
  for (let i = 0; i < count; i++) {
    const chunk = payload.subarray(i * size, Math.min(payload.length, (i + 1) * size))
    const fin = i === count - 1
    frames.push(
      i === 0
        ? Frame.make(message._tag, fin, message.rsv1, message.rsv2, message.rsv3, chunk)
        : Frame.make("Continuation", fin, false, false, false, chunk)
    )
  }
  return frames
}

const concatBytes = (a: Uint8Array, length: number): Uint8Array => (a.length === length ? a : a.slice(0, length))

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

const hex = (bytes: Uint8Array): string => {
  let s = ""
  for (const b of bytes) s += b.toString(16).padStart(2, "0")
  return s
}

/** Ktor's ping payload: "[ping " + 64 random hex digits + " ping]" (76 bytes). */
const pingPayload = (): Uint8Array => {
  const random = new Uint8Array(32)
  globalThis.crypto.getRandomValues(random)
  return Utf8.encodeUtf8(`[ping ${hex(random)} ping]`)
}

/** One wake-up dispatcher per scheduler, shared by every session's inbox (like the writer's). */
const inboxDispatchers = new WeakMap<Scheduler.Scheduler, Scheduler.SchedulerDispatcher>()
const inboxDispatcherOf = (services: Context.Context<never>): Scheduler.SchedulerDispatcher => {
  const scheduler = Context.get(services, Scheduler.Scheduler)
  let dispatcher = inboxDispatchers.get(scheduler)
  if (dispatcher === undefined) {
    dispatcher = scheduler.makeDispatcher()
    inboxDispatchers.set(scheduler, dispatcher)
  }
  return dispatcher
}

/**
 * What a waiting taker wants: one message (`receive`), every buffered one for `consumeEach` (a
 * normal close is `undefined`), or every buffered one for a `messages` pull (a normal close is `Done`).
 */
const TAKE_ONE = 0
const TAKE_EACH = 1
const TAKE_PULL = 2
type TakeKind = typeof TAKE_ONE | typeof TAKE_EACH | typeof TAKE_PULL

/** Resumes a fiber waiting in `Inbox.takeEffect`. */
type Resume = (effect: Effect.Effect<any, any>) => void

/** A fiber waiting in `Inbox.takeEffect` behind the first one. */
interface Taker {
  readonly kind: TakeKind
  readonly resume: Resume
}

/** Bits of `Inbox.flags` (the session's booleans and the first taker's kind, in one number). */
const TAKER_KIND = 3 // the two low bits: the `TakeKind` of `taker`
const WAKE_SCHEDULED = 1 << 2
const HAS_QUEUE = 1 << 3
const INBOX_ENDED = 1 << 4
const HANDLER_ENDED = 1 << 5
const FINISHED = 1 << 6
const CLOSER_STARTED = 1 << 7
const SCOPE_CLOSING = 1 << 8
const DISCARDING = 1 << 9
const SEND_GATE_BUSY = 1 << 10
const DRAINING = 1 << 11
const BATCH_OUT = 1 << 12
const PARSER_VALIDATES_UTF8 = 1 << 13
const HOOK_VALIDATED_UTF8 = 1 << 14

/**
 * The rarely used state of a session, in one object created when first needed (closing, a
 * pinger, a second taker, a full inbox, a fragmented message, …): an idle session has none.
 */
class Extra {
  // ---- Inbox ----
  /** Why the session ended: takers get it once the buffered messages are taken. */
  end: SessionError | undefined = undefined
  /** Takers waiting behind `Inbox.taker` (rare: two fibers taking at once). */
  moreTakers: Array<Taker> | undefined = undefined
  /** Producers waiting for room (policy `"suspend"`), woken when messages are taken. */
  roomWaiters: Array<() => void> | undefined = undefined
  /** The real queue, once `incoming` was read. */
  realQueue: Queue.Queue<Message, SessionError> | undefined = undefined
  /** Resumes the wait of a held-back failure (`Session.failAfterDrain`) when a taker made progress. */
  drainWaiter: (() => void) | undefined = undefined

  // ---- Session ----
  /** `closeReason`, created when first read (completed at once if the session already ended). */
  closeReasonDeferred: Deferred.Deferred<CloseReason.CloseReason> | undefined = undefined
  /** The reason the session ended with, once it did. */
  endReason: CloseReason.CloseReason | undefined = undefined
  /** Created only to wait for the end of the incoming frames (`onEnd`). */
  handlerDoneDeferred: Deferred.Deferred<void> | undefined = undefined
  /** The reason of the Close we sent first, when we initiated the close handshake. */
  sentFirst: CloseReason.CloseReason | undefined = undefined
  /** Senders waiting for the send gate (see `Session.sendMessage`). */
  sendGateWaiters: Array<() => void> | undefined = undefined
  /**
   * While an outgoing fragmented message is open (it holds the send gate, see `sendFrame`): the
   * fiber that sent its latest fragment, and how to stop watching that fiber's end.
   */
  fragmentOwner: Fiber.Fiber<unknown, unknown> | undefined = undefined
  stopWatchingOwner: (() => void) | undefined = undefined
  /** A failure caused by the peer's input, held back until the application took the earlier messages (`Session.failAfterDrain`). */
  pendingFailure: { readonly error: SessionError; readonly reason: CloseReason.CloseReason } | undefined = undefined
  /** Fibers besides the raw ones (pinger, closer, a queue pump). */
  ownFibers: Array<Fiber.Fiber<unknown, unknown>> | undefined = undefined
  pingerFiber: Fiber.Fiber<void> | undefined = undefined
  closerFiber: Fiber.Fiber<void> | undefined = undefined
  /** The Pong payload the pinger waits for, and how it is told. */
  awaitedPong: Uint8Array | undefined = undefined
  pongArrived: Deferred.Deferred<void> | undefined = undefined
  /** The reassembly state, created with the first fragmented message (most sessions never see one). */
  assembly: Assembly | undefined = undefined
}

/** The functions a session hands out (bound to it), created when first used, in one object. */
class Bound {
  /** The inbox's wake-up task (see `Inbox.scheduleWake`). */
  wakeTask: (() => void) | undefined = undefined
  send: WebSocketSession["send"] | undefined = undefined
  sendFrame: WebSocketSession["sendFrame"] | undefined = undefined
  close: WebSocketSession["close"] | undefined = undefined
  closeExceptionally: WebSocketSession["closeExceptionally"] | undefined = undefined
  run: WebSocketSession["run"] | undefined = undefined
}

/**
 * The session's incoming messages (the base class of `Session`, so they cost no object of their
 * own), kept small while idle: an array (absent when empty), the first waiting taker (its kind in
 * `flags`), and the rest in `Extra`: the error that ended the session and any further takers.
 * Takers are woken from a scheduler task (as `Queue` wakes its takers, so messages that arrive
 * together are taken together). `receive` and `messages` take from here. The first read of the
 * session's `incoming` creates the real `Queue` (same capacity), moves the buffered messages and
 * the end into it, and from then on every operation here forwards to that queue.
 */
abstract class Inbox {
  /** The services the session was made with (the queue, the wake-up dispatcher and the scope come from them). */
  protected readonly services: Context.Context<never>
  /** Buffered messages from `head` on (taken slots are cleared); `undefined` when none. */
  private items: Array<Message | undefined> | undefined = undefined
  private head = 0
  /** The first waiting taker (its kind is `flags & TAKER_KIND`); any others are in `Extra.moreTakers`. */
  private taker: Resume | undefined = undefined
  /** Booleans of the inbox and the session, one bit each (accessors defined by `defineFlags` below). */
  protected flags = 0
  /** The rarely used state, created by `more` when first needed. */
  protected extra: Extra | undefined = undefined
  /** The bound functions, created by `bound` when first needed. */
  protected boundFunctions: Bound | undefined = undefined

  private declare wakeScheduled: boolean
  /** `Extra.realQueue` is set: every operation forwards to it. */
  private declare hasQueue: boolean
  /** `Extra.end` is set. */
  private declare inboxEnded: boolean
  /** A failure is held back until the messages before it were taken (`Session.failAfterDrain`). */
  protected declare draining: boolean
  /**
   * `consumeEach` or a `messages` pull took a batch and has not come back for more yet (`f` may
   * still be running on it, the stream may still be handling the chunk).
   */
  protected declare batchOut: boolean

  constructor(services: Context.Context<never>) {
    this.services = services
  }

  /** The capacity and overflow policy of the inbox (the raw session's `channels.incoming`). */
  protected abstract get inboxConfig(): ChannelsConfig.ChannelConfig

  /** The rarely used state, created on first use. */
  protected get more(): Extra {
    return this.extra ??= new Extra()
  }

  /** The bound functions, created on first use. */
  protected get bound(): Bound {
    return this.boundFunctions ??= new Bound()
  }

  /** The messages as a `Queue` (created, and filled with the buffered messages and the end, on first use). */
  protected get queue(): Queue.Queue<Message, SessionError> {
    if (this.hasQueue) return this.extra!.realQueue!
    const queue = Effect.runSyncWith(this.services)(ChannelsConfig.makeQueue<Message, SessionError>(this.inboxConfig))
    const items = this.items
    if (items !== undefined) Queue.offerAllUnsafe(queue, items.slice(this.head) as Array<Message>)
    this.items = undefined
    this.head = 0
    const extra = this.more
    if (extra.end !== undefined) Queue.failCauseUnsafe(queue, Cause.fail(extra.end))
    extra.realQueue = queue
    this.hasQueue = true
    // Everyone waiting here retries on the queue.
    const taker = this.taker
    const kind = (this.flags & TAKER_KIND) as TakeKind
    const more = extra.moreTakers
    this.taker = undefined
    extra.moreTakers = undefined
    if (taker !== undefined) taker(this.takeEffect(kind))
    if (more !== undefined) for (const t of more) t.resume(this.takeEffect(t.kind))
    this.releaseRoom()
    this.wakeDrainWaiter() // a held-back failure now watches the queue
    return queue
  }

  protected get inboxSize(): number {
    if (this.hasQueue) return Queue.sizeUnsafe(this.extra!.realQueue!)
    return this.items === undefined ? 0 : this.items.length - this.head
  }

  /** Buffers a message if there is room (and the session has not ended); wakes a waiting taker. */
  protected offer(message: Message): boolean {
    if ((this.flags & (HAS_QUEUE | INBOX_ENDED)) !== 0) {
      return this.hasQueue ? Queue.offerUnsafe(this.extra!.realQueue!, message) : false
    }
    const items = this.items
    if (items === undefined) this.items = [message]
    else if (items.length - this.head >= this.inboxConfig.capacity) return false
    else items.push(message)
    if (this.taker !== undefined) this.scheduleWake()
    return true
  }

  /** Waits until a message could be buffered again (or the session ended); the caller then offers again. */
  protected get waitForRoom(): Effect.Effect<void> {
    if (this.hasQueue) return Effect.void
    return Effect.callback<void>((resume) => {
      const wake = (): void => resume(Effect.void)
      const extra = this.more
      ;(extra.roomWaiters ??= []).push(wake)
      return Effect.sync(() => {
        const waiters = extra.roomWaiters
        const i = waiters === undefined ? -1 : waiters.indexOf(wake)
        if (i !== -1) waiters!.splice(i, 1)
      })
    })
  }

  /** Offers a message, waiting for room (policy `"suspend"` on the real queue). */
  protected offerWaiting(message: Message): Effect.Effect<void> {
    return Effect.asVoid(Queue.offer(this.extra!.realQueue!, message))
  }

  /** Whether the real queue exists (`incoming` was read). */
  protected get inboxHasQueue(): boolean {
    return this.hasQueue
  }

  /** Ends the inbox: takers get the buffered messages, then `error`. */
  protected failInbox(error: SessionError): void {
    if (this.hasQueue) {
      Queue.failCauseUnsafe(this.extra!.realQueue!, Cause.fail(error))
      return
    }
    if (this.inboxEnded) return
    this.more.end = error
    this.inboxEnded = true
    if (this.inboxSize === 0) this.wakeTakers() // nothing left to take: fail them now (as `Queue` does)
    else if (this.taker !== undefined) this.scheduleWake()
    this.releaseRoom()
  }

  /** Takes one message (`TAKE_ONE`), or every buffered one, waiting for at least one. */
  protected takeEffect(kind: typeof TAKE_ONE): Effect.Effect<Message, SessionError>
  protected takeEffect(
    kind: typeof TAKE_EACH
  ): Effect.Effect<Arr.NonEmptyArray<Message> | undefined, Exclude<SessionError, ConnectionClosed>>
  protected takeEffect(
    kind: typeof TAKE_PULL
  ): Effect.Effect<Arr.NonEmptyArray<Message>, Exclude<SessionError, ConnectionClosed> | Cause.Done>
  protected takeEffect(kind: TakeKind): Effect.Effect<any, any>
  protected takeEffect(kind: TakeKind): Effect.Effect<any, any> {
    return Effect.suspend(() => {
      if ((this.flags & (BATCH_OUT | DRAINING)) !== 0) this.takerReturned(kind)
      if (this.hasQueue) {
        const queue = this.extra!.realQueue!
        if (kind === TAKE_ONE) {
          return Effect.map(Queue.take(queue), (message) => {
            if (this.draining) this.wakeDrainWaiter()
            return message
          })
        }
        const all = Effect.map(Queue.takeAll(queue), (batch) => {
          this.batchOut = true
          return batch
        })
        return Effect.catchTag(all, "ConnectionClosed", () => kind === TAKE_EACH ? Effect.undefined : Cause.done())
      }
      return this.poll(kind) ?? Effect.callback<unknown, unknown>((resume) => {
        if (this.taker === undefined) {
          this.taker = resume
          this.flags = (this.flags & ~TAKER_KIND) | kind
        } else {
          ;(this.more.moreTakers ??= []).push({ kind, resume })
        }
        return Effect.sync(() => this.removeTaker(resume))
      })
    })
  }

  /** What a take gets right now, or `undefined` when it must wait. */
  private poll(kind: TakeKind): Exit.Exit<unknown, unknown> | undefined {
    const items = this.items
    if (items !== undefined) {
      let taken: Message | Arr.NonEmptyArray<Message>
      if (kind === TAKE_ONE) {
        taken = items[this.head]!
        items[this.head++] = undefined
        if (this.head === items.length) {
          this.items = undefined
          this.head = 0
        } else if (this.head >= 64 && this.head * 2 >= items.length) {
          items.splice(0, this.head) // a taker that keeps up one at a time: drop the taken slots
          this.head = 0
        }
      } else {
        taken = (this.head === 0 ? items : items.slice(this.head)) as unknown as Arr.NonEmptyArray<Message>
        this.items = undefined
        this.head = 0
        this.flags |= BATCH_OUT
      }
      this.releaseRoom()
      // Resumes a held-back failure's wait, which yields before it acts: the taker gets this first.
      if ((this.flags & DRAINING) !== 0) this.wakeDrainWaiter()
      return Exit.succeed(taken)
    }
    if (!this.inboxEnded) return undefined
    const end = this.extra!.end!
    if (end._tag !== "ConnectionClosed" || kind === TAKE_ONE) return Exit.fail(end)
    return kind === TAKE_EACH ? Exit.void : Exit.fail(Cause.Done())
  }

  /**
   * A taker is back (`takeEffect` runs again): `consumeEach` completed `f` on every message of its
   * last batch, a `messages` consumer handled its last chunk, a `receive` caller its last message.
   */
  private takerReturned(kind: TakeKind): void {
    if (kind !== TAKE_ONE) this.flags &= ~BATCH_OUT
    if ((this.flags & DRAINING) !== 0) this.wakeDrainWaiter()
  }

  /** Resumes the wait of a held-back failure (it checks again whether the earlier messages were taken). */
  protected wakeDrainWaiter(): void {
    const extra = this.extra
    const waiter = extra?.drainWaiter
    if (waiter === undefined) return
    extra!.drainWaiter = undefined
    waiter()
  }

  /** Drops the buffered messages (a held-back failure waited `closeTimeout` for them in vain). */
  protected get dropBuffered(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.hasQueue) return Effect.ignore(Queue.clear(this.extra!.realQueue!))
      this.items = undefined
      this.head = 0
      this.releaseRoom()
      return Effect.void
    })
  }

  private removeTaker(resume: Resume): void {
    const more = this.extra?.moreTakers
    if (this.taker === resume) {
      const next = more === undefined ? undefined : more.shift()
      this.taker = next?.resume
      if (next !== undefined) this.flags = (this.flags & ~TAKER_KIND) | next.kind
      if (more !== undefined && more.length === 0) this.extra!.moreTakers = undefined
      return
    }
    const i = more === undefined ? -1 : more.findIndex((t) => t.resume === resume)
    if (i !== -1) more!.splice(i, 1)
  }

  private scheduleWake(): void {
    if (this.wakeScheduled) return
    this.wakeScheduled = true
    const bound = this.bound
    inboxDispatcherOf(this.services).scheduleTask(bound.wakeTask ??= () => {
      this.wakeScheduled = false
      this.wakeTakers()
    }, 0)
  }

  /** Resumes waiting takers in order while there is something for them. */
  private wakeTakers(): void {
    while (this.taker !== undefined && !this.hasQueue) {
      const taker = this.taker
      const result = this.poll((this.flags & TAKER_KIND) as TakeKind)
      if (result === undefined) return
      this.removeTaker(taker)
      taker(result)
    }
  }

  private releaseRoom(): void {
    const waiters = this.extra?.roomWaiters
    if (waiters === undefined || waiters.length === 0) return
    this.extra!.roomWaiters = undefined
    for (const wake of waiters) wake()
  }
}

/** A fragmented message being reassembled (one per session, created with its first fragmented message). */
class Assembly {
  open: "Text" | "Binary" | undefined = undefined
  rsv1 = false
  rsv2 = false
  rsv3 = false
  buffer: Uint8Array = EMPTY
  size = 0
  fragments = 0
  utf8: Utf8.Utf8Validator | undefined = undefined
  validateOnTheFly = false

  /** Starts a message with its first (non-final) frame. */
  begin(frame: Frame.Text | Frame.Binary, validate: boolean): void {
    this.open = frame._tag
    this.rsv1 = frame.rsv1
    this.rsv2 = frame.rsv2
    this.rsv3 = frame.rsv3
    this.size = 0
    this.fragments = 1
    this.validateOnTheFly = validate
    if (validate) (this.utf8 ??= new Utf8.Utf8Validator()).reset()
  }

  append(payload: Uint8Array, maxMessageSize: number): void {
    const needed = this.size + payload.length
    if (needed > this.buffer.length) {
      const grown = new Uint8Array(
        Math.min(Math.max(needed, this.buffer.length * 2, 256), Math.max(needed, maxMessageSize))
      )
      grown.set(this.buffer.subarray(0, this.size))
      this.buffer = grown
    }
    this.buffer.set(payload, this.size)
    this.size = needed
  }

  /** No message open any more (completed, or abandoned after a failure); the buffer is released. */
  reset(): void {
    this.open = undefined
    this.buffer = EMPTY
    this.size = 0
  }
}

/** Why a batch of incoming frames stopped being processed synchronously. */
type DataResult = Message | undefined | FrameTooBig | ProtocolViolation

/**
 * One message-level session. Everything an idle connection holds lives in this object's fields
 * (its inbox is its base class, its booleans are bits of one number, and the rarely used state
 * is in an `Extra` created when first needed): the incoming frames are processed by
 * `onFrames`/`onEnd`, called from the raw reader's fiber (no fiber or queue of its own), Pings are
 * answered through the writer's Pong mailbox (created with the first Ping), and the functions of
 * the public API are bound only when first used.
 */
class Session extends Inbox implements WebSocketSession, FrameHandler {
  readonly raw: RawWebSocket
  private readonly options: DefaultWebSocketSessionOptions

  /** Set once the incoming frames ended (`onEnd` ran); `Extra.handlerDoneDeferred` is created only to wait for it. */
  private declare handlerEnded: boolean
  /** Set once the session's end is decided (`closeReason` completed). */
  private declare finished: boolean
  private declare closerStarted: boolean
  /** The scope is closing: no new fiber may be forked into it. */
  private declare scopeClosing: boolean
  /** After the session was failed by us, frames are read and discarded. */
  private declare discarding: boolean
  /**
   * The send gate of a session with extensions: extension processing + enqueue of one outgoing
   * message at a time, in call order (a compressor with context takeover depends on the wire
   * order matching the order it compressed in). Taken synchronously when free; waiters queue
   * (`Extra.sendGateWaiters`).
   */
  private declare sendGateBusy: boolean
  /**
   * The raw parser validates the UTF-8 of every text message without RSV bits as its bytes
   * arrive (see `validateUtf8In`): such messages need no check here.
   */
  private declare parserValidatesUtf8: boolean
  /**
   * The last incoming hook that ran (for the message being processed: one at a time) belongs to
   * an extension that `validatesIncomingUtf8`.
   */
  private declare hookValidatedUtf8: boolean

  constructor(raw: RawWebSocket, options: DefaultWebSocketSessionOptions, services: Context.Context<Scope.Scope>) {
    super(services)
    this.raw = raw
    this.options = options
  }

  protected get inboxConfig(): ChannelsConfig.ChannelConfig {
    return this.raw.channels.incoming
  }

  /**
   * Hands the UTF-8 check of text messages without RSV bits to the raw reader's parser, which
   * fails (1007) in the chunk that brings the first invalid byte instead of when the frame or the
   * message is complete (RFC 6455 §8.1 fail fast). Only when the parser then validates every text
   * message of this session from its first byte (`validatesAllText`: it validated from the start,
   * as the raw session's `validateUtf8` option asks, or no text message started before now);
   * otherwise the session keeps checking complete frames itself, as without this. Messages with
   * an RSV bit are checked after the extensions either way.
   */
  validateUtf8In(parser: FrameParser.FrameParser): void {
    const before = parser.validateUtf8
    parser.validateUtf8 = true
    if (parser.validatesAllText) this.parserValidatesUtf8 = true
    else parser.validateUtf8 = before // it would validate only later messages: checked here instead
  }

  /** The scope the session was made in (the closer is forked into it). */
  private get scope(): Scope.Scope {
    return Context.get(this.services as Context.Context<Scope.Scope>, Scope.Scope)
  }

  /** The reason of the Close we sent first, when we initiated the close handshake. */
  private get sentFirst(): CloseReason.CloseReason | undefined {
    return this.extra?.sentFirst
  }

  private set sentFirst(reason: CloseReason.CloseReason) {
    this.more.sentFirst = reason
  }

  /** The reason the session ended with, once it did. */
  private get endReason(): CloseReason.CloseReason | undefined {
    return this.extra?.endReason
  }
  private get closeTimeout(): Duration.Duration {
    const timeout = this.options.closeTimeout
    return timeout === undefined ? DEFAULT_CLOSE_TIMEOUT : Duration.fromInputUnsafe(timeout)
  }

  get role(): Role {
    return this.raw.role
  }

  get extensions(): ReadonlyArray<WebSocketExtension> {
    return this.raw.extensions
  }

  private get writer(): WebSocketWriter {
    return this.raw.writer
  }

  get closeReason(): Deferred.Deferred<CloseReason.CloseReason> {
    const extra = this.more
    if (extra.closeReasonDeferred !== undefined) return extra.closeReasonDeferred
    const deferred = Deferred.makeUnsafe<CloseReason.CloseReason>()
    if (extra.endReason !== undefined) Deferred.doneUnsafe(deferred, Exit.succeed(extra.endReason))
    return extra.closeReasonDeferred = deferred
  }

  /** Completes once the incoming frames ended (`onEnd` ran). */
  private get handlerDone(): Effect.Effect<void> {
    return Effect.suspend(() =>
      this.handlerEnded ? Effect.void : Deferred.await(this.more.handlerDoneDeferred ??= Deferred.makeUnsafe<void>())
    )
  }

  /** The raw parser enforces it at frame headers (set in `make`); the session re-checks complete and transformed messages. */
  private get maxMessageSize(): number {
    return this.raw.reader.parser.maxMessageSize
  }

  private get maxPendingPongBytes(): number {
    return this.options.maxPendingPongBytes ?? DEFAULT_MAX_PENDING_PONG_BYTES
  }

  private get scopeCloseReason(): CloseReason.CloseReason {
    return this.options.scopeCloseReason ?? (this.role === "server" ? GOING_AWAY : NORMAL)
  }

  // ---- Public API ----

  extension<Ext extends WebSocketExtension>(factory: WebSocketExtensionFactory<never, Ext>): Effect.Effect<Ext, ExtensionNotFound> {
    return getExtension(this.extensions, factory)
  }

  extensionOrNull<Ext extends WebSocketExtension>(factory: WebSocketExtensionFactory<never, Ext>): Ext | null {
    return findExtension(this.extensions, factory) ?? null
  }

  get incoming(): Queue.Queue<Message, SessionError> {
    return this.queue
  }

  get receive(): Effect.Effect<Message, SessionError> {
    return this.takeEffect(TAKE_ONE)
  }

  get messages(): Stream.Stream<Message, Exclude<SessionError, ConnectionClosed>> {
    // One pull straight on the inbox (no `catchTag` stage): a normal close ends the stream.
    return Stream.fromPull(Effect.succeed(this.takeEffect(TAKE_PULL)))
  }

  consumeEach<E, R>(
    f: (message: Message) => Effect.Effect<unknown, E, R>
  ): Effect.Effect<void, E | Exclude<SessionError, ConnectionClosed>, R> {
    type Consumed = Effect.Effect<void, E | Exclude<SessionError, ConnectionClosed>, R>
    const take = this.takeEffect(TAKE_EACH)
    // Runs `f` on the messages of one take from `start` on; effects `f` completed during its call
    // (an `Exit`) are taken without scheduling anything. Then the next take, until a normal close.
    const each = (batch: ReadonlyArray<Message> | undefined, start: number): Consumed => {
      if (batch === undefined) return Effect.void
      for (let i = start; i < batch.length; i++) {
        const result = f(batch[i]!)
        if (Exit.isExit(result)) {
          if (Exit.isFailure(result)) return result
          continue
        }
        const next = i + 1
        return Effect.flatMap(result, () => each(batch, next))
      }
      return loop
    }
    const loop: Consumed = Effect.flatMap(take, (batch) => each(batch, 0))
    return loop
  }

  get send(): WebSocketSession["send"] {
    return this.bound.send ??= (data) => this.sendMessage(typeof data === "string" ? Frame.text(data) : Frame.binary(data))
  }

  get sendFrame(): WebSocketSession["sendFrame"] {
    return this.bound.sendFrame ??= (frame) => this.sendFrameImpl(frame)
  }

  get outgoing(): Sink.Sink<void, string | Uint8Array, never, SendError> {
    return Sink.forEach(this.send)
  }

  get flush(): Effect.Effect<void> {
    return this.writer.flush
  }

  get close(): WebSocketSession["close"] {
    return this.bound.close ??= (reason = NORMAL) => this.closeImpl(reason)
  }

  get closeExceptionally(): WebSocketSession["closeExceptionally"] {
    return this.bound.closeExceptionally ??= (cause) => Effect.ignore(this.closeImpl(reasonOf(1011, describe(cause))))
  }

  get awaitClose(): Effect.Effect<CloseReason.CloseReason> {
    return Effect.suspend(() =>
      this.endReason !== undefined ? Effect.succeed(this.endReason) : Deferred.await(this.closeReason)
    )
  }

  get terminate(): Effect.Effect<void> {
    return Effect.suspend(() => {
      // A failure held back for the handler ends the session now (its Close is queued, but the
      // transport is destroyed before the writer's next turn, as on the other paths).
      this.applyPendingFailure()
      return this.raw.terminate
    })
  }

  get run(): WebSocketSession["run"] {
    return this.bound.run ??= (handler) => this.runImpl(handler)
  }

  fibers(): ReadonlyArray<Fiber.Fiber<unknown, unknown>> {
    const own = this.extra?.ownFibers
    return own === undefined ? [...this.raw.fibers] : [...this.raw.fibers, ...own]
  }

  // ---- Ending ----

  /** Completes the session: `closeReason`, then `incoming` fails after its buffered messages. Idempotent. */
  private finish(error: SessionError, reason: CloseReason.CloseReason): void {
    if (this.finished) return
    this.finished = true
    const extra = this.more
    extra.endReason = reason
    if (extra.closeReasonDeferred !== undefined) Deferred.doneUnsafe(extra.closeReasonDeferred, Exit.succeed(reason))
    this.failInbox(error)
    this.writer.closeForSending()
    this.endFragmentedMessage() // its owner's next fragment fails; the senders waiting for the gate too
    extra.awaitedPong = undefined
    if (this.draining) this.wakeDrainWaiter() // ended some other way: a held-back failure stops waiting
  }

  /** Queues our Close unless one was already sent; returns whether it was queued. */
  private sendClose(reason: CloseReason.CloseReason): boolean {
    return this.writer.tryEnqueue(reason.code === 1005 ? Frame.close() : Frame.close(reason), true)
  }

  /** Fails the session from our side: Close with `reason` (if still possible), then `finish`. */
  private fail(error: SessionError, reason: CloseReason.CloseReason): void {
    this.sendClose(reason)
    this.finish(error, reason)
  }

  /**
   * Fails the session because of the peer's input. While the application has not yet taken the
   * messages that arrived before it (see `failAfterDrain`), the failure is held back; otherwise
   * it is immediate, as it is for an incoming overflow (the application is the slow party) and
   * once we can send nothing more (our Close is out: there is no reply to wait for).
   * Either way nothing after the bad input is processed.
   */
  private failSession(error: ProtocolViolation | FrameTooBig | ExtensionError | ChannelOverflow): void {
    const reason = error._tag === "ExtensionError"
      ? reasonOf(1011, error.message)
      : error._tag === "ChannelOverflow"
      ? INCOMING_OVERFLOW
      : reasonOf(error.code, error.message)
    this.discarding = true
    this.extra?.assembly?.reset()
    if (this.draining) return // the first failure is already waiting
    if (
      error._tag !== "ChannelOverflow" && !this.finished && !this.writer.isClosedForSending &&
      (this.inboxSize > 0 || this.batchOut)
    ) {
      this.more.pendingFailure = { error, reason }
      this.draining = true
      return
    }
    this.fail(error, reason)
  }

  /** Applies a held-back failure now (Close, then `finish`), if there is one. */
  private applyPendingFailure(): void {
    const pending = this.extra?.pendingFailure
    if (pending === undefined) return
    this.extra!.pendingFailure = undefined
    this.fail(pending.error, pending.reason) // also ends the wait (`failAfterDrain`), if it still runs
    this.draining = false
  }

  /**
   * Whether the application took the messages that arrived before a held-back failure: none is
   * buffered any more (inbox or `incoming` queue) and no `consumeEach`/`messages` batch is out
   * (see `batchOut`). Also true once there is nothing to wait for (no failure held, or the
   * session ended some other way).
   */
  private get takenBeforeFailure(): boolean {
    return this.finished || this.extra?.pendingFailure === undefined || (this.inboxSize === 0 && !this.batchOut)
  }

  /**
   * Waits until `takenBeforeFailure`: woken by the takers (`takeEffect`, `poll`); the `incoming`
   * queue, whose own takes are not seen, is also checked every `QUEUE_CHECK_INTERVAL`.
   */
  private get awaitTaken(): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      while (!this.takenBeforeFailure) {
        const progress = Effect.callback<void>((resume) => {
          this.more.drainWaiter = () => resume(Effect.void)
          return Effect.sync(() => {
            if (this.extra !== undefined) this.extra.drainWaiter = undefined
          })
        })
        if (this.inboxHasQueue) yield* Effect.timeoutOption(progress, QUEUE_CHECK_INTERVAL)
        else yield* progress
      }
    })
  }

  /**
   * Applies a held-back failure once the application took the messages that arrived before the
   * bad input, then starts closing. "Taken" means: `consumeEach` completed `f` on each of them
   * (it is back for the next batch); a `messages` consumer pulled again after the chunk holding
   * the last of them (`Stream.runForEach` ran its `f` on each); `receive` (and the `incoming`
   * queue) returned the last of them. The taker then gets one more scheduler turn (it runs on until
   * it waits for something), so a reply it sends at once is queued before our Close. The wait is
   * bounded by `closeTimeout`: after it the Close goes out anyway and the messages not taken yet
   * are dropped. Runs in the fiber that handed the frames over (the reader's), which reads nothing
   * meanwhile.
   */
  private get failAfterDrain(): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      if (!this.takenBeforeFailure) {
        const taken = yield* Effect.timeoutOption(this.awaitTaken, this.closeTimeout)
        if (taken._tag === "None" && !this.finished) yield* this.dropBuffered
      }
      yield* Effect.yieldNow
      this.applyPendingFailure()
      yield* this.beginClosing
    })
  }

  private addFiber(fiber: Fiber.Fiber<unknown, unknown>): void {
    ;(this.more.ownFibers ??= []).push(fiber)
  }

  /** The closer: bounds the rest of the close handshake by `closeTimeout`, then destroys the transport. */
  private get closer(): Effect.Effect<void> {
    return Effect.timeoutOption(
      Effect.andThen(this.raw.closed, this.handlerDone),
      this.closeTimeout
    ).pipe(
      Effect.andThen((completed) =>
        Effect.sync(() => {
          if (completed._tag === "None" && !this.finished) {
            this.finish(
              new CloseTimeout({ timeoutMillis: Duration.toMillis(this.closeTimeout), sent: this.sentFirst ?? NORMAL }),
              ABNORMAL_TIMEOUT
            )
          }
        })
      ),
      Effect.andThen(this.raw.transport.destroy)
    )
  }

  /** Starts the closer (once) and stops the pinger. */
  private get beginClosing(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const pinger = this.extra?.pingerFiber
      if (pinger !== undefined) this.extra!.pingerFiber = undefined
      if (pinger !== undefined && Fiber.getCurrent() !== pinger) pinger.interruptUnsafe()
      if (this.closerStarted || this.scopeClosing) return Effect.void
      this.closerStarted = true
      return Effect.map(Effect.forkIn(this.closer, this.scope, { startImmediately: true }), (fiber) => {
        this.more.closerFiber = fiber
        this.addFiber(fiber)
      })
    })
  }

  // ---- Incoming: called by the raw reader's fiber ----

  /** Processes a batch of raw frames from `start`; returns an effect when it must wait (a full queue, an extension). */
  onFrames(frames: ReadonlyArray<Frame.Frame>, start = 0): Effect.Effect<void> | undefined {
    for (let i = start; i < frames.length && !this.discarding; i++) {
      const frame = frames[i]!
      switch (frame._tag) {
        case "Text":
        case "Binary":
        case "Continuation": {
          const result = this.onData(frame)
          if (result === undefined) break
          if (result._tag === "FrameTooBig" || result._tag === "ProtocolViolation") {
            this.failSession(result) // messages before it were delivered already
            break
          }
          const first = this.extensions.length === 0 ? -1 : this.firstIncomingHook(result)
          if (first !== -1) {
            const applied = this.applyIncomingExtensions(result, first)
            const next = i + 1
            if (completed(applied)) {
              // Every hook completed during its call: stay in this synchronous loop.
              const wait = this.deliver(applied.value)
              if (wait !== undefined) return Effect.andThen(wait, Effect.suspend(() => this.continueFrom(frames, next)))
              break
            }
            return Effect.flatMap(Effect.result(applied), (processed) => {
              if (processed._tag === "Failure") {
                this.failSession(processed.failure)
                return this.continueFrom(frames, next)
              }
              const wait = this.deliver(processed.success)
              return wait === undefined
                ? this.continueFrom(frames, next)
                : Effect.andThen(wait, Effect.suspend(() => this.continueFrom(frames, next)))
            })
          }
          const wait = this.deliver(result)
          if (wait !== undefined) {
            const next = i + 1
            return Effect.andThen(wait, Effect.suspend(() => this.continueFrom(frames, next)))
          }
          break
        }
        case "Ping": {
          // One Pong per Ping (the writer copies the payload). Past the bound, stop here: the rest
          // of this chunk and the next chunks wait until the writer handed the Pongs over.
          const writer = this.writer
          if (writer.pong(frame.payload) && writer.pendingPongBytes > this.maxPendingPongBytes) {
            const next = i + 1
            return Effect.andThen(
              writer.awaitPongRoom(this.maxPendingPongBytes),
              Effect.suspend(() => this.continueFrom(frames, next))
            )
          }
          break
        }
        case "Pong":
          this.onPong(frame.payload)
          break
        case "Close":
          this.onClose(frame)
          break
      }
    }
    const extra = this.extra
    if (extra === undefined) return this.finished ? this.beginClosing : undefined
    if (extra.pendingFailure !== undefined) return this.failAfterDrain
    return this.finished || extra.sentFirst !== undefined ? this.beginClosing : undefined
  }

  private continueFrom(frames: ReadonlyArray<Frame.Frame>, start: number): Effect.Effect<void> {
    return this.onFrames(frames, start) ?? Effect.void
  }

  /** The raw frame stream ended (`Cause.Done` after the peer's Close, handled by `onClose`). */
  onEnd(end: RawIncomingError | Cause.Done): Effect.Effect<void> | undefined {
    if (!Cause.isDone(end)) {
      if (end._tag === "AbnormalClosure") {
        const sent = this.sentFirst
        if (sent !== undefined) {
          // Our Close went out (or is queued) and the peer ended (EOF or reset) without its own:
          // the close handshake never completed, so 1006 (RFC 6455 §7.1.5), keeping what we sent.
          this.finish(new AbnormalClosure({ cause: end.cause, sent }), ABNORMAL_EOF)
        } else {
          // The peer's input ended without a Close: say goodbye if we still can, report 1006 locally.
          this.sendClose(NORMAL)
          this.finish(end, ABNORMAL_EOF)
        }
      } else if (end._tag === "ChannelOverflow") {
        this.finish(end, INCOMING_OVERFLOW) // the raw reader already sent the Close
      } else {
        this.failSession(end) // a parser violation: Close 1002/1007/1009 once earlier messages are taken
      }
    }
    this.handlerEnded = true
    const extra = this.extra
    if (extra?.handlerDoneDeferred !== undefined) Deferred.doneUnsafe(extra.handlerDoneDeferred, Exit.void)
    if (extra?.pendingFailure !== undefined) return this.failAfterDrain
    return this.finished ? this.beginClosing : undefined
  }

  /** Offers one message; returns an effect when the queue is full with policy `"suspend"`. Nothing is delivered after the session finished. */
  private deliver(message: Message): Effect.Effect<void> | undefined {
    if (this.finished) return undefined
    if (this.offer(message)) return undefined
    const config = this.inboxConfig
    if (config.overflow === "fail" && Number.isFinite(config.capacity)) {
      this.failSession(new ChannelOverflow({ channel: "incoming", capacity: config.capacity }))
      return undefined
    }
    // On the `incoming` queue, an offer waiting for room would outlast the session (a failed queue
    // keeps it until its messages are taken): it gives up when the session ends, as `deliver`
    // drops a message that arrives after the end.
    if (this.inboxHasQueue) return Effect.raceFirst(this.offerWaiting(message), Effect.asVoid(Deferred.await(this.closeReason)))
    return Effect.andThen(this.waitForRoom, Effect.suspend(() => this.deliver(message) ?? Effect.void))
  }

  /** Handles one data frame; returns a completed message, `undefined`, or a failure. */
  private onData(frame: Frame.Text | Frame.Binary | Frame.Continuation): DataResult {
    const limit = this.maxMessageSize
    if (frame._tag !== "Continuation") {
      const rsv = frame.rsv1 || frame.rsv2 || frame.rsv3
      if (frame.fin) {
        if (frame.payload.length > limit) {
          return new FrameTooBig({ kind: "MessageTooBig", message: `Message of ${frame.payload.length} bytes exceeds ${limit}` })
        }
        if (
          frame._tag === "Text" && !rsv && (this.flags & PARSER_VALIDATES_UTF8) === 0 && !Utf8.isValidUtf8(frame.payload)
        ) {
          return violation("InvalidUtf8", 1007, "Text message is not valid UTF-8")
        }
        return frame
      }
      ;(this.more.assembly ??= new Assembly()).begin(
        frame,
        frame._tag === "Text" && !rsv && (this.flags & PARSER_VALIDATES_UTF8) === 0
      )
    } else {
      const assembly = this.extra?.assembly
      if (assembly === undefined || assembly.open === undefined) {
        return violation("UnexpectedContinuation", 1002, "Continuation frame without a message")
      }
      if (frame.rsv1 || frame.rsv2 || frame.rsv3) {
        return violation("ReservedBits", 1002, "RSV bits set on a continuation frame")
      }
      assembly.fragments++
      const maxFragments = this.options.maxFragments ?? DEFAULT_MAX_FRAGMENTS
      if (assembly.fragments > maxFragments) {
        return new FrameTooBig({ kind: "TooManyFragments", message: `Message has more than ${maxFragments} fragments` })
      }
    }
    const assembly = this.extra!.assembly!
    if (assembly.size + frame.payload.length > limit) {
      return new FrameTooBig({ kind: "MessageTooBig", message: `Message exceeds ${limit} bytes` })
    }
    if (assembly.validateOnTheFly && assembly.utf8!.update(frame.payload) !== -1) {
      return violation("InvalidUtf8", 1007, "Text message is not valid UTF-8")
    }
    if (frame.payload.length > 0) assembly.append(frame.payload, this.maxMessageSize)
    if (!frame.fin) return undefined
    if (assembly.validateOnTheFly && !assembly.utf8!.finish()) {
      return violation("InvalidUtf8", 1007, "Text message is not valid UTF-8")
    }
    const payload = concatBytes(assembly.buffer, assembly.size)
    const message = Frame.make(assembly.open!, true, assembly.rsv1, assembly.rsv2, assembly.rsv3, payload)
    assembly.reset()
    return message
  }

  /**
   * Where a complete incoming message enters the extensions: the index of the first extension
   * whose `incomingUnchanged` does not accept it (all before it pass it through), the number of
   * extensions when all pass it through but it has an RSV bit (it still needs the re-check), or
   * -1 when it goes on exactly as without extensions.
   */
  private firstIncomingHook(message: Message): number {
    const extensions = this.extensions
    for (let i = 0; i < extensions.length; i++) {
      if (extensions[i]!.incomingUnchanged?.(message) !== true) return i
    }
    return message.rsv1 || message.rsv2 || message.rsv3 ? extensions.length : -1
  }

  /**
   * Runs a message through the extensions from index `from` on (see `firstIncomingHook`), then
   * validates text that an extension produced. Hooks that complete during their call (returning
   * an `Exit`) are folded synchronously, so when all of them do the result is an `Exit` too; the
   * first hook that returns an ordinary effect makes the rest an effect chain.
   */
  private applyIncomingExtensions(
    message: Message,
    from: number
  ): Effect.Effect<Message, ProtocolViolation | FrameTooBig | ExtensionError> {
    const extensions = this.extensions
    let current = message
    let last: Exit.Success<Message, ProtocolViolation | FrameTooBig | ExtensionError> | undefined = undefined
    this.hookValidatedUtf8 = false
    for (let i = from; i < extensions.length; i++) {
      const extension = extensions[i]!
      if (i !== from && extension.incomingUnchanged?.(current) === true) continue
      this.hookValidatedUtf8 = extension.validatesIncomingUtf8 === true
      const result = extension.processIncomingMessage(current)
      if (completed(result)) {
        current = result.value
        last = result
        continue
      }
      let effect = result
      for (let j = i + 1; j < extensions.length; j++) effect = Effect.flatMap(effect, this.incomingStep(extensions[j]!))
      return Effect.flatMap(effect, (m) => this.checkTransformed(message, m))
    }
    // A message without RSV bits needs no re-check: the last hook's own result will do.
    if (last !== undefined && !(message.rsv1 || message.rsv2 || message.rsv3)) return last
    return this.checkTransformed(message, current)
  }

  /**
   * An extension's incoming step in an effect chain: its hook (noting whether that hook validates
   * UTF-8), or the message itself when `incomingUnchanged` accepts it.
   */
  private incomingStep(extension: WebSocketExtension) {
    return (message: Message): Effect.Effect<Message, ProtocolViolation | FrameTooBig | ExtensionError> => {
      if (extension.incomingUnchanged?.(message) === true) return Effect.succeed(message)
      this.hookValidatedUtf8 = extension.validatesIncomingUtf8 === true
      return extension.processIncomingMessage(message)
    }
  }

  /**
   * Re-checks a message an extension transformed (RSV bits set): the size limit, and UTF-8 for
   * text unless the last hook that ran validated it (`validatesIncomingUtf8`).
   */
  private checkTransformed(original: Message, m: Message): Effect.Effect<Message, ProtocolViolation | FrameTooBig> {
    if (!(original.rsv1 || original.rsv2 || original.rsv3)) return Effect.succeed(m)
    const limit = this.maxMessageSize
    if (m.payload.length > limit) {
      return Effect.fail(new FrameTooBig({ kind: "MessageTooBig", message: `Message exceeds ${limit} bytes` }))
    }
    if (m._tag === "Text" && (this.flags & HOOK_VALIDATED_UTF8) === 0 && !Utf8.isValidUtf8(m.payload)) {
      return Effect.fail(violation("InvalidUtf8", 1007, "Text message is not valid UTF-8"))
    }
    return Effect.succeed(m)
  }

  /** Handles the peer's Close frame. */
  private onClose(frame: Frame.Close): void {
    const decoded = CloseReason.decodeCloseReason(frame.payload)
    if ("_tag" in decoded) {
      this.failSession(
        decoded.code === 1007
          ? violation(decoded.kind, 1007, decoded.message)
          : violation(decoded.kind, 1002, decoded.message)
      )
      return
    }
    if (this.sentFirst !== undefined) {
      this.finish(new ConnectionClosed({ initiator: "local", reason: this.sentFirst }), this.sentFirst)
    } else if (!this.finished) {
      this.sendClose(decoded)
      this.finish(new ConnectionClosed({ initiator: "peer", reason: decoded }), decoded)
    }
  }

  private onPong(payload: Uint8Array): void {
    const extra = this.extra
    const expected = extra?.awaitedPong
    if (expected !== undefined && extra!.pongArrived !== undefined && equalBytes(expected, payload)) {
      extra!.awaitedPong = undefined
      Deferred.doneUnsafe(extra!.pongArrived, Exit.void)
    }
  }

  // ---- Pinger (optional) ----

  pinger(interval: Duration.Duration): Effect.Effect<void> {
    const self = this
    const pingTimeout = Duration.fromInputUnsafe(this.options.pingTimeout ?? DEFAULT_PING_TIMEOUT)
    return Effect.gen(function*() {
      while (!self.finished && self.sentFirst === undefined) {
        yield* Effect.sleep(interval)
        if (self.finished || self.sentFirst !== undefined) return
        const payload = pingPayload()
        const arrived = Deferred.makeUnsafe<void>()
        const extra = self.more
        extra.awaitedPong = payload
        extra.pongArrived = arrived
        const answered = yield* Effect.timeoutOption(
          Effect.andThen(self.writer.enqueue(Frame.ping(payload), true), Deferred.await(arrived)),
          pingTimeout
        )
        if (answered._tag === "None") {
          self.fail(new PingTimeout({ timeoutMillis: Duration.toMillis(pingTimeout) }), PING_TIMEOUT)
          yield* self.beginClosing
          return
        }
      }
    }).pipe(Effect.catch(() => Effect.void))
  }

  startPinger(fiber: Fiber.Fiber<void>): void {
    this.more.pingerFiber = fiber
    this.addFiber(fiber)
  }

  /** Drains the raw `incoming` queue into `onFrames`/`onEnd` (only when it was used before this session attached). */
  get pump(): Effect.Effect<void> {
    const self = this
    return Effect.gen(function*() {
      while (true) {
        const taken = yield* Effect.result(Queue.takeAll(self.raw.incoming))
        if (taken._tag === "Failure") {
          const after = self.onEnd(taken.failure)
          if (after !== undefined) yield* after
          return
        }
        const after = self.onFrames(taken.success)
        if (after !== undefined) yield* after
      }
    })
  }

  trackFiber(fiber: Fiber.Fiber<void>): void {
    this.addFiber(fiber)
  }

  // ---- Sending ----

  private sendMessage(message: Message): Effect.Effect<void, SendError> {
    if (this.extensions.length === 0) {
      // Without extensions the gate is only ever held by an open fragmented message (and its
      // waiters): checked when the send runs, at the cost `writer.enqueue`'s own suspension had.
      return Effect.suspend(() => {
        if ((this.flags & SEND_GATE_BUSY) !== 0) return this.sendMessageGated(message)
        const size = this.options.outgoingFragmentSize
        return (size === undefined || message.payload.length <= size) && this.writer.tryEnqueue(message)
          ? Effect.void
          : this.enqueueMessage(message)
      })
    }
    return Effect.suspend(() => this.sendMessageGated(message))
  }

  /** Sends a message through the send gate (always with extensions; without, only while the gate is held). */
  private sendMessageGated(message: Message): Effect.Effect<void, SendError> {
    const owner = this.extra?.fragmentOwner
    if (owner !== undefined && owner === Fiber.getCurrent()) {
      this.abandonFragmentedMessage() // its owner starts a new message: it would wait for itself
    }
    if (!this.sendGateBusy) {
      // The gate is free: taken here and, in the common case, released before returning.
      this.sendGateBusy = true
      return this.processAndEnqueue(message, undefined)
    }
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(this.awaitSendGate()), () => this.processAndEnqueue(message, restore))
    )
  }

  /**
   * With the send gate held: runs the outgoing hooks (synchronously as far as they complete
   * during their call; skipped for a message an extension's `outgoingUnchanged` accepts) and
   * queues the result, then passes the gate on. When every hook completed (or was skipped) and
   * the writer has room, all of it happens now; otherwise the rest is an effect that keeps the
   * gate until it ends (`restore` is the mask of a sender that waited for the gate).
   */
  private processAndEnqueue(
    message: Message,
    restore: (<A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) | undefined
  ): Effect.Effect<void, SendError> {
    const extensions = this.extensions
    let current = message
    for (let i = 0; i < extensions.length; i++) {
      const extension = extensions[i]!
      if (extension.outgoingUnchanged?.(current) === true) continue
      const result = extension.processOutgoingMessage(current)
      if (completed(result)) {
        current = result.value
        continue
      }
      let effect = result
      for (let j = i + 1; j < extensions.length; j++) effect = Effect.flatMap(effect, outgoingHook(extensions[j]!))
      return this.holdingSendGate(Effect.flatMap(effect, (m) => this.enqueueMessage(m)), restore)
    }
    const size = this.options.outgoingFragmentSize
    if ((size === undefined || current.payload.length <= size) && this.writer.tryEnqueue(current)) {
      this.releaseSendGate()
      return Effect.void
    }
    return this.holdingSendGate(this.enqueueMessage(current), restore)
  }

  /**
   * Runs `effect` with the send gate held and passes the gate on when it ends. Outside a mask the
   * gate is also passed on if this fiber ends without ever running `effect` (interrupted before
   * its finalizer was in place), so a lost continuation can never wedge the gate.
   */
  private holdingSendGate<E>(
    effect: Effect.Effect<void, E>,
    restore: (<A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) | undefined
  ): Effect.Effect<void, E> {
    if (restore !== undefined) return this.releasingSendGate(restore(effect))
    let released = false
    let stopObserving: (() => void) | undefined = undefined
    const release = (): void => {
      if (released) return
      released = true
      stopObserving?.()
      this.releaseSendGate()
    }
    stopObserving = Fiber.getCurrent()?.addObserver(release)
    return Effect.ensuring(effect, Effect.sync(release))
  }

  private releasingSendGate<E>(effect: Effect.Effect<void, E>): Effect.Effect<void, E> {
    return Effect.ensuring(effect, Effect.sync(() => this.releaseSendGate()))
  }

  /** Hands the send gate to the first waiter, or frees it. */
  private releaseSendGate(): void {
    const next = this.extra?.sendGateWaiters?.shift()
    if (next === undefined) this.sendGateBusy = false
    else next()
  }

  /** Waits (interruptibly) until the send gate is handed over; an interrupted waiter passes it on. */
  private awaitSendGate(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      let handedOver = false
      const waiter = () => {
        handedOver = true
        resume(Effect.void)
      }
      const waiters = this.more.sendGateWaiters ??= []
      waiters.push(waiter)
      return Effect.sync(() => {
        if (handedOver) return this.releaseSendGate()
        const at = waiters.indexOf(waiter)
        if (at >= 0) waiters.splice(at, 1)
      })
    })
  }

  /**
   * The first frame of a fragmented message: waits for the send gate (like a whole message), queues
   * the frame, and keeps the gate until the final fragment (see `sendFrame`). The gate is passed on
   * if the frame could not be queued (failure, interruption).
   */
  private sendFirstFragment(frame: Frame.Frame): Effect.Effect<void, SendError> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const extra = this.extra
        if (extra?.fragmentOwner !== undefined && extra.fragmentOwner === Fiber.getCurrent()) {
          this.abandonFragmentedMessage() // its owner starts a new message: it would wait for itself
        }
        const queue = (): Effect.Effect<void, SendError> => {
          if (this.writer.tryEnqueue(frame)) {
            this.watchFragmentOwner()
            return Effect.void
          }
          return Effect.onExit(restore(this.writer.enqueue(frame)), (exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit) && !this.finished) this.watchFragmentOwner()
              else this.releaseSendGate()
            }))
        }
        if (!this.sendGateBusy) {
          this.sendGateBusy = true
          return queue()
        }
        return Effect.flatMap(restore(this.awaitSendGate()), queue)
      })
    )
  }

  /**
   * A Continuation: while a fragmented message is open, its sender becomes the owner and the final
   * one passes the gate on; otherwise it is sent as it is.
   */
  private sendContinuation(frame: Frame.Continuation): Effect.Effect<void, SendError> {
    return Effect.suspend(() => {
      if (this.extra?.fragmentOwner === undefined) return this.writer.enqueue(frame)
      const current = Fiber.getCurrent()
      if (current !== undefined && current !== this.extra?.fragmentOwner) this.watchFragmentOwner(current)
      if (!frame.fin) return this.writer.enqueue(frame)
      if (this.writer.tryEnqueue(frame)) {
        this.endFragmentedMessage()
        return Effect.void
      }
      return Effect.tap(this.writer.enqueue(frame), () => Effect.sync(() => this.endFragmentedMessage()))
    })
  }

  /** Makes `owner` (default: the current fiber) the owner of the open fragmented message (see `sendFrame`). */
  private watchFragmentOwner(owner: Fiber.Fiber<unknown, unknown> | undefined = Fiber.getCurrent()): void {
    const extra = this.more
    extra.stopWatchingOwner?.()
    extra.fragmentOwner = owner
    extra.stopWatchingOwner = owner?.addObserver(() => {
      if (extra.fragmentOwner === owner) this.abandonFragmentedMessage()
    })
  }

  /** The open fragmented message is complete (or the session ended): no owner any more, the gate is passed on. */
  private endFragmentedMessage(): void {
    const extra = this.extra
    if (extra?.fragmentOwner === undefined) return
    extra.stopWatchingOwner?.()
    extra.stopWatchingOwner = undefined
    extra.fragmentOwner = undefined
    this.releaseSendGate()
  }

  /**
   * The open fragmented message was left open by its owner (see `sendFrame`): the session closes
   * with 1011 (before the gate is passed on, so no waiting sender's frame can follow the fragment),
   * then the gate is passed on (the waiters fail with `OutgoingClosed`).
   */
  private abandonFragmentedMessage(): void {
    if (this.extra?.fragmentOwner === undefined) return
    let closing = false
    if (this.draining) {
      this.applyPendingFailure() // a failure held back for the handler: its Close goes out instead
      closing = true
    } else if (!this.finished && !this.writer.closeSent && !this.writer.isClosedForSending) {
      this.sentFirst = FRAGMENT_LEFT_OPEN
      this.sendClose(FRAGMENT_LEFT_OPEN)
      closing = true
    }
    this.endFragmentedMessage()
    // The closer bounds the handshake by `closeTimeout`, as after `close` (this may run in a fiber's
    // observer, outside any fiber: the closer is forked into the session's scope from a new one).
    if (closing && !this.closerStarted && !this.scopeClosing) Effect.runForkWith(this.services)(this.beginClosing)
  }

  /** Queues a whole (processed) message, fragmented when `outgoingFragmentSize` asks for it. */
  private enqueueMessage(message: Message): Effect.Effect<void, OutgoingClosed | ChannelOverflow> {
    const size = this.options.outgoingFragmentSize
    return size === undefined || message.payload.length <= size
      ? this.writer.enqueue(message)
      : this.writer.enqueueFragments(fragment(message, size))
  }

  private closeImpl(reason: CloseReason.CloseReason): Effect.Effect<void, InvalidCloseReason> {
    return Effect.suspend(() => {
      const invalid = validateOutgoingReason(reason)
      if (invalid !== undefined) return Effect.fail(invalid)
      if (this.draining) {
        // A failure is held back for the handler: closing now sends its Close instead of ours.
        this.applyPendingFailure()
        return Effect.andThen(this.beginClosing, this.writer.flush)
      }
      if (this.finished || this.writer.closeSent || this.writer.isClosedForSending) return Effect.void
      this.sentFirst = reason
      this.sendClose(reason)
      return Effect.andThen(this.beginClosing, this.writer.flush)
    })
  }

  private sendFrameImpl(frame: Frame.Frame): Effect.Effect<void, SendError | InvalidCloseReason> {
    switch (frame._tag) {
      case "Close": {
        const decoded = CloseReason.decodeCloseReason(frame.payload)
        if ("_tag" in decoded) {
          const code = frame.payload.length >= 2 ? (frame.payload[0]! << 8) | frame.payload[1]! : 1005
          return Effect.fail(new InvalidCloseReason({ code, message: decoded.message }))
        }
        return decoded.code === 1005 ? Effect.fail(new InvalidCloseReason({ code: 1005, message: "" })) : this.closeImpl(decoded)
      }
      case "Text":
      case "Binary":
        return frame.fin ? this.sendMessage(frame) : this.sendFirstFragment(frame)
      case "Continuation":
        return this.sendContinuation(frame)
      default:
        return this.writer.enqueue(frame)
    }
  }

  private runImpl<A, E, R>(handler: (session: WebSocketSession) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    return Effect.onExit(handler(this), (exit) => {
      if (Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)) return Effect.void
      const closing = Exit.isSuccess(exit)
        ? Effect.ignore(this.closeImpl(NORMAL))
        : this.closeExceptionally(Cause.squash(exit.cause))
      // Wait for the end of the session, then for our last Close (or echo) to be written.
      const ended = Effect.andThen(closing, Effect.andThen(this.awaitClose, this.writer.flush))
      // A client then waits for the server to close the connection: the closer does exactly that.
      return this.role === "client" ? Effect.andThen(ended, this.awaitCloser) : ended
    })
  }

  /** Starts the closer if needed and waits for it (it bounds the rest by `closeTimeout`, then destroys). */
  private get awaitCloser(): Effect.Effect<void> {
    return Effect.andThen(
      this.beginClosing,
      Effect.suspend(() => {
        const closer = this.extra?.closerFiber
        return closer === undefined ? Effect.void : Effect.asVoid(Fiber.await(closer))
      })
    )
  }

  /**
   * The scope finalizer, run while the reader and writer still run: an open session says goodbye,
   * and a Close already queued (ours or an echo) is written before the raw session destroys the
   * transport (bounded by the close timeout). A client also waits for the server's Close and EOF.
   */
  onScopeClose(): Effect.Effect<void> {
    this.scopeClosing = true
    this.applyPendingFailure() // a failure held back for the handler goes out now, not the scope-close reason
    const scopeCloseReason = this.scopeCloseReason
    if (!this.finished && this.sentFirst === undefined && !this.writer.closeSent) {
      this.sentFirst = scopeCloseReason
      this.sendClose(scopeCloseReason)
    }
    if (this.role === "server") {
      return Effect.timeoutOption(this.writer.flush, this.closeTimeout).pipe(
        Effect.andThen(Effect.sync(() => {
          const sent = this.sentFirst ?? scopeCloseReason
          this.finish(new ConnectionClosed({ initiator: "local", reason: sent }), sent)
        }))
      )
    }
    // RFC 6455 §7.1.1: the server closes the TCP connection first; a client waits for its
    // Close and EOF (the raw session's reader and writer both stopped), then destroys.
    return Effect.timeoutOption(
      Effect.andThen(this.writer.flush, Effect.andThen(this.raw.closed, this.handlerDone)),
      this.closeTimeout
    ).pipe(
      Effect.andThen((completed) =>
        Effect.sync(() => {
          const sent = this.sentFirst ?? scopeCloseReason
          if (completed._tag === "None") {
            this.finish(new CloseTimeout({ timeoutMillis: Duration.toMillis(this.closeTimeout), sent }), ABNORMAL_TIMEOUT)
          } else {
            this.finish(new ConnectionClosed({ initiator: "local", reason: sent }), sent)
          }
        })
      ),
      Effect.andThen(this.raw.transport.destroy)
    )
  }
}

defineFlags(Inbox.prototype, {
  wakeScheduled: WAKE_SCHEDULED,
  hasQueue: HAS_QUEUE,
  inboxEnded: INBOX_ENDED,
  draining: DRAINING,
  batchOut: BATCH_OUT
})
defineFlags(Session.prototype, {
  handlerEnded: HANDLER_ENDED,
  finished: FINISHED,
  closerStarted: CLOSER_STARTED,
  scopeClosing: SCOPE_CLOSING,
  discarding: DISCARDING,
  sendGateBusy: SEND_GATE_BUSY,
  parserValidatesUtf8: PARSER_VALIDATES_UTF8,
  hookValidatedUtf8: HOOK_VALIDATED_UTF8
})

/**
 * Starts a message-level session on a raw session, in the current scope. The raw reader's fiber
 * processes the incoming frames for it (reassembly, UTF-8, Close, Ping answered through the
 * writer); only an optional pinger and, while closing, a closer run as fibers of their own, and
 * they are interrupted when the scope closes. Before that, an open session sends its scope-close
 * reason (1001 on servers, 1000 on clients) and completes `closeReason`. A server then lets the
 * scope destroy the transport once its last Close was written; a client first waits (bounded by
 * `closeTimeout`) for the server's Close and EOF, as RFC 6455 §7.1.1 asks. The raw session's
 * `incoming` is consumed by this session. Made in the same step as its raw session (before the
 * raw reader's first turn), it receives every frame, also those of bytes that were already
 * waiting (a client's right after the 101 head), and answers a violation among them itself.
 */
export const make = (
  raw: RawWebSocket,
  options: DefaultWebSocketSessionOptions = NO_OPTIONS
): Effect.Effect<WebSocketSession, never, Scope.Scope> =>
  // Built synchronously in one step (no generator) unless a fiber must be forked: this runs once per connection.
  Effect.contextWith((services: Context.Context<Scope.Scope>) => {
    const fragmentSize = options.outgoingFragmentSize
    if (fragmentSize !== undefined && (!Number.isInteger(fragmentSize) || fragmentSize < 1)) {
      return Effect.die(new RangeError(`Invalid outgoingFragmentSize: ${fragmentSize}`))
    }
    const maxPongs = options.maxPendingPongBytes
    if (maxPongs !== undefined && !(maxPongs >= 0)) {
      return Effect.die(new RangeError(`Invalid maxPendingPongBytes: ${maxPongs}`))
    }
    if (options.closeTimeout !== undefined) Duration.fromInputUnsafe(options.closeTimeout) // a bad one fails here, not at close
    const scope = Context.get(services, Scope.Scope)
    const session = new Session(raw, options, services)
    const attached = raw.reader.attach(session)
    session.validateUtf8In(raw.reader.parser)
    const maxMessageSize = raw.reader.parser.maxMessageSize = options.maxMessageSize ?? raw.maxFrameSize
    for (const extension of raw.extensions) extension.limitIncomingMessageSize?.(maxMessageSize)
    const pingInterval = options.pingInterval === undefined ? undefined : Duration.fromInputUnsafe(options.pingInterval)
    const pinging = pingInterval !== undefined && Duration.isGreaterThan(pingInterval, Duration.zero)
    if (attached && !pinging) {
      // Runs first on scope close, while the reader and writer still run: from the raw session's
      // own finalizer when that is the scope's only one, else registered last.
      return closeFirst(raw, scope, session) ? Effect.succeed(session) : Effect.as(addCloseFinalizer(session, scope), session)
    }
    return Effect.gen(function*() {
      if (!attached) {
        // Frames already went to the raw queue before this session existed: drain it with a fiber.
        session.trackFiber(yield* Effect.forkIn(session.pump, scope, { startImmediately: true }))
      }
      if (pinging) {
        session.startPinger(yield* Effect.forkIn(session.pinger(pingInterval!), scope, { startImmediately: true }))
      }
      // Registered last so it runs first on scope close, while the reader and writer still run.
      yield* addCloseFinalizer(session, scope)
      return session as WebSocketSession
    })
  })

const addCloseFinalizer = (session: Session, scope: Scope.Scope): Effect.Effect<void> =>
  Scope.addFinalizer(scope, Effect.suspend(() => session.onScopeClose()))

/** The options of a session made without any. */
const NO_OPTIONS: DefaultWebSocketSessionOptions = Object.freeze({})

/** The text of a Text message (valid UTF-8: the session validated it). */
export const readText = (message: Frame.Text): string => Utf8.decodeUtf8(message.payload) ?? Frame.readText(message)

/** A copy of a message's payload. */
export const readBytes = (message: Frame.Frame): Uint8Array => Frame.readBytes(message)

/** The reason of a Close frame; fails with `ProtocolViolation` for a payload that is not a valid Close payload. Empty → 1005. */
export const readReason = (frame: Frame.Close): Effect.Effect<CloseReason.CloseReason, ProtocolViolation> => {
  const decoded = CloseReason.decodeCloseReason(frame.payload)
  return "_tag" in decoded
    ? Effect.fail(new ProtocolViolation({ kind: decoded.kind, code: decoded.code === 1007 ? 1007 : 1002, message: decoded.message }))
    : Effect.succeed(decoded)
}

