/**
 * `WebSocketClient`: connects to a `ws://` or `wss://` URL over `node:net` / `node:tls`, runs
 * the client side of the opening handshake with the codec's pure functions (request formatting,
 * bounded response-head parsing, response validation), and starts a client-role session
 * (outgoing frames masked) over a `NodeTransport`. Bytes that arrived right after the response
 * head are the first bytes of the session.
 *
 * @module
 */
import { Handshake } from "@effect-ws/codec"
import { type DefaultWebSocketSession, type Errors, Extension } from "@effect-ws/core"
import { Data, Duration, Effect, type Scope } from "effect"
import * as Net from "node:net"
import * as Tls from "node:tls"
import * as NodeTransport from "./NodeTransport.ts"
import { releaseExtensions } from "./PerMessageDeflate.ts"
import { type SessionOptions, startSession } from "./SessionOptions.ts"

/** Options of `connect`. */
export interface WebSocketClientOptions {
  /** Subprotocols to offer, most preferred first. */
  readonly protocols?: ReadonlyArray<string>
  /** Extra request headers (e.g. `Authorization`, `Cookie`); may not set the handshake's own headers. */
  readonly headers?: Readonly<Record<string, string>>
  /** The `Origin` header to send (default: none). */
  readonly origin?: string
  /** Time allowed for the TCP (and TLS) connection (default 10 s). */
  readonly connectTimeout?: Duration.Input
  /** Time allowed from connected to a validated 101 response (default 10 s). */
  readonly handshakeTimeout?: Duration.Input
  /** Largest response head accepted (default 16 KiB). */
  readonly maxHeaderSize?: number
  /** TLS settings for `wss://` (CA, client certificate, `rejectUnauthorized`, ...). `servername` defaults to the URL's host. */
  readonly tls?: Omit<Tls.ConnectionOptions, "host" | "port" | "socket">
  /** Extensions to offer, in preference order (default: none). */
  readonly extensions?: Extension.WebSocketExtensionsConfig
  /** Settings of the session. */
  readonly session?: SessionOptions
}

/** An open client connection. */
export interface WebSocketClientConnection {
  /** The client-role session. */
  readonly session: DefaultWebSocketSession.WebSocketSession
  /** The subprotocol the server chose, if any. */
  readonly protocol: string | undefined
  /** The extensions in use, in negotiated order. */
  readonly extensions: ReadonlyArray<Extension.WebSocketExtension>
  /** The 101 response's headers (lowercased names). */
  readonly headers: Handshake.Headers
}

/** Why `connect` could not reach a WebSocket: a bad URL or request option, a connection or TLS failure, a timeout, or a response that is not HTTP. */
export type ConnectErrorReason =
  | "InvalidUrl"
  | "InvalidRequest"
  | "Connect"
  | "ConnectTimeout"
  | "HandshakeTimeout"
  | "ConnectionClosed"
  | "MalformedResponse"

/** `connect` failed before a valid HTTP response arrived; `reason` says how, `cause` carries the underlying error. */
export class WebSocketConnectError extends Data.TaggedError("WebSocketConnectError")<{
  readonly reason: ConnectErrorReason
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * The server answered, but not with an acceptable 101: `kind` is `UnexpectedStatus` for an HTTP
 * error (see `status` and `headers`), or the handshake check that failed (`InvalidAccept`,
 * `MissingUpgrade`, `UnofferedProtocol`, `UnofferedExtension`, ...).
 */
export class WebSocketUpgradeFailed extends Data.TaggedError("WebSocketUpgradeFailed")<{
  readonly kind: Handshake.HandshakeFailureKind
  readonly message: string
  readonly status: number
  readonly headers: Handshake.Headers
}> {}

const DEFAULT_TIMEOUT = Duration.seconds(10)

interface Target {
  readonly secure: boolean
  readonly hostname: string
  readonly port: number
  readonly hostHeader: string
  readonly path: string
}

const parseTarget = (url: string | URL): Target | WebSocketConnectError => {
  let parsed: URL
  try {
    parsed = typeof url === "string" ? new URL(url) : url
  } catch (cause) {
    return new WebSocketConnectError({ reason: "InvalidUrl", message: `Invalid URL ${JSON.stringify(String(url))}`, cause })
  }
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    return new WebSocketConnectError({ reason: "InvalidUrl", message: `Unsupported scheme ${parsed.protocol} (use ws: or wss:)` })
  }
  if (parsed.hash !== "") {
    return new WebSocketConnectError({ reason: "InvalidUrl", message: "A WebSocket URL may not have a fragment" })
  }
  const secure = parsed.protocol === "wss:"
  const hostname = parsed.hostname.startsWith("[") ? parsed.hostname.slice(1, -1) : parsed.hostname
  return {
    secure,
    hostname,
    port: parsed.port === "" ? (secure ? 443 : 80) : Number(parsed.port),
    hostHeader: parsed.host,
    path: `${parsed.pathname === "" ? "/" : parsed.pathname}${parsed.search}`
  }
}

/** Opens the TCP/TLS connection in the scope (destroyed on close); bounded by the connect timeout. */
const openSocket = (target: Target, options: WebSocketClientOptions) =>
  Effect.acquireRelease(
    Effect.callback<Net.Socket, WebSocketConnectError>((resume) => {
      const socket = target.secure
        ? Tls.connect({
          servername: Net.isIP(target.hostname) === 0 ? target.hostname : "",
          ...options.tls,
          host: target.hostname,
          port: target.port,
          allowHalfOpen: true
        } as Tls.ConnectionOptions & { readonly allowHalfOpen: boolean })
        : Net.connect({ host: target.hostname, port: target.port, allowHalfOpen: true })
      const onError = (cause: Error) => {
        socket.destroy()
        resume(Effect.fail(new WebSocketConnectError({ reason: "Connect", message: cause.message, cause })))
      }
      socket.once("error", onError)
      socket.once(target.secure ? "secureConnect" : "connect", () => {
        socket.off("error", onError)
        socket.on("error", () => {}) // from here on errors surface through the handshake or the transport
        resume(Effect.succeed(socket))
      })
      return Effect.sync(() => {
        socket.destroy()
      })
    }).pipe(
      Effect.timeoutOrElse({
        duration: options.connectTimeout ?? DEFAULT_TIMEOUT,
        orElse: () => Effect.fail(new WebSocketConnectError({ reason: "ConnectTimeout", message: "Connection timed out" }))
      })
    ),
    (socket) => Effect.sync(() => socket.destroy())
  )

/** Reads the response head; the socket is paused afterwards, with the bytes after the head returned. */
const readResponseHead = (socket: Net.Socket, maxHeaderBytes: number) =>
  Effect.callback<{ readonly head: Handshake.HttpHead; readonly rest: Uint8Array }, WebSocketConnectError>(
    (resume) => {
      const parser = new Handshake.HttpHeadParser({ kind: "response", maxHeaderBytes })
      const cleanup = () => {
        socket.pause() // before removing the listener: a flowing socket without one drops data
        socket.off("data", onData)
        socket.off("end", onEnd)
        socket.off("close", onEnd)
      }
      const onData = (chunk: Buffer) => {
        const result = parser.push(chunk)
        if (result === undefined) return
        cleanup()
        if (result._tag === "HttpHeadError") {
          return resume(
            Effect.fail(new WebSocketConnectError({ reason: "MalformedResponse", message: result.message }))
          )
        }
        resume(Effect.succeed({ head: result, rest: parser.rest() }))
      }
      const onEnd = () => {
        cleanup()
        resume(
          Effect.fail(
            new WebSocketConnectError({ reason: "ConnectionClosed", message: "Connection closed during the handshake" })
          )
        )
      }
      socket.on("data", onData)
      socket.once("end", onEnd)
      socket.once("close", onEnd)
      socket.resume()
      return Effect.sync(cleanup)
    }
  )

/**
 * Connects to `url` in the current scope and returns the open connection; closing the scope
 * closes the session (Close 1000 unless configured otherwise) and destroys the socket.
 * Fails with `WebSocketConnectError` (bad URL or options, connection/TLS failure, timeouts,
 * connection closed or non-HTTP data before the response head) or `WebSocketUpgradeFailed`
 * (an HTTP error status with its headers, a wrong `Sec-WebSocket-Accept`, an unoffered
 * subprotocol or extension, an extension answer the offering extension refuses such as invalid
 * permessage-deflate parameters: `InvalidExtensions`, ...), or `ExtensionConflict` when two accepted extensions claim the
 * same RSV bit.
 */
export const connect = Effect.fnUntraced(function*(
  url: string | URL,
  options: WebSocketClientOptions = {}
): Effect.fn.Return<
  WebSocketClientConnection,
  WebSocketConnectError | WebSocketUpgradeFailed | Errors.ExtensionConflict,
  Scope.Scope
> {
  const target = parseTarget(url)
  if (target instanceof WebSocketConnectError) return yield* target
  const offered = options.extensions === undefined ? [] : Extension.build(options.extensions)
  const key = Handshake.generateKey()
  const protocols = options.protocols ?? []
  const request = Handshake.makeUpgradeRequest({
    host: target.hostHeader,
    path: target.path,
    key,
    protocols,
    extensions: offered.flatMap((e) => e.protocols),
    ...(options.origin === undefined ? {} : { origin: options.origin }),
    ...(options.headers === undefined ? {} : { headers: options.headers })
  })
  if (typeof request !== "string") {
    return yield* new WebSocketConnectError({ reason: "InvalidRequest", message: request.message })
  }

  const socket = yield* openSocket(target, options)
  const { head, rest } = yield* Effect.suspend(() => {
    socket.write(request, "latin1")
    return readResponseHead(socket, options.maxHeaderSize ?? Handshake.DEFAULT_MAX_HEADER_BYTES)
  }).pipe(
    Effect.timeoutOrElse({
      duration: options.handshakeTimeout ?? DEFAULT_TIMEOUT,
      orElse: () =>
        Effect.fail(new WebSocketConnectError({ reason: "HandshakeTimeout", message: "No handshake response in time" }))
    })
  )

  const accepted = Handshake.validateUpgradeResponse(
    { status: head.status ?? 0, headers: head.headers },
    { key, protocols, extensions: offered.flatMap((e) => e.protocols.map((p) => p.name)) }
  )
  if (accepted._tag === "HandshakeFailure") {
    return yield* new WebSocketUpgradeFailed({
      kind: accepted.kind,
      message: accepted.message,
      status: accepted.status,
      headers: accepted.headers
    })
  }
  const extensions = offered.filter((e) => e.clientNegotiation(accepted.extensions))
  // An extension the server answered but whose answer it refused (invalid parameters) fails the connection.
  const refused = offered.find((e) =>
    !extensions.includes(e) && e.protocols.some((p) => accepted.extensions.some((a) => a.name === p.name))
  )
  if (refused !== undefined) {
    return yield* new WebSocketUpgradeFailed({
      kind: "InvalidExtensions",
      message: `The server's ${refused.key} response is not acceptable`,
      status: head.status ?? 0,
      headers: head.headers
    })
  }
  yield* Effect.addFinalizer(() => releaseExtensions(extensions))
  const transport = yield* NodeTransport.make(socket, { initialBytes: rest })
  const session = yield* startSession(transport, "client", extensions, options.session)
  return { session, protocol: accepted.protocol, extensions, headers: head.headers }
})
