/**
 * Header helpers of the opening handshake: reading received headers (lines, comma lists, tokens,
 * the `Sec-WebSocket-Protocol` list) and checking and writing header text (field values, extra
 * headers, head lines, latin1 bytes, `HandshakeFormatError`). Shared by the server side
 * (`./server.ts`), the client side (`./client.ts`) and the head parser (`./httpHead.ts`).
 *
 * @internal
 * @module
 */
import { formatWebSocketExtensions, isToken, type WebSocketExtensionHeader } from "../../ExtensionHeader.ts"
import type { HandshakeFormatError, HandshakeFormatErrorKind, Headers, HeaderValue } from "../../Handshake.ts"
import { isTchar } from "../token.ts"

const EMPTY: ReadonlyArray<string> = Object.freeze([])

/** The lines of a header (name compared case-insensitively; `headers` keys must be lowercase). Never fails. */
export const headerLines = (headers: Headers, name: string): ReadonlyArray<string> => {
  const key = name.toLowerCase()
  const value = Object.hasOwn(headers, key) ? headers[key] : undefined
  if (value === undefined) return EMPTY
  return typeof value === "string" ? [value] : value
}

/** A header's value by lowercase `key`, as stored (no array is allocated for a single line). */
export const rawValue = (headers: Headers, key: string): HeaderValue => (Object.hasOwn(headers, key) ? headers[key] : undefined)

/** How many lines a raw header value has. */
export const lineCount = (value: HeaderValue): number => (value === undefined ? 0 : typeof value === "string" ? 1 : value.length)

/** The first line of a raw header value that has at least one. */
export const firstLine = (value: HeaderValue): string => (typeof value === "string" ? value : value![0]!)

/** Whether a code unit is optional whitespace (SP or HTAB, RFC 7230 §3.2.3). */
export const isOws = (c: number): boolean => c === 0x20 || c === 0x09

/** `s` without leading and trailing optional whitespace (SP and HTAB only, RFC 7230 §3.2.3). */
export const trimOws = (s: string): string => {
  let start = 0
  let end = s.length
  while (start < end && isOws(s.charCodeAt(start))) start++
  while (end > start && isOws(s.charCodeAt(end - 1))) end--
  return start === 0 && end === s.length ? s : s.slice(start, end)
}

/** The elements of a comma-separated header across all its lines (documented at `Handshake.headerList`). */
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
export const parseProtocols = (lines: ReadonlyArray<string>): ReadonlyArray<string> | undefined => {
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
export const isFieldValueChar = (c: number): boolean => c === 0x09 || (c >= 0x20 && c <= 0x7e) || (c >= 0x80 && c <= 0xff)

/** Whether every character of `s` may appear in a header value (`isFieldValueChar`). */
export const isFieldValue = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) if (!isFieldValueChar(s.charCodeAt(i))) return false
  return true
}

/** Visible ASCII only (request-target, Host). */
export const isVisibleAscii = (s: string): boolean => {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) return false
  }
  return true
}

/** A `HandshakeFormatError` of `kind`. */
export const formatError = (kind: HandshakeFormatErrorKind, message: string): HandshakeFormatError => ({
  _tag: "HandshakeFormatError",
  kind,
  message
})

/** Narrows any value to a `HandshakeFormatError`. */
export const isHandshakeFormatError = (u: unknown): u is HandshakeFormatError =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "HandshakeFormatError"

/** Header lines to write, in order: name and value. */
export type HeaderPairs = Array<readonly [string, string]>

/** Appends caller headers after checking them; `reserved` holds lowercased names the caller may not set. */
export const appendExtraHeaders = (
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

/** The `Sec-WebSocket-Extensions` value of `extensions`, or an error when it would carry control characters. */
export const formatExtensions = (
  extensions: ReadonlyArray<WebSocketExtensionHeader>
): string | HandshakeFormatError => {
  const value = formatWebSocketExtensions(extensions)
  return isFieldValue(value)
    ? value
    : formatError("InvalidHeaderValue", "Sec-WebSocket-Extensions value has control characters")
}

/** A head: the start line, one `name: value` line a pair, the empty line (CRLF line ends). */
export const formatHead = (startLine: string, pairs: HeaderPairs): string => {
  let out = startLine + "\r\n"
  for (const [name, value] of pairs) out += `${name}: ${value}\r\n`
  return out + "\r\n"
}

/** The bytes of a latin1 string (each code unit's low 8 bits), e.g. to write a formatted head. */
export const encodeLatin1 = (text: string): Uint8Array => {
  const out = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i)
  return out
}
