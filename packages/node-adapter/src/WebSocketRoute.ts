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
 * @module
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Effect } from "effect"
import { HttpServerRequest, HttpServerResponse } from "effect/http"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as NodeTransport from "./NodeTransport.ts"
import { releaseExtensions } from "./PerMessageDeflate.ts"
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
  Effect.gen(function*() {
    const request = NodeHttpServerRequest.toIncomingMessage(yield* HttpServerRequest.HttpServerRequest)
    if (!(request instanceof Http.IncomingMessage)) {
      return HttpServerResponse.text("Upgrade Required", { status: 426, headers: { upgrade: "websocket" } })
    }
    const negotiated = yield* Effect.result(ServerHandshake.negotiate(request, options))
    if (negotiated._tag === "Failure") return refusal(negotiated.failure)
    const head = heads.get(request)
    if (head === undefined) {
      yield* Effect.logError("WebSocketRoute: the http.Server was not prepared with WebSocketRoute.createServer")
      return HttpServerResponse.text("Internal Server Error", { status: 500 })
    }
    heads.delete(request)
    const { response, ...accepted } = negotiated.success
    const socket = request.socket
    yield* Effect.gen(function*() {
      socket.write(response, "latin1")
      // Registered first, so it runs after the session's finalizers (zlib contexts of permessage-deflate).
      if (accepted.extensions.length > 0) yield* Effect.addFinalizer(() => releaseExtensions(accepted.extensions))
      // No finalizer of its own: the raw session's destroys it (one finalizer per connection without extensions).
      const transport = NodeTransport.makeUnsafe(socket, { initialBytes: head })
      const session = yield* Effect.onError(
        startSession(transport, "server", accepted.extensions, options.session),
        () => transport.destroy
      )
      yield* session.run((s) => handler(s, accepted))
    }).pipe(
      Effect.scoped,
      Effect.catchCause((cause) => Effect.logDebug("WebSocket connection ended with an error", cause))
    )
    // The scope destroyed the socket; NodeHttpServer may write nothing more on it.
    yield* waitClosed(socket)
    return HttpServerResponse.empty({ status: 101 })
  })
