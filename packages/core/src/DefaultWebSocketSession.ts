/**
 * `DefaultWebSocketSession`: the message-level session (Ktor's `DefaultWebSocketSession`).
 * On top of a `RawWebSocket` it reassembles fragmented messages (validating text as UTF-8 as the
 * bytes arrive), answers Pings, optionally sends Pings of its own, applies extensions to whole
 * messages, runs the close handshake with a timeout, and completes `closeReason` exactly once on
 * every path a session can end by.
 *
 * Close reasons (RFC 6455 §7.1.5 and design.md §5):
 * - the peer sent the first Close: its code and reason (1005 when it had no code), echoed back;
 * - we sent the first Close (`close`, `closeExceptionally`, `run`, scope close): the reason we sent;
 * - a violation, a too-big message or an incoming overflow: the code we sent (1002/1007/1009/1008);
 * - ping timeout: 1011 "Ping timeout"; close timeout or EOF/reset without a Close: 1006 (never sent).
 *
 * @module
 */
import { CloseReason, Frame, Utf8 } from "@effect-ws/codec"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Queue, type Scope, Sink, Stream } from "effect"
import * as ChannelsConfig from "./ChannelsConfig.ts"
import {
  type ChannelOverflow,
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
import type { RawWebSocket, Role } from "./RawWebSocket.ts"

/** A whole message: a Text or Binary frame with `fin` set (re-exported from `Extension`). */
export type { Message } from "./Extension.ts"

/** Options of `DefaultWebSocketSession.make`. */
export interface DefaultWebSocketSessionOptions {
  /** Send a Ping this often (default: never). The first Ping goes out one interval after the start. */
  readonly pingInterval?: Duration.Input
  /** How long to wait for the Pong (from sending the Ping) before closing with 1011 (default 15 s). */
  readonly pingTimeout?: Duration.Input
  /** How long the close handshake may take once it started before the transport is destroyed (default 10 s). */
  readonly closeTimeout?: Duration.Input
  /** Largest reassembled message in bytes; larger fails 1009 as soon as it is exceeded (default: the raw `maxFrameSize`). */
  readonly maxMessageSize?: number
  /** Most fragments one message may have; more fails 1009 (default 1,048,576). */
  readonly maxFragments?: number
  /** The Close sent when the session's scope closes while it is open (default 1001 for servers, 1000 for clients). */
  readonly scopeCloseReason?: CloseReason.CloseReason
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
   * ended it (`ConnectionClosed` for a completed close handshake).
   */
  readonly incoming: Queue.Dequeue<Message, SessionError>
  /** The next message; fails with the `SessionError` that ended the session once it has ended. */
  readonly receive: Effect.Effect<Message, SessionError>
  /** The messages as a stream; ends after a normal close (`ConnectionClosed`), fails with any other `SessionError`. */
  readonly messages: Stream.Stream<Message, Exclude<SessionError, ConnectionClosed>>
  /** Sends a Text (string) or Binary (bytes) message; see `SendError`. Suspends while the outgoing queue is full (policy `"suspend"`). */
  readonly send: (data: string | Uint8Array) => Effect.Effect<void, SendError>
  /**
   * Sends a frame. Whole Text/Binary messages go through the extensions; fragments, Ping and Pong
   * are sent as they are; a Close frame is `close` with its reason (`InvalidCloseReason` if the
   * payload is not a sendable Close payload).
   */
  readonly sendFrame: (frame: Frame.Frame) => Effect.Effect<void, SendError | InvalidCloseReason>
  /** A sink that sends every string (Text) or byte array (Binary) it receives. */
  readonly outgoing: Sink.Sink<void, string | Uint8Array, never, SendError>
  /** Completes once every frame sent before it was handed to the transport. Never fails. */
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
  /** Waits for `closeReason`. */
  readonly awaitClose: Effect.Effect<CloseReason.CloseReason>
  /** Ends the session at once without a Close frame (the transport is destroyed). */
  readonly terminate: Effect.Effect<void>
  /**
   * Runs a handler with this session (Ktor's server `webSocket { }`): when it succeeds the session
   * closes with 1000, when it fails with 1011 (its error is then re-raised); either way it waits
   * until the session has ended and our last Close frame was handed to the transport (bounded by
   * the close timeout). On interruption it does nothing: the scope's finalizer closes the session.
   */
  readonly run: <A, E, R>(handler: (session: WebSocketSession) => Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** The session's own fibers and the raw ones (diagnostics: none is running once the scope closed). */
  readonly fibers: () => ReadonlyArray<Fiber.Fiber<unknown, unknown>>
}

const DEFAULT_PING_TIMEOUT = Duration.seconds(15)
const DEFAULT_CLOSE_TIMEOUT = Duration.seconds(10)
const DEFAULT_MAX_FRAGMENTS = 1 << 20

const NORMAL = CloseReason.CloseReason(1000)
const ABNORMAL_EOF = CloseReason.CloseReason(1006, "Connection closed without a Close frame")
const ABNORMAL_TIMEOUT = CloseReason.CloseReason(1006, "Close handshake timed out")
const PING_TIMEOUT = CloseReason.CloseReason(1011, "Ping timeout")
const INCOMING_OVERFLOW = CloseReason.CloseReason(1008, "Incoming queue overflow")

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

/**
 * Starts a message-level session on a raw session, in the current scope. Its fibers (incoming
 * processor, ponger, optional pinger, closer) are interrupted when the scope closes; before that,
 * an open session sends its scope-close reason (1001 on servers, 1000 on clients) and completes
 * `closeReason`. The raw session's `incoming` is consumed by this session.
 */
export const make = Effect.fnUntraced(function*(
  raw: RawWebSocket,
  options: DefaultWebSocketSessionOptions = {}
): Effect.fn.Return<WebSocketSession, never, Scope.Scope> {
  const scope = yield* Effect.scope
  const writer = raw.writer
  const extensions = raw.extensions
  const pingTimeout = Duration.fromInputUnsafe(options.pingTimeout ?? DEFAULT_PING_TIMEOUT)
  const closeTimeout = Duration.fromInputUnsafe(options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT)
  const pingInterval = options.pingInterval === undefined ? undefined : Duration.fromInputUnsafe(options.pingInterval)
  const maxFragments = options.maxFragments ?? DEFAULT_MAX_FRAGMENTS
  const maxMessageSize = () => options.maxMessageSize ?? raw.maxFrameSize
  const scopeCloseReason = options.scopeCloseReason ?? CloseReason.CloseReason(raw.role === "server" ? 1001 : 1000)
  const incomingConfig = raw.channels.incoming

  const incoming = yield* ChannelsConfig.makeQueue<Message, SessionError>(incomingConfig)
  const closeReason = yield* Deferred.make<CloseReason.CloseReason>()
  const pingMailbox = yield* Queue.sliding<Uint8Array>(1)
  const processorDone = yield* Deferred.make<void>()

  // ---- Session state (plain mutable fields; only this connection's fibers touch them) ----
  /** The reason of the Close we sent first, when we initiated the close handshake. */
  let sentFirst: CloseReason.CloseReason | undefined = undefined
  /** Set once the session's end is decided (`closeReason` completed). */
  let finished = false
  let closerStarted = false
  /** The scope is closing: no new fiber may be forked into it. */
  let scopeClosing = false
  let pingerFiber: Fiber.Fiber<void> | undefined = undefined
  let closerFiber: Fiber.Fiber<void> | undefined = undefined
  /** The Pong payload the pinger waits for, and how it is told. */
  let awaitedPong: Uint8Array | undefined = undefined
  let pongArrived: Deferred.Deferred<void> | undefined = undefined

  /** Completes the session: `closeReason`, then `incoming` fails after its buffered messages. Idempotent. */
  const finish = (error: SessionError, reason: CloseReason.CloseReason): void => {
    if (finished) return
    finished = true
    Deferred.doneUnsafe(closeReason, Exit.succeed(reason))
    Queue.failCauseUnsafe(incoming, Cause.fail(error))
    writer.closeForSending()
    awaitedPong = undefined
  }

  /** Queues our Close unless one was already sent; returns whether it was queued. */
  const sendClose = (reason: CloseReason.CloseReason): boolean =>
    writer.tryEnqueue(reason.code === 1005 ? Frame.close() : Frame.close(reason), true)

  /** Fails the session from our side: Close with `reason` (if still possible), then `finish`. */
  const fail = (error: SessionError, reason: CloseReason.CloseReason): void => {
    sendClose(reason)
    finish(error, reason)
  }

  /** The closer: bounds the rest of the close handshake by `closeTimeout`, then destroys the transport. */
  const closer = Effect.gen(function*() {
    const completed = yield* Effect.timeoutOption(
      Effect.andThen(raw.closed, Deferred.await(processorDone)),
      closeTimeout
    )
    if (completed._tag === "None" && !finished) {
      finish(
        new CloseTimeout({ timeoutMillis: Duration.toMillis(closeTimeout), sent: sentFirst ?? NORMAL }),
        ABNORMAL_TIMEOUT
      )
    }
    yield* raw.transport.destroy
  })

  /** Starts the closer (once) and stops the pinger. */
  const beginClosing: Effect.Effect<void> = Effect.suspend(() => {
    const pinger = pingerFiber
    pingerFiber = undefined
    if (pinger !== undefined && Fiber.getCurrent() !== pinger) pinger.interruptUnsafe()
    if (closerStarted || scopeClosing) return Effect.void
    closerStarted = true
    return Effect.map(Effect.forkIn(closer, scope, { startImmediately: true }), (fiber) => {
      closerFiber = fiber
    })
  })

  // ---- Incoming processor: raw frames → messages ----
  let open: "Text" | "Binary" | undefined = undefined
  let openRsv1 = false
  let openRsv2 = false
  let openRsv3 = false
  let buffer = new Uint8Array(0)
  let size = 0
  let fragments = 0
  const utf8 = new Utf8.Utf8Validator()
  let validateOnTheFly = false
  /** After the session was failed by us, frames are read and discarded. */
  let discarding = false

  const violation = (kind: ProtocolViolation["kind"], code: 1002 | 1007, message: string): ProtocolViolation =>
    new ProtocolViolation({ kind, code, message })

  const failSession = (error: ProtocolViolation | FrameTooBig | ExtensionError | ChannelOverflow): void => {
    const reason = error._tag === "ExtensionError"
      ? reasonOf(1011, error.message)
      : error._tag === "ChannelOverflow"
      ? INCOMING_OVERFLOW
      : reasonOf(error.code, error.message)
    fail(error, reason)
    discarding = true
    open = undefined
    buffer = new Uint8Array(0)
  }

  const append = (payload: Uint8Array): void => {
    const needed = size + payload.length
    if (needed > buffer.length) {
      const grown = new Uint8Array(Math.min(Math.max(needed, buffer.length * 2, 256), Math.max(needed, maxMessageSize())))
      grown.set(buffer.subarray(0, size))
      buffer = grown
    }
    buffer.set(payload, size)
    size = needed
  }

  /** Handles one data frame; returns a completed message, `undefined`, or a failure. */
  const onData = (frame: Frame.Text | Frame.Binary | Frame.Continuation): Message | undefined | FrameTooBig | ProtocolViolation => {
    const limit = maxMessageSize()
    if (frame._tag !== "Continuation") {
      const rsv = frame.rsv1 || frame.rsv2 || frame.rsv3
      if (frame.fin) {
        if (frame.payload.length > limit) {
          return new FrameTooBig({ kind: "MessageTooBig", message: `Message of ${frame.payload.length} bytes exceeds ${limit}` })
        }
        if (frame._tag === "Text" && !rsv && !Utf8.isValidUtf8(frame.payload)) {
          return violation("InvalidUtf8", 1007, "Text message is not valid UTF-8")
        }
        return frame
      }
      open = frame._tag
      openRsv1 = frame.rsv1
      openRsv2 = frame.rsv2
      openRsv3 = frame.rsv3
      size = 0
      fragments = 1
      validateOnTheFly = frame._tag === "Text" && !rsv
      utf8.reset()
    } else {
      if (open === undefined) return violation("UnexpectedContinuation", 1002, "Continuation frame without a message")
      if (frame.rsv1 || frame.rsv2 || frame.rsv3) {
        return violation("ReservedBits", 1002, "RSV bits set on a continuation frame")
      }
      fragments++
      if (fragments > maxFragments) {
        return new FrameTooBig({ kind: "TooManyFragments", message: `Message has more than ${maxFragments} fragments` })
      }
    }
    if (size + frame.payload.length > limit) {
      return new FrameTooBig({ kind: "MessageTooBig", message: `Message exceeds ${limit} bytes` })
    }
    if (validateOnTheFly && utf8.update(frame.payload) !== -1) {
      return violation("InvalidUtf8", 1007, "Text message is not valid UTF-8")
    }
    if (frame.payload.length > 0) append(frame.payload)
    if (!frame.fin) return undefined
    if (validateOnTheFly && !utf8.finish()) return violation("InvalidUtf8", 1007, "Text message is not valid UTF-8")
    const payload = concatBytes(buffer, size)
    const message = Frame.make(open!, true, openRsv1, openRsv2, openRsv3, payload)
    open = undefined
    buffer = new Uint8Array(0)
    size = 0
    return message
  }

  /** Runs a message through the extensions, then validates text that an extension produced. */
  const applyIncomingExtensions = (message: Message): Effect.Effect<Message, ProtocolViolation | FrameTooBig | ExtensionError> => {
    const transformed = message.rsv1 || message.rsv2 || message.rsv3
    let effect: Effect.Effect<Message, ProtocolViolation | FrameTooBig | ExtensionError> = Effect.succeed(message)
    for (const extension of extensions) effect = Effect.flatMap(effect, extension.processIncomingMessage)
    if (!transformed) return effect
    return Effect.flatMap(effect, (m): Effect.Effect<Message, ProtocolViolation | FrameTooBig> => {
      if (m.payload.length > maxMessageSize()) {
        return Effect.fail(new FrameTooBig({ kind: "MessageTooBig", message: `Message exceeds ${maxMessageSize()} bytes` }))
      }
      if (m._tag === "Text" && !Utf8.isValidUtf8(m.payload)) {
        return Effect.fail(violation("InvalidUtf8", 1007, "Text message is not valid UTF-8"))
      }
      return Effect.succeed(m)
    })
  }

  /** Handles the peer's Close frame. */
  const onClose = (frame: Frame.Close): void => {
    const decoded = CloseReason.decodeCloseReason(frame.payload)
    if ("_tag" in decoded) {
      failSession(
        decoded.code === 1007
          ? violation(decoded.kind, 1007, decoded.message)
          : violation(decoded.kind, 1002, decoded.message)
      )
      return
    }
    if (sentFirst !== undefined) {
      finish(new ConnectionClosed({ initiator: "local", reason: sentFirst }), sentFirst)
    } else if (!finished) {
      sendClose(decoded)
      finish(new ConnectionClosed({ initiator: "peer", reason: decoded }), decoded)
    }
  }

  const onPong = (payload: Uint8Array): void => {
    const expected = awaitedPong
    if (expected !== undefined && pongArrived !== undefined && equalBytes(expected, payload)) {
      awaitedPong = undefined
      Deferred.doneUnsafe(pongArrived, Exit.void)
    }
  }

  const processor = Effect.gen(function*() {
    const delivered: Array<Message> = []
    while (true) {
      const taken = yield* Effect.result(Queue.takeAll(raw.incoming))
      if (taken._tag === "Failure") {
        const error = taken.failure
        if (Cause.isDone(error)) return // after a Close frame: handled in onClose
        if (error._tag === "AbnormalClosure") {
          if (sentFirst !== undefined && error.cause.reason === "Eof") {
            finish(new ConnectionClosed({ initiator: "local", reason: sentFirst }), sentFirst)
          } else {
            // The peer's input ended without a Close: say goodbye if we still can, report 1006 locally.
            sendClose(NORMAL)
            finish(error, ABNORMAL_EOF)
          }
        } else if (error._tag === "ChannelOverflow") {
          finish(error, INCOMING_OVERFLOW) // the raw reader already sent the Close
        } else {
          finish(error, reasonOf(error.code, error.message)) // the raw reader already sent the Close
        }
        return
      }
      if (discarding) continue
      for (const frame of taken.success) {
        if (discarding) break
        switch (frame._tag) {
          case "Text":
          case "Binary":
          case "Continuation": {
            const result = onData(frame)
            if (result === undefined) break
            if (result._tag === "FrameTooBig" || result._tag === "ProtocolViolation") {
              // Messages received before the violation are delivered first.
              if (delivered.length > 0) yield* deliver(delivered)
              failSession(result)
              break
            }
            if (extensions.length === 0) delivered.push(result)
            else {
              const processed = yield* Effect.result(applyIncomingExtensions(result))
              if (processed._tag === "Failure") {
                if (delivered.length > 0) yield* deliver(delivered)
                failSession(processed.failure)
              } else delivered.push(processed.success)
            }
            break
          }
          case "Ping":
            Queue.offerUnsafe(pingMailbox, frame.payload.slice())
            break
          case "Pong":
            onPong(frame.payload)
            break
          case "Close":
            if (delivered.length > 0) yield* deliver(delivered)
            onClose(frame)
            break
        }
      }
      if (delivered.length > 0) yield* deliver(delivered)
      if (finished || sentFirst !== undefined) yield* beginClosing
    }
  }).pipe(
    Effect.ensuring(Effect.andThen(Deferred.done(processorDone, Exit.void), Effect.suspend(() => finished ? beginClosing : Effect.void)))
  )

  /** Offers the collected messages (and empties the array); nothing is delivered after the session finished. */
  const deliver = (messages: Array<Message>): Effect.Effect<void> =>
    Effect.suspend(() => {
      const batch = messages.slice()
      messages.length = 0
      if (finished) return Effect.void
      return Effect.catch(ChannelsConfig.offerAll(incoming, incomingConfig, "incoming", batch), (overflow) =>
        Effect.sync(() => failSession(overflow)))
    })

  // ---- Ponger: answers the latest Ping; one Pong in flight at a time (a flood is coalesced) ----
  const ponger = Effect.gen(function*() {
    while (true) {
      const payload = yield* Queue.take(pingMailbox)
      if (!writer.tryEnqueue(Frame.pong(payload), true)) return
      yield* writer.flush
    }
  })

  // ---- Pinger (optional) ----
  const pinger = (interval: Duration.Duration) =>
    Effect.gen(function*() {
      while (!finished && sentFirst === undefined) {
        yield* Effect.sleep(interval)
        if (finished || sentFirst !== undefined) return
        const payload = pingPayload()
        const arrived = Deferred.makeUnsafe<void>()
        awaitedPong = payload
        pongArrived = arrived
        const answered = yield* Effect.timeoutOption(
          Effect.andThen(writer.enqueue(Frame.ping(payload), true), Deferred.await(arrived)),
          pingTimeout
        )
        if (answered._tag === "None") {
          fail(new PingTimeout({ timeoutMillis: Duration.toMillis(pingTimeout) }), PING_TIMEOUT)
          yield* beginClosing
          return
        }
      }
    }).pipe(Effect.catch(() => Effect.void))

  // ---- Sending ----
  const applyOutgoing = (message: Message): Effect.Effect<Message, ExtensionError> => {
    let effect: Effect.Effect<Message, ExtensionError> = Effect.succeed(message)
    for (const extension of extensions) effect = Effect.flatMap(effect, extension.processOutgoingMessage)
    return effect
  }

  const sendMessage = (message: Message): Effect.Effect<void, SendError> =>
    extensions.length === 0
      ? writer.enqueue(message)
      : Effect.flatMap(applyOutgoing(message), (m) => writer.enqueue(m))

  const send = (data: string | Uint8Array): Effect.Effect<void, SendError> =>
    sendMessage(typeof data === "string" ? Frame.text(data) : Frame.binary(data))

  const close = (reason: CloseReason.CloseReason = NORMAL): Effect.Effect<void, InvalidCloseReason> =>
    Effect.suspend(() => {
      const invalid = validateOutgoingReason(reason)
      if (invalid !== undefined) return Effect.fail(invalid)
      if (finished || writer.closeSent || writer.isClosedForSending) return Effect.void
      sentFirst = reason
      sendClose(reason)
      return Effect.andThen(beginClosing, writer.flush)
    })

  const closeExceptionally = (cause: unknown): Effect.Effect<void> =>
    Effect.ignore(close(reasonOf(1011, describe(cause))))

  const sendFrame = (frame: Frame.Frame): Effect.Effect<void, SendError | InvalidCloseReason> => {
    switch (frame._tag) {
      case "Close": {
        const decoded = CloseReason.decodeCloseReason(frame.payload)
        if ("_tag" in decoded) {
          return Effect.fail(new InvalidCloseReason({ code: frame.payload.length >= 2 ? (frame.payload[0]! << 8) | frame.payload[1]! : 1005, message: decoded.message }))
        }
        return decoded.code === 1005 ? Effect.fail(new InvalidCloseReason({ code: 1005, message: "" })) : close(decoded)
      }
      case "Text":
      case "Binary":
        return frame.fin ? sendMessage(frame) : writer.enqueue(frame)
      default:
        return writer.enqueue(frame)
    }
  }

  const awaitClose = Deferred.await(closeReason)

  const run = <A, E, R>(handler: (session: WebSocketSession) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.onExit(handler(session), (exit) => {
      if (Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)) return Effect.void
      const closing = Exit.isSuccess(exit)
        ? Effect.ignore(close(NORMAL))
        : closeExceptionally(Cause.squash(exit.cause))
      // Wait for the end of the session, then for our last Close (or echo) to be written.
      return Effect.andThen(closing, Effect.andThen(awaitClose, writer.flush))
    })


  const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
  const session: WebSocketSession = {
    role: raw.role,
    raw,
    extensions,
    extension: (factory) => getExtension(extensions, factory),
    extensionOrNull: (factory) => findExtension(extensions, factory) ?? null,
    incoming,
    receive: Queue.take(incoming),
    // Built on demand: an idle connection does not pay for them.
    get messages(): Stream.Stream<Message, Exclude<SessionError, ConnectionClosed>> {
      return Stream.fromQueue(incoming).pipe(Stream.catchTag("ConnectionClosed", () => Stream.empty))
    },
    send,
    sendFrame,
    get outgoing(): Sink.Sink<void, string | Uint8Array, never, SendError> {
      return Sink.forEach(send)
    },
    flush: writer.flush,
    close,
    closeExceptionally,
    closeReason,
    awaitClose,
    terminate: raw.terminate,
    run,
    fibers: () => [...raw.fibers, ...fibers, ...(closerFiber === undefined ? [] : [closerFiber])]
  }

  fibers.push(yield* Effect.forkIn(processor, scope, { startImmediately: true }))
  fibers.push(yield* Effect.forkIn(ponger, scope, { startImmediately: true }))
  if (pingInterval !== undefined && Duration.isGreaterThan(pingInterval, Duration.zero)) {
    const fiber = yield* Effect.forkIn(pinger(pingInterval), scope, { startImmediately: true })
    pingerFiber = fiber
    fibers.push(fiber)
  }

  // Registered last so it runs first on scope close, while the reader and writer still run:
  // an open session says goodbye, and a Close already queued (ours or an echo) is written before
  // the raw session destroys the transport (bounded by the close timeout).
  yield* Effect.addFinalizer(() =>
    Effect.suspend(() => {
      scopeClosing = true
      if (!finished && sentFirst === undefined && !writer.closeSent) {
        sentFirst = scopeCloseReason
        sendClose(scopeCloseReason)
      }
      return Effect.timeoutOption(writer.flush, closeTimeout).pipe(
        Effect.andThen(Effect.sync(() => {
          const sent = sentFirst ?? scopeCloseReason
          finish(new ConnectionClosed({ initiator: "local", reason: sent }), sent)
        }))
      )
    })
  )
  return session
})

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

