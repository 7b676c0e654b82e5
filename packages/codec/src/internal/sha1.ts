/**
 * SHA-1 (FIPS 180-4 §6.1), synchronous and platform-neutral, for `Sec-WebSocket-Accept`. Not a
 * general-purpose or security-relevant hash: RFC 6455 only uses it to prove the server read the
 * key. Incremental (`update` any number of times, then `digest`) with one 80-word schedule per
 * hasher and no per-block allocation.
 *
 * @internal
 * @module
 */

/** An incremental SHA-1 hasher. `digest` finishes it; `reset` makes it reusable. */
export class Sha1 {
  private readonly h = new Int32Array(5)
  private readonly w = new Int32Array(80)
  private readonly block = new Uint8Array(64)
  private blockLength = 0
  /** Total bytes hashed so far (exact up to 2^53). */
  private length = 0

  constructor() {
    this.reset()
  }

  /** Restores the initial hash value (FIPS 180-4 §5.3.1) and forgets all input. */
  reset(): this {
    const h = this.h
    h[0] = 0x67452301
    h[1] = 0xefcdab89 | 0
    h[2] = 0x98badcfe | 0
    h[3] = 0x10325476
    h[4] = 0xc3d2e1f0 | 0
    this.blockLength = 0
    this.length = 0
    return this
  }

  /** Hashes `bytes[start, end)` after everything given so far. */
  update(bytes: Uint8Array, start = 0, end = bytes.length): this {
    const block = this.block
    let i = start
    this.length += end - start
    if (this.blockLength > 0) {
      while (i < end && this.blockLength < 64) block[this.blockLength++] = bytes[i++]!
      if (this.blockLength < 64) return this
      this.compress(block, 0)
      this.blockLength = 0
    }
    while (end - i >= 64) {
      this.compress(bytes, i)
      i += 64
    }
    while (i < end) block[this.blockLength++] = bytes[i++]!
    return this
  }

  /**
   * Pads the message (a 1 bit, zeros, the 64-bit big-endian bit length; §5.1.1) and returns the
   * 20-byte digest, written into `out` at `offset` when given. The hasher must be `reset` before
   * it is used again.
   */
  digest(out: Uint8Array = new Uint8Array(20), offset = 0): Uint8Array {
    const block = this.block
    const bits = this.length * 8
    let n = this.blockLength
    block[n++] = 0x80
    if (n > 56) {
      block.fill(0, n, 64)
      this.compress(block, 0)
      n = 0
    }
    block.fill(0, n, 56)
    const high = Math.floor(bits / 0x100000000)
    const low = bits >>> 0
    block[56] = high >>> 24
    block[57] = (high >>> 16) & 0xff
    block[58] = (high >>> 8) & 0xff
    block[59] = high & 0xff
    block[60] = low >>> 24
    block[61] = (low >>> 16) & 0xff
    block[62] = (low >>> 8) & 0xff
    block[63] = low & 0xff
    this.compress(block, 0)
    this.blockLength = 0
    const h = this.h
    for (let j = 0; j < 5; j++) {
      const v = h[j]!
      const at = offset + j * 4
      out[at] = v >>> 24
      out[at + 1] = (v >>> 16) & 0xff
      out[at + 2] = (v >>> 8) & 0xff
      out[at + 3] = v & 0xff
    }
    return out
  }

  /** Processes one 64-byte block starting at `bytes[at]` (§6.1.2). */
  private compress(bytes: Uint8Array, at: number): void {
    const w = this.w
    for (let t = 0; t < 16; t++) {
      const i = at + t * 4
      w[t] = (bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!
    }
    for (let t = 16; t < 80; t++) {
      const x = w[t - 3]! ^ w[t - 8]! ^ w[t - 14]! ^ w[t - 16]!
      w[t] = (x << 1) | (x >>> 31)
    }
    const h = this.h
    let a = h[0]!
    let b = h[1]!
    let c = h[2]!
    let d = h[3]!
    let e = h[4]!
    for (let t = 0; t < 80; t++) {
      let f: number
      let k: number
      if (t < 20) {
        f = (b & c) | (~b & d)
        k = 0x5a827999
      } else if (t < 40) {
        f = b ^ c ^ d
        k = 0x6ed9eba1
      } else if (t < 60) {
        f = (b & c) | (b & d) | (c & d)
        k = 0x8f1bbcdc | 0
      } else {
        f = b ^ c ^ d
        k = 0xca62c1d6 | 0
      }
      const temp = (((a << 5) | (a >>> 27)) + f + e + k + w[t]!) | 0
      e = d
      d = c
      c = (b << 30) | (b >>> 2)
      b = a
      a = temp
    }
    h[0] = (h[0]! + a) | 0
    h[1] = (h[1]! + b) | 0
    h[2] = (h[2]! + c) | 0
    h[3] = (h[3]! + d) | 0
    h[4] = (h[4]! + e) | 0
  }
}

/** The SHA-1 digest (20 bytes) of `bytes`. */
export const sha1 = (bytes: Uint8Array): Uint8Array => new Sha1().update(bytes).digest()
