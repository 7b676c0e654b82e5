/**
 * The bounded HTTP/1.x head parser (RFC 7230 §3) behind `Handshake.HttpHeadParser`: a byte-at-a-
 * time state machine over pushed chunks that keeps at most `maxHeaderBytes`, counts header
 * fields, and parses the request or status line and each header line as it ends.
 *
 * @internal
 * @module
 */
import type { HttpHead, HttpHeadError, HttpHeadParserOptions } from "../../Handshake.ts"
import { isTchar } from "../token.ts"
import { isFieldValueChar, isOws } from "./headers.ts"

/** The default limit on the size of a head (request or status line, headers, empty line). */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024

/** The default limit on the number of header fields. */
export const DEFAULT_MAX_HEADERS = 100

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
 * The state machine of one head: `push` looks at every byte once, keeps the current line (grown
 * by doubling up to `maxHeaderBytes`), and ends a line at LF; the first result (head or error) is
 * kept and returned again. `Handshake.HttpHeadParser` documents the grammar and the limits.
 */
export class HeadParser {
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
