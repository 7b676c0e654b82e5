/**
 * `ServerHandshake`: the server side of the opening handshake on a request node:http has parsed
 * (its `"upgrade"` event gives the `IncomingMessage` and the socket). Validates the request with
 * the codec's pure functions plus a header-count limit, runs the application's hooks (refuse by
 * origin or credentials, choose a subprotocol), negotiates extensions, and writes either the 101
 * response or an HTTP error with the exact status (400, 403, 405, 426, 431, ...) followed by
 * closing the socket.
 *
 * @module
 */
import { type ExtensionHeader, Handshake } from "@effect-ws/codec"
import { Extension } from "@effect-ws/core"
import { Cause, Data, Effect, Scope } from "effect"
import type * as Http from "node:http"
import type * as Net from "node:net"
import { releaseExtensions } from "./PerMessageDeflate.ts"

/**
 * The handshake was refused with an HTTP error response (already written, socket closing):
 * by the request's validation, by the header limits, by the application's `verify` hook (which
 * fails with this error to refuse), or (500) because the accept response could not be formatted.
 */
export class UpgradeRejected extends Data.TaggedError("UpgradeRejected")<{
  /** The HTTP status sent (400–599). */
  readonly status: number
  /** A short reason, sent as the plain-text body. */
  readonly reason: string
  /** Extra response headers (e.g. `WWW-Authenticate`). */
  readonly headers?: Readonly<Record<string, string>>
}> {
  override get message(): string {
    return `WebSocket upgrade rejected with ${this.status}: ${this.reason}`
  }
}

/** What the application sees of an upgrade request when deciding whether to accept it. */
export interface UpgradeInfo {
  /** The request target (path and query), e.g. `/chat?room=1`. */
  readonly url: string
  /** The request headers as node:http parsed them (lowercased names). */
  readonly headers: Http.IncomingHttpHeaders
  /** The `Origin` header, if sent (browsers always send it). */
  readonly origin: string | undefined
  /** Subprotocols offered, in the client's order of preference (may be empty). */
  readonly protocols: ReadonlyArray<string>
  /** Extensions offered, in order (may be empty). */
  readonly extensions: ReadonlyArray<ExtensionHeader.WebSocketExtensionHeader>
  /** The peer's IP address, when known. */
  readonly remoteAddress: string | undefined
  /** The underlying request (for anything not above; do not read its body or touch its socket). */
  readonly request: Http.IncomingMessage
  /** The validated handshake fields (key, accept, offers) as the codec returned them. */
  readonly upgrade: Handshake.UpgradeRequest
}

/** How the server answers upgrade requests. `R` is what the `verify` hook needs. */
export interface ServerHandshakeOptions<R = never> {
  /** Most header fields a request may have; more is answered with 431 (default 100). */
  readonly maxHeaders?: number
  /**
   * Decides whether to accept a valid request before anything is sent (origin allow-lists,
   * authentication). Fail with `UpgradeRejected` to answer with its status instead; a defect
   * is answered with 500.
   */
  readonly verify?: (info: UpgradeInfo) => Effect.Effect<void, UpgradeRejected, R>
  /**
   * Picks the subprotocol from the offered ones (`undefined`: none). Called only when the client
   * offered at least one. A name that was not offered is answered with 500.
   */
  readonly selectProtocol?: (offered: ReadonlyArray<string>, info: UpgradeInfo) => string | undefined
  /** Extensions the server supports, in preference order (default: none). */
  readonly extensions?: Extension.WebSocketExtensionsConfig
  /** Extra headers of the 101 response (may not set the handshake's own headers). */
  readonly responseHeaders?: Readonly<Record<string, string>>
}

/** A completed handshake: the 101 was written to the socket. */
export interface AcceptedUpgrade {
  readonly info: UpgradeInfo
  /** The chosen subprotocol, if any. */
  readonly protocol: string | undefined
  /** Fresh instances of the negotiated extensions, in negotiated order. */
  readonly extensions: ReadonlyArray<Extension.WebSocketExtension>
}

/** The extensions of an upgrade that negotiated none (one shared array: the session keeps it). */
const NO_EXTENSIONS: ReadonlyArray<Extension.WebSocketExtension> = Object.freeze([])
const NO_EXTENSION_HEADERS: ReadonlyArray<ExtensionHeader.WebSocketExtensionHeader> = Object.freeze([])

/** The default limit on the number of request header fields. */
export const DEFAULT_MAX_HEADERS = 100

const rejectionOf = (error: UpgradeRejected): Handshake.HandshakeRejection => {
  const status = Number.isInteger(error.status) && error.status >= 400 && error.status <= 599 ? error.status : 500
  return Handshake.makeRejection(status, error.reason, error.headers ?? {})
}

const rejectedOf = (rejection: Handshake.HandshakeRejection): UpgradeRejected =>
  new UpgradeRejected({ status: rejection.status, reason: rejection.reason, headers: rejection.headers })

/**
 * Writes the HTTP error response of a rejection and half-closes the socket (the peer reads the
 * response, then closes; whoever owns the socket destroys it if it never does). Never fails.
 */
export const writeRejection = (socket: Net.Socket, rejection: Handshake.HandshakeRejection): Effect.Effect<void> =>
  Effect.sync(() => {
    if (socket.destroyed) return
    if (socket.writable) socket.end(Handshake.formatRejection(rejection), "latin1")
    // Keep reading (and discarding) so the peer's FIN is seen and the socket closes.
    socket.resume()
  })

/**
 * Checks the request line and headers: the header-count limit (431), then RFC 6455 §4.2.1 via
 * `Handshake.validateUpgradeRequest` (400, 405, 426). Returns the `UpgradeInfo`, or the rejection
 * to answer with. Pure apart from reading the request.
 */
export const validate = (
  request: Http.IncomingMessage,
  maxHeaders: number = DEFAULT_MAX_HEADERS
): UpgradeInfo | Handshake.HandshakeRejection => {
  if (request.rawHeaders.length / 2 > maxHeaders) {
    return Handshake.makeRejection(431, `More than ${maxHeaders} header fields`)
  }
  const result = Handshake.validateUpgradeRequest({
    method: request.method ?? "",
    httpVersion: request.httpVersion,
    headers: request.headers
  })
  if (result._tag === "HandshakeRejection") return result
  return {
    upgrade: result,
    url: request.url ?? "/",
    headers: request.headers,
    origin: result.origin,
    protocols: result.protocols,
    extensions: result.extensions,
    remoteAddress: request.socket.remoteAddress,
    request
  }
}

/** A negotiated (not yet answered) upgrade: the accepted connection plus the 101 response head to write. */
export interface NegotiatedUpgrade extends AcceptedUpgrade {
  /** The complete `101 Switching Protocols` head, to write as latin1. */
  readonly response: string
}

/**
 * The part of `negotiate` after the `verify` hook, synchronous: the subprotocol choice, extension
 * negotiation and the 101 head, or the 500 `UpgradeRejected` for an unoffered subprotocol or bad
 * response headers. Throws only what `selectProtocol` or an extension throws.
 */
const conclude = <R>(
  info: UpgradeInfo,
  options: ServerHandshakeOptions<R>
): NegotiatedUpgrade | UpgradeRejected => {
  const protocol = info.protocols.length > 0 && options.selectProtocol !== undefined
    ? options.selectProtocol(info.protocols, info)
    : undefined

  // Arrays only when extensions were offered and are supported (most upgrades have none).
  let negotiated: ReadonlyArray<Extension.WebSocketExtension> = NO_EXTENSIONS
  let responseExtensions: ReadonlyArray<ExtensionHeader.WebSocketExtensionHeader> = NO_EXTENSION_HEADERS
  if (options.extensions !== undefined && info.extensions.length > 0) {
    const inUse: Array<Extension.WebSocketExtension> = []
    const answers: Array<ExtensionHeader.WebSocketExtensionHeader> = []
    for (const extension of Extension.build(options.extensions)) {
      const answer = extension.serverNegotiation(info.extensions)
      if (answer.length === 0) continue
      inUse.push(extension)
      answers.push(...answer)
    }
    if (inUse.length > 0) {
      negotiated = inUse
      responseExtensions = answers
    }
  }

  const response = protocol === undefined && responseExtensions.length === 0 && options.responseHeaders === undefined
    ? Handshake.formatUpgradeResponse(info.upgrade)
    : Handshake.formatUpgradeResponse(info.upgrade, {
      ...(protocol === undefined ? {} : { protocol }),
      ...(responseExtensions.length === 0 ? {} : { extensions: responseExtensions }),
      ...(options.responseHeaders === undefined ? {} : { headers: options.responseHeaders })
    })
  if (typeof response !== "string") {
    return new UpgradeRejected({ status: 500, reason: `Cannot accept the upgrade: ${response.message}` })
  }
  return { info, protocol, extensions: negotiated, response }
}

/**
 * `negotiate` without effects, for servers that have no `verify` hook (it returns `undefined`
 * when `options.verify` is set: run `negotiate` then). The negotiated upgrade, or the
 * `UpgradeRejected` to answer with. Throws only what `selectProtocol` or an extension throws.
 */
export const negotiateSync = <R = never>(
  request: Http.IncomingMessage,
  options: ServerHandshakeOptions<R> = {}
): NegotiatedUpgrade | UpgradeRejected | undefined => {
  if (options.verify !== undefined) return undefined
  const validated = validate(request, options.maxHeaders ?? DEFAULT_MAX_HEADERS)
  if (Handshake.isHandshakeRejection(validated)) return rejectedOf(validated)
  return conclude(validated, options)
}

const fromDecision = (decision: NegotiatedUpgrade | UpgradeRejected): Effect.Effect<NegotiatedUpgrade, UpgradeRejected> =>
  decision instanceof UpgradeRejected ? Effect.fail(decision) : Effect.succeed(decision)

const negotiateWithVerify = Effect.fnUntraced(function*<R>(
  request: Http.IncomingMessage,
  options: ServerHandshakeOptions<R>,
  verify: (info: UpgradeInfo) => Effect.Effect<void, UpgradeRejected, R>
): Effect.fn.Return<NegotiatedUpgrade, UpgradeRejected, R> {
  const validated = validate(request, options.maxHeaders ?? DEFAULT_MAX_HEADERS)
  if (Handshake.isHandshakeRejection(validated)) return yield* rejectedOf(validated)
  const info = validated
  yield* Effect.catchCause(Effect.suspend(() => verify(info)), (cause) => {
    const failure = Cause.findErrorOption(cause)
    if (failure._tag === "Some") return Effect.fail(rejectedOf(rejectionOf(failure.value)))
    if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
    return Effect.andThen(
      Effect.logError("WebSocket verify hook failed", cause),
      Effect.fail(new UpgradeRejected({ status: 500, reason: "Internal Server Error" }))
    )
  })
  return yield* fromDecision(conclude(info, options))
})

/**
 * Decides an upgrade request without writing anything: validation (431, then 400/405/426), the
 * `verify` hook (its `UpgradeRejected`; a defect in it becomes a 500 and is logged), the
 * subprotocol choice, extension negotiation (each supported extension, in order, answers the
 * client's offers; those that answer are in use), and the 101 head. Fails with
 * `UpgradeRejected` carrying the status to answer with (500 when the application chose an
 * unoffered subprotocol or bad response headers).
 */
export const negotiate = <R = never>(
  request: Http.IncomingMessage,
  options: ServerHandshakeOptions<R> = {}
): Effect.Effect<NegotiatedUpgrade, UpgradeRejected, R> => {
  const verify = options.verify
  return verify === undefined
    ? Effect.suspend(() => fromDecision(negotiateSync(request, options)!))
    : negotiateWithVerify(request, options, verify)
}

/**
 * Writes a negotiated upgrade's 101 head (unless the client already went away: the transport then
 * reports Reset) and, when a scope is given, releases the negotiated extensions' resources when it
 * closes. Returns the accepted upgrade.
 */
export const writeAccepted = (
  socket: Net.Socket,
  negotiated: NegotiatedUpgrade,
  scope: Scope.Scope | undefined
): Effect.Effect<AcceptedUpgrade> => {
  if (!socket.destroyed) socket.write(negotiated.response, "latin1")
  const accepted: AcceptedUpgrade = {
    info: negotiated.info,
    protocol: negotiated.protocol,
    extensions: negotiated.extensions
  }
  if (accepted.extensions.length === 0 || scope === undefined) return Effect.succeed(accepted)
  return Effect.as(Scope.addFinalizer(scope, releaseExtensions(accepted.extensions)), accepted)
}

/**
 * Runs the whole server handshake on a socket node:http handed over: `negotiate`, then writes
 * the 101 response. On refusal the error response is written, the socket half-closed, and the
 * effect fails with the `UpgradeRejected`. The caller keeps ownership of the socket either way
 * (and of bytes already read past the head). When run in a scope (the connection's), the
 * negotiated extensions' resources (permessage-deflate's zlib contexts) are released when it closes.
 */
export const accept = <R = never>(
  request: Http.IncomingMessage,
  socket: Net.Socket,
  options: ServerHandshakeOptions<R> = {}
): Effect.Effect<AcceptedUpgrade, UpgradeRejected, R> =>
  negotiate(request, options).pipe(
    Effect.tapError((rejected) => writeRejection(socket, rejectionOf(rejected))),
    Effect.flatMap((negotiated) =>
      negotiated.extensions.length === 0
        ? writeAccepted(socket, negotiated, undefined)
        : Effect.flatMap(
          Effect.serviceOption(Scope.Scope),
          (scope) => writeAccepted(socket, negotiated, scope._tag === "None" ? undefined : scope.value)
        )
    )
  )
