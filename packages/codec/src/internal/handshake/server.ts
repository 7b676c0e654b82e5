/**
 * The server side of the opening handshake (RFC 6455 §4.2): validation of an upgrade request,
 * rejections (`HandshakeRejection`) and their HTTP error response, and the 101 response that
 * accepts an upgrade (chosen subprotocol, negotiated extensions, extra headers).
 *
 * @internal
 * @module
 */
import { isExtensionHeaderError, isToken, parseWebSocketExtensions, type WebSocketExtensionHeader } from "../../ExtensionHeader.ts"
import type { AcceptOptions, HandshakeFormatError, HandshakeRejection, UpgradeRequest, UpgradeRequestInput } from "../../Handshake.ts"
import {
  appendExtraHeaders,
  firstLine,
  formatError,
  formatExtensions,
  formatHead,
  hasToken,
  type HeaderPairs,
  headerLines,
  isFieldValue,
  isHandshakeFormatError,
  lineCount,
  parseProtocols,
  rawValue,
  trimOws
} from "./headers.ts"
import { computeAccept, isValidKey, WEBSOCKET_VERSION } from "./keys.ts"

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

/** Checks an upgrade request, failing with the first problem in the order documented at `Handshake.validateUpgradeRequest`. */
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

/** The headers of the 101 response (documented at `Handshake.acceptResponseHeaders`). */
export const acceptResponseHeaders = (
  request: UpgradeRequest,
  options: AcceptOptions = {}
): Readonly<Record<string, string>> | HandshakeFormatError => {
  const pairs = acceptPairs(request, options)
  return isHandshakeFormatError(pairs) ? pairs : Object.fromEntries(pairs)
}

/** The complete 101 response head (documented at `Handshake.formatUpgradeResponse`). */
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

/** The HTTP/1.1 error response of a rejection (documented at `Handshake.formatRejection`). */
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

