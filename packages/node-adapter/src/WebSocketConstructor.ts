/**
 * `WebSocketConstructor`: Effect's `Socket.WebSocketConstructor` service backed by our
 * `WebSocketClient`, for code that dials through it (`Socket.makeWebSocket`,
 * `Socket.layerWebSocket`, DevTools, cluster's `HttpRunner`, GraphQL over WebSocket) instead of
 * Node's global (undici) `WebSocket` or the `ws` package.
 *
 * Effect RPC's `RpcClient.layerProtocolSocket` consumes a `Socket.Socket`, so prefer
 * `EffectSocket.layerWebSocket(url)` there (no event-emitter shim in between). This module is the
 * compatibility path: each constructor call returns an `EffectWebSocket`, a small WHATWG-like
 * object (`readyState`, `add/removeEventListener` for open/message/error/close, `send`,
 * `close(code, reason)`, `binaryType`) whose connection runs in a fiber owned by the layer's
 * scope: releasing the layer closes every connection it opened.
 *
 * @module
 */
import { DefaultWebSocketSession, type Errors } from "@effect-ws/core"
import { CloseReason, Utf8 } from "@effect-ws/codec"
import { Effect, FiberSet, type Fiber, Layer, Queue, type Scope } from "effect"
import { Socket } from "effect/socket"
import * as WebSocketClient from "./WebSocketClient.ts"

/** The events an `EffectWebSocket` dispatches, as a WHATWG `WebSocket` does. */
export type EventType = "open" | "message" | "error" | "close"
/** A listener given to `addEventListener`; it is called with the event. */
export type Listener = (event: Socket.WebSocketEvent) => void
/** Runs an effect on the runtime the constructor was built with and returns its fiber. */
export type RunFork = (effect: Effect.Effect<void>) => Fiber.Fiber<void>
type Outgoing = string | Uint8Array | CloseReason.CloseReason

/** The event a listener gets; `close` events also carry `wasClean`. */
export interface EffectWebSocketEvent extends Socket.WebSocketEvent {
  readonly type: EventType
  readonly wasClean?: boolean
  readonly error?: unknown
}

const isValidUserCloseCode = (code: number): boolean => code === 1000 || (code >= 3000 && code <= 4999)

/**
 * A WHATWG-style WebSocket over an effect-ws client session (what `layer`'s constructor
 * returns). Readiness follows the WHATWG states (0 connecting, 1 open, 2 closing, 3 closed).
 * `send` throws an `InvalidStateError` `DOMException` while connecting and drops data once
 * closing, like the browser; `close` throws `InvalidAccessError` for a code other than 1000 or
 * 3000–4999 and `SyntaxError` for a reason over 123 UTF-8 bytes. A failed connection fires
 * `error` then `close` (1006); a session that ended by a protocol error fires `error` then
 * `close` with the code we sent; a close handshake fires `close` with `wasClean: true`, a
 * connection lost without one (or a close handshake that timed out) `close` 1006.
 */
export class EffectWebSocket implements Socket.WebSocketLike {
  /** The URL dialed. */
  readonly url: string
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readyState = 0
  /** How Binary messages are delivered: `"arraybuffer"` (default) or `"blob"`. */
  binaryType: "arraybuffer" | "blob" = "arraybuffer"
  /** The subprotocol the server chose ("" before open or when none). */
  protocol = ""
  private readonly listeners = new Map<EventType, Map<Listener, boolean>>()
  private readonly outgoing: Queue.Queue<Outgoing>
  private readonly fiber: Fiber.Fiber<void>

  constructor(url: string, options: WebSocketClient.WebSocketClientOptions, runFork: RunFork) {
    this.url = url
    this.outgoing = Effect.runSync(Queue.unbounded<Outgoing>()) // allocation only: synchronous
    this.fiber = runFork(this.connection(options))
  }

  /** Registers a listener (`once` removes it after its first call). */
  addEventListener(type: EventType, listener: Listener, options?: { readonly once?: boolean }): void {
    let set = this.listeners.get(type)
    if (set === undefined) this.listeners.set(type, set = new Map())
    set.set(listener, options?.once === true)
  }

  /** Removes a listener. */
  removeEventListener(type: EventType, listener: Listener): void {
    this.listeners.get(type)?.delete(listener)
  }

  /** Queues a Text (string) or Binary (bytes) message; throws `InvalidStateError` while connecting; dropped once closing. */
  send(data: string | Uint8Array<ArrayBuffer>): void {
    if (this.readyState === 0) throw new DOMException("WebSocket is still connecting", "InvalidStateError")
    if (this.readyState !== 1) return
    Queue.offerUnsafe(this.outgoing, typeof data === "string" ? data : data.slice())
  }

  /** Starts the close handshake (after the messages already sent), or aborts a connection in progress. */
  close(code?: number, reason?: string): void {
    if (code !== undefined && !isValidUserCloseCode(code)) {
      throw new DOMException(`Invalid close code ${code}`, "InvalidAccessError")
    }
    const message = reason ?? ""
    if (Utf8.utf8Length(message) > CloseReason.MAX_REASON_BYTES) {
      throw new DOMException("Close reason longer than 123 bytes", "SyntaxError")
    }
    if (this.readyState >= 2) return
    if (this.readyState === 0) {
      this.readyState = 3
      this.fiber.interruptUnsafe()
      this.dispatch({ type: "error", error: new Error("Closed before the connection was established") })
      this.dispatch({ type: "close", code: 1006, reason: "", wasClean: false })
      return
    }
    this.readyState = 2
    Queue.offerUnsafe(this.outgoing, CloseReason.CloseReason(code ?? 1000, message))
  }

  private dispatch(event: EffectWebSocketEvent): void {
    const set = this.listeners.get(event.type)
    if (set === undefined) return
    for (const [listener, once] of Array.from(set)) {
      if (once) set.delete(listener)
      try {
        listener(event)
      } catch {
        // As with DOM event targets, a throwing listener does not stop the others or the connection.
      }
    }
  }

  private finish(event: EffectWebSocketEvent, error?: unknown): void {
    if (this.readyState === 3) return
    this.readyState = 3
    if (error !== undefined) this.dispatch({ type: "error", error })
    this.dispatch(event)
  }

  private connection(options: WebSocketClient.WebSocketClientOptions): Effect.Effect<void> {
    const self = this
    return Effect.gen(function*() {
      const connected = yield* Effect.result(WebSocketClient.connect(self.url, options))
      if (connected._tag === "Failure") {
        return self.finish({ type: "close", code: 1006, reason: "", wasClean: false }, connected.failure)
      }
      const { session, protocol } = connected.success
      if (self.readyState !== 0) return // aborted meanwhile
      self.protocol = protocol ?? ""
      self.readyState = 1
      self.dispatch({ type: "open" })
      yield* Effect.forkScoped(self.writeLoop(session), { startImmediately: true })
      const ended = yield* Effect.flip(Effect.forever(Effect.map(session.receive, (message) => self.deliver(message))))
      const reason = yield* session.awaitClose
      // Like `toSocketError`: only sessions we failed with an error code fire `error`.
      const quiet = ended._tag === "ConnectionClosed" || ended._tag === "AbnormalClosure" || ended._tag === "CloseTimeout"
      self.finish(
        { type: "close", code: reason.code, reason: reason.message, wasClean: ended._tag === "ConnectionClosed" },
        quiet ? undefined : ended
      )
    }).pipe(
      Effect.scoped,
      Effect.onInterrupt(() => Effect.sync(() => self.finish({ type: "close", code: 1006, reason: "", wasClean: false })))
    )
  }

  /** Sends queued messages in order; a queued close reason starts the close handshake. Ends with the session. */
  private writeLoop(session: DefaultWebSocketSession.WebSocketSession): Effect.Effect<void> {
    const outgoing = this.outgoing
    return Effect.forever(
      Effect.flatMap(Queue.take(outgoing), (item): Effect.Effect<void, DefaultWebSocketSession.SendError | Errors.InvalidCloseReason> =>
        typeof item === "string" || item instanceof Uint8Array ? session.send(item) : session.close(item))
    ).pipe(Effect.ignore)
  }

  private deliver(message: DefaultWebSocketSession.Message): void {
    if (message._tag === "Text") {
      this.dispatch({ type: "message", data: DefaultWebSocketSession.readText(message) })
      return
    }
    const bytes = DefaultWebSocketSession.readBytes(message)
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer
    this.dispatch({ type: "message", data: this.binaryType === "blob" ? new Blob([buffer]) : buffer })
  }
}

/** The client options a constructor call maps to (`protocols` and `headers` from the call override `defaults`). */
const toClientOptions = (
  defaults: WebSocketClient.WebSocketClientOptions,
  options: Socket.WebSocketConstructorOptions | undefined
): WebSocketClient.WebSocketClientOptions => {
  if (options === undefined) return defaults
  if (typeof options === "string") return { ...defaults, protocols: [options] }
  if (Array.isArray(options)) return { ...defaults, protocols: options }
  const protocols = options.protocols
  return {
    ...defaults,
    ...(protocols === undefined ? {} : { protocols: typeof protocols === "string" ? [protocols] : protocols }),
    ...(options.headers === undefined ? {} : { headers: { ...defaults.headers, ...options.headers } })
  }
}

/**
 * Builds, in the current scope, a constructor whose sockets connect with
 * `WebSocketClient.connect(url, options)` (timeouts, TLS, extensions, session settings from
 * `defaults`; subprotocols and headers from each call). Closing the scope closes every socket it
 * made. Never fails; connection failures surface as `error` + `close` events.
 */
export const make = Effect.fnUntraced(function*(
  defaults: WebSocketClient.WebSocketClientOptions = {}
): Effect.fn.Return<Socket.WebSocketConstructor["Service"], never, Scope.Scope> {
  const runFork = yield* FiberSet.makeRuntime<never, void, never>()
  return (url, options) => new EffectWebSocket(url, toClientOptions(defaults, options), (effect) => runFork(effect))
})

/**
 * Provides `Socket.WebSocketConstructor` backed by effect-ws (see `make`). Use with
 * `Socket.layerWebSocket(url)` / `Socket.makeWebSocket(url)`; for Effect RPC prefer
 * `EffectSocket.layerWebSocket(url)`. Never fails.
 */
export const layer = (defaults: WebSocketClient.WebSocketClientOptions = {}): Layer.Layer<Socket.WebSocketConstructor> =>
  Layer.effect(Socket.WebSocketConstructor, make(defaults))
