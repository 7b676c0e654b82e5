/**
 * The opening handshake (RFC 6455 §4) as pure functions: keys and `Sec-WebSocket-Accept`,
 * validation of an upgrade request (server) and of the 101 response (client), the exact text of
 * both messages and of a rejection, and `HttpHeadParser`, an incremental, bounded parser of an
 * HTTP/1.1 head for adapters that read the handshake from a raw socket.
 *
 * Headers come in as `Headers`: lowercased names mapped to a string or, for a header sent on
 * several lines, an array of strings (the shape of Node's `IncomingMessage.headers`, of
 * effect's HTTP headers, and of `HttpHead.headers`). Header text is ISO-8859-1 (latin1).
 *
 * Nothing here throws on peer input: bad input is a typed result (`HandshakeRejection`,
 * `HandshakeFailure`, `HttpHeadError`); bad local input (header injection, unoffered
 * subprotocol) is a `HandshakeFormatError`.
 *
 * @module
 */
import type { WebSocketExtensionHeader } from "./ExtensionHeader.ts"
import * as client from "./internal/handshake/client.ts"
import * as headers from "./internal/handshake/headers.ts"
import * as httpHead from "./internal/handshake/httpHead.ts"
import * as keys from "./internal/handshake/keys.ts"
import * as server from "./internal/handshake/server.ts"

// The implementations live in `internal/handshake/` (keys, headers, server, client, httpHead);
// this module holds the public types and names each function with its signature.

// -----------------------------------------------------------------------------------------------
// Keys and Sec-WebSocket-Accept (internal/handshake/keys.ts)
// -----------------------------------------------------------------------------------------------

/** The GUID appended to the key before hashing (RFC 6455 §1.3). */
export const WEBSOCKET_GUID: "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" = keys.WEBSOCKET_GUID

/** The only protocol version this library speaks (`Sec-WebSocket-Version: 13`). */
export const WEBSOCKET_VERSION: "13" = keys.WEBSOCKET_VERSION

/**
 * A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes (RFC 6455 §4.1). `random` fills a
 * buffer with random bytes; it defaults to `crypto.getRandomValues` (tests inject their own).
 */
export const generateKey: (random?: (bytes: Uint8Array) => void) => string = keys.generateKey

/**
 * `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) over the key's ISO-8859-1 bytes,
 * taken as given (header parsers already strip surrounding whitespace). Throws a `RangeError`
 * when the key has a character above U+00FF, which no header can carry; a key accepted by
 * `isValidKey` never does.
 */
export const computeAccept: (key: string) => string = keys.computeAccept

/**
 * Whether `key` is a valid `Sec-WebSocket-Key`: standard-alphabet base64 with padding that
 * decodes to exactly 16 bytes, i.e. 22 alphabet characters then `==`. The 4 unused bits of the
 * 22nd character are not required to be zero (RFC 4648 §3.5 lets decoders accept them; the
 * accept hash covers the exact text anyway).
 */
export const isValidKey: (key: string) => boolean = keys.isValidKey

// -----------------------------------------------------------------------------------------------
// Headers (internal/handshake/headers.ts)
// -----------------------------------------------------------------------------------------------

/** One header as received: a value, the values of a header sent on several lines, or absent. */
export type HeaderValue = string | ReadonlyArray<string> | undefined

/** Received headers by lowercased name (Node's `IncomingMessage.headers` shape). */
export type Headers = Readonly<Record<string, HeaderValue>>

/** The lines of a header (name compared case-insensitively; `headers` keys must be lowercase). Never fails. */
export const headerLines: (headers: Headers, name: string) => ReadonlyArray<string> = headers.headerLines

/**
 * The elements of a comma-separated header (RFC 7230 §7) across all its lines, whitespace
 * trimmed, empty elements dropped, case kept. Does not understand quoted strings (use
 * `parseWebSocketExtensions` for `Sec-WebSocket-Extensions`). Never fails.
 */
export const headerList: (headers: Headers, name: string) => ReadonlyArray<string> = headers.headerList

/** Whether a comma-separated header has `token` among its elements on any line, ASCII case-insensitively. */
export const hasToken: (headers: Headers, name: string, token: string) => boolean = headers.hasToken

// -----------------------------------------------------------------------------------------------
// Server side (internal/handshake/server.ts)
// -----------------------------------------------------------------------------------------------

/** A valid upgrade request: what the application needs to accept or refuse it. */
export interface UpgradeRequest {
  readonly _tag: "UpgradeRequest"
  /** The `Sec-WebSocket-Key`, whitespace trimmed. */
  readonly key: string
  /** The `Sec-WebSocket-Accept` to answer with. */
  readonly accept: string
  /** The subprotocols offered, in the client's order of preference (may be empty). */
  readonly protocols: ReadonlyArray<string>
  /** The extensions offered, in order (may be empty). */
  readonly extensions: ReadonlyArray<WebSocketExtensionHeader>
  /** The `Origin` header, if sent (browsers always send it). */
  readonly origin: string | undefined
}

/**
 * An HTTP error response instead of the upgrade: status, a short reason (the plain-text body)
 * and extra response headers. `validateUpgradeRequest` produces 400, 405 and 426; applications
 * make their own (403 for a refused origin, 401, 404, ...) with `makeRejection`.
 */
export interface HandshakeRejection {
  readonly _tag: "HandshakeRejection"
  readonly status: number
  readonly reason: string
  readonly headers: Readonly<Record<string, string>>
}

/** Builds a rejection. Throws a `RangeError` when `status` is not an integer in 400–599. */
export const makeRejection: (
  status: number,
  reason: string,
  headers?: Readonly<Record<string, string>>
) => HandshakeRejection = server.makeRejection

/** Narrows any value to a `HandshakeRejection`. */
export const isHandshakeRejection: (u: unknown) => u is HandshakeRejection = server.isHandshakeRejection

/** The request line and headers of an upgrade request; `httpVersion` like `"1.1"` (unchecked when absent). */
export interface UpgradeRequestInput {
  readonly method: string
  readonly httpVersion?: string
  readonly headers: Headers
}

/**
 * Checks an upgrade request (RFC 6455 §4.2.1) in this order, failing with the first problem:
 *
 * - method other than `GET` → 405 with `Allow: GET` (the resource exists, the method is wrong);
 * - HTTP version other than 1.1 or a later 1.x → 400;
 * - no `Host`, or several → 400;
 * - `Upgrade` without the token `websocket` (case-insensitive, any line, any list position)
 *   → 426 Upgrade Required with `Upgrade: websocket` and `Connection: Upgrade`;
 * - `Connection` without the token `upgrade` → 400;
 * - `Sec-WebSocket-Version` missing, repeated or not `13` → 426 with `Upgrade: websocket`,
 *   `Connection: Upgrade` and `Sec-WebSocket-Version: 13` (checked before the key, so an older
 *   client learns which version to retry with);
 * - `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes → 400;
 * - `Sec-WebSocket-Protocol` not a list of unique tokens (or present and empty) → 400;
 * - `Sec-WebSocket-Extensions` not valid RFC 6455 §9.1 syntax → 400;
 * - several `Origin` headers → 400.
 *
 * Linear time in the size of the headers.
 */
export const validateUpgradeRequest: (request: UpgradeRequestInput) => UpgradeRequest | HandshakeRejection = server.validateUpgradeRequest

/** What was wrong with locally supplied handshake data. */
export type HandshakeFormatErrorKind =
  | "InvalidHeaderName"
  | "InvalidHeaderValue"
  | "ReservedHeader"
  | "InvalidProtocol"
  | "UnofferedProtocol"
  | "UnofferedExtension"
  | "InvalidKey"
  | "InvalidTarget"
  | "InvalidHost"

/**
 * Locally supplied handshake data that cannot be sent: a header name that is not a token, a value
 * with CR, LF or another control character (header injection), a header this module sets itself,
 * a subprotocol or extension the peer did not offer, or a malformed key, path or host.
 */
export interface HandshakeFormatError {
  readonly _tag: "HandshakeFormatError"
  readonly kind: HandshakeFormatErrorKind
  readonly message: string
}

/** Narrows any value to a `HandshakeFormatError`. */
export const isHandshakeFormatError: (u: unknown) => u is HandshakeFormatError = headers.isHandshakeFormatError

/** How the server answers an accepted upgrade. */
export interface AcceptOptions {
  /** The chosen subprotocol; must be one of `UpgradeRequest.protocols`. */
  readonly protocol?: string
  /** The negotiated extensions (response parameters); each name must have been offered. */
  readonly extensions?: ReadonlyArray<WebSocketExtensionHeader>
  /** Extra response headers (e.g. `Set-Cookie`); may not set the handshake's own headers. */
  readonly headers?: Readonly<Record<string, string>>
}

/**
 * The headers of the 101 response: `Upgrade: websocket`, `Connection: Upgrade`,
 * `Sec-WebSocket-Accept`, then `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` when
 * chosen, then the extra headers. Fails with a `HandshakeFormatError` for a subprotocol or
 * extension that was not offered, and for extra headers that are invalid or reserved.
 */
export const acceptResponseHeaders: (
  request: UpgradeRequest,
  options?: AcceptOptions
) => Readonly<Record<string, string>> | HandshakeFormatError = server.acceptResponseHeaders

/**
 * The complete 101 response head, `HTTP/1.1 101 Switching Protocols\r\n`, the headers of
 * `acceptResponseHeaders` one per line, and the empty line; write it as latin1 (`encodeLatin1`).
 * Fails like `acceptResponseHeaders`.
 */
export const formatUpgradeResponse: (request: UpgradeRequest, options?: AcceptOptions) => string | HandshakeFormatError = server.formatUpgradeResponse

/**
 * A complete HTTP/1.1 error response for a rejection, to write (as latin1) before closing the
 * connection: status line, the rejection's headers, `Connection: close` (merged with a
 * rejection's own `Connection`, e.g. `Upgrade, close` for a 426), `Content-Type: text/plain;
 * charset=utf-8`, `Content-Length`, and the reason as the body (characters outside printable
 * ASCII become `?`). Rejection headers that are not valid HTTP (a non-token name, CR/LF or other
 * controls in the value) are left out rather than risk injection, as are `Content-Length`,
 * `Content-Type` and `Transfer-Encoding`. Never fails.
 */
export const formatRejection: (rejection: HandshakeRejection) => string = server.formatRejection

/** The bytes of a latin1 string (each code unit's low 8 bits), e.g. to write a formatted head. */
export const encodeLatin1: (text: string) => Uint8Array = headers.encodeLatin1

// -----------------------------------------------------------------------------------------------
// Client side (internal/handshake/client.ts)
// -----------------------------------------------------------------------------------------------

/** What the client puts in its upgrade request. */
export interface UpgradeRequestOptions {
  /** The `Host` value (`host` or `host:port`, IPv6 in brackets). */
  readonly host: string
  /** The request target in origin form: path and query, starting with `/`. */
  readonly path: string
  /** The `Sec-WebSocket-Key`, usually from `generateKey()`. */
  readonly key: string
  /** Subprotocols to offer, most preferred first (unique tokens). */
  readonly protocols?: ReadonlyArray<string>
  /** Extensions to offer, in order. */
  readonly extensions?: ReadonlyArray<WebSocketExtensionHeader>
  /** The `Origin` header value. */
  readonly origin?: string
  /** Extra request headers (e.g. `Authorization`); may not set the handshake's own headers. */
  readonly headers?: Readonly<Record<string, string>>
}

/**
 * The complete upgrade request head: `GET <path> HTTP/1.1`, `Host`, `Upgrade: websocket`,
 * `Connection: Upgrade`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`, then
 * `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions` and `Origin` when given, then the extra
 * headers, then the empty line; write it as latin1. Fails with a `HandshakeFormatError` for a
 * path that is not origin-form visible ASCII, an empty or non-visible-ASCII host, an invalid key,
 * a subprotocol that is not a token or repeats, and invalid or reserved extra headers (CR/LF
 * injection included; `Origin` may come from `origin` or `headers`, not both).
 */
export const makeUpgradeRequest: (options: UpgradeRequestOptions) => string | HandshakeFormatError = client.makeUpgradeRequest

/** What the client offered, to check the response against. */
export interface UpgradeOffer {
  /** The `Sec-WebSocket-Key` sent. */
  readonly key: string
  /** The subprotocols offered (empty when none). */
  readonly protocols: ReadonlyArray<string>
  /** The names of the extensions offered (compared case-insensitively). */
  readonly extensions: ReadonlyArray<string>
}

/** A valid 101 response: the subprotocol and extensions the server chose. */
export interface AcceptedResponse {
  readonly _tag: "AcceptedResponse"
  readonly protocol: string | undefined
  readonly extensions: ReadonlyArray<WebSocketExtensionHeader>
}

/** Why the client must fail the connection (RFC 6455 §4.1, the server's response). */
export type HandshakeFailureKind =
  | "UnexpectedStatus"
  | "MissingUpgrade"
  | "MissingConnection"
  | "InvalidAccept"
  | "UnofferedProtocol"
  | "InvalidExtensions"
  | "UnofferedExtension"
  | "DuplicateExtension"

/** A server response that fails the handshake, with the response's status and headers. */
export interface HandshakeFailure {
  readonly _tag: "HandshakeFailure"
  readonly kind: HandshakeFailureKind
  readonly message: string
  readonly status: number
  readonly headers: Headers
}

/** Narrows any value to a `HandshakeFailure`. */
export const isHandshakeFailure: (u: unknown) => u is HandshakeFailure = client.isHandshakeFailure

/**
 * Checks the server's response to an offer (RFC 6455 §4.1), failing with the first problem:
 * status other than 101 → `UnexpectedStatus`; `Upgrade` other than the single token `websocket`
 * (case-insensitive) → `MissingUpgrade`; `Connection` without `upgrade` → `MissingConnection`;
 * `Sec-WebSocket-Accept` missing, repeated or wrong → `InvalidAccept`; a `Sec-WebSocket-Protocol`
 * that is not exactly one offered name (including any value when none was offered) →
 * `UnofferedProtocol`; bad `Sec-WebSocket-Extensions` syntax → `InvalidExtensions`; an extension
 * not offered → `UnofferedExtension`; the same extension twice → `DuplicateExtension`.
 */
export const validateUpgradeResponse: (
  response: { readonly status: number; readonly headers: Headers },
  offer: UpgradeOffer
) => AcceptedResponse | HandshakeFailure = client.validateUpgradeResponse

// -----------------------------------------------------------------------------------------------
// HTTP head parser (internal/handshake/httpHead.ts)
// -----------------------------------------------------------------------------------------------

/** The default limit on the size of a head (request or status line, headers, empty line). */
export const DEFAULT_MAX_HEADER_BYTES: number = httpHead.DEFAULT_MAX_HEADER_BYTES

/** The default limit on the number of header fields. */
export const DEFAULT_MAX_HEADERS: 100 = httpHead.DEFAULT_MAX_HEADERS

/**
 * A parsed HTTP/1.x head. Requests have `method` and `target`, responses `status` and
 * `statusText`. Header names are lowercased; a header sent on several lines becomes an array of
 * its values in order (join them with ", " to get the RFC 7230 §3.2.2 combined value). The
 * record has no prototype, so any name is safe as a key. Usable as `Headers`.
 */
export interface HttpHead {
  readonly _tag: "HttpHead"
  readonly method?: string
  readonly target?: string
  readonly status?: number
  readonly statusText?: string
  /** `"1.1"`, `"1.0"`, ... */
  readonly httpVersion: string
  readonly headers: Record<string, string | Array<string>>
}

/** A head that cannot be parsed: 431 when over a limit, 400 when malformed. */
export interface HttpHeadError {
  readonly _tag: "HttpHeadError"
  readonly status: 400 | 431
  readonly message: string
}

/** Options of an `HttpHeadParser`. */
export interface HttpHeadParserOptions {
  /** Parse a request (server side) or a response (client side). */
  readonly kind: "request" | "response"
  /** Largest head in bytes, start line to final empty line included (default 16 KiB). */
  readonly maxHeaderBytes?: number
  /** Most header fields (default 100). */
  readonly maxHeaders?: number
}

/**
 * An incremental parser of one HTTP/1.x head (RFC 7230 §3) for a handshake read from a raw
 * socket. `push` chunks as they arrive; it returns `undefined` while more bytes are needed, then
 * the `HttpHead` or an `HttpHeadError`, and keeps returning that result (later chunks are
 * ignored). `rest()` gives the bytes that followed the head in the last chunk (the first
 * WebSocket bytes), copied.
 *
 * Strict, bounded and linear: every byte is looked at once; at most `maxHeaderBytes` are ever
 * kept. Fails with 431 as soon as the head grows past `maxHeaderBytes` or the header count past
 * `maxHeaders`; with 400 for a malformed start line, a bare CR, an obs-fold (a line starting
 * with whitespace), a header line without `:`, whitespace before `:`, a non-token name, or a
 * control character in a value. Lines end with CRLF or a lone LF; empty lines before a request
 * line are skipped (§3.5). Never throws.
 */
export class HttpHeadParser {
  /** Which start line is expected. */
  readonly kind: "request" | "response"
  private readonly parser: httpHead.HeadParser

  /** Throws a `RangeError` when a limit is not a positive integer (zero allowed for `maxHeaders`). */
  constructor(options: HttpHeadParserOptions) {
    this.parser = new httpHead.HeadParser(options)
    this.kind = options.kind
  }

  /** Feeds the next bytes; `undefined` while the head is incomplete, then the head or the error. */
  push(chunk: Uint8Array): HttpHead | HttpHeadError | undefined {
    return this.parser.push(chunk)
  }

  /** The size of the line buffer currently held, never more than `maxHeaderBytes` (0 once done). */
  get bufferedBytes(): number {
    return this.parser.bufferedBytes
  }

  /** The bytes received after the head (empty until the head is complete, and after an error). */
  rest(): Uint8Array {
    return this.parser.rest()
  }
}
