/**
 * Base64 with the standard alphabet and `=` padding (RFC 4648 §4), platform-neutral (no
 * `Buffer`, no `btoa`), for `Sec-WebSocket-Key` and `Sec-WebSocket-Accept`.
 *
 * @internal
 * @module
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

/** The 6-bit value of each ASCII code unit, or -1 when it is not in the alphabet. */
const VALUES: Int8Array = (() => {
  const values = new Int8Array(128).fill(-1)
  for (let i = 0; i < ALPHABET.length; i++) values[ALPHABET.charCodeAt(i)] = i
  return values
})()

/** The ASCII code of each 6-bit value. */
const CODES: Uint8Array = Uint8Array.from(ALPHABET, (c) => c.charCodeAt(0))

const PAD = 0x3d

/** Reused code arrays for the two sizes every handshake encodes (encoding is synchronous: never shared). */
const scratch24 = new Array<number>(24).fill(0)
const scratch28 = new Array<number>(28).fill(0)

/**
 * Encodes `bytes[start, end)` as padded base64. Builds the character codes in one array and the
 * string in one `String.fromCharCode` call (no intermediate strings per quantum).
 */
export const encodeBase64 = (bytes: Uint8Array, start = 0, end = bytes.length): string => {
  const length = end - start
  const size = Math.ceil(length / 3) * 4
  // The handshake's sizes (a 16-byte key, a 20-byte accept) reuse one array each: only the string is allocated.
  const codes = size === 24 ? scratch24 : size === 28 ? scratch28 : new Array<number>(size)
  let o = 0
  let i = start
  for (; i + 3 <= end; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!
    codes[o++] = CODES[n >>> 18]!
    codes[o++] = CODES[(n >>> 12) & 63]!
    codes[o++] = CODES[(n >>> 6) & 63]!
    codes[o++] = CODES[n & 63]!
  }
  const left = end - i
  if (left === 1) {
    const n = bytes[i]! << 16
    codes[o++] = CODES[n >>> 18]!
    codes[o++] = CODES[(n >>> 12) & 63]!
    codes[o++] = PAD
    codes[o++] = PAD
  } else if (left === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8)
    codes[o++] = CODES[n >>> 18]!
    codes[o++] = CODES[(n >>> 12) & 63]!
    codes[o++] = CODES[(n >>> 6) & 63]!
    codes[o++] = PAD
  }
  // Chunked so that a long input never exceeds the engine's argument limit.
  if (codes.length <= 8192) return String.fromCharCode.apply(null, codes)
  let out = ""
  for (let at = 0; at < codes.length; at += 8192) out += String.fromCharCode.apply(null, codes.slice(at, at + 8192))
  return out
}

/** The 6-bit value of the base64 character at `text[index]`, or -1 when it is not one. */
export const base64Value = (text: string, index: number): number => {
  const c = text.charCodeAt(index)
  return c < 128 ? VALUES[c]! : -1
}
