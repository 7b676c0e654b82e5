/**
 * The peer's own wire layer, independent of `@effect-ws/codec` so that a bug there cannot hide a
 * bug in what it checks: frames are encoded byte by byte (anything goes: reserved opcodes, RSV
 * bits, oversized control frames, masked or not) and decoded by a small incremental reader that
 * reports every header field as it was on the wire (fin, RSV bits, opcode, mask bit), leaving the
 * judgement to the caller. UTF-8 is checked with the platform's fatal `TextDecoder`.
 */
import { randomFillSync } from "node:crypto"

/** Opcodes of RFC 6455 §5.2. */
export const CONTINUATION = 0
export const TEXT = 1
export const BINARY = 2
export const CLOSE = 8
export const PING = 9
export const PONG = 10

/** A frame to send, exactly as given (the caller decides whether it is valid). */
export interface RawFrame {
  readonly opcode: number
  readonly payload?: Uint8Array
  /** Default true. */
  readonly fin?: boolean
  /** RSV1..RSV3 as a 3-bit number (RSV1 = 4). Default 0. */
  readonly rsv?: number
}

/** A frame as read from the wire (payload unmasked). */
export interface WireFrame {
  readonly fin: boolean
  readonly rsv: number
  readonly opcode: number
  readonly masked: boolean
  readonly payload: Uint8Array
}

/** Serializes one frame; masked with a random key when `masked` (a client's frames), else not (a server's). */
export const encodeFrame = (f: RawFrame, masked: boolean): Uint8Array => {
  const payload = f.payload ?? new Uint8Array()
  const n = payload.length
  const ext = n < 126 ? 0 : n < 65536 ? 2 : 8
  const head = 2 + ext + (masked ? 4 : 0)
  const out = new Uint8Array(head + n)
  out[0] = (f.fin === false ? 0 : 0x80) | (((f.rsv ?? 0) & 7) << 4) | (f.opcode & 0x0f)
  out[1] = (masked ? 0x80 : 0) | (n < 126 ? n : n < 65536 ? 126 : 127)
  if (ext === 2) {
    out[2] = n >> 8
    out[3] = n & 0xff
  } else if (ext === 8) {
    const view = new DataView(out.buffer)
    view.setUint32(2, Math.floor(n / 2 ** 32))
    view.setUint32(6, n >>> 0)
  }
  out.set(payload, head)
  if (masked) {
    const key = out.subarray(2 + ext, head)
    randomFillSync(key)
    for (let i = 0; i < n; i++) out[head + i]! ^= key[i & 3]!
  }
  return out
}

/** Serializes frames into one buffer. */
export const encodeFrames = (frames: ReadonlyArray<RawFrame>, masked: boolean): Uint8Array => concat(frames.map((f) => encodeFrame(f, masked)))

/** Concatenates byte arrays. */
export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  if (parts.length === 1) return parts[0]!
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** Byte-wise equality. */
export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b)

/**
 * Reads frames incrementally from chunks of any size. The payload of a frame is copied into a
 * buffer of its final size as it arrives (no quadratic re-concatenation for large frames). Only
 * what makes framing impossible is an error here (a 64-bit length with the top bit set, a payload
 * above `maxPayload`); everything else is reported as read.
 */
export class FrameReader {
  private readonly header = new Uint8Array(14)
  private headerLength = 0
  private headerNeeded = 2
  private frame:
    | { fin: boolean; rsv: number; opcode: number; masked: boolean; key: Uint8Array; payload: Uint8Array; filled: number }
    | undefined = undefined
  private readonly maxPayload: number

  constructor(maxPayload: number) {
    this.maxPayload = maxPayload
  }

  /** Appends the frames completed by `chunk` to `out`; returns why framing failed, if it did. */
  push(chunk: Uint8Array, out: Array<WireFrame>): string | undefined {
    let p = 0
    while (p < chunk.length) {
      const frame = this.frame
      if (frame !== undefined) {
        const take = Math.min(frame.payload.length - frame.filled, chunk.length - p)
        frame.payload.set(chunk.subarray(p, p + take), frame.filled)
        frame.filled += take
        p += take
        if (frame.filled === frame.payload.length) this.finish(out)
        continue
      }
      const take = Math.min(this.headerNeeded - this.headerLength, chunk.length - p)
      this.header.set(chunk.subarray(p, p + take), this.headerLength)
      this.headerLength += take
      p += take
      if (this.headerLength < this.headerNeeded) break
      const b1 = this.header[1]!
      const len7 = b1 & 0x7f
      const full = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0)
      if (this.headerLength < full) {
        this.headerNeeded = full
        continue
      }
      let length = len7
      let at = 2
      if (len7 === 126) {
        length = (this.header[2]! << 8) | this.header[3]!
        at = 4
      } else if (len7 === 127) {
        const view = new DataView(this.header.buffer)
        const high = view.getUint32(2)
        if (high >= 0x80000000) return "a 64-bit payload length with the most significant bit set"
        length = high * 2 ** 32 + view.getUint32(6)
        at = 10
      }
      if (length > this.maxPayload) return `a frame announcing ${length} payload bytes (the peer's limit is ${this.maxPayload})`
      const b0 = this.header[0]!
      const masked = (b1 & 0x80) !== 0
      this.frame = {
        fin: (b0 & 0x80) !== 0,
        rsv: (b0 >> 4) & 7,
        opcode: b0 & 0x0f,
        masked,
        key: masked ? this.header.slice(at, at + 4) : new Uint8Array(4),
        payload: new Uint8Array(length),
        filled: 0
      }
      this.headerLength = 0
      this.headerNeeded = 2
      if (length === 0) this.finish(out)
    }
    return undefined
  }

  private finish(out: Array<WireFrame>): void {
    const f = this.frame!
    this.frame = undefined
    if (f.masked) {
      const k = f.key
      const p = f.payload
      for (let i = 0; i < p.length; i++) p[i]! ^= k[i & 3]!
    }
    out.push({ fin: f.fin, rsv: f.rsv, opcode: f.opcode, masked: f.masked, payload: f.payload })
  }
}

const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** Whether `bytes` is valid UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
export const isValidUtf8 = (bytes: Uint8Array): boolean => {
  try {
    fatalDecoder.decode(bytes)
    return true
  } catch {
    return false
  }
}

/** UTF-8 bytes of a string. */
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

/** Close codes an endpoint may put on the wire (RFC 6455 §7.4, IANA registry; 3000–4999 for applications). */
export const isValidCloseCode = (code: number): boolean =>
  (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)

/** A Close payload: the code, then the reason. */
export const closePayload = (code?: number, reason: Uint8Array | string = new Uint8Array()): Uint8Array => {
  if (code === undefined) return new Uint8Array()
  const r = typeof reason === "string" ? utf8(reason) : reason
  const out = new Uint8Array(2 + r.length)
  out[0] = code >> 8
  out[1] = code & 0xff
  out.set(r, 2)
  return out
}
