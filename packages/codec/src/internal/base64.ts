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

/** Encodes `bytes[start, end)` as padded base64. */
export const encodeBase64 = (bytes: Uint8Array, start = 0, end = bytes.length): string => {
  let out = ""
  let i = start
  for (; i + 3 <= end; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!
    out += ALPHABET[n >>> 18]! + ALPHABET[(n >>> 12) & 63]! + ALPHABET[(n >>> 6) & 63]! + ALPHABET[n & 63]!
  }
  const left = end - i
  if (left === 1) {
    const n = bytes[i]! << 16
    out += ALPHABET[n >>> 18]! + ALPHABET[(n >>> 12) & 63]! + "=="
  } else if (left === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8)
    out += ALPHABET[n >>> 18]! + ALPHABET[(n >>> 12) & 63]! + ALPHABET[(n >>> 6) & 63]! + "="
  }
  return out
}

/** The 6-bit value of the base64 character at `text[index]`, or -1 when it is not one. */
export const base64Value = (text: string, index: number): number => {
  const c = text.charCodeAt(index)
  return c < 128 ? VALUES[c]! : -1
}
