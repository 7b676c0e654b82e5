/**
 * UTF-8 validation (RFC 3629, Unicode Table 3-7 "well-formed byte sequences"): an incremental
 * validator that keeps its state across fragments and reports the first byte that can no longer
 * start or continue a valid sequence (overlongs, surrogates and code points above U+10FFFF are
 * rejected at their second byte), plus a fast whole-message check and strict decode/encode.
 *
 * @module
 */

const encoder = new TextEncoder()
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const lenientDecoder = new TextDecoder()

/** Encodes a string as UTF-8 (lone surrogates become U+FFFD, as `TextEncoder` does). */
export const encodeUtf8 = (text: string): Uint8Array => encoder.encode(text)

/** Decodes UTF-8 strictly; `undefined` when the bytes are not valid UTF-8. A BOM is kept as U+FEFF. */
export const decodeUtf8 = (bytes: Uint8Array): string | undefined => {
  try {
    return strictDecoder.decode(bytes)
  } catch {
    return undefined
  }
}

/** Decodes UTF-8 leniently, as `TextDecoder` does: invalid bytes become U+FFFD, a leading BOM is dropped. Never fails. */
export const decodeUtf8Lenient = (bytes: Uint8Array): string => lenientDecoder.decode(bytes)

/** The number of UTF-8 bytes `text` encodes to, without encoding it. */
export const utf8Length = (text: string): number => {
  let n = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4
        i++
      } else n += 3
    } else n += 3
  }
  return n
}

/** Four-byte ASCII groups after which a run is skipped word-wise (short runs stay bytewise). */
const ASCII_RUN = 8
/** Bytes that must remain for the word-wise skip to be worth its view. */
const WORD_SKIP_MIN = 64

/**
 * From `i`, skips 16-byte blocks of ASCII read as aligned 32-bit words; returns where the first
 * block that has a byte ≥ 0x80 (or the tail) starts, for the bytewise loop to go on from.
 */
const skipAsciiWords = (bytes: Uint8Array, i: number, end: number): number => {
  const misalign = (bytes.byteOffset + i) & 3
  if (misalign !== 0) {
    const aligned = i + 4 - misalign
    for (; i < aligned; i++) if (bytes[i]! >= 0x80) return i
  }
  const words = (end - i) >>> 2
  const view = new Uint32Array(bytes.buffer, bytes.byteOffset + i, words)
  let w = 0
  while (w + 4 <= words && ((view[w]! | view[w + 1]! | view[w + 2]! | view[w + 3]!) & 0x80808080) === 0) w += 4
  return i + (w << 2)
}

/**
 * An incremental UTF-8 validator. Feed it the bytes of one message in any number of pieces with
 * `update`; it returns the index (within the piece) of the first invalid byte, or -1. At the end
 * of the message `finish` says whether the message ended on a character boundary.
 */
export class Utf8Validator {
  /** Continuation bytes still expected by the current sequence. */
  private need = 0
  /** Allowed range of the next continuation byte (narrower right after some lead bytes). */
  private lo = 0x80
  private hi = 0xbf

  /** Resets to the start-of-message state. */
  reset(): void {
    this.need = 0
    this.lo = 0x80
    this.hi = 0xbf
  }

  /** Whether the bytes seen so far end on a character boundary. */
  get complete(): boolean {
    return this.need === 0
  }

  /**
   * The validator's whole state as a small integer (below 2^14; 0 exactly at a character
   * boundary): a caller that follows many messages (one per connection) can keep a number per
   * message instead of a validator, and lend one validator to each in turn.
   */
  get state(): number {
    // `lo` and `hi` stay within 0x80..0xbf, and are 0x80 and 0xbf whenever `need` is 0.
    return this.need | ((this.lo - 0x80) << 2) | ((0xbf - this.hi) << 8)
  }

  /** Restores a state read from `state` (0: the start of a message). */
  set state(state: number) {
    this.need = state & 3
    this.lo = 0x80 + ((state >>> 2) & 0x3f)
    this.hi = 0xbf - ((state >>> 8) & 0x3f)
  }

  /**
   * Validates `bytes[start, end)` as the continuation of the message so far. Returns the index
   * of the first byte that makes the message invalid, or -1 when all of them are acceptable.
   */
  update(bytes: Uint8Array, start = 0, end = bytes.length): number {
    let need = this.need
    let lo = this.lo
    let hi = this.hi
    let i = start
    while (i < end) {
      if (need === 0) {
        // ASCII fast path, four bytes at a time; a long run switches to 32-bit words.
        let run = 0
        while (i + 4 <= end && ((bytes[i]! | bytes[i + 1]! | bytes[i + 2]! | bytes[i + 3]!) & 0x80) === 0) {
          i += 4
          if (++run === ASCII_RUN && end - i >= WORD_SKIP_MIN) i = skipAsciiWords(bytes, i, end)
        }
        if (i >= end) break
        const b = bytes[i]!
        if (b < 0x80) {
          i++
          continue
        }
        if (b >= 0xc2 && b <= 0xdf) {
          need = 1
        } else if (b >= 0xe0 && b <= 0xef) {
          need = 2
          if (b === 0xe0) lo = 0xa0
          else if (b === 0xed) hi = 0x9f
        } else if (b >= 0xf0 && b <= 0xf4) {
          need = 3
          if (b === 0xf0) lo = 0x90
          else if (b === 0xf4) hi = 0x8f
        } else {
          this.need = need
          this.lo = lo
          this.hi = hi
          return i
        }
        i++
      } else {
        const b = bytes[i]!
        if (b < lo || b > hi) {
          this.need = need
          this.lo = lo
          this.hi = hi
          return i
        }
        need--
        lo = 0x80
        hi = 0xbf
        i++
      }
    }
    this.need = need
    this.lo = lo
    this.hi = hi
    return -1
  }

  /** Ends the message: true when it ended on a character boundary. Resets the validator either way. */
  finish(): boolean {
    const ok = this.need === 0
    this.reset()
    return ok
  }
}

const shared = new Utf8Validator()

/** Whether a whole message is valid UTF-8 (ASCII fast path, then the state machine). */
export const isValidUtf8 = (bytes: Uint8Array): boolean => {
  shared.reset()
  return shared.update(bytes, 0, bytes.length) === -1 && shared.finish()
}
