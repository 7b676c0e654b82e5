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
 * Where each mechanism lives (`internal/session/`, one class of the session's chain per file):
 * `state.ts` (shared state, the flag bits), `inbox.ts` (the inbox and the lazy `incoming` queue),
 * `assembly.ts` (message assembly and UTF-8), `extensions.ts` (the extension chain),
 * `close.ts` (the close handshake, timeouts, close reasons), `pinger.ts` (pinger, Pongs),
 * `sendGate.ts` (outgoing order, fragmented messages), `session.ts` (the public API, dispatch of
 * incoming frames). `docs/architecture.md` draws the data flow.
 *
 * @module
 */
import { CloseReason, Frame, Utf8 } from "@effect-ws/codec"
import { Context, type Deferred, Duration, Effect, type Fiber, type Queue, Scope, type Sink, type Stream } from "effect"
import {
  type ChannelOverflow,
  type ConnectionClosed,
  type ExtensionError,
  type ExtensionNotFound,
  type InvalidCloseReason,
  type OutgoingClosed,
  ProtocolViolation,
  type SessionError
} from "./Errors.ts"
import type { Message, WebSocketExtension, WebSocketExtensionFactory } from "./Extension.ts"
import * as close from "./internal/session/close.ts"
import * as pinger from "./internal/session/pinger.ts"
import { Session } from "./internal/session/session.ts"
import { closeFirst, type RawWebSocket, type Role } from "./RawWebSocket.ts"

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

/** The default `closeTimeout`: how long a close handshake may take before the transport is destroyed (10 s). */
export const DEFAULT_CLOSE_TIMEOUT: Duration.Duration = close.DEFAULT_CLOSE_TIMEOUT

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
export const DEFAULT_MAX_PENDING_PONG_BYTES: number = pinger.DEFAULT_MAX_PENDING_PONG_BYTES

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

