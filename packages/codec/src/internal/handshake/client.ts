/**
 * The client side of the opening handshake (RFC 6455 §4.1): the upgrade request head a client
 * sends, and validation of the server's response against what was offered (status 101,
 * `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, subprotocol, extensions).
 *
 * @internal
 * @module
 */
import { isExtensionHeaderError, isToken, parseWebSocketExtensions, type WebSocketExtensionHeader } from "../../ExtensionHeader.ts"
import type {
  AcceptedResponse,
  HandshakeFailure,
  HandshakeFailureKind,
  HandshakeFormatError,
  Headers,
  UpgradeOffer,
  UpgradeRequestOptions
} from "../../Handshake.ts"
import {
  appendExtraHeaders,
  formatError,
  formatExtensions,
  formatHead,
  hasToken,
  type HeaderPairs,
  headerLines,
  headerList,
  isFieldValue,
  isVisibleAscii,
  trimOws
} from "./headers.ts"
import { computeAccept, isValidKey, WEBSOCKET_VERSION } from "./keys.ts"

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

/** The complete upgrade request head (documented at `Handshake.makeUpgradeRequest`). */
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

/** Narrows any value to a `HandshakeFailure`. */
export const isHandshakeFailure = (u: unknown): u is HandshakeFailure =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "HandshakeFailure"

/** Checks the server's response to an offer, failing with the first problem in the order documented at `Handshake.validateUpgradeResponse`. */
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

