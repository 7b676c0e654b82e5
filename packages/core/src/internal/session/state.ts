/**
 * The state every mechanism of a `DefaultWebSocketSession` shares, and the root of the class
 * chain that makes up the session. One object per connection: each mechanism is one class of the
 * chain, in its own file, and adds its methods (and its few fields) to the same object, so an idle
 * session is still a single object with no closure, fiber or queue of its own.
 *
 *   SessionState (this file: raw session, options, flags, `Extra`, `Bound`)
 *   → Inbox (./inbox.ts) → MessageAssembly (./assembly.ts) → ExtensionChain (./extensions.ts)
 *   → CloseHandshake (./close.ts) → Pinger (./pinger.ts) → SendGate (./sendGate.ts)
 *   → Session (./session.ts: the public API and the dispatch of incoming frames)
 *
 * A lower class calls what a higher one owns through an abstract method (e.g. the close handshake
 * ends an open outgoing fragmented message, which the send gate owns). Only `Session` is ever
 * instantiated, so every call stays monomorphic.
 *
 * The booleans are bits of the one number `flags`, each named (and given its accessor with
 * `defineFlags`) in the file of the mechanism that uses it:
 *
 * | bits | file | names |
 * |---|---|---|
 * | 0–1 | inbox.ts | `TAKER_KIND` (the first taker's `TakeKind`) |
 * | 2–4, 11–12, 15 | inbox.ts | `WAKE_SCHEDULED`, `HAS_QUEUE`, `INBOX_ENDED`, `DRAINING`, `BATCH_OUT`, `ABANDONED` |
 * | 5–9 | close.ts | `HANDLER_ENDED`, `FINISHED`, `CLOSER_STARTED`, `SCOPE_CLOSING`, `DISCARDING` |
 * | 10 | sendGate.ts | `SEND_GATE_BUSY` |
 * | 13 | assembly.ts | `PARSER_VALIDATES_UTF8` |
 * | 14 | extensions.ts | `HOOK_VALIDATED_UTF8` |
 *
 * @internal
 * @module
 */
import type { CloseReason } from "@effect-ws/codec"
import { Context, type Deferred, type Fiber, type Queue, Scope } from "effect"
import type { DefaultWebSocketSessionOptions, Message, WebSocketSession } from "../../DefaultWebSocketSession.ts"
import { ProtocolViolation, type SessionError } from "../../Errors.ts"
import type { WebSocketExtension } from "../../Extension.ts"
import type { RawWebSocket, Role } from "../../RawWebSocket.ts"
import type { WebSocketWriter } from "../../WebSocketWriter.ts"
import type { Assembly } from "./assembly.ts"
import type { Taker } from "./inbox.ts"

/**
 * The rarely used state of a session, in one object created when first needed (closing, a
 * pinger, a second taker, a full inbox, a fragmented message, …): an idle session has none.
 * Grouped by the file that owns each field.
 */
export class Extra {
  // ---- inbox.ts ----
  /** Why the session ended: takers get it once the buffered messages are taken. */
  end: SessionError | undefined = undefined
  /** Takers waiting behind `Inbox.taker` (rare: two fibers taking at once). */
  moreTakers: Array<Taker> | undefined = undefined
  /** Producers waiting for room (policy `"suspend"`), woken when messages are taken. */
  roomWaiters: Array<() => void> | undefined = undefined
  /** The real queue, once `incoming` was read. */
  realQueue: Queue.Queue<Message, SessionError> | undefined = undefined
  /** Resumes the wait of a held-back failure (`CloseHandshake.failAfterDrain`) when a taker made progress. */
  drainWaiter: (() => void) | undefined = undefined

  // ---- close.ts ----
  /** `closeReason`, created when first read (completed at once if the session already ended). */
  closeReasonDeferred: Deferred.Deferred<CloseReason.CloseReason> | undefined = undefined
  /** The reason the session ended with, once it did. */
  endReason: CloseReason.CloseReason | undefined = undefined
  /** Created only to wait for the end of the incoming frames (`onEnd`). */
  handlerDoneDeferred: Deferred.Deferred<void> | undefined = undefined
  /** The reason of the Close we sent first, when we initiated the close handshake. */
  sentFirst: CloseReason.CloseReason | undefined = undefined

  // ---- sendGate.ts ----
  /** Senders waiting for the send gate (see `SendGate.sendMessage`). */
  sendGateWaiters: Array<() => void> | undefined = undefined
  /**
   * While an outgoing fragmented message is open (it holds the send gate, see `sendFrame`): the
   * fiber that sent its latest fragment, and how to stop watching that fiber's end.
   */
  fragmentOwner: Fiber.Fiber<unknown, unknown> | undefined = undefined
  stopWatchingOwner: (() => void) | undefined = undefined

  // ---- close.ts ----
  /** A failure caused by the peer's input, held back until the application took the earlier messages (`CloseHandshake.failAfterDrain`). */
  pendingFailure: { readonly error: SessionError; readonly reason: CloseReason.CloseReason } | undefined = undefined
  /** Fibers besides the raw ones (pinger, closer, a queue pump). */
  ownFibers: Array<Fiber.Fiber<unknown, unknown>> | undefined = undefined

  // ---- pinger.ts, close.ts ----
  pingerFiber: Fiber.Fiber<void> | undefined = undefined
  closerFiber: Fiber.Fiber<void> | undefined = undefined

  // ---- pinger.ts ----
  /** The Pong payload the pinger waits for, and how it is told. */
  awaitedPong: Uint8Array | undefined = undefined
  pongArrived: Deferred.Deferred<void> | undefined = undefined

  // ---- assembly.ts ----
  /** The reassembly state, created with the first fragmented message (most sessions never see one). */
  assembly: Assembly | undefined = undefined
}

/** The functions a session hands out (bound to it), created when first used, in one object. */
export class Bound {
  /** The inbox's wake-up task (see `Inbox.scheduleWake`). */
  wakeTask: (() => void) | undefined = undefined
  send: WebSocketSession["send"] | undefined = undefined
  sendFrame: WebSocketSession["sendFrame"] | undefined = undefined
  close: WebSocketSession["close"] | undefined = undefined
  closeExceptionally: WebSocketSession["closeExceptionally"] | undefined = undefined
  run: WebSocketSession["run"] | undefined = undefined
}

/** A `ProtocolViolation` the session detected (1002, or 1007 for invalid UTF-8). */
export const violation = (kind: ProtocolViolation["kind"], code: 1002 | 1007, message: string): ProtocolViolation =>
  new ProtocolViolation({ kind, code, message })

/** The root of the session's class chain: what every mechanism reads (see the module notes). */
export abstract class SessionState {
  /** The services the session was made with (the queue, the wake-up dispatcher and the scope come from them). */
  protected readonly services: Context.Context<never>
  /** The raw session underneath (frames as they are). */
  readonly raw: RawWebSocket
  protected readonly options: DefaultWebSocketSessionOptions
  /** Booleans of every mechanism, one bit each (see the module notes for who owns which bit). */
  protected flags = 0
  /** The rarely used state, created by `more` when first needed. */
  protected extra: Extra | undefined = undefined
  /** The bound functions, created by `bound` when first needed. */
  protected boundFunctions: Bound | undefined = undefined

  constructor(raw: RawWebSocket, options: DefaultWebSocketSessionOptions, services: Context.Context<Scope.Scope>) {
    this.services = services
    this.raw = raw
    this.options = options
  }

  /** The rarely used state, created on first use. */
  protected get more(): Extra {
    return this.extra ??= new Extra()
  }

  /** The bound functions, created on first use. */
  protected get bound(): Bound {
    return this.boundFunctions ??= new Bound()
  }

  /** The scope the session was made in (the closer is forked into it). */
  protected get scope(): Scope.Scope {
    return Context.get(this.services as Context.Context<Scope.Scope>, Scope.Scope)
  }

  get role(): Role {
    return this.raw.role
  }

  get extensions(): ReadonlyArray<WebSocketExtension> {
    return this.raw.extensions
  }

  protected get writer(): WebSocketWriter {
    return this.raw.writer
  }

  /** The raw parser enforces it at frame headers (set in `make`); the session re-checks complete and transformed messages. */
  protected get maxMessageSize(): number {
    return this.raw.reader.parser.maxMessageSize
  }
}
