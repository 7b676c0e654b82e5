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
import {
  formatWebSocketExtensions,
  isExtensionHeaderError,
  isToken,
  parseWebSocketExtensions,
  type WebSocketExtensionHeader
} from "./ExtensionHeader.ts"
import { base64Value, encodeBase64 } from "./internal/base64.ts"
import { isTchar } from "./internal/token.ts"
import { Sha1 } from "./internal/sha1.ts"

// -----------------------------------------------------------------------------------------------
// Keys and Sec-WebSocket-Accept
// -----------------------------------------------------------------------------------------------

/** The GUID appended to the key before hashing (RFC 6455 §1.3). */
export const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/** The only protocol version this library speaks (`Sec-WebSocket-Version: 13`). */
export const WEBSOCKET_VERSION = "13"

const defaultRandom = (bytes: Uint8Array): void => {
  globalThis.crypto.getRandomValues(bytes)
}

/**
 * A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes (RFC 6455 §4.1). `random` fills a
 * buffer with random bytes; it defaults to `crypto.getRandomValues` (tests inject their own).
 */
export const generateKey = (random: (bytes: Uint8Array) => void = defaultRandom): string => {
  const bytes = new Uint8Array(16)
  random(bytes)
  return encodeBase64(bytes)
}

const GUID_BYTES = Uint8Array.from(WEBSOCKET_GUID, (c) => c.charCodeAt(0))
const acceptHasher = new Sha1()
const acceptDigest = new Uint8Array(20)
const keyScratch = new Uint8Array(64)

/**
 * `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) over the key's ISO-8859-1 bytes,
 * taken as given (header parsers already strip surrounding whitespace). Throws a `RangeError`
 * when the key has a character above U+00FF, which no header can carry; a key accepted by
 * `isValidKey` never does.
 */
export const computeAccept = (key: string): string => {
  const bytes = key.length <= keyScratch.length ? keyScratch : new Uint8Array(key.length)
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    if (c > 0xff) throw new RangeError("Sec-WebSocket-Key has a character outside ISO-8859-1")
    bytes[i] = c
  }
  acceptHasher.reset().update(bytes, 0, key.length).update(GUID_BYTES).digest(acceptDigest)
  return encodeBase64(acceptDigest)
}

/**
 * Whether `key` is a valid `Sec-WebSocket-Key`: standard-alphabet base64 with padding that
 * decodes to exactly 16 bytes, i.e. 22 alphabet characters then `==`. The 4 unused bits of the
 * 22nd character are not required to be zero (RFC 4648 §3.5 lets decoders accept them; the
 * accept hash covers the exact text anyway).
 */
export const isValidKey = (key: string): boolean => {
  if (key.length !== 24 || key.charCodeAt(22) !== 0x3d || key.charCodeAt(23) !== 0x3d) return false
  for (let i = 0; i < 22; i++) if (base64Value(key, i) < 0) return false
  return true
}

// -----------------------------------------------------------------------------------------------
// Headers
// -----------------------------------------------------------------------------------------------

/** One header as received: a value, the values of a header sent on several lines, or absent. */
export type HeaderValue = string | ReadonlyArray<string> | undefined

/** Received headers by lowercased name (Node's `IncomingMessage.headers` shape). */
export type Headers = Readonly<Record<string, HeaderValue>>

const EMPTY: ReadonlyArray<string> = Object.freeze([])

/** The lines of a header (name compared case-insensitively; `headers` keys must be lowercase). Never fails. */
export const headerLines = (headers: Headers, name: string): ReadonlyArray<string> => {
  const key = name.toLowerCase()
  const value = Object.hasOwn(headers, key) ? headers[key] : undefined
  if (value === undefined) return EMPTY
  return typeof value === "string" ? [value] : value
}

/** A header's value by lowercase `key`, as stored (no array is allocated for a single line). */
const rawValue = (headers: Headers, key: string): HeaderValue => (Object.hasOwn(headers, key) ? headers[key] : undefined)

/** How many lines a raw header value has. */
const lineCount = (value: HeaderValue): number => (value === undefined ? 0 : typeof value === "string" ? 1 : value.length)

/** The first line of a raw header value that has at least one. */
const firstLine = (value: HeaderValue): string => (typeof value === "string" ? value : value![0]!)

const isOws = (c: number): boolean => c === 0x20 || c === 0x09

/** `s` without leading and trailing optional whitespace (SP and HTAB only, RFC 7230 §3.2.3). */
const trimOws = (s: string): string => {
  let start = 0
  let end = s.length
  while (start < end && isOws(s.charCodeAt(start))) start++
  while (end > start && isOws(s.charCodeAt(end - 1))) end--
  return start === 0 && end === s.length ? s : s.slice(start, end)
}

/**
 * The elements of a comma-separated header (RFC 7230 §7) across all its lines, whitespace
 * trimmed, empty elements dropped, case kept. Does not understand quoted strings (use
 * `parseWebSocketExtensions` for `Sec-WebSocket-Extensions`). Never fails.
 */
export const headerList = (headers: Headers, name: string): ReadonlyArray<string> => {
  const out: Array<string> = []
  for (const line of headerLines(headers, name)) {
    let start = 0
    for (let i = 0; i <= line.length; i++) {
      if (i === line.length || line.charCodeAt(i) === 0x2c) {
        const element = trimOws(line.slice(start, i))
        if (element.length > 0) out.push(element)
        start = i + 1
      }
    }
  }
  return out
}

/** Whether a comma-separated header has `token` among its elements on any line, ASCII case-insensitively. */
export const hasToken = (headers: Headers, name: string, token: string): boolean => {
  const key = toLowerAscii(name)
  const value = Object.hasOwn(headers, key) ? headers[key] : undefined
  if (value === undefined) return false
  const wanted = toLowerAscii(token)
  if (typeof value === "string") return lineHasToken(value, wanted)
  for (const line of value) if (lineHasToken(line, wanted)) return true
  return false
}

/** `s.toLowerCase()`, without allocating when `s` has no uppercase ASCII letter (names and tokens are usually lowercase already). */
const toLowerAscii = (s: string): string => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if ((c >= 0x41 && c <= 0x5a) || c > 0x7f) return s.toLowerCase()
  }
  return s
}

/** ASCII lowercase of a code unit (other code units unchanged). */
const lowerAscii = (c: number): number => (c >= 0x41 && c <= 0x5a ? c + 0x20 : c)

/**
 * Whether one line of a comma-separated header has `wanted` (already lowercased) as an element,
 * OWS-trimmed and compared ASCII case-insensitively like `headerList` + `toLowerCase`, without
 * allocating.
 */
const lineHasToken = (line: string, wanted: string): boolean => {
  const n = line.length
  let start = 0
  while (start <= n) {
    let end = line.indexOf(",", start)
    if (end === -1) end = n
    let a = start
    let b = end
    while (a < b && isOws(line.charCodeAt(a))) a++
    while (b > a && isOws(line.charCodeAt(b - 1))) b--
    if (b - a === wanted.length) {
      let i = 0
      while (i < wanted.length && lowerAscii(line.charCodeAt(a + i)) === wanted.charCodeAt(i)) i++
      if (i === wanted.length) return true
    }
    start = end + 1
  }
  return false
}

/**
 * Parses `Sec-WebSocket-Protocol` lines as `1#token` (RFC 6455 §4.1): comma lists, whitespace and
 * empty elements allowed. Returns the names in order, or `undefined` when an element is not a
 * token, a name repeats, or the header is present with no name at all. Linear time.
 */
const parseProtocols = (lines: ReadonlyArray<string>): ReadonlyArray<string> | undefined => {
  const out: Array<string> = []
  const seen = new Set<string>()
  for (const line of lines) {
    let i = 0
    const n = line.length
    while (i < n) {
      const c = line.charCodeAt(i)
      if (c === 0x2c || isOws(c)) {
        i++
        continue
      }
      const start = i
      while (i < n && isTchar(line.charCodeAt(i))) i++
      if (i === start) return undefined
      const name = line.slice(start, i)
      while (i < n && isOws(line.charCodeAt(i))) i++
      if (i < n && line.charCodeAt(i) !== 0x2c) return undefined
      if (seen.has(name)) return undefined
      seen.add(name)
      out.push(name)
    }
  }
  return lines.length > 0 && out.length === 0 ? undefined : out
}

/** field-value characters: HTAB, SP, VCHAR, obs-text. Excludes CR, LF, NUL, other controls and DEL. */
const isFieldValueChar = (c: number): boolean => c === 0x09 || (c >= 0x20 && c <= 0x7e) || (c >= 0x80 && c <= 0xff)

const isFieldValue = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) if (!isFieldValueChar(s.charCodeAt(i))) return false
  return true
}

/** Visible ASCII only (request-target, Host). */
const isVisibleAscii = (s: string): boolean => {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) return false
  }
  return true
}

// -----------------------------------------------------------------------------------------------
// Server side
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
export const makeRejection = (
  status: number,
  reason: string,
  headers: Readonly<Record<string, string>> = {}
): HandshakeRejection => {
  if (!Number.isInteger(status) || status < 400 || status > 599) {
    throw new RangeError(`A handshake rejection needs a 4xx or 5xx status, got ${status}`)
  }
  return { _tag: "HandshakeRejection", status, reason, headers }
}

/** Narrows any value to a `HandshakeRejection`. */
export const isHandshakeRejection = (u: unknown): u is HandshakeRejection =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "HandshakeRejection"

/** The request line and headers of an upgrade request; `httpVersion` like `"1.1"` (unchecked when absent). */
export interface UpgradeRequestInput {
  readonly method: string
  readonly httpVersion?: string
  readonly headers: Headers
}

const UPGRADE_REQUIRED_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  Upgrade: "websocket",
  Connection: "Upgrade"
})

const VERSION_REQUIRED_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  Upgrade: "websocket",
  Connection: "Upgrade",
  "Sec-WebSocket-Version": WEBSOCKET_VERSION
})

const isAsciiDigit = (c: number): boolean => c >= 0x30 && c <= 0x39

/** `1.1` or a later `1.x` (one digit each side of the dot). */
const isHttp11OrLater1x = (version: string): boolean =>
  version.length === 3 &&
  version.charCodeAt(0) === 0x31 &&
  version.charCodeAt(1) === 0x2e &&
  isAsciiDigit(version.charCodeAt(2)) &&
  version.charCodeAt(2) !== 0x30

/** The `protocols` and `extensions` of a request that offers none (shared: most requests offer none). */
const NO_PROTOCOLS: ReadonlyArray<string> = Object.freeze([])
const NO_EXTENSION_OFFERS: ReadonlyArray<WebSocketExtensionHeader> = Object.freeze([])

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
export const validateUpgradeRequest = (request: UpgradeRequestInput): UpgradeRequest | HandshakeRejection => {
  const { headers } = request
  if (request.method !== "GET") {
    return makeRejection(405, "A WebSocket upgrade must use GET", { Allow: "GET" })
  }
  if (request.httpVersion !== undefined && !isHttp11OrLater1x(request.httpVersion)) {
    return makeRejection(400, "A WebSocket upgrade requires HTTP/1.1")
  }
  const host = rawValue(headers, "host")
  const hostLines = lineCount(host)
  if (hostLines !== 1 || trimOws(firstLine(host)).length === 0) {
    return makeRejection(400, hostLines === 0 ? "Missing Host header" : "Invalid Host header")
  }
  if (!hasToken(headers, "upgrade", "websocket")) {
    return makeRejection(426, "Upgrade: websocket required", UPGRADE_REQUIRED_HEADERS)
  }
  if (!hasToken(headers, "connection", "upgrade")) {
    return makeRejection(400, "Connection header must include Upgrade")
  }
  const version = rawValue(headers, "sec-websocket-version")
  if (lineCount(version) !== 1 || trimOws(firstLine(version)) !== WEBSOCKET_VERSION) {
    return makeRejection(426, "Unsupported WebSocket version: only 13 is supported", VERSION_REQUIRED_HEADERS)
  }
  const keys = rawValue(headers, "sec-websocket-key")
  const keyLines = lineCount(keys)
  if (keyLines === 0) return makeRejection(400, "Missing Sec-WebSocket-Key header")
  if (keyLines > 1) return makeRejection(400, "Multiple Sec-WebSocket-Key headers")
  const key = trimOws(firstLine(keys))
  if (!isValidKey(key)) return makeRejection(400, "Sec-WebSocket-Key is not base64 of 16 bytes")
  const protocols = rawValue(headers, "sec-websocket-protocol") === undefined
    ? NO_PROTOCOLS
    : parseProtocols(headerLines(headers, "sec-websocket-protocol"))
  if (protocols === undefined) {
    return makeRejection(400, "Sec-WebSocket-Protocol must be a list of unique tokens")
  }
  let extensions: ReadonlyArray<WebSocketExtensionHeader> = NO_EXTENSION_OFFERS
  if (lineCount(rawValue(headers, "sec-websocket-extensions")) > 0) {
    const parsed = parseWebSocketExtensions(headerLines(headers, "sec-websocket-extensions"))
    if (isExtensionHeaderError(parsed)) {
      return makeRejection(400, "Invalid Sec-WebSocket-Extensions header")
    }
    extensions = parsed
  }
  const origins = rawValue(headers, "origin")
  const originLines = lineCount(origins)
  if (originLines > 1) return makeRejection(400, "Multiple Origin headers")
  return {
    _tag: "UpgradeRequest",
    key,
    accept: computeAccept(key),
    protocols,
    extensions,
    origin: originLines === 0 ? undefined : trimOws(firstLine(origins))
  }
}

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

const formatError = (kind: HandshakeFormatErrorKind, message: string): HandshakeFormatError => ({
  _tag: "HandshakeFormatError",
  kind,
  message
})

/** Narrows any value to a `HandshakeFormatError`. */
export const isHandshakeFormatError = (u: unknown): u is HandshakeFormatError =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "HandshakeFormatError"

type HeaderPairs = Array<readonly [string, string]>

/** Appends caller headers after checking them; `reserved` holds lowercased names the caller may not set. */
const appendExtraHeaders = (
  pairs: HeaderPairs,
  extra: Readonly<Record<string, string>> | undefined,
  reserved: ReadonlySet<string>
): HandshakeFormatError | undefined => {
  if (extra === undefined) return undefined
  for (const [name, value] of Object.entries(extra)) {
    if (!isToken(name)) return formatError("InvalidHeaderName", `Invalid header name ${JSON.stringify(name)}`)
    if (reserved.has(name.toLowerCase())) {
      return formatError("ReservedHeader", `Header ${name} is set by the handshake and cannot be overridden`)
    }
    if (typeof value !== "string" || !isFieldValue(value)) {
      return formatError("InvalidHeaderValue", `Invalid value for header ${name} (control characters or CR/LF)`)
    }
    pairs.push([name, value])
  }
  return undefined
}

const formatExtensions = (
  extensions: ReadonlyArray<WebSocketExtensionHeader>
): string | HandshakeFormatError => {
  const value = formatWebSocketExtensions(extensions)
  return isFieldValue(value)
    ? value
    : formatError("InvalidHeaderValue", "Sec-WebSocket-Extensions value has control characters")
}

const formatHead = (startLine: string, pairs: HeaderPairs): string => {
  let out = startLine + "\r\n"
  for (const [name, value] of pairs) out += `${name}: ${value}\r\n`
  return out + "\r\n"
}

/** How the server answers an accepted upgrade. */
export interface AcceptOptions {
  /** The chosen subprotocol; must be one of `UpgradeRequest.protocols`. */
  readonly protocol?: string
  /** The negotiated extensions (response parameters); each name must have been offered. */
  readonly extensions?: ReadonlyArray<WebSocketExtensionHeader>
  /** Extra response headers (e.g. `Set-Cookie`); may not set the handshake's own headers. */
  readonly headers?: Readonly<Record<string, string>>
}

const SERVER_RESERVED = new Set([
  "upgrade",
  "connection",
  "sec-websocket-accept",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  "sec-websocket-version",
  "sec-websocket-key",
  "content-length",
  "transfer-encoding"
])

const acceptPairs = (request: UpgradeRequest, options: AcceptOptions): HeaderPairs | HandshakeFormatError => {
  const pairs: HeaderPairs = [
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Accept", request.accept]
  ]
  if (options.protocol !== undefined) {
    if (!request.protocols.includes(options.protocol)) {
      return formatError("UnofferedProtocol", `Subprotocol ${JSON.stringify(options.protocol)} was not offered`)
    }
    pairs.push(["Sec-WebSocket-Protocol", options.protocol])
  }
  if (options.extensions !== undefined && options.extensions.length > 0) {
    for (const extension of options.extensions) {
      if (!request.extensions.some((offered) => offered.name === extension.name)) {
        return formatError("UnofferedExtension", `Extension ${extension.name} was not offered`)
      }
    }
    const value = formatExtensions(options.extensions)
    if (typeof value !== "string") return value
    pairs.push(["Sec-WebSocket-Extensions", value])
  }
  return appendExtraHeaders(pairs, options.headers, SERVER_RESERVED) ?? pairs
}

/**
 * The headers of the 101 response: `Upgrade: websocket`, `Connection: Upgrade`,
 * `Sec-WebSocket-Accept`, then `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` when
 * chosen, then the extra headers. Fails with a `HandshakeFormatError` for a subprotocol or
 * extension that was not offered, and for extra headers that are invalid or reserved.
 */
export const acceptResponseHeaders = (
  request: UpgradeRequest,
  options: AcceptOptions = {}
): Readonly<Record<string, string>> | HandshakeFormatError => {
  const pairs = acceptPairs(request, options)
  return isHandshakeFormatError(pairs) ? pairs : Object.fromEntries(pairs)
}

/**
 * The complete 101 response head, `HTTP/1.1 101 Switching Protocols\r\n`, the headers of
 * `acceptResponseHeaders` one per line, and the empty line; write it as latin1 (`encodeLatin1`).
 * Fails like `acceptResponseHeaders`.
 */
export const formatUpgradeResponse = (
  request: UpgradeRequest,
  options: AcceptOptions = {}
): string | HandshakeFormatError => {
  if (options.protocol === undefined && options.extensions === undefined && options.headers === undefined) {
    // The common case, built in one expression (no header pairs).
    return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
      request.accept + "\r\n\r\n"
  }
  const pairs = acceptPairs(request, options)
  return isHandshakeFormatError(pairs) ? pairs : formatHead("HTTP/1.1 101 Switching Protocols", pairs)
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  413: "Content Too Large",
  414: "URI Too Long",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported"
}

const REJECTION_OWN = new Set(["connection", "content-length", "content-type", "transfer-encoding"])

/**
 * A complete HTTP/1.1 error response for a rejection, to write (as latin1) before closing the
 * connection: status line, the rejection's headers, `Connection: close` (merged with a
 * rejection's own `Connection`, e.g. `Upgrade, close` for a 426), `Content-Type: text/plain;
 * charset=utf-8`, `Content-Length`, and the reason as the body (characters outside printable
 * ASCII become `?`). Rejection headers that are not valid HTTP (a non-token name, CR/LF or other
 * controls in the value) are left out rather than risk injection, as are `Content-Length`,
 * `Content-Type` and `Transfer-Encoding`. Never fails.
 */
export const formatRejection = (rejection: HandshakeRejection): string => {
  const status = Number.isInteger(rejection.status) && rejection.status >= 100 && rejection.status <= 999
    ? rejection.status
    : 500
  let out = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n`
  let connection = ""
  for (const [name, value] of Object.entries(rejection.headers)) {
    if (!isToken(name) || typeof value !== "string" || !isFieldValue(value)) continue
    const lower = name.toLowerCase()
    if (lower === "connection") {
      const options = trimOws(value)
      if (options.length > 0) connection += (connection.length > 0 ? ", " : "") + options
    } else if (!REJECTION_OWN.has(lower)) {
      out += `${name}: ${value}\r\n`
    }
  }
  const hasClose = connection.split(",").some((option) => trimOws(option).toLowerCase() === "close")
  if (!hasClose) connection += (connection.length > 0 ? ", " : "") + "close"
  let body = ""
  for (let i = 0; i < rejection.reason.length; i++) {
    const c = rejection.reason.charCodeAt(i)
    body += c >= 0x20 && c <= 0x7e ? String.fromCharCode(c) : "?"
  }
  return (
    out +
    `Connection: ${connection}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n\r\n` +
    body
  )
}

/** The bytes of a latin1 string (each code unit's low 8 bits), e.g. to write a formatted head. */
export const encodeLatin1 = (text: string): Uint8Array => {
  const out = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i)
  return out
}

// -----------------------------------------------------------------------------------------------
// Client side
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

const CLIENT_RESERVED = new Set([
  "host",
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  "sec-websocket-accept",
  "content-length",
  "transfer-encoding"
])

const CLIENT_RESERVED_WITH_ORIGIN = new Set([...CLIENT_RESERVED, "origin"])

/**
 * The complete upgrade request head: `GET <path> HTTP/1.1`, `Host`, `Upgrade: websocket`,
 * `Connection: Upgrade`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`, then
 * `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions` and `Origin` when given, then the extra
 * headers, then the empty line; write it as latin1. Fails with a `HandshakeFormatError` for a
 * path that is not origin-form visible ASCII, an empty or non-visible-ASCII host, an invalid key,
 * a subprotocol that is not a token or repeats, and invalid or reserved extra headers (CR/LF
 * injection included; `Origin` may come from `origin` or `headers`, not both).
 */
export const makeUpgradeRequest = (options: UpgradeRequestOptions): string | HandshakeFormatError => {
  if (!isVisibleAscii(options.path) || options.path.charCodeAt(0) !== 0x2f) {
    return formatError("InvalidTarget", `Invalid request path ${JSON.stringify(options.path)}`)
  }
  if (!isVisibleAscii(options.host)) {
    return formatError("InvalidHost", `Invalid host ${JSON.stringify(options.host)}`)
  }
  if (!isValidKey(options.key)) {
    return formatError("InvalidKey", "Sec-WebSocket-Key must be base64 of 16 bytes")
  }
  const pairs: HeaderPairs = [
    ["Host", options.host],
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Key", options.key],
    ["Sec-WebSocket-Version", WEBSOCKET_VERSION]
  ]
  const protocols = options.protocols ?? []
  if (protocols.length > 0) {
    const seen = new Set<string>()
    for (const protocol of protocols) {
      if (!isToken(protocol)) {
        return formatError("InvalidProtocol", `Subprotocol ${JSON.stringify(protocol)} is not a token`)
      }
      if (seen.has(protocol)) return formatError("InvalidProtocol", `Subprotocol ${protocol} is offered twice`)
      seen.add(protocol)
    }
    pairs.push(["Sec-WebSocket-Protocol", protocols.join(", ")])
  }
  if (options.extensions !== undefined && options.extensions.length > 0) {
    const value = formatExtensions(options.extensions)
    if (typeof value !== "string") return value
    pairs.push(["Sec-WebSocket-Extensions", value])
  }
  if (options.origin !== undefined) {
    if (!isFieldValue(options.origin)) {
      return formatError("InvalidHeaderValue", "Invalid Origin value (control characters or CR/LF)")
    }
    pairs.push(["Origin", options.origin])
  }
  const reserved = options.origin === undefined ? CLIENT_RESERVED : CLIENT_RESERVED_WITH_ORIGIN
  const failure = appendExtraHeaders(pairs, options.headers, reserved)
  return failure ?? formatHead(`GET ${options.path} HTTP/1.1`, pairs)
}

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
export const isHandshakeFailure = (u: unknown): u is HandshakeFailure =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "HandshakeFailure"

/**
 * Checks the server's response to an offer (RFC 6455 §4.1), failing with the first problem:
 * status other than 101 → `UnexpectedStatus`; `Upgrade` other than the single token `websocket`
 * (case-insensitive) → `MissingUpgrade`; `Connection` without `upgrade` → `MissingConnection`;
 * `Sec-WebSocket-Accept` missing, repeated or wrong → `InvalidAccept`; a `Sec-WebSocket-Protocol`
 * that is not exactly one offered name (including any value when none was offered) →
 * `UnofferedProtocol`; bad `Sec-WebSocket-Extensions` syntax → `InvalidExtensions`; an extension
 * not offered → `UnofferedExtension`; the same extension twice → `DuplicateExtension`.
 */
export const validateUpgradeResponse = (
  response: { readonly status: number; readonly headers: Headers },
  offer: UpgradeOffer
): AcceptedResponse | HandshakeFailure => {
  const { headers, status } = response
  const fail = (kind: HandshakeFailureKind, message: string): HandshakeFailure => ({
    _tag: "HandshakeFailure",
    kind,
    message,
    status,
    headers
  })
  if (status !== 101) return fail("UnexpectedStatus", `Expected status 101, got ${status}`)
  const upgrade = headerList(headers, "upgrade")
  if (upgrade.length !== 1 || upgrade[0]!.toLowerCase() !== "websocket") {
    return fail("MissingUpgrade", "Response lacks Upgrade: websocket")
  }
  if (!hasToken(headers, "connection", "upgrade")) {
    return fail("MissingConnection", "Response lacks Connection: Upgrade")
  }
  const accept = headerLines(headers, "sec-websocket-accept")
  if (accept.length !== 1 || trimOws(accept[0]!) !== computeAccept(offer.key)) {
    return fail("InvalidAccept", "Sec-WebSocket-Accept does not match the key")
  }
  let protocol: string | undefined
  const protocolLines = headerLines(headers, "sec-websocket-protocol")
  if (protocolLines.length > 0) {
    if (protocolLines.length > 1) return fail("UnofferedProtocol", "Server sent several Sec-WebSocket-Protocol headers")
    const chosen = trimOws(protocolLines[0]!)
    if (!offer.protocols.includes(chosen)) {
      return fail("UnofferedProtocol", `Server chose subprotocol ${JSON.stringify(chosen)}, which was not offered`)
    }
    protocol = chosen
  }
  const extensionLines = headerLines(headers, "sec-websocket-extensions")
  let extensions: ReadonlyArray<WebSocketExtensionHeader> = []
  if (extensionLines.length > 0) {
    const parsed = parseWebSocketExtensions(extensionLines)
    if (isExtensionHeaderError(parsed)) {
      return fail("InvalidExtensions", `Invalid Sec-WebSocket-Extensions: ${parsed.message}`)
    }
    const offered = new Set(offer.extensions.map((name) => name.toLowerCase()))
    const seen = new Set<string>()
    for (const extension of parsed) {
      if (!offered.has(extension.name)) {
        return fail("UnofferedExtension", `Server accepted extension ${extension.name}, which was not offered`)
      }
      if (seen.has(extension.name)) {
        return fail("DuplicateExtension", `Server accepted extension ${extension.name} twice`)
      }
      seen.add(extension.name)
    }
    extensions = parsed
  }
  return { _tag: "AcceptedResponse", protocol, extensions }
}

// -----------------------------------------------------------------------------------------------
// HTTP head parser
// -----------------------------------------------------------------------------------------------

/** The default limit on the size of a head (request or status line, headers, empty line). */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024

/** The default limit on the number of header fields. */
export const DEFAULT_MAX_HEADERS = 100

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

const CR = 0x0d
const LF = 0x0a
const SP = 0x20
const EMPTY_BYTES = new Uint8Array(0)

/** latin1 text of `bytes[start, end)`, in slices so huge lines never overflow the call stack. */
const latin1 = (bytes: Uint8Array, start: number, end: number, lowercase = false): string => {
  let out = ""
  for (let i = start; i < end; i += 4096) {
    const slice = bytes.subarray(i, Math.min(end, i + 4096))
    out += String.fromCharCode.apply(null, slice as unknown as Array<number>)
  }
  return lowercase ? out.toLowerCase() : out
}

const isDigit = (c: number | undefined): boolean => c !== undefined && c >= 0x30 && c <= 0x39

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
  private readonly maxHeaderBytes: number
  private readonly maxHeaders: number
  private line: Uint8Array
  private lineLength = 0
  private total = 0
  private sawCR = false
  private started = false
  private headerCount = 0
  private readonly headers: Record<string, string | Array<string>> = Object.create(null)
  private method = ""
  private target = ""
  private status = 0
  private statusText = ""
  private httpVersion = ""
  private result: HttpHead | HttpHeadError | undefined = undefined
  private remainder: Uint8Array = EMPTY_BYTES

  /** Throws a `RangeError` when a limit is not a positive integer (zero allowed for `maxHeaders`). */
  constructor(options: HttpHeadParserOptions) {
    const maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES
    const maxHeaders = options.maxHeaders ?? DEFAULT_MAX_HEADERS
    if (!Number.isSafeInteger(maxHeaderBytes) || maxHeaderBytes < 1) {
      throw new RangeError(`maxHeaderBytes must be a positive integer, got ${maxHeaderBytes}`)
    }
    if (!Number.isSafeInteger(maxHeaders) || maxHeaders < 0) {
      throw new RangeError(`maxHeaders must be a non-negative integer, got ${maxHeaders}`)
    }
    this.kind = options.kind
    this.maxHeaderBytes = maxHeaderBytes
    this.maxHeaders = maxHeaders
    this.line = new Uint8Array(Math.min(128, maxHeaderBytes))
  }

  /** Feeds the next bytes; `undefined` while the head is incomplete, then the head or the error. */
  push(chunk: Uint8Array): HttpHead | HttpHeadError | undefined {
    if (this.result !== undefined) return this.result
    const max = this.maxHeaderBytes
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!
      if (++this.total > max) return this.fail(431, `HTTP head larger than ${max} bytes`)
      if (this.sawCR) {
        if (b !== LF) return this.fail(400, "Bare CR in head")
        this.sawCR = false
      } else if (b === CR) {
        this.sawCR = true
        continue
      } else if (b !== LF) {
        if (this.lineLength === this.line.length) {
          const grown = new Uint8Array(Math.min(max, this.line.length * 2))
          grown.set(this.line)
          this.line = grown
        }
        this.line[this.lineLength++] = b
        continue
      }
      const outcome = this.endLine()
      if (outcome !== undefined) {
        if (outcome._tag === "HttpHead") this.remainder = chunk.slice(i + 1)
        this.result = outcome
        this.line = EMPTY_BYTES
        return outcome
      }
    }
    return undefined
  }

  /** The size of the line buffer currently held, never more than `maxHeaderBytes` (0 once done). */
  get bufferedBytes(): number {
    return this.line.length
  }

  /** The bytes received after the head (empty until the head is complete, and after an error). */
  rest(): Uint8Array {
    return this.remainder
  }

  private fail(status: 400 | 431, message: string): HttpHeadError {
    const error: HttpHeadError = { _tag: "HttpHeadError", status, message }
    this.result = error
    this.line = EMPTY_BYTES
    return error
  }

  private endLine(): HttpHead | HttpHeadError | undefined {
    const length = this.lineLength
    this.lineLength = 0
    if (!this.started) {
      if (length === 0 && this.kind === "request") return undefined
      this.started = true
      return this.kind === "request" ? this.requestLine(length) : this.statusLine(length)
    }
    if (length === 0) {
      const version = { httpVersion: this.httpVersion, headers: this.headers }
      return this.kind === "request"
        ? { _tag: "HttpHead", method: this.method, target: this.target, ...version }
        : { _tag: "HttpHead", status: this.status, statusText: this.statusText, ...version }
    }
    return this.headerLine(length)
  }

  /** Parses `HTTP/d.d` at `at`; the version text, or `undefined`. */
  private version(at: number): string | undefined {
    const l = this.line
    if (
      l[at] !== 0x48 || l[at + 1] !== 0x54 || l[at + 2] !== 0x54 || l[at + 3] !== 0x50 || l[at + 4] !== 0x2f ||
      !isDigit(l[at + 5]) || l[at + 6] !== 0x2e || !isDigit(l[at + 7])
    ) return undefined
    return latin1(l, at + 5, at + 8)
  }

  /** method SP request-target SP HTTP-version */
  private requestLine(length: number): HttpHeadError | undefined {
    const l = this.line
    let i = 0
    while (i < length && isTchar(l[i]!)) i++
    if (i === 0 || i >= length || l[i] !== SP) return this.fail(400, "Malformed request line")
    const method = latin1(l, 0, i)
    const targetStart = ++i
    while (i < length && l[i]! >= 0x21 && l[i]! <= 0x7e) i++
    if (i === targetStart || i >= length || l[i] !== SP) return this.fail(400, "Malformed request line")
    const target = latin1(l, targetStart, i)
    const version = i + 9 === length ? this.version(i + 1) : undefined
    if (version === undefined) return this.fail(400, "Malformed request line")
    this.method = method
    this.target = target
    this.httpVersion = version
    return undefined
  }

  /** HTTP-version SP 3DIGIT [SP reason-phrase] */
  private statusLine(length: number): HttpHeadError | undefined {
    const l = this.line
    const version = length >= 12 ? this.version(0) : undefined
    if (version === undefined || l[8] !== SP || !isDigit(l[9]) || !isDigit(l[10]) || !isDigit(l[11])) {
      return this.fail(400, "Malformed status line")
    }
    if (length > 12) {
      if (l[12] !== SP) return this.fail(400, "Malformed status line")
      for (let i = 13; i < length; i++) {
        if (!isFieldValueChar(l[i]!)) return this.fail(400, "Control character in status line")
      }
    }
    this.httpVersion = version
    this.status = (l[9]! - 0x30) * 100 + (l[10]! - 0x30) * 10 + (l[11]! - 0x30)
    this.statusText = length > 13 ? latin1(l, 13, length) : ""
    return undefined
  }

  /** field-name ":" OWS field-value OWS */
  private headerLine(length: number): HttpHeadError | undefined {
    const l = this.line
    if (isOws(l[0]!)) return this.fail(400, "Obsolete line folding in header")
    let i = 0
    while (i < length && isTchar(l[i]!)) i++
    if (i === length) return this.fail(400, "Header line without ':'")
    if (l[i] !== 0x3a) {
      return this.fail(400, isOws(l[i]!) ? "Whitespace before ':' in header" : "Invalid character in header name")
    }
    if (i === 0) return this.fail(400, "Empty header name")
    if (++this.headerCount > this.maxHeaders) return this.fail(431, `More than ${this.maxHeaders} headers`)
    const nameEnd = i
    i++
    while (i < length && isOws(l[i]!)) i++
    let end = length
    while (end > i && isOws(l[end - 1]!)) end--
    for (let j = i; j < end; j++) {
      if (!isFieldValueChar(l[j]!)) return this.fail(400, "Control character in header value")
    }
    const name = latin1(l, 0, nameEnd, true)
    const value = latin1(l, i, end)
    const previous = this.headers[name]
    if (previous === undefined) this.headers[name] = value
    else if (typeof previous === "string") this.headers[name] = [previous, value]
    else previous.push(value)
    return undefined
  }
}
