/**
 * `EffectSocket`: effect-ws sessions as Effect's message-level `Socket` (`effect/socket`), so
 * everything built on `Socket` (Effect RPC's `RpcClient.layerProtocolSocket` and
 * `RpcServer.layerProtocolSocketServer`, `Socket.toChannel`, ...) runs on our RFC 6455 engine,
 * with no `ws` package involved.
 *
 * Reading: `pull` takes whole messages from the session's `incoming` queue (Text as `string`,
 * Binary as a fresh `Uint8Array`), as many as are buffered (up to 1024) per batch, waiting only
 * when none is; backpressure is the session's: nothing more is read off the wire while
 * `incoming` is full. `pull` never ends with `Cause.Done`: the session's end becomes the
 * `SocketError` Effect's consumers expect (see `toSocketError`), and closing the reader's scope
 * fails a `pull` suspended in another fiber with `SocketCloseError` 1006.
 *
 * Writing: strings are sent as Text, bytes as Binary (suspending while the outgoing queue is
 * full); a `CloseEvent(code, reason)` starts the close handshake with that code and reason.
 * Like the WHATWG `WebSocket` and `ws` behind Effect's own adapters, a message written after the
 * session started closing is silently dropped (Effect RPC `orDie`s its writes).
 *
 * @module
 */
import { CloseReason } from "@effect-ws/codec"
import { DefaultWebSocketSession, type Errors } from "@effect-ws/core"
import { Cause, Deferred, Effect, Exit, Latch, Layer, Queue, type Scope } from "effect"
import { Socket } from "effect/socket"
import * as WebSocketClient from "./WebSocketClient.ts"

const MAX_BATCH = 1024

/** A `SocketError` with a `SocketCloseError` reason (an empty reason becomes `undefined`). */
const closeError = (code: number, reason: string): Socket.SocketError =>
  new Socket.SocketError({
    reason: new Socket.SocketCloseError({ code, ...(reason === "" ? {} : { closeReason: reason }) })
  })

const writeError = (cause: unknown): Socket.SocketError =>
  new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause }) })

/**
 * The `SocketError` for a session that ended with `error`, matching what Effect's `ws`/WHATWG
 * based sockets report for the same event:
 * - `ConnectionClosed` (a close handshake, whoever started it) → `SocketCloseError` with the
 *   session's close code and reason (1005 when the peer's Close had no code);
 * - `AbnormalClosure` (EOF/reset without a Close) and `CloseTimeout` → `SocketCloseError` 1006;
 * - a protocol violation, a too-big message, an incoming overflow, an extension failure or a
 *   ping timeout (all of which made us send a Close with an error code) → `SocketReadError`
 *   whose `cause` is the session error.
 */
export const toSocketError = (error: Errors.SessionError): Socket.SocketError => {
  switch (error._tag) {
    case "ConnectionClosed":
      return closeError(error.reason.code, error.reason.message)
    case "AbnormalClosure":
    case "CloseTimeout":
      return closeError(1006, error.message)
    default:
      return new Socket.SocketError({ reason: new Socket.SocketReadError({ cause: error }) })
  }
}

/** The `SocketError` a failed or interrupted `incoming` queue stands for. */
const fromQueueCause = (cause: Cause.Cause<Errors.SessionError>): Socket.SocketError => {
  const error = Cause.findErrorOption(cause)
  return error._tag === "Some" ? toSocketError(error.value) : closeError(1006, "Session stopped")
}

const toChunk = (message: DefaultWebSocketSession.Message): string | Uint8Array =>
  message._tag === "Text" ? DefaultWebSocketSession.readText(message) : DefaultWebSocketSession.readBytes(message)

/**
 * Takes what `incoming` holds right now without waiting (at most `MAX_BATCH` messages, appended
 * to `batch`). Returns the queue's end as a `SocketError` when it has ended and `batch` is empty.
 */
const drain = (
  incoming: Queue.Dequeue<DefaultWebSocketSession.Message, Errors.SessionError>,
  batch: Array<string | Uint8Array>
): Socket.SocketError | undefined => {
  while (batch.length < MAX_BATCH) {
    const taken = Queue.takeUnsafe(incoming)
    if (taken === undefined) return undefined
    if (Exit.isSuccess(taken)) batch.push(toChunk(taken.value))
    else return batch.length === 0 ? fromQueueCause(taken.cause) : undefined
  }
  return undefined
}

type Batch = readonly [string | Uint8Array, ...Array<string | Uint8Array>]

/** The reader's `pull` over a session; fails with `stopped`'s error once the reader's scope closed. */
const makePull = (
  session: DefaultWebSocketSession.WebSocketSession,
  stopped: Deferred.Deferred<never, Socket.SocketError>
): Effect.Effect<Batch, Socket.SocketError> => {
  const incoming = session.incoming
  const waitForOne = Effect.raceFirst(
    Effect.mapError(Queue.take(incoming), toSocketError),
    Deferred.await(stopped)
  )
  return Effect.suspend(() => {
    if (Deferred.isDoneUnsafe(stopped)) return Deferred.await(stopped)
    const batch: Array<string | Uint8Array> = []
    const ended = drain(incoming, batch)
    if (ended !== undefined) return Effect.fail(ended)
    if (batch.length > 0) return Effect.succeed(batch as unknown as Batch)
    return Effect.map(waitForOne, (first) => {
      batch.push(toChunk(first))
      drain(incoming, batch) // an end seen here is reported by the next pull
      return batch as unknown as Batch
    })
  })
}

/** Sends one chunk; `OutgoingClosed` (the session is closing) drops it, other send errors are `SocketWriteError`s. */
const sendChunk = (
  session: DefaultWebSocketSession.WebSocketSession,
  chunk: string | Uint8Array | Socket.CloseEvent
): Effect.Effect<void, Socket.SocketError> => {
  if (Socket.isCloseEvent(chunk)) {
    let reason: CloseReason.CloseReason
    try {
      reason = CloseReason.CloseReason(chunk.code, CloseReason.truncateReason(chunk.reason ?? ""))
    } catch (cause) {
      return Effect.fail(writeError(cause))
    }
    return Effect.mapError(session.close(reason), writeError)
  }
  return Effect.catch(
    session.send(chunk),
    (error) => error._tag === "OutgoingClosed" ? Effect.void : Effect.fail(writeError(error))
  )
}

/**
 * The socket over a session source. `acquire` runs in the reader's scope on every reader
 * acquisition; `connected` is a session that exists already (server side), usable by the writer
 * before any reader is acquired and after readers are released.
 */
const makeSocket = (
  acquire: Effect.Effect<DefaultWebSocketSession.WebSocketSession, Socket.SocketError, Scope.Scope>,
  connected: DefaultWebSocketSession.WebSocketSession | undefined
): Socket.Socket => {
  let current = connected
  const latch = Latch.makeUnsafe(connected !== undefined)

  const reader: Socket.Socket["reader"] = Effect.gen(function*() {
    const session = yield* acquire
    const stopped = Deferred.makeUnsafe<never, Socket.SocketError>()
    // Registered after `acquire`'s finalizers, so it runs first: a suspended pull fails, writes
    // suspend again (dialing sockets), then the session (if `acquire` owns it) closes.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        Deferred.doneUnsafe(stopped, Exit.fail(closeError(1006, "Socket reader released")))
        if (connected === undefined && current === session) {
          current = undefined
          latch.closeUnsafe()
        }
      })
    )
    current = session
    latch.openUnsafe()
    return { pull: makePull(session, stopped), upgrade: Socket.SocketUpgradeError.unsupported }
  })

  const write = (chunk: string | Uint8Array | Socket.CloseEvent): Effect.Effect<void, Socket.SocketError> =>
    Effect.suspend(() => {
      const session = current
      return session === undefined ? latch.whenOpen(write(chunk)) : sendChunk(session, chunk)
    })

  const writeAll = (chunks: Batch): Effect.Effect<void, Socket.SocketError> =>
    Effect.suspend(() => {
      const session = current
      if (session === undefined) return latch.whenOpen(writeAll(chunks))
      return Effect.forEach(chunks, (chunk) => sendChunk(session, chunk), { discard: true })
    })

  return Socket.make({ reader, writer: Effect.succeed({ write, writeAll }) })
}

/**
 * A `Socket` over an open session (e.g. a server connection). Its writer works at once; each
 * reader acquisition reads on from the session's `incoming` (messages are never lost between
 * acquisitions). Releasing a reader does not close the session: whoever owns the session does
 * (for `WebSocketServer` connections, the handler returning). Never fails.
 */
export const fromSession = (session: DefaultWebSocketSession.WebSocketSession): Socket.Socket =>
  makeSocket(Effect.succeed(session), session)

/** Options of `makeClient` / `layerWebSocket`: those of `WebSocketClient.connect`. */
export type ClientSocketOptions = WebSocketClient.WebSocketClientOptions

/** Maps a failed `WebSocketClient.connect` to `SocketOpenError` (`Timeout` for connect/handshake timeouts, else `Unknown`). */
export const toOpenError = (
  error: WebSocketClient.WebSocketConnectError | WebSocketClient.WebSocketUpgradeFailed | Errors.ExtensionConflict
): Socket.SocketError =>
  new Socket.SocketError({
    reason: new Socket.SocketOpenError({
      kind: error._tag === "WebSocketConnectError" &&
          (error.reason === "ConnectTimeout" || error.reason === "HandshakeTimeout")
        ? "Timeout"
        : "Unknown",
      cause: error
    })
  })

/**
 * A client `Socket` that dials `url` with `WebSocketClient.connect` on every reader acquisition
 * (so `Effect.retry` around a scoped read loop reconnects, as `RpcClient` does). The connection
 * lives in the reader's scope: releasing it closes the session (Close 1000, or the configured
 * `scopeCloseReason`). Writes made while no reader holds a connection suspend until one does.
 * Acquiring the reader fails with `SocketOpenError` when the connection or handshake fails (see
 * `toOpenError`); the session's end fails `pull` as described in `toSocketError`.
 */
export const makeClient = (url: string | URL, options: ClientSocketOptions = {}): Socket.Socket =>
  makeSocket(
    Effect.map(Effect.mapError(WebSocketClient.connect(url, options), toOpenError), (connection) => connection.session),
    undefined
  )

/**
 * Provides `Socket.Socket` as a client of `url` (see `makeClient`): what
 * `RpcClient.layerProtocolSocket` consumes. Building the layer does not connect; the first
 * reader acquisition does. Never fails.
 */
export const layerWebSocket = (url: string | URL, options: ClientSocketOptions = {}): Layer.Layer<Socket.Socket> =>
  Layer.sync(Socket.Socket)(() => makeClient(url, options))
