/**
 * `WebSocketServer`: a standalone WebSocket server on its own `node:http` server. Each upgrade
 * request on `path` goes through `ServerHandshake`; an accepted connection becomes a
 * `NodeTransport`, then a server-role session, and the application's handler runs with it.
 *
 * Everything is scoped: when the server's scope closes it stops accepting, sends every open
 * session a Close 1001 and waits (bounded by `shutdownTimeout`) for the close handshakes,
 * then interrupts the remaining connection fibers and destroys every socket. No socket or fiber
 * outlives the scope.
 *
 * Hostile clients: heads larger than `maxHeaderSize` get 431 (from node:http's parser, answered
 * by our `clientError` listener), more than `maxHeaders` fields get 431, malformed requests 400,
 * and a connection that has not completed its handshake within `handshakeTimeout` (including one
 * that never sends a byte, or trickles it) is destroyed.
 *
 * @module
 */
import { CloseReason, Handshake } from "@effect-ws/codec"
import type { DefaultWebSocketSession } from "@effect-ws/core"
import { Cause, Context, Data, Duration, Effect, FiberSet, Layer, type Scope } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as NodeTransport from "./NodeTransport.ts"
import * as ServerHandshake from "./ServerHandshake.ts"
import { type SessionOptions, startSession } from "./SessionOptions.ts"

/** Options of `make` / `layer`. `R` is what the `verify` hook needs. */
export interface WebSocketServerOptions<R = never> extends ServerHandshake.ServerHandshakeOptions<R> {
  /** Interface to listen on (default: Node's default, all interfaces). */
  readonly host?: string
  /** Port to listen on (default 0: an ephemeral port, see `WebSocketServer.port`). */
  readonly port?: number
  /** Only upgrade requests whose path (query ignored) is exactly this; others get 404 (default: every path). */
  readonly path?: string
  /** Time from TCP accept to the 101 response being written; slower connections are destroyed (default 10 s). */
  readonly handshakeTimeout?: Duration.Input
  /** Largest request head in bytes; larger is answered with 431 by node:http (default 16 KiB). */
  readonly maxHeaderSize?: number
  /** How long closing the scope waits for open sessions to finish their close handshake (default 5 s). */
  readonly shutdownTimeout?: Duration.Input
  /** Settings of every session. */
  readonly session?: SessionOptions
}

/** The application's code for one connection. When it returns the session closes with 1000, when it fails with 1011. */
export type ConnectionHandler<E, R> = (
  session: DefaultWebSocketSession.WebSocketSession,
  connection: ServerHandshake.AcceptedUpgrade
) => Effect.Effect<void, E, R>

/** A running server. */
export interface WebSocketServer {
  /** The address the server listens on (with the actual port when `port` was 0). */
  readonly address: Net.AddressInfo
  /** The actual port. */
  readonly port: number
  /** Number of TCP connections currently open (handshaking or upgraded). */
  readonly connections: () => number
  /** Number of sessions currently open. */
  readonly sessions: () => number
}

/** The server could not listen (port in use, permission denied, bad host). */
export class WebSocketServerError extends Data.TaggedError("WebSocketServerError")<{
  readonly message: string
  readonly cause: unknown
}> {}

/** The running server as a service, provided by `layer`. */
export class WebSocketServerService extends Context.Service<WebSocketServerService, WebSocketServer>()(
  "@effect-ws/node-adapter/WebSocketServer"
) {}

const DEFAULT_HANDSHAKE_TIMEOUT = Duration.seconds(10)
const DEFAULT_SHUTDOWN_TIMEOUT = Duration.seconds(5)
const DEFAULT_MAX_HEADER_SIZE = 16 * 1024
const GOING_AWAY = CloseReason.CloseReason(1001, "Server shutting down")

const pathOf = (url: string | undefined): string => {
  const target = url ?? "/"
  const query = target.indexOf("?")
  return query === -1 ? target : target.slice(0, query)
}

const clientErrorStatus = (error: NodeJS.ErrnoException): 400 | 408 | 431 => {
  switch (error.code) {
    case "HPE_HEADER_OVERFLOW":
      return 431
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return 408
    default:
      return 400
  }
}

/** Answers a plain (non-upgrade) HTTP request with a rejection and closes the connection. */
const respond = (response: Http.ServerResponse, rejection: Handshake.HandshakeRejection): void => {
  const body = Buffer.from(rejection.reason, "utf8")
  response.shouldKeepAlive = false
  response.statusCode = rejection.status
  for (const [name, value] of Object.entries(rejection.headers)) {
    if (name.toLowerCase() !== "connection") response.setHeader(name, value)
  }
  response.setHeader("Connection", "close")
  response.setHeader("Content-Type", "text/plain; charset=utf-8")
  response.setHeader("Content-Length", body.length)
  response.end(body)
}

/**
 * Starts a server in the current scope and returns once it listens. Each accepted connection runs
 * `handler` in its own fiber; handler failures close that session with 1011 and are logged at
 * debug level, never affecting other connections. Fails with `WebSocketServerError` when it
 * cannot listen.
 */
export const make = Effect.fnUntraced(function*<E, R, RV = never>(
  handler: ConnectionHandler<E, R>,
  options: WebSocketServerOptions<RV> = {}
): Effect.fn.Return<WebSocketServer, WebSocketServerError, R | RV | Scope.Scope> {
  const handshakeTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT))
  const shutdownTimeout = Duration.fromInputUnsafe(options.shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT)
  const maxHeaders = options.maxHeaders ?? ServerHandshake.DEFAULT_MAX_HEADERS
  const sockets = new Set<Net.Socket>()
  const timers = new Map<Net.Socket, ReturnType<typeof setTimeout>>()
  const sessions = new Set<DefaultWebSocketSession.WebSocketSession>()

  const server = Http.createServer({
    maxHeaderSize: options.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE
  })
  // Node 24's parser fails with HPE_HEADER_OVERFLOW (→ 431 in `clientError`) past maxHeadersCount;
  // ServerHandshake.validate checks the same limit on the parsed request.
  server.maxHeadersCount = maxHeaders

  const clearHandshakeTimer = (socket: Net.Socket): void => {
    const timer = timers.get(socket)
    if (timer === undefined) return
    clearTimeout(timer)
    timers.delete(socket)
  }

  server.on("connection", (socket: Net.Socket) => {
    sockets.add(socket)
    socket.on("error", () => {}) // errors surface through the transport (or just end a handshake)
    timers.set(socket, setTimeout(() => socket.destroy(), handshakeTimeout))
    socket.once("close", () => {
      clearHandshakeTimer(socket)
      sockets.delete(socket)
    })
  })

  server.on("clientError", (error: NodeJS.ErrnoException, socket: Net.Socket) => {
    if (socket.destroyed || !socket.writable || error.code === "ECONNRESET") {
      socket.destroy()
      return
    }
    const status = clientErrorStatus(error)
    const reason = status === 431 ? "Request header fields too large" : status === 408 ? "Request timeout" : "Bad request"
    Effect.runSync(ServerHandshake.writeRejection(socket, Handshake.makeRejection(status, reason)))
  })

  server.on("request", (request: Http.IncomingMessage, response: Http.ServerResponse) => {
    request.resume()
    if (options.path !== undefined && pathOf(request.url) !== options.path) {
      return respond(response, Handshake.makeRejection(404, "Not Found"))
    }
    const validated = ServerHandshake.validate(request, maxHeaders)
    // A request node:http did not treat as an upgrade can never be a valid one (it lacks Connection: upgrade).
    respond(
      response,
      Handshake.isHandshakeRejection(validated) ? validated : Handshake.makeRejection(400, "Not a WebSocket upgrade")
    )
  })

  const connection = (request: Http.IncomingMessage, socket: Net.Socket, head: Buffer) =>
    Effect.gen(function*() {
      if (options.path !== undefined && pathOf(request.url) !== options.path) {
        return yield* ServerHandshake.writeRejection(socket, Handshake.makeRejection(404, "Not Found"))
      }
      const accepted = yield* ServerHandshake.accept(request, socket, options)
      clearHandshakeTimer(socket)
      const transport = yield* NodeTransport.make(socket, { initialBytes: head })
      const session = yield* startSession(transport, "server", accepted.extensions, options.session)
      sessions.add(session)
      yield* Effect.addFinalizer(() => Effect.sync(() => sessions.delete(session)))
      yield* session.run((s) => handler(s, accepted))
    }).pipe(
      Effect.scoped,
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logDebug("WebSocket connection ended with an error", cause)
      ),
      Effect.annotateLogs({ remoteAddress: socket.remoteAddress ?? "unknown", url: request.url ?? "" })
    )

  // Connection fibers; registered before the graceful-close finalizer, so they are interrupted after it.
  const fibers = yield* FiberSet.make<void, never>()
  const runFork = yield* FiberSet.runtime(fibers)<R | RV>()
  server.on("upgrade", (request: Http.IncomingMessage, socket: Net.Socket, head: Buffer) => {
    runFork(connection(request, socket, head))
  })

  yield* Effect.acquireRelease(
    Effect.callback<void, WebSocketServerError>((resume) => {
      const onError = (cause: Error) =>
        resume(Effect.fail(new WebSocketServerError({ message: `Cannot listen: ${cause.message}`, cause })))
      server.once("error", onError)
      server.listen({ port: options.port ?? 0, ...(options.host === undefined ? {} : { host: options.host }) }, () => {
        server.off("error", onError)
        resume(Effect.void)
      })
    }),
    () =>
      Effect.callback<void>((resume) => {
        for (const timer of timers.values()) clearTimeout(timer)
        timers.clear()
        server.closeAllConnections()
        // Wait for every socket's `close` (prompt after `destroy`) and for the listener to close.
        let pending = sockets.size + 1
        const settled = () => {
          if (--pending === 0) resume(Effect.void)
        }
        for (const socket of sockets) {
          socket.once("close", settled)
          socket.destroy()
        }
        if (server.listening) server.close(settled)
        else settled()
      })
  )

  // Graceful shutdown: stop accepting, Close 1001 to every open session, bounded wait, then interrupt.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      server.close()
      const open = Array.from(sessions)
      yield* Effect.forEach(
        open,
        (session) => Effect.andThen(Effect.ignore(session.close(GOING_AWAY)), session.awaitClose),
        { concurrency: "unbounded", discard: true }
      ).pipe(Effect.timeoutOption(shutdownTimeout))
      yield* FiberSet.clear(fibers)
    })
  )

  const address = server.address() as Net.AddressInfo
  return {
    address,
    port: address.port,
    connections: () => sockets.size,
    sessions: () => sessions.size
  }
})

/**
 * The server as a layer: listens when built, shuts down gracefully (see the module notes) when
 * released. Fails with `WebSocketServerError` when it cannot listen.
 */
export const layer = <E, R, RV = never>(
  handler: ConnectionHandler<E, R>,
  options: WebSocketServerOptions<RV> = {}
): Layer.Layer<WebSocketServerService, WebSocketServerError, R | RV> =>
  Layer.effect(WebSocketServerService, make(handler, options))
