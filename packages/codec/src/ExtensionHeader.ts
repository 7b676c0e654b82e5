/**
 * `Sec-WebSocket-Extensions` (RFC 6455 §9.1) over the RFC 7230 grammar: tokens, quoted-strings
 * with backslash escapes, optional whitespace around `,` `;` `=`, and empty list elements.
 *
 * ```
 * extension-list  = 1#extension
 * extension       = extension-token *( ";" extension-param )
 * extension-param = token [ "=" ( token / quoted-string ) ]   ; unescaped value must be a token
 * ```
 *
 * Extension names and parameter names are case-insensitive tokens: they are stored lowercased.
 * Values are kept as sent (after unescaping). The parser is one left-to-right scan that looks at
 * each character once, so it runs in linear time on any input (hostile-inputs H2).
 *
 * @module
 */
import { isTchar, isToken as isTokenString } from "./internal/token.ts"

/** One `name[=value]` parameter of an extension. `name` is lowercased; `value` is unescaped, `undefined` when absent. */
export interface ExtensionParameter {
  readonly name: string
  readonly value: string | undefined
}

/** A syntax error in a `Sec-WebSocket-Extensions` value: what was expected, at which offset. */
export interface ExtensionHeaderError {
  readonly _tag: "ExtensionHeaderError"
  readonly message: string
  /** Offset (in UTF-16 code units) into the value; for several header lines, into the lines joined with ",". */
  readonly position: number
}

/** Narrows any value to an `ExtensionHeaderError`. */
export const isExtensionHeaderError = (u: unknown): u is ExtensionHeaderError =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "ExtensionHeaderError"

/** Whether `s` is an RFC 7230 token: one or more tchars (no spaces, separators, controls or non-ASCII). */
export const isToken: (s: string) => boolean = isTokenString

/** RFC 7230 qdtext / quoted-pair payload: HTAB, SP, VCHAR, obs-text (0x80-0xFF). */
const isQuotable = (c: number): boolean => c === 0x09 || (c >= 0x20 && c <= 0x7e) || (c >= 0x80 && c <= 0xff)

const assertToken = (what: string, s: string): void => {
  if (!isToken(s)) throw new RangeError(`Extension ${what} is not an RFC 7230 token: ${JSON.stringify(s)}`)
}

/** Formats a parameter value: as is when it is a token, else as a quoted-string. */
const formatValue = (value: string): string => (isToken(value) ? value : `"${value.replace(/["\\]/g, "\\$&")}"`)

const noParameters: ReadonlyArray<ExtensionParameter> = Object.freeze([])

/**
 * One element of a `Sec-WebSocket-Extensions` header: an extension name and its parameters, in
 * order (duplicates kept; negotiation decides what they mean). Names are lowercased on
 * construction. The constructor throws a `RangeError` when a name is not a token or a value
 * cannot be written in a quoted-string (a character outside HTAB, SP, VCHAR, 0x80-0xFF).
 */
export class WebSocketExtensionHeader {
  /** The extension name, lowercased. */
  readonly name: string
  /** The parameters in the order given, names lowercased. */
  readonly parameters: ReadonlyArray<ExtensionParameter>

  constructor(name: string, parameters: ReadonlyArray<ExtensionParameter> = []) {
    assertToken("name", name)
    this.name = name.toLowerCase()
    this.parameters = parameters.length === 0 ? noParameters : parameters.map(({ name: paramName, value }) => {
      assertToken("parameter name", paramName)
      if (value !== undefined) {
        for (let i = 0; i < value.length; i++) {
          if (!isQuotable(value.charCodeAt(i))) {
            throw new RangeError(`Extension parameter value cannot be quoted: ${JSON.stringify(value)}`)
          }
        }
      }
      return { name: paramName.toLowerCase(), value }
    })
  }

  /** The first parameter with this name (compared case-insensitively), or `undefined`. */
  parameter(name: string): ExtensionParameter | undefined {
    const lower = name.toLowerCase()
    return this.parameters.find((p) => p.name === lower)
  }

  /**
   * The header element, e.g. `permessage-deflate; client_max_window_bits=10`. A value is quoted
   * (with `"` and `\` escaped) only when it is not a token; note that such a value does not
   * re-parse, as RFC 6455 requires quoted values to be tokens.
   */
  toString(): string {
    let out = this.name
    for (const p of this.parameters) out += p.value === undefined ? `; ${p.name}` : `; ${p.name}=${formatValue(p.value)}`
    return out
  }
}

const error = (message: string, position: number): ExtensionHeaderError => ({
  _tag: "ExtensionHeaderError",
  message,
  position
})

const describeAt = (s: string, pos: number): string =>
  pos >= s.length ? "end of input" : `${JSON.stringify(s[pos])} at offset ${pos}`

/**
 * Parses a `Sec-WebSocket-Extensions` value, or several header lines (joined with "," as RFC 7230
 * §3.2.2 allows), into its extensions in order. Fails with an `ExtensionHeaderError` (message
 * and offset) on any syntax error: a missing or non-token name, a bad parameter, an unterminated
 * quoted-string, a quoted value that is not a token once unescaped, or a value with no extension
 * at all (the rule is `1#extension`; empty elements such as `a, , b` are skipped). Linear time.
 */
export const parseWebSocketExtensions = (
  value: string | ReadonlyArray<string>
): ReadonlyArray<WebSocketExtensionHeader> | ExtensionHeaderError => {
  const s = typeof value === "string" ? value : value.join(",")
  const n = s.length
  const out: Array<WebSocketExtensionHeader> = []
  let pos = 0

  const skipOws = (): void => {
    while (pos < n) {
      const c = s.charCodeAt(pos)
      if (c !== 0x20 && c !== 0x09) return
      pos++
    }
  }
  const token = (): string => {
    const start = pos
    while (pos < n && isTchar(s.charCodeAt(pos))) pos++
    return s.slice(start, pos)
  }
  /**
   * At an opening quote: the unescaped token value, or an error. One scan with no allocation per
   * escape (a hostile value of 500,000 escapes costs one `slice` and one `replace` at the closing
   * quote, nothing when the quote never comes).
   */
  const quoted = (): string | ExtensionHeaderError => {
    const open = pos
    pos++
    let escaped = false
    let notToken = -1
    while (pos < n) {
      const c = s.charCodeAt(pos)
      if (c === 0x22) {
        const raw = s.slice(open + 1, pos)
        const unescaped = escaped ? raw.replace(/\\([\s\S])/g, "$1") : raw
        pos++
        if (unescaped.length === 0) {
          return error(`quoted parameter value must be a token (RFC 6455 §9.1), got an empty string at offset ${open}`, open)
        }
        if (notToken >= 0) {
          return error(
            `quoted parameter value must be a token (RFC 6455 §9.1): ${JSON.stringify(s[notToken])} at offset ${notToken} is not a token character`,
            notToken
          )
        }
        return unescaped
      }
      if (c === 0x5c) {
        escaped = true
        pos++
        if (pos >= n) break
        const e = s.charCodeAt(pos)
        if (!isQuotable(e)) return error(`invalid escaped character ${describeAt(s, pos)} in quoted-string`, pos)
        if (notToken < 0 && !isTchar(e)) notToken = pos
        pos++
        continue
      }
      if (!isQuotable(c)) return error(`invalid character ${describeAt(s, pos)} in quoted-string`, pos)
      if (notToken < 0 && !isTchar(c)) notToken = pos
      pos++
    }
    return error(`unterminated quoted-string opened at offset ${open}: expected '"' before the end of input`, n)
  }

  for (;;) {
    skipOws()
    if (pos >= n) break
    if (s.charCodeAt(pos) === 0x2c) {
      pos++
      continue
    }
    const name = token()
    if (name.length === 0) return error(`expected an extension name (token), found ${describeAt(s, pos)}`, pos)
    const parameters: Array<ExtensionParameter> = []
    skipOws()
    while (pos < n && s.charCodeAt(pos) === 0x3b) {
      pos++
      skipOws()
      const paramName = token()
      if (paramName.length === 0) {
        return error(`expected a parameter name (token) after ';', found ${describeAt(s, pos)}`, pos)
      }
      let paramValue: string | undefined
      skipOws()
      if (pos < n && s.charCodeAt(pos) === 0x3d) {
        pos++
        skipOws()
        if (pos < n && s.charCodeAt(pos) === 0x22) {
          const q = quoted()
          if (typeof q !== "string") return q
          paramValue = q
        } else {
          paramValue = token()
          if (paramValue.length === 0) {
            return error(`expected a token or quoted-string value after '=', found ${describeAt(s, pos)}`, pos)
          }
        }
        skipOws()
      }
      parameters.push({ name: paramName, value: paramValue })
    }
    out.push(new WebSocketExtensionHeader(name, parameters))
    if (pos >= n) break
    if (s.charCodeAt(pos) !== 0x2c) return error(`expected ',' or ';' after an extension, found ${describeAt(s, pos)}`, pos)
    pos++
  }
  if (out.length === 0) return error("expected at least one extension, found none", n)
  return out
}

/** Formats extensions as one `Sec-WebSocket-Extensions` value, elements joined with ", ". */
export const formatWebSocketExtensions = (headers: ReadonlyArray<WebSocketExtensionHeader>): string =>
  headers.map((h) => h.toString()).join(", ")
