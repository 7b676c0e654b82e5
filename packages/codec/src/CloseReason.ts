/**
 * Close codes (RFC 6455 §7.4, IANA registry) and `CloseReason` (code + message), with the
 * encoding and strict decoding of Close frame payloads (§5.5.1).
 *
 * @module
 */
import { decodeUtf8, encodeUtf8, utf8Length } from "./Utf8.ts"
import { type ProtocolViolation, violation } from "./Violation.ts"

/** Every registered close code, by Ktor's names where Ktor has one. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  CannotAccept: 1003,
  /** Reserved by RFC 6455; never on the wire. */
  Reserved: 1004,
  /** "No status received": the code reported locally for a Close without a code; never on the wire. */
  NoStatus: 1005,
  /** Abnormal closure: reported locally when the connection dropped without a Close; never on the wire. */
  ClosedAbnormally: 1006,
  NotConsistent: 1007,
  ViolatedPolicy: 1008,
  TooBig: 1009,
  NoExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014,
  /** TLS handshake failure: reported locally; never on the wire. */
  TlsHandshake: 1015
} as const

/** The largest close reason in UTF-8 bytes: 125 (control payload) − 2 (code). */
export const MAX_REASON_BYTES = 123

/** Codes 3000–4999: registered by libraries/frameworks (3xxx) or private to applications (4xxx). */
export const isApplicationCode = (code: number): boolean => code >= 3000 && code <= 4999

/**
 * Whether a code may appear in a Close frame on the wire (received or sent): the registered
 * codes except 1004, 1005, 1006 and 1015, and the 3000–4999 range. Everything else fails 1002.
 */
export const isValidOnWire = (code: number): boolean =>
  (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || isApplicationCode(code)

/** Whether an endpoint may send this code: the same set as `isValidOnWire`. */
export const isSendable = isValidOnWire

/** A close code with its message (at most 123 UTF-8 bytes when sent). */
export interface CloseReason {
  readonly code: number
  readonly message: string
}

/**
 * Builds a close reason. Throws a `RangeError` when the code is not an integer in 0–65535 or the
 * message is longer than 123 UTF-8 bytes (use `truncateReason` first for arbitrary text).
 */
export const CloseReason = (code: number, message = ""): CloseReason => {
  if (!Number.isInteger(code) || code < 0 || code > 0xffff) throw new RangeError(`Invalid close code: ${code}`)
  if (utf8Length(message) > MAX_REASON_BYTES) {
    throw new RangeError(`Close reason is longer than ${MAX_REASON_BYTES} UTF-8 bytes`)
  }
  return { code, message }
}

/**
 * Cuts `message` to at most `maxBytes` UTF-8 bytes on a character boundary (a surrogate pair
 * counts 4 bytes and is never split; a lone surrogate counts 3, as it encodes to U+FFFD).
 */
export const truncateReason = (message: string, maxBytes: number = MAX_REASON_BYTES): string => {
  let n = 0
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i)
    let size: number
    let units = 1
    if (c < 0x80) size = 1
    else if (c < 0x800) size = 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < message.length) {
      const d = message.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        size = 4
        units = 2
      } else size = 3
    } else size = 3
    if (n + size > maxBytes) return message.slice(0, i)
    n += size
    i += units - 1
  }
  return message
}

/** A close reason as a Close payload: the code big-endian, then the UTF-8 message. */
export const encodeCloseReason = (reason: CloseReason): Uint8Array => {
  const text = encodeUtf8(reason.message)
  const out = new Uint8Array(2 + text.length)
  out[0] = reason.code >>> 8
  out[1] = reason.code & 0xff
  out.set(text, 2)
  return out
}

/** The reason reported when a Close carried no payload: 1005, no status received (RFC 6455 §7.1.5). */
export const noStatusReason: CloseReason = Object.freeze({ code: CloseCode.NoStatus, message: "" })

/**
 * Decodes and validates a received Close payload. Empty → 1005 (no status). Fails with a
 * violation for a 1-byte payload (1002), a code not valid on the wire (1002), a reason over
 * 123 bytes (1002) or a reason that is not valid UTF-8 (1007).
 */
export const decodeCloseReason = (payload: Uint8Array): CloseReason | ProtocolViolation => {
  if (payload.length === 0) return noStatusReason
  if (payload.length === 1) {
    return violation("ClosePayloadTooShort", 1002, "Close payload of 1 byte")
  }
  if (payload.length > 2 + MAX_REASON_BYTES) {
    return violation("CloseReasonTooLong", 1002, "Close reason longer than 123 bytes")
  }
  const code = (payload[0]! << 8) | payload[1]!
  if (!isValidOnWire(code)) return violation("InvalidCloseCode", 1002, `Invalid close code ${code}`)
  const message = payload.length === 2 ? "" : decodeUtf8(payload.subarray(2))
  if (message === undefined) return violation("InvalidUtf8", 1007, "Close reason is not valid UTF-8")
  return { code, message }
}
