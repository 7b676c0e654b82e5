/**
 * `Serializer`: frames to wire bytes. A server writes unmasked frames; a client masks each frame
 * with a fresh key drawn from a batch of cryptographic randomness. Small frames become one
 * buffer; a large unmasked payload is handed out as-is after its header, so an adapter can
 * `writev` without copying. The caller's payloads are never modified, and the output holds
 * only header bytes and the caller's payload bytes (zero-initialised buffers, exact lengths).
 *
 * @module
 */
import type * as Frame from "./Frame.ts"
import { Opcode } from "./FrameType.ts"
import { mask } from "./Mask.ts"

/**
 * Unmasked payloads up to this size are copied next to their header (one buffer per batch
 * means one iovec); larger ones are passed by reference. Masked payloads are always copied
 * (masking must not modify the caller's bytes).
 */
export const COPY_THRESHOLD = 1024

/** A masked frame larger than this gets its own buffer instead of growing the batch buffer. */
const OWN_BUFFER_THRESHOLD = 16 * 1024

/** Shared slab for small outputs: a `new Uint8Array` per frame above 64 bytes is an off-heap allocation. */
const SLAB_SIZE = 16 * 1024
let slab = new Uint8Array(SLAB_SIZE)
let slabPos = 0

/**
 * A zero-initialised buffer of `n` bytes. Small buffers are carved from a shared slab that is
 * never handed out twice (a fresh slab replaces a full one), so no bytes are ever shared
 * between two outputs, and every byte of an output is written by the serializer.
 */
const allocate = (n: number): Uint8Array => {
  if (n > SLAB_SIZE >>> 2) return new Uint8Array(n)
  if (slabPos + n > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE)
    slabPos = 0
  }
  const out = new Uint8Array(slab.buffer, slabPos, n)
  slabPos = (slabPos + n + 7) & ~7 // keep the next output 8-byte aligned for word-wise masking
  return out
}

/** A source of random bytes: fills the array. */
export type RandomSource = (bytes: Uint8Array) => void

/** Options of a `Serializer`. */
export interface SerializerOptions {
  /** Mask every frame (a client must, a server must not; RFC 6455 §5.1). */
  readonly mask: boolean
  /** Random source for masking keys; defaults to `crypto.getRandomValues`. */
  readonly random?: RandomSource
}

const defaultRandom: RandomSource = (bytes) => {
  globalThis.crypto.getRandomValues(bytes)
}

/** Size of the random pool: 256 masking keys per `getRandomValues` call. */
const POOL_SIZE = 1024

/** The size of a frame's header for a payload length. */
export const headerSize = (payloadLength: number, masked: boolean): number =>
  2 + (payloadLength < 126 ? 0 : payloadLength < 0x10000 ? 2 : 8) + (masked ? 4 : 0)

/** The opcode of a frame tag (a switch on the tag is cheaper than a keyed lookup on the hot path). */
const opcodeOf = (tag: Frame.Frame["_tag"]): number => {
  switch (tag) {
    case "Text":
      return Opcode.Text
    case "Binary":
      return Opcode.Binary
    case "Continuation":
      return Opcode.Continuation
    case "Close":
      return Opcode.Close
    case "Ping":
      return Opcode.Ping
    case "Pong":
      return Opcode.Pong
  }
}

/** Copies `payload` into `buffer` at `at` (a plain loop beats `set` for tiny payloads). */
const copyInto = (buffer: Uint8Array, at: number, payload: Uint8Array): void => {
  const length = payload.length
  if (length <= 16) for (let b = 0; b < length; b++) buffer[at + b] = payload[b]!
  else buffer.set(payload, at)
}

/** Writes a frame header at `out[at]`; returns the offset after it. */
const writeHeader = (
  out: Uint8Array,
  at: number,
  frame: Frame.Frame,
  length: number,
  maskKey: number | undefined
): number => {
  out[at] = (frame.fin ? 0x80 : 0) | (frame.rsv1 ? 0x40 : 0) | (frame.rsv2 ? 0x20 : 0) | (frame.rsv3 ? 0x10 : 0) |
    opcodeOf(frame._tag)
  const maskBit = maskKey === undefined ? 0 : 0x80
  let p = at + 2
  if (length < 126) {
    out[at + 1] = maskBit | length
  } else if (length < 0x10000) {
    out[at + 1] = maskBit | 126
    out[p] = length >>> 8
    out[p + 1] = length & 0xff
    p += 2
  } else {
    out[at + 1] = maskBit | 127
    const hi = Math.floor(length / 0x100000000)
    const lo = length >>> 0
    out[p] = hi >>> 24
    out[p + 1] = (hi >>> 16) & 0xff
    out[p + 2] = (hi >>> 8) & 0xff
    out[p + 3] = hi & 0xff
    out[p + 4] = lo >>> 24
    out[p + 5] = (lo >>> 16) & 0xff
    out[p + 6] = (lo >>> 8) & 0xff
    out[p + 7] = lo & 0xff
    p += 8
  }
  if (maskKey !== undefined) {
    out[p] = maskKey >>> 24
    out[p + 1] = (maskKey >>> 16) & 0xff
    out[p + 2] = (maskKey >>> 8) & 0xff
    out[p + 3] = maskKey & 0xff
    p += 4
  }
  return p
}

/**
 * Serializes frames. Its only state is a pool of random bytes for masking keys, so one instance
 * can serve any number of connections (the session writers share one masking and one plain).
 */
export class Serializer {
  private readonly masking: boolean
  private readonly random: RandomSource
  /** Random bytes for masking keys; allocated on first use, so servers (which never mask) hold none. */
  private pool: Uint8Array | undefined = undefined
  private poolPos = POOL_SIZE

  constructor(options: SerializerOptions) {
    this.masking = options.mask
    this.random = options.random ?? defaultRandom
  }

  /** Appends the bytes of one frame to `out`: one buffer, or header then payload for a large unmasked payload. */
  serialize(frame: Frame.Frame, out: Array<Uint8Array>): void {
    const payload = frame.payload
    const length = payload.length
    if (this.masking) {
      const key = this.nextKey()
      const buffer = allocate(headerSize(length, true) + length)
      const p = writeHeader(buffer, 0, frame, length, key)
      copyInto(buffer, p, payload)
      mask(buffer, key, 0, p, p + length)
      out.push(buffer)
    } else if (length > COPY_THRESHOLD) {
      const header = allocate(headerSize(length, false))
      writeHeader(header, 0, frame, length, undefined)
      out.push(header, payload)
    } else {
      const buffer = allocate(headerSize(length, false) + length)
      copyInto(buffer, writeHeader(buffer, 0, frame, length, undefined), payload)
      out.push(buffer)
    }
  }

  /**
   * Appends the bytes of `frames` to `out`, coalescing consecutive frames into as few buffers
   * as possible: everything is copied into shared buffers except the payloads of large
   * unmasked frames, which follow their header by reference.
   */
  serializeBatch(frames: ReadonlyArray<Frame.Frame>, out: Array<Uint8Array>): void {
    const masking = this.masking
    let i = 0
    while (i < frames.length) {
      // Size the run: frames copied inline, up to and including the header of one large unmasked frame.
      let size = 0
      let j = i
      let tail: Frame.Frame | undefined = undefined
      for (; j < frames.length; j++) {
        const length = frames[j]!.payload.length
        const h = headerSize(length, masking)
        if (!masking && length > COPY_THRESHOLD) {
          size += h
          tail = frames[j]!
          j++
          break
        }
        if (masking && length > OWN_BUFFER_THRESHOLD && j > i) break // a large masked frame gets its own buffer
        size += h + length
        if (masking && length > OWN_BUFFER_THRESHOLD) {
          j++
          break
        }
      }
      const buffer = allocate(size)
      let p = 0
      for (let k = i; k < j; k++) {
        const frame = frames[k]!
        const payload = frame.payload
        if (frame === tail) {
          p = writeHeader(buffer, p, frame, payload.length, undefined)
          continue
        }
        const key = masking ? this.nextKey() : undefined
        p = writeHeader(buffer, p, frame, payload.length, key)
        const length = payload.length
        copyInto(buffer, p, payload)
        if (key !== undefined) mask(buffer, key, 0, p, p + length)
        p += length
      }
      out.push(buffer)
      if (tail !== undefined && tail.payload.length > 0) out.push(tail.payload)
      i = j
    }
  }

  private nextKey(): number {
    let pool = this.pool
    if (pool === undefined || this.poolPos === POOL_SIZE) {
      pool ??= this.pool = new Uint8Array(POOL_SIZE)
      this.random(pool)
      this.poolPos = 0
    }
    const p = this.poolPos
    this.poolPos = p + 4
    return ((pool[p]! << 24) | (pool[p + 1]! << 16) | (pool[p + 2]! << 8) | pool[p + 3]!) >>> 0
  }
}

/** Serializes one frame into a single buffer (for tests and tools). */
export const serializeFrame = (frame: Frame.Frame, options: SerializerOptions): Uint8Array => {
  const parts: Array<Uint8Array> = []
  new Serializer(options).serialize(frame, parts)
  return concat(parts)
}

/** Concatenates byte arrays into one new array. */
export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  if (parts.length === 1) return parts[0]!
  let size = 0
  for (const part of parts) size += part.length
  const out = new Uint8Array(size)
  let p = 0
  for (const part of parts) {
    out.set(part, p)
    p += part.length
  }
  return out
}
