/**
 * `WebSocketServer`: a standalone WebSocket server on its own `node:http` server (`ws://`), or on a
 * `node:https` server when given `tls` (`wss://`). Each upgrade request on `path` goes through
 * `ServerHandshake`; an accepted connection becomes a `NodeTransport`, then a server-role
 * session, and the application's handler runs with it.
 *
 * Everything is scoped: when the server's scope closes it stops accepting, sends every open
 * session a Close 1001 and waits (bounded by `shutdownTimeout`) for the close handshakes,
 * then interrupts the remaining connection fibers and destroys every socket. No socket or fiber
 * outlives the scope.
 *
 * Hostile clients: heads larger than `maxHeaderSize` get 431 (from node:http's parser, answered
 * by our `clientError` listener), more than `maxHeaders` fields get 431, malformed requests 400,
 * and a connection that has not completed its handshake within `handshakeTimeout` (including one
 * that never sends a byte, or trickles it) is destroyed. With `tls` that deadline runs from the
 * TCP accept and covers the TLS handshake too: a client that connects and never completes TLS is
 * destroyed like one that never sends its upgrade request, and so is a socket still in its TLS
 * handshake when the scope closes.
 *
 * @module
 */
import { CloseReason, Handshake } from "@effect-ws/codec"
import type { DefaultWebSocketSession } from "@effect-ws/core"
import { Cause, Context, Data, Duration, Effect, Exit, Fiber, Layer, References, Scope } from "effect"
import * as Http from "node:http"
import * as Https from "node:https"
import type * as Net from "node:net"
import type * as Tls from "node:tls"
import * as NodeTransport from "./NodeTransport.ts"
import * as ServerHandshake from "./ServerHandshake.ts"
import { type SessionOptions, startSession } from "./SessionOptions.ts"

/**
 * TLS settings of a `wss://` server: Node's `tls.createServer` options (certificate and key, or
 * `pfx`, `ca`, `ciphers`, `minVersion`, `requestCert`, `SNICallback`, `secureContext`, …) without
 * the ones the server sets itself: `handshakeTimeout` (the server's own `handshakeTimeout` bounds
 * the TLS handshake), `ALPNProtocols` (always `http/1.1`, as `node:https` offers) and the
 * `net.Server` socket options (`allowHalfOpen`, `pauseOnConnect`, …), which stay as on a `ws://`
 * server.
 */
export type TlsOptions = Omit<Tls.TlsOptions, "handshakeTimeout" | "ALPNProtocols" | keyof Net.ServerOpts>

/** Options of `make` / `layer`. `R` is what the `verify` hook needs. */
export interface WebSocketServerOptions<R = never> extends ServerHandshake.ServerHandshakeOptions<R> {
  /** Interface to listen on (default: Node's default, all interfaces). */
  readonly host?: string
  /** Port to listen on (default 0: an ephemeral port, see `WebSocketServer.port`). */
  readonly port?: number
  /** Only upgrade requests whose path (query ignored) is exactly this; others get 404 (default: every path). */
  readonly path?: string
  /**
   * Time from TCP accept to the 101 response being written; slower connections are destroyed
   * (default 10 s). With `tls` it is one deadline for the TLS handshake and the upgrade together,
   * from the TCP accept (and tls.Server's own `handshakeTimeout`, 120 s by default, is set to it).
   */
  readonly handshakeTimeout?: Duration.Input
  /** Largest request head in bytes; larger is answered with 431 by node:http (default 16 KiB). */
  readonly maxHeaderSize?: number
  /** How long closing the scope waits for open sessions to finish their close handshake (default 5 s). */
  readonly shutdownTimeout?: Duration.Input
  /** Settings of every session. */
  readonly session?: SessionOptions
  /**
   * Serve `wss://`: listen with `node:https` and these TLS settings (at least a certificate and
   * its key, or `pfx`). Without it the server speaks plain `ws://`. A bad certificate or key
   * makes `make` fail with `WebSocketServerError`; a client whose TLS handshake fails is
   * destroyed without an HTTP answer.
   */
  readonly tls?: TlsOptions
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
  /** Number of TCP connections currently open (handshaking, TLS included, or upgraded). */
  readonly connections: () => number
  /** Number of sessions currently open. */
  readonly sessions: () => number
}

/** The server could not start: it could not listen (port in use, permission denied, bad host), or bad `tls` settings. */
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
/** The longest delay a Node timer takes (longer ones fire after 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1
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

/** What the server keeps per TCP connection, in one record (reachable from the socket). */
interface Connection {
  /**
   * The connection's socket. With `tls`: the TCP socket until its TLS handshake completed, then
   * the `TLSSocket` over it (the one node:https parses requests from and upgrades).
   */
  socket: Net.Socket
  /** When (`performance.now()`, whole ms) the handshake times out; 0 once the 101 was written or the socket closed. */
  deadline: number
  /** The connection's fiber, while it runs (it fails as the handler did). */
  fiber: Fiber.Fiber<void, unknown> | undefined
  /** The session, while the connection's fiber runs it. */
  session: DefaultWebSocketSession.WebSocketSession | undefined
  socketClosed: boolean
  /** The transport, from its creation until its session started (the session owns it from then on). */
  transport: NodeTransport.NodeTransport | undefined
  /** The scope of the connection's fiber, from the upgrade on. */
  scope: Scope.Closeable | undefined
  /** The upgrade request, from the `upgrade` event until the connection's fiber took it (nothing keeps it after). */
  upgrade: Upgrade | undefined
}

/** What a connection's fiber starts from: the upgrade request, the bytes after its head, and the handshake if decided already. */
interface Upgrade {
  readonly request: Http.IncomingMessage
  readonly head: Buffer
  readonly decided: ServerHandshake.NegotiatedUpgrade | undefined
}

/**
 * The connection a fiber runs, in its context: every connection's fiber runs the same effect
 * (one per server), which finds its connection here, so that no closure per connection stays on
 * the fiber's stack for the connection's lifetime.
 */
class CurrentConnection extends Context.Service<CurrentConnection, Connection>()("effect-ws/WebSocketServer/CurrentConnection") {}

const kConnection: unique symbol = Symbol("effect-ws/connection")

/** A socket of this server, with its connection record. */
interface ConnectionSocket extends Net.Socket {
  [kConnection]?: Connection
}

const ignore = (): void => {}

/** The log annotations of a connection's fiber: the inherited ones plus `remoteAddress` and `url`. */
const connectionAnnotations = (
  inherited: Readonly<Record<string, unknown>>,
  socket: Net.Socket,
  url: string
): Readonly<Record<string, unknown>> => ({ ...inherited, remoteAddress: socket.remoteAddress ?? "unknown", url })

/**
 * Starts a server in the current scope and returns once it listens. Each accepted connection runs
 * `handler` in its own fiber; handler failures close that session with 1011 and are logged at
 * debug level, never affecting other connections. With `tls` it serves `wss://` on `node:https`.
 * Fails with `WebSocketServerError` when it cannot listen, or when `tls` is unusable (a bad
 * certificate or key).
 */
export const make = Effect.fnUntraced(function*<E, R, RV = never>(
  handler: ConnectionHandler<E, R>,
  options: WebSocketServerOptions<RV> = {}
): Effect.fn.Return<WebSocketServer, WebSocketServerError, R | RV | Scope.Scope> {
  const handshakeTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT))
  const shutdownTimeout = Duration.fromInputUnsafe(options.shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT)
  const maxHeaders = options.maxHeaders ?? ServerHandshake.DEFAULT_MAX_HEADERS
  /** Every connection whose socket is open or whose fiber still runs (one entry each, its state in the record). */
  const connections = new Set<Connection>()
  let openSockets = 0
  let openSessions = 0
  const context = yield* Effect.context<R | RV>()
  const baseAnnotations = Context.get(context, References.CurrentLogAnnotations)

  const maxHeaderSize = options.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE
  const tls = options.tls
  let https: Https.Server | undefined = undefined
  if (tls !== undefined) {
    try {
      https = Https.createServer({
        ...tls,
        maxHeaderSize,
        // Node's own timer on the TLS handshake (its default is 120 s): the same bound as ours,
        // which also covers the TLS phase (the deadline below runs from the TCP accept). Node
        // throws on a non-finite value (0 turns its timer off) and cuts longer ones to 1 ms.
        handshakeTimeout: Number.isFinite(handshakeTimeout) ? Math.min(handshakeTimeout, MAX_TIMER_MS) : 0,
        // As node:http's sockets: an upgraded socket keeps its output open after the peer's FIN.
        allowHalfOpen: true
      })
    } catch (cause) {
      return yield* new WebSocketServerError({ message: `Bad TLS settings: ${String(cause)}`, cause })
    }
  }
  const server: Http.Server = https ?? Http.createServer({ maxHeaderSize })
  // Node 24's parser fails with HPE_HEADER_OVERFLOW (→ 431 in `clientError`) past maxHeadersCount;
  // ServerHandshake.validate checks the same limit on the parsed request.
  server.maxHeadersCount = maxHeaders

  /**
   * Connections still handshaking, in accept order, which is deadline order (every handshake has
   * the same timeout): one timer for the earliest deadline instead of one per connection.
   */
  const handshaking = new Set<Connection>()
  /** Whether handshakes have a deadline at all (`handshakeTimeout` is finite). */
  const timed = Number.isFinite(handshakeTimeout)
  let handshakeTimer: ReturnType<typeof setTimeout> | undefined = undefined
  const sweepHandshakes = (): void => {
    handshakeTimer = undefined
    const now = performance.now()
    for (const connection of handshaking) {
      if (connection.deadline > now) {
        handshakeTimer = setTimeout(sweepHandshakes, Math.min(connection.deadline - now, MAX_TIMER_MS))
        return
      }
      handshaking.delete(connection)
      connection.deadline = 0
      connection.socket.destroy()
    }
  }
  const clearHandshakeTimer = (connection: Connection): void => {
    if (connection.deadline === 0) return
    connection.deadline = 0
    handshaking.delete(connection)
    if (handshaking.size === 0 && handshakeTimer !== undefined) {
      clearTimeout(handshakeTimer)
      handshakeTimer = undefined
    }
  }

  /** Listeners shared by every socket (`this` is the socket): no closures per connection. */
  function onSocketClose(this: ConnectionSocket): void {
    const connection = this[kConnection]
    if (connection === undefined || connection.socketClosed) return
    connection.socketClosed = true
    openSockets--
    clearHandshakeTimer(connection)
    if (connection.fiber === undefined) connections.delete(connection)
  }
  /** `onSocketClose` called by a connection's transport (its `close` listener replaces ours). */
  const onTransportClose = (socket: Net.Socket): void => onSocketClose.call(socket)
  /** The transport options of a connection whose client sent nothing after its request (most do not): one object for all. */
  const transportOptions: NodeTransport.NodeTransportOptions = { onClose: onTransportClose }

  // With TLS this is the TCP socket, before its TLS handshake: its record, deadline and count start here.
  server.on("connection", (socket: ConnectionSocket) => {
    const connection: Connection = {
      socket,
      // Whole milliseconds (a small integer, not a boxed double), rounded up: never early.
      // 0 (no deadline) when the handshake timeout is infinite.
      deadline: timed ? Math.ceil(performance.now()) + handshakeTimeout : 0,
      fiber: undefined,
      session: undefined,
      socketClosed: false,
      transport: undefined,
      scope: undefined,
      upgrade: undefined
    }
    socket[kConnection] = connection
    connections.add(connection)
    if (timed) {
      handshaking.add(connection)
      handshakeTimer ??= setTimeout(sweepHandshakes, Math.min(handshakeTimeout, MAX_TIMER_MS))
    }
    openSockets++
    // No `error` listener yet: node:http has its own until the upgrade (see `runConnection`).
    socket.on("close", onSocketClose)
  })

  if (https !== undefined) {
    /**
     * A TLS handshake completed: from now on the connection is its `TLSSocket` (node:https reads
     * requests from it and upgrades it), so the record, its `close` listener and the shutdown's
     * `destroy` move to it. The TCP socket under it closes with it. The record keeps its deadline.
     */
    https.on("secureConnection", (socket: Tls.TLSSocket & ConnectionSocket) => {
      // Node's TLSSocket keeps the socket it wraps as `_parent` (not in its typings). No public
      // API relates the two: `tls.TLSSocket` exposes no property for the socket it wraps, and
      // the server's `connection` and `secureConnection` events each carry one socket with
      // nothing to match them by but the address tuple (a map entry per connection, and
      // `undefined` once a socket is destroyed). Where `_parent` is missing (another runtime),
      // the connection is refused below rather than left without a record.
      const tcp = (socket as unknown as { readonly _parent?: ConnectionSocket | null })._parent
      const connection = tcp?.[kConnection]
      if (tcp == null || connection === undefined || connection.socketClosed || connection.socket !== tcp) {
        socket.destroy()
        return
      }
      tcp.off("close", onSocketClose)
      connection.socket = socket
      socket[kConnection] = connection
      socket.on("close", onSocketClose)
    })
    // node:https answers a failed TLS handshake (timeout, bad hello, plain HTTP) through
    // `clientError`, where ours would write an HTTP answer: the socket is destroyed instead.
    https.removeAllListeners("tlsClientError")
    https.on("tlsClientError", (_error: Error, socket: Tls.TLSSocket) => {
      socket.destroy()
    })
  }

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

  /**
   * The accepted part of a connection: transport and session in the connection's scope, then the
   * handler (what `session.run` does after it is done in `ended`, in the same fiber, so the fiber's
   * stack holds one frame for both while the handler waits). The transport gets no finalizer of its
   * own: the raw session's destroys it (and a session that could not start destroys it here).
   */
  const serve = (
    connection: Connection,
    accepted: ServerHandshake.AcceptedUpgrade,
    head: Buffer
  ): Effect.Effect<void, unknown, R | Scope.Scope> => {
    clearHandshakeTimer(connection)
    const socket = connection.socket
    // The transport calls our `close` listener from its own and has its own `error` listener: ours
    // (for the handshake) would only make the socket keep listener arrays.
    const transport = NodeTransport.makeUnsafe(
      socket,
      head.length === 0 ? transportOptions : { initialBytes: head, onClose: onTransportClose }
    )
    socket.off("error", ignore)
    socket.off("close", onSocketClose)
    // A session that could not start leaves the transport to `ended`, which destroys it (before the scope closes).
    connection.transport = transport
    return Effect.flatMap(startSession(transport, "server", accepted.extensions, options.session), (session) => {
      connection.transport = undefined
      // Recorded once the handler gave its effect (as `run` would only then end it with 1000/1011).
      const handled = handler(session, accepted)
      connection.session = session
      openSessions++
      return handled
    })
  }

  /** The start of a connection's fiber: the handshake (decided already, or now), then `serve`. */
  const upgradeConnection = (connection: Connection): Effect.Effect<void, unknown, R | RV | Scope.Scope> => {
    const upgrade = connection.upgrade!
    connection.upgrade = undefined
    const socket = connection.socket
    const negotiated = upgrade.decided
    if (negotiated !== undefined) {
      if (negotiated.extensions.length === 0) {
        // `writeAccepted` without an effect around it (it adds a finalizer only for extensions).
        if (!socket.destroyed) socket.write(negotiated.response, "latin1")
        return serve(connection, { info: negotiated.info, protocol: negotiated.protocol, extensions: negotiated.extensions }, upgrade.head)
      }
      return Effect.flatMap(
        ServerHandshake.writeAccepted(socket, negotiated, connection.scope!),
        (accepted) => serve(connection, accepted, upgrade.head)
      )
    }
    if (options.path !== undefined && pathOf(upgrade.request.url) !== options.path) {
      return ServerHandshake.writeRejection(socket, Handshake.makeRejection(404, "Not Found"))
    }
    return Effect.flatMap(
      ServerHandshake.accept(upgrade.request, socket, options),
      (accepted) => serve(connection, accepted, upgrade.head)
    )
  }

  /** The connection's end: `session.run`'s ending for the handler's exit, the scope, then a debug log of a failure. */
  const endConnection = (connection: Connection, exit: Exit.Exit<void, unknown>): Effect.Effect<void> => {
    const session = connection.session
    const transport = connection.transport
    connection.transport = undefined
    connection.upgrade = undefined // a fiber interrupted before it started
    const closed = Effect.suspend(() => {
      if (connection.session !== undefined) {
        connection.session = undefined
        openSessions--
      }
      return Effect.andThen(Scope.close(connection.scope!, exit), Effect.sync(() => {
        connection.fiber = undefined
        connection.scope = undefined
        if (connection.socketClosed) connections.delete(connection)
      }))
    })
    const logged = Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)
      ? Effect.andThen(closed, Effect.logDebug("WebSocket connection ended with an error", exit.cause))
      : closed
    // `run` with the handler's exit as its handler: it closes (1000/1011) and waits exactly as if it had run the handler.
    if (session !== undefined) return Effect.andThen(Effect.exit(session.run(() => exit)), logged)
    // A transport whose session could not start: destroyed first, as the session's finalizer would have.
    return transport === undefined ? logged : Effect.andThen(transport.destroy, logged)
  }

  /** What every connection's fiber runs (see `CurrentConnection`). */
  const connectionProgram: Effect.Effect<void, unknown, R | RV | Scope.Scope | CurrentConnection> = Effect.onExit(
    Effect.contextWith((services: Context.Context<CurrentConnection>) => upgradeConnection(Context.get(services, CurrentConnection))),
    (exit) => Effect.contextWith((services: Context.Context<CurrentConnection>) => endConnection(Context.get(services, CurrentConnection), exit))
  )

  /**
   * One connection, run in its own fiber whose context holds the connection, its scope and its log
   * annotations (built once here instead of `Effect.scoped` / `Effect.annotateLogs` layers on the
   * fiber's stack). The request is only read before the handshake completes: nothing here keeps it
   * (the handler's `AcceptedUpgrade` does, for as long as the handler holds it).
   */
  const runConnection = (request: Http.IncomingMessage, socket: ConnectionSocket, head: Buffer): void => {
    const connection = socket[kConnection]
    if (connection === undefined || connection.fiber !== undefined) {
      socket.destroy()
      return
    }
    const scope = Scope.makeUnsafe()
    // Without a `verify` hook the handshake is decided here, synchronously (no effect for it);
    // a rejection, or anything thrown by the application's hooks, takes the effectful path
    // (which decides again, and answers, fails or dies the same way as with a hook).
    let decided: ServerHandshake.NegotiatedUpgrade | undefined = undefined
    if (options.verify === undefined && (options.path === undefined || pathOf(request.url) === options.path)) {
      try {
        const decision = ServerHandshake.negotiateSync(request, options)
        if (decision !== undefined && !(decision instanceof ServerHandshake.UpgradeRejected)) decided = decision
      } catch {
        decided = undefined
      }
    }
    connection.scope = scope
    connection.upgrade = { request, head, decided }
    const annotations = connectionAnnotations(baseAnnotations, socket, request.url ?? "")
    const fiber = Effect.runForkWith(
      Context.add(
        Context.add(Context.add(context, Scope.Scope, scope), References.CurrentLogAnnotations, annotations),
        CurrentConnection,
        connection
      )
    )(connectionProgram)
    // node:http removed its `error` listener before the upgrade event: until a transport has its
    // own (`serve`, often already done synchronously above), errors just end the handshake.
    if (socket.listenerCount("error") === 0) socket.on("error", ignore)
    // A connection that already ended (a rejection written synchronously) leaves no fiber behind.
    if (fiber.pollUnsafe() === undefined) connection.fiber = fiber
    else if (connection.socketClosed) connections.delete(connection)
  }
  server.on("upgrade", runConnection)

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
        const open: Array<Net.Socket> = []
        for (const connection of connections) {
          clearHandshakeTimer(connection)
          if (!connection.socketClosed) open.push(connection.socket)
        }
        server.closeAllConnections()
        // Wait for every socket's `close` (prompt after `destroy`) and for the listener to close.
        let pending = open.length + 1
        const settled = () => {
          if (--pending === 0) resume(Effect.void)
        }
        for (const socket of open) {
          socket.once("close", settled)
          socket.destroy()
        }
        if (server.listening) server.close(settled)
        else settled()
      })
  )

  // Graceful shutdown: stop accepting, Close 1001 to every open session, bounded wait, then
  // interrupt the connection fibers (before the release above destroys the sockets).
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      server.close()
      const open: Array<DefaultWebSocketSession.WebSocketSession> = []
      for (const connection of connections) if (connection.session !== undefined) open.push(connection.session)
      yield* Effect.forEach(
        open,
        (session) => Effect.andThen(Effect.ignore(session.close(GOING_AWAY)), session.awaitClose),
        { concurrency: "unbounded", discard: true }
      ).pipe(Effect.timeoutOption(shutdownTimeout))
      const fibers: Array<Fiber.Fiber<void, unknown>> = []
      for (const connection of connections) if (connection.fiber !== undefined) fibers.push(connection.fiber)
      yield* Fiber.interruptAll(fibers)
    })
  )

  const address = server.address() as Net.AddressInfo
  return {
    address,
    port: address.port,
    connections: () => openSockets,
    sessions: () => openSessions
  }
})

/**
 * The server as a layer: listens when built, shuts down gracefully (see the module notes) when
 * released. Fails with `WebSocketServerError` when it cannot listen or `tls` is unusable.
 */
export const layer = <E, R, RV = never>(
  handler: ConnectionHandler<E, R>,
  options: WebSocketServerOptions<RV> = {}
): Layer.Layer<WebSocketServerService, WebSocketServerError, R | RV> =>
  Layer.effect(WebSocketServerService, make(handler, options))
