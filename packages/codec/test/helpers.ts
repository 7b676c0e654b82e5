/** Test helpers shared by the codec tests. */
import type { Frame } from "@effect-ws/codec"

/** Bytes from hex ("81 05 48") or numbers. */
export const hex = (s: string): Uint8Array => Uint8Array.from(s.trim().split(/\s+/).map((b) => parseInt(b, 16)))

/** Lowercase hex of bytes, space separated. */
export const toHex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ")

/** A comparable view of a frame (payload as an array). */
export const plain = (f: Frame.Frame) => ({
  _tag: f._tag,
  fin: f.fin,
  rsv1: f.rsv1,
  rsv2: f.rsv2,
  rsv3: f.rsv3,
  payload: Array.from(f.payload)
})

/** Splits `bytes` into chunks whose sizes cycle through `sizes` (each ≥ 1); copies nothing. */
export const chunked = (bytes: Uint8Array, sizes: ReadonlyArray<number>): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  let p = 0
  let i = 0
  while (p < bytes.length) {
    const n = Math.max(1, sizes.length === 0 ? bytes.length : sizes[i++ % sizes.length]!)
    out.push(bytes.subarray(p, Math.min(bytes.length, p + n)))
    p += n
  }
  return out
}

/** A deterministic random source for masking keys (a counter), so masked output is predictable. */
export const countingRandom = (seed = 1) => {
  let n = seed
  return (bytes: Uint8Array) => {
    for (let i = 0; i < bytes.length; i++) bytes[i] = (n++ * 37) & 0xff
  }
}

/**
 * The time bound of the hostile-input tests (H2): a quadratic pass over their 1 MB inputs takes
 * minutes and a linear one milliseconds, so the bound only has to tell the two apart, with room
 * for a loaded machine.
 */
export const LINEAR_BOUND_MS = 2_000
