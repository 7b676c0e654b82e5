/**
 * `WebSocketRoute`: WebSocket endpoints as ordinary routes of an `effect/http` `HttpRouter` served
 * by `@effect/platform-node`'s `NodeHttpServer`, next to plain HTTP routes on the same port.
 *
 * How it works (effect4-notes §C.4): node:http hands an upgrade request to NodeHttpServer, which
 * runs the router; our route handler negotiates with `ServerHandshake.negotiate`, answers a
 * refusal as a normal `HttpServerResponse` (NodeHttpServer writes it), and otherwise takes over
 * the raw socket: writes the 101 itself, runs the session, and returns only after the socket has
 * closed (returning earlier would make NodeHttpServer write a response onto the WebSocket
 * stream). `req.upgrade` (the `ws` path) is never used. The bytes node:http read past the head
 * are only visible in its `"upgrade"` event, so the `http.Server` must come from
 * `createServer` / `prepareServer`, which prepend a listener that keeps them.
 *
 * Shutdown: when NodeHttpServer's layer closes, handler fibers are interrupted after its
 * `gracefulShutdownTimeout` (20 s by default; set it lower), and each interrupted session sends
 * Close 1001 before its socket is destroyed. Handshake timeouts and header limits are node:http's
 * own settings on the server you create (`headersTimeout`, `maxHeaderSize`); the header count
 * limit (`maxHeaders`) is checked here.
 *
 * Memory: the request fiber lives as long as the connection, and with it what NodeHttpServer keeps
 * per request (the `IncomingMessage` with its headers and the bytes of its head, the
 * `HttpServerRequest`, the fiber, its upgrade closures and socket listeners): about 4 KB more heap
 * per idle connection than `WebSocketServer` (Node 24, a short request head; more with larger
 * headers).
 *
 * @module
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type { DefaultWebSocketSession } from "@effect-ws/core"
import { Cause, Context, Effect, Exit, Scope } from "effect"
import { HttpServerRequest, HttpServerResponse } from "effect/http"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as NodeTransport from "./NodeTransport.ts"
import * as ServerHandshake from "./ServerHandshake.ts"
import { type SessionOptions, startSession } from "./SessionOptions.ts"
import type { ConnectionHandler } from "./WebSocketServer.ts"

const heads = new WeakMap<Http.IncomingMessage, Buffer>()

/**
 * Prepares an `http.Server` for WebSocket routes: prepends an `"upgrade"` listener (it runs before
 * NodeHttpServer's) that keeps the bytes read past each upgrade request's head. Returns the server.
 */
export const prepareServer = <S extends Http.Server>(server: S): S => {
  server.prependListener("upgrade", (request: Http.IncomingMessage, _socket: Net.Socket, head: Buffer) => {
    heads.set(request, head)
  })
  return server
}

/** `http.createServer(options)` prepared with `prepareServer`; pass it to `NodeHttpServer.layer(() => createServer())`. */
export const createServer = (options: Http.ServerOptions = {}): Http.Server => prepareServer(Http.createServer(options))

/** Options of `handler`. `R` is what the `verify` hook needs. */
export interface WebSocketRouteOptions<R = never> extends ServerHandshake.ServerHandshakeOptions<R> {
  /** Settings of every session. */
  readonly session?: SessionOptions
}

const refusal = (rejected: ServerHandshake.UpgradeRejected): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.text(rejected.reason, {
    status: rejected.status,
    ...(rejected.headers === undefined ? {} : { headers: rejected.headers })
  })

/** What a route answers once its connection ended: NodeHttpServer writes nothing for it on the (closed) socket. */
const UPGRADED = HttpServerResponse.empty({ status: 101 })
const upgraded = (): HttpServerResponse.HttpServerResponse => UPGRADED
const UPGRADED_MATCH = { onFailure: upgraded, onSuccess: upgraded }

type WebSocketSession = DefaultWebSocketSession.WebSocketSession

/**
 * One accepted connection of a route, in one record. While the connection is idle the request
 * fiber's stack holds the handler's frames, one `onExit` frame whose effect and closure reach only
 * this record, and the `matchCause` that answers the 101: no suspended generator or effect tree
 * keeps the 101 head, the accept key or the negotiation result.
 */
class RouteConnection<E, R> {
  readonly socket: Net.Socket
  readonly scope: Scope.Closeable
  /** The bytes read past the request's head, until `start` took them. */
  head: Buffer | undefined
  /** The negotiated upgrade, until `start` took it. */
  negotiated: ServerHandshake.NegotiatedUpgrade | undefined
  readonly handler: ConnectionHandler<E, R>
  readonly options: SessionOptions | undefined
  /** The transport, from its creation until its session started (the session owns it from then on). */
  transport: NodeTransport.NodeTransport | undefined = undefined
  /** The session, once started. */
  session: WebSocketSession | undefined = undefined

  constructor(
    socket: Net.Socket,
    scope: Scope.Closeable,
    head: Buffer,
    negotiated: ServerHandshake.NegotiatedUpgrade,
    handler: ConnectionHandler<E, R>,
    options: SessionOptions | undefined
  ) {
    this.socket = socket
    this.scope = scope
    this.head = head
    this.negotiated = negotiated
    this.handler = handler
    this.options = options
  }

  /** Writes the 101, then starts the transport and the session in the connection's scope and runs the handler. */
  start(): Effect.Effect<void, unknown, R | Scope.Scope> {
    const negotiated = this.negotiated!
    const head = this.head!
    this.negotiated = undefined
    this.head = undefined
    // Registered first, so it runs after the session's finalizers (zlib contexts of permessage-deflate).
    const written = ServerHandshake.writeAccepted(this.socket, negotiated, this.scope)
    // No finalizer of its own: the raw session's destroys it (and `end` one whose session could not start).
    const transport = NodeTransport.makeUnsafe(this.socket, head.length === 0 ? undefined : { initialBytes: head })
    this.transport = transport
    return Effect.flatMap(written, (accepted) =>
      Effect.flatMap(startSession(transport, "server", accepted.extensions, this.options), (session) => {
        this.transport = undefined
        this.session = session
        return this.handler(session, accepted)
      }))
  }

  /**
   * The connection's end, as the standalone server's: `session.run`'s ending for the handler's exit
   * (close 1000/1011 and wait), the scope, a debug log of a failure; then the wait for the socket's
   * `close` (the scope destroyed it), after which NodeHttpServer may not write anything on it.
   */
  end(exit: Exit.Exit<void, unknown>): Effect.Effect<void> {
    const session = this.session
    const transport = this.transport
    this.session = undefined
    this.transport = undefined
    this.negotiated = undefined
    this.head = undefined
    let ended = Scope.close(this.scope, exit)
    // `run` with the handler's exit as its handler: it closes (1000/1011) and waits exactly as if it had run the handler.
    if (session !== undefined) ended = Effect.andThen(Effect.exit(session.run(() => exit)), ended)
    // A transport whose session could not start: destroyed first, as the session's finalizer would have.
    else if (transport !== undefined) ended = Effect.andThen(transport.destroy, ended)
    if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
      ended = Effect.andThen(ended, Effect.logDebug("WebSocket connection ended with an error", exit.cause))
    }
    return Effect.andThen(ended, waitClosed(this.socket))
  }
}

const waitClosed = (socket: Net.Socket): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (socket.destroyed) return resume(Effect.void)
    const done = () => resume(Effect.void)
    socket.once("close", done)
    return Effect.sync(() => {
      socket.off("close", done)
    })
  })

/**
 * The accepted part of a route: the connection runs as the standalone server's do (101, transport
 * and session in the connection's scope, the handler, then `RouteConnection.end`), and the route
 * answers only after the socket closed.
 */
const serve = <E, R>(
  request: Http.IncomingMessage,
  negotiated: ServerHandshake.NegotiatedUpgrade,
  handler: ConnectionHandler<E, R>,
  options: WebSocketRouteOptions<any>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R> => {
  const head = heads.get(request)
  if (head === undefined) {
    return Effect.as(
      Effect.logError("WebSocketRoute: the http.Server was not prepared with WebSocketRoute.createServer"),
      HttpServerResponse.text("Internal Server Error", { status: 500 })
    )
  }
  heads.delete(request)
  const scope = Scope.makeUnsafe()
  const connection = new RouteConnection(request.socket, scope, head, negotiated, handler, options.session)
  // As `Effect.scoped` does it: the connection's scope enters the fiber's context without a frame
  // of its own (the `onExit` below restores the context), one stack frame less per idle connection.
  return Effect.matchCause(
    Effect.withFiber((fiber) => {
      const previous = fiber.context
      fiber.setContext(Context.add(previous, Scope.Scope, scope))
      // `Scope` is provided: it was just added to the fiber's context.
      const started = Effect.suspend(() => connection.start()) as Effect.Effect<void, unknown, R>
      return Effect.onExit(started, (exit) => {
        fiber.setContext(previous)
        return connection.end(exit)
      })
    }),
    UPGRADED_MATCH
  )
}

/**
 * A route handler (for `HttpRouter.add("GET", path, ...)`) that accepts WebSocket upgrades and runs
 * `handler` with a server-role session. Requests that are not valid upgrades get their exact
 * status (400, 405, 426, 431, or the `verify` hook's); HTTP/2 requests get 426. A server not
 * prepared with `createServer`/`prepareServer` gets 500 for upgrades. Never fails: the
 * connection's own errors end its session and are logged at debug level.
 */
export const handler = <E, R, RV = never>(
  handler: ConnectionHandler<E, R>,
  options: WebSocketRouteOptions<RV> = {}
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | R | RV> =>
  Effect.flatMap(Effect.service(HttpServerRequest.HttpServerRequest), (serverRequest) => {
    const request = NodeHttpServerRequest.toIncomingMessage(serverRequest)
    if (!(request instanceof Http.IncomingMessage)) {
      return Effect.succeed(HttpServerResponse.text("Upgrade Required", { status: 426, headers: { upgrade: "websocket" } }))
    }
    return Effect.matchEffect(ServerHandshake.negotiate(request, options), {
      onFailure: (rejected) => Effect.succeed(refusal(rejected)),
      onSuccess: (negotiated) => serve(request, negotiated, handler, options)
    })
  })
