/**
 * Payload masking (RFC 6455 §5.3): XOR with a 4-byte key, 32 bits at a time, in place. The
 * same function masks and unmasks. A key position carries across calls so a payload can be
 * (un)masked chunk by chunk.
 *
 * @module
 */

// One reusable 4-byte scratch seen both as bytes and as one native-endian 32-bit word, so the
// word-sized key has the key bytes in memory order on any platform. Signed words: V8 keeps
// Int32Array elements in 32-bit registers, where Uint32Array values above 2^31 can go through
// doubles (about 20 % slower on 64 KiB payloads).
const keyBytes = new Uint8Array(4)
const keyWord = new Int32Array(keyBytes.buffer)

/** Below this many bytes a byte loop beats creating a word view. */
const WORD_THRESHOLD = 32

/** The key byte at mask position `i` (0–3) of a big-endian 32-bit key. */
const keyByte = (key: number, i: number): number => (key >>> (24 - ((i & 3) << 3))) & 0xff

/** Reads a 4-byte masking key (big-endian, as on the wire) as an unsigned 32-bit number. */
export const readKey = (bytes: Uint8Array, at: number): number =>
  ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0

/**
 * XORs `data[start, end)` in place with the key `key` (the 4 key bytes big-endian in one
 * unsigned 32-bit number), where `data[start]` sits at position `keyOffset` (0–3) of the mask
 * stream. Returns the key position that follows `end`, for the next chunk of the same payload.
 */
export const mask = (data: Uint8Array, key: number, keyOffset = 0, start = 0, end = data.length): number => {
  let i = start
  let k = keyOffset & 3
  if (end - i >= WORD_THRESHOLD) {
    // Bytes up to a 4-byte aligned address, then whole words, then the tail.
    while (((data.byteOffset + i) & 3) !== 0) {
      data[i] = data[i]! ^ keyByte(key, k)
      k = (k + 1) & 3
      i++
    }
    const words = (end - i) >>> 2
    keyBytes[0] = keyByte(key, k)
    keyBytes[1] = keyByte(key, k + 1)
    keyBytes[2] = keyByte(key, k + 2)
    keyBytes[3] = keyByte(key, k + 3)
    const w = keyWord[0]!
    const view = new Int32Array(data.buffer, data.byteOffset + i, words)
    let j = 0
    const unrolled = words - (words & 7)
    for (; j < unrolled; j += 8) {
      view[j] = view[j]! ^ w
      view[j + 1] = view[j + 1]! ^ w
      view[j + 2] = view[j + 2]! ^ w
      view[j + 3] = view[j + 3]! ^ w
      view[j + 4] = view[j + 4]! ^ w
      view[j + 5] = view[j + 5]! ^ w
      view[j + 6] = view[j + 6]! ^ w
      view[j + 7] = view[j + 7]! ^ w
    }
    for (; j < words; j++) view[j] = view[j]! ^ w
    i += words << 2
  }
  for (; i < end; i++) {
    data[i] = data[i]! ^ keyByte(key, k)
    k = (k + 1) & 3
  }
  return k
}
