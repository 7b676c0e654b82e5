/**
 * The close handshake (RFC 6455 §5.5.1, §7): who closes, how long it may take, and the one
 * `CloseReason` every ending maps to.
 *
 * Who closes:
 * - the peer first: `onClose` (called from `Session.onFrames`, in the raw reader's fiber)
 *   validates the Close payload (`CloseReason.decodeCloseReason`: code sendable on the wire,
 *   UTF-8 reason, 1002/1007 otherwise), queues the echo (`sendClose`, the writer's Close slot) and
 *   ends the session with the peer's reason;
 * - we first: `closeImpl` (`close`, `closeExceptionally`, `run`), the pinger (1011 "Ping timeout"),
 *   the send gate (1011 "Fragmented message left open") or the scope (`onScopeClose`: 1001 on
 *   servers, 1000 on clients) queue our Close and note it in `sentFirst`; the session ends when
 *   the peer's Close arrives (`onClose`);
 * - the peer's bad input (`failSession`): Close 1002/1007/1009/1011, or 1008 for an incoming
 *   overflow; held back until the application took the messages before it ("replies before the
 *   Close": `pendingFailure`, `failAfterDrain`, bounded by `closeTimeout`);
 * - the input ends without a Close (`onEnd`): 1006 locally, a Close 1000 sent if we still can.
 *
 * Timeouts: once closing started, `beginClosing` forks the closer into the session's scope; that
 * fiber waits (at most `closeTimeout`) for the raw session to end (reader and writer stopped)
 * and the incoming frames to end, records 1006 "Close handshake timed out" if they did not, and
 * destroys the transport. On scope close, `onScopeClose` runs in the scope's finalizer: a server
 * waits for its Close to be written, a client also for the server's Close and EOF (RFC 6455
 * §7.1.1), both bounded by `closeTimeout`.
 *
 * `finish` completes `closeReason` exactly once, fails the inbox after its buffered messages,
 * closes the writer for sending and releases the send gate.
 *
 * @internal
 * @module
 */
import { CloseReason, Frame, Utf8 } from "@effect-ws/codec"
import { Cause, Deferred, Duration, Effect, Exit, Fiber } from "effect"
import {
  AbnormalClosure,
  type ChannelOverflow,
  CloseTimeout,
  ConnectionClosed,
  type ExtensionError,
  type FrameTooBig,
  InvalidCloseReason,
  type ProtocolViolation,
  type SessionError
} from "../../Errors.ts"
import type { RawIncomingError } from "../../WebSocketReader.ts"
import { defineFlags } from "../flags.ts"
import { ExtensionChain } from "./extensions.ts"
import { violation } from "./state.ts"


/** The default `closeTimeout`: how long a close handshake may take before the transport is destroyed (10 s). */
export const DEFAULT_CLOSE_TIMEOUT: Duration.Duration = Duration.seconds(10)

/**
 * How often a session holding back a failure checks whether the `incoming` queue was emptied
 * (takes straight from that queue are not seen otherwise; see `CloseHandshake.failAfterDrain`).
 */
const QUEUE_CHECK_INTERVAL = Duration.millis(10)

// The close reasons the session sends or ends with (besides the peer's and the application's own).
/** 1000, the default of `close` and a client's scope-close reason. */
export const NORMAL = CloseReason.CloseReason(1000)
/** 1001, a server's scope-close reason. */
const GOING_AWAY = CloseReason.CloseReason(1001)
/** 1006 (never sent): the input ended without the peer's Close. */
const ABNORMAL_EOF = CloseReason.CloseReason(1006, "Connection closed without a Close frame")
/** 1006 (never sent): the closer's `closeTimeout` elapsed. */
const ABNORMAL_TIMEOUT = CloseReason.CloseReason(1006, "Close handshake timed out")
/** 1011, sent by the pinger when a Pong did not come within `pingTimeout`. */
export const PING_TIMEOUT = CloseReason.CloseReason(1011, "Ping timeout")
/** 1008, sent when the inbox is full with overflow policy `"fail"`. */
const INCOMING_OVERFLOW = CloseReason.CloseReason(1008, "Incoming queue overflow")
/** 1011, sent when an outgoing fragmented message was abandoned by its sender. */
export const FRAGMENT_LEFT_OPEN = CloseReason.CloseReason(1011, "Fragmented message left open")

/** A close reason with `message` cut to what a Close frame can carry (123 bytes). */
export const reasonOf = (code: number, message: string): CloseReason.CloseReason =>
  CloseReason.CloseReason(code, CloseReason.truncateReason(message))

/** Validates a reason we are about to send. */
const validateOutgoingReason = (reason: CloseReason.CloseReason): InvalidCloseReason | undefined =>
  !CloseReason.isSendable(reason.code) || Utf8.utf8Length(reason.message) > CloseReason.MAX_REASON_BYTES
    ? new InvalidCloseReason({ code: reason.code, message: reason.message })
    : undefined

/** The text of a failure cause, for a 1011 close reason. */
export const describe = (cause: unknown): string => {
  if (cause instanceof Error) return cause.message === "" ? cause.name : `${cause.name}: ${cause.message}`
  if (typeof cause === "object" && cause !== null && "_tag" in cause) return String((cause as { _tag: unknown })._tag)
  return String(cause)
}

/** Bits of `flags` owned by the close handshake (see `state.ts` for the whole table). */
const HANDLER_ENDED = 1 << 5
const FINISHED = 1 << 6
const CLOSER_STARTED = 1 << 7
const SCOPE_CLOSING = 1 << 8
const DISCARDING = 1 << 9

/** The session's layer that runs the close handshake and ends the session (see the module notes). */
export abstract class CloseHandshake extends ExtensionChain {
  /** Set once the incoming frames ended (`onEnd` ran); `Extra.handlerDoneDeferred` is created only to wait for it. */
  private declare handlerEnded: boolean
  /** Set once the session's end is decided (`closeReason` completed). */
  protected declare finished: boolean
  protected declare closerStarted: boolean
  /** The scope is closing: no new fiber may be forked into it. */
  protected declare scopeClosing: boolean
  /** After the session was failed by us, frames are read and discarded. */
  protected declare discarding: boolean

  /** The reason of the Close we sent first, when we initiated the close handshake. */
  protected get sentFirst(): CloseReason.CloseReason | undefined {
    return this.extra?.sentFirst
  }

  protected set sentFirst(reason: CloseReason.CloseReason) {
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

  private get scopeCloseReason(): CloseReason.CloseReason {
    return this.options.scopeCloseReason ?? (this.role === "server" ? GOING_AWAY : NORMAL)
  }

  get awaitClose(): Effect.Effect<CloseReason.CloseReason> {
    return Effect.suspend(() =>
      this.endReason !== undefined ? Effect.succeed(this.endReason) : Deferred.await(this.closeReason)
    )
  }

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
    this.stopPinger() // a sleeping pinger would keep the session (and its unread messages) until its next Ping
  }

  /** Interrupts the pinger, if it runs (and is not the caller: the pinger itself may end the session). */
  private stopPinger(): void {
    const pinger = this.extra?.pingerFiber
    if (pinger === undefined) return
    this.extra!.pingerFiber = undefined
    if (Fiber.getCurrent() !== pinger) pinger.interruptUnsafe()
  }

  /** Queues our Close unless one was already sent; returns whether it was queued. */
  protected sendClose(reason: CloseReason.CloseReason): boolean {
    return this.writer.tryEnqueue(reason.code === 1005 ? Frame.close() : Frame.close(reason), true)
  }

  /** Fails the session from our side: Close with `reason` (if still possible), then `finish`. */
  protected fail(error: SessionError, reason: CloseReason.CloseReason): void {
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
  protected failSession(error: ProtocolViolation | FrameTooBig | ExtensionError | ChannelOverflow): void {
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
  protected applyPendingFailure(): void {
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
  protected get failAfterDrain(): Effect.Effect<void> {
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

  protected addFiber(fiber: Fiber.Fiber<unknown, unknown>): void {
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
  protected get beginClosing(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.stopPinger()
      if (this.closerStarted || this.scopeClosing) return Effect.void
      this.closerStarted = true
      return Effect.map(Effect.forkIn(this.closer, this.scope, { startImmediately: true }), (fiber) => {
        this.more.closerFiber = fiber
        this.addFiber(fiber)
      })
    })
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

  /** Handles the peer's Close frame. */
  protected onClose(frame: Frame.Close): void {
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

  protected closeImpl(reason: CloseReason.CloseReason): Effect.Effect<void, InvalidCloseReason> {
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

  /** Starts the closer if needed and waits for it (it bounds the rest by `closeTimeout`, then destroys). */
  protected get awaitCloser(): Effect.Effect<void> {
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

  /** Ends an open outgoing fragmented message and passes the send gate on (`SendGate`). */
  protected abstract endFragmentedMessage(): void
}

defineFlags(CloseHandshake.prototype, {
  handlerEnded: HANDLER_ENDED,
  finished: FINISHED,
  closerStarted: CLOSER_STARTED,
  scopeClosing: SCOPE_CLOSING,
  discarding: DISCARDING
})
