/**
 * `FrameParser`: an incremental RFC 6455 frame parser. Push chunks of any size (one byte at a
 * time works); get frames, or the first protocol violation with the close code to answer with.
 *
 * A frame that sits inside one chunk is handed out as a zero-copy view of that chunk; a frame
 * that spans chunks is copied into a buffer that grows with the bytes received (never sized by
 * the header's declared length alone: a header costs nothing until its bytes come, then at most
 * 64 KiB or about twice the bytes received) and ends at the frame's exact size, so a frame of up
 * to 64 KiB is copied once. Masked payloads are unmasked in place, so the parser owns the
 * chunks it is given. It keeps no chunk between pushes, and
 * `viewsLastChunk` tells whether any frame of the last push is a view of its chunk (if not, the
 * caller may free or reuse that chunk at once).
 *
 * With `validateUtf8`, the parser also checks that text messages are UTF-8 and fails (1007) in
 * the `push` that brings the first invalid byte, not when the frame or the message completes
 * (RFC 6455 §8.1 "fail fast"; conformance §6, hostile-inputs H10). See `validateUtf8`.
 *
 * @module
 */
import * as Frame from "./Frame.ts"
import { isDefinedOpcode, Opcode } from "./FrameType.ts"
import { mask, readKey } from "./Mask.ts"
import { isValidUtf8, Utf8Validator } from "./Utf8.ts"
import { type ProtocolViolation, violation } from "./Violation.ts"

/** Which side of the connection the parser reads for. */
export type Role = "server" | "client"

/** RSV bits claimed by negotiated extensions. */
export interface AllowedRsv {
  readonly rsv1?: boolean
  readonly rsv2?: boolean
  readonly rsv3?: boolean
}

/** Default `maxFrameSize`: 64 MiB. */
export const DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024

/** Options of a `FrameParser`. */
export interface FrameParserOptions {
  /**
   * `"server"` reads a client's frames, which must be masked; `"client"` reads a server's
   * frames, which must not be (RFC 6455 §5.1). Either mismatch is a 1002 violation.
   */
  readonly role: Role
  /** Largest accepted payload of one frame; a longer header fails 1009 before any payload is buffered. */
  readonly maxFrameSize?: number
  /**
   * Largest accepted data message, counted in payload bytes on the wire across its fragments
   * (default: no limit beyond `maxFrameSize`). Checked at every data frame header against its
   * declared length plus what the message's earlier frames declared: over it fails 1009
   * (`MessageTooBig`) before any of that frame's payload is buffered.
   */
  readonly maxMessageSize?: number
  /** RSV bits that negotiated extensions allow on data frames; any other set bit fails 1002. */
  readonly allowedRsv?: AllowedRsv
  /**
   * Allocates the buffer of a frame that spans chunks (default `new Uint8Array(size)`). Every byte
   * is written before the frame is handed out and a partial buffer is dropped, never exposed, so
   * an uninitialised allocation (Node's `Buffer.allocUnsafe`) is safe and saves zero-filling. The
   * parser owns what it returns: a buffer it no longer needs (outgrown, or dropped by `discard`)
   * is detached at once when it spans its whole `ArrayBuffer`.
   */
  readonly allocate?: (size: number) => Uint8Array
  /**
   * Validate the UTF-8 of text messages as their bytes arrive (default false; see
   * `FrameParser.validateUtf8`, which can also be changed later).
   */
  readonly validateUtf8?: boolean
}

const zeroed = (size: number): Uint8Array => new Uint8Array(size)

/**
 * The first buffer of a frame that spans chunks (allocated when its second piece comes) holds at
 * least this many bytes, or the whole frame when smaller, so a frame of up to 64 KiB is allocated
 * and copied once; later buffers at least double, capped at the frame's size.
 */
const MIN_PAYLOAD_BUFFER = 65536

const EMPTY = new Uint8Array(0)

const TAGS: ReadonlyArray<Frame.Frame["_tag"]> = [
  "Continuation", "Text", "Binary", "Continuation", "Continuation", "Continuation", "Continuation", "Continuation",
  "Close", "Ping", "Pong"
]

const rsvMask = (allowed: AllowedRsv | undefined): number =>
  (allowed?.rsv1 ? 0x40 : 0) | (allowed?.rsv2 ? 0x20 : 0) | (allowed?.rsv3 ? 0x10 : 0)

/** Bits of `FrameParser.bits` (the RSV bits allowed on data frames are kept as they are, 0x70). */
const MASKED = 1
const EXPECT_MASKED = 2
const MESSAGE_OPEN = 4
const VIEWED = 8
const ALLOWED_RSV = 0x70
const VALIDATE_UTF8 = 0x80
const TEXT_MESSAGE = 0x100
const TEXT_FRAME = 0x200
const UNVALIDATED_TEXT = 0x400
/** All the flags above; the bits from `UTF8_SHIFT` up hold the validator state of the open text message. */
const FLAGS = 0x7ff
const UTF8_SHIFT = 11

/**
 * Frees a payload buffer the parser no longer needs (every non-empty `payload` came from
 * `allocate` and was never handed out) at once, by detaching its `ArrayBuffer`, instead of
 * leaving it to the garbage collector: only when it spans its whole, non-empty `ArrayBuffer` (so
 * it shares memory with nothing else: not a slice of Node's `Buffer` pool, not `EMPTY`). Never
 * throws.
 */
const free = (buffer: Uint8Array): void => {
  const memory = buffer.buffer
  if (
    buffer.byteLength === 0 || buffer.byteOffset !== 0 || buffer.byteLength !== memory.byteLength ||
    !(memory instanceof ArrayBuffer)
  ) return
  try {
    ;(memory as { transfer?: (length: number) => ArrayBuffer }).transfer?.(0)
  } catch {
    // Not detachable: left to the garbage collector.
  }
}

/**
 * The one validator every parser borrows while it checks a piece of text (`push` runs to the end
 * synchronously): a parser keeps only the validator's state, a small number in its `bits`.
 */
const validator = new Utf8Validator()

const invalidUtf8 = (): ProtocolViolation => violation("InvalidUtf8", 1007, "Text message is not valid UTF-8")

/**
 * The incremental parser. One instance reads one direction of one connection. After a
 * violation it is dead: every later `push` returns the same violation and parses nothing.
 *
 * UTF-8 (`validateUtf8`): the parser validates text itself rather than handing its user the
 * bytes of a frame in progress (a callback or a "partial frame" event). It already knows where a
 * text message starts and ends (including the interleaved control frames that must not touch
 * it) and sees every payload byte once, unmasked, in place, so validating there costs one pass
 * over bytes that are in cache, needs no new event type, no extra copy and no allocation, and a
 * user cannot get the fail-fast wrong. A frame that sits inside one chunk is still validated in
 * one call on its zero-copy view, so it costs what a whole-message `isValidUtf8` costs after the
 * fact; only a frame that spans chunks is unmasked and validated piece by piece, as its pieces
 * are copied into its buffer (its `viewsLastChunk` and copy semantics are unchanged). The
 * validator state of an open message (an incomplete sequence at the end of a piece is not an
 * error until the next bytes, or the end of the message, decide) lives in a few bits of `bits`;
 * the validator object itself is shared by all parsers.
 */
export class FrameParser {
  /** Largest accepted payload of one frame; may be changed between pushes. */
  maxFrameSize: number
  /** Largest accepted data message in wire payload bytes (see the option); may be changed between pushes. */
  maxMessageSize: number
  private readonly allocate: (size: number) => Uint8Array
  private failure: ProtocolViolation | undefined = undefined
  /**
   * The parser's booleans and settings in one number: `EXPECT_MASKED` (server role), the RSV bits
   * extensions allow (`ALLOWED_RSV`), `MESSAGE_OPEN` (a fragmented data message is open: its first
   * frame had fin = 0), `MASKED` (the frame being read is masked), `VIEWED` (a frame appended
   * by the last `push` is a view of that push's chunk), `VALIDATE_UTF8` (the setting),
   * `TEXT_MESSAGE` (the current data message is text being validated), `TEXT_FRAME` (the frame
   * being read is part of it), `UNVALIDATED_TEXT` (a text message without RSV bits started while
   * validation was off) and, from `UTF8_SHIFT` up, the validator state of the open text message.
   */
  private bits: number

  // Header of the frame being read.
  private b0 = 0
  private headerSize = 0
  private payloadLength = 0
  private maskKey = 0
  /** Header bytes kept while a header spans chunks (allocated the first time one does, then reused). */
  private header: Uint8Array | undefined = undefined
  private headerFilled = 0
  /**
   * Payload being assembled while a frame spans chunks: a buffer of at most `payloadLength` bytes
   * that grows as they arrive (its first `payloadFilled` bytes are the frame's).
   */
  private payload: Uint8Array | undefined = undefined
  private payloadFilled = 0
  /** Payload bytes declared by the frames of the current data message, the current frame included. */
  private messageLength = 0

  constructor(options: FrameParserOptions) {
    this.maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE
    this.maxMessageSize = options.maxMessageSize ?? Infinity
    this.allocate = options.allocate ?? zeroed
    this.bits = (options.role === "server" ? EXPECT_MASKED : 0) | rsvMask(options.allowedRsv) |
      (options.validateUtf8 === true ? VALIDATE_UTF8 : 0)
  }

  /**
   * Whether text messages are validated as UTF-8 while they arrive: a Text frame without RSV
   * bits and its continuations are checked piece by piece, in place, and the `push` that brings
   * the first byte that no valid UTF-8 text can continue with (or the end of a message inside a
   * character) fails with `InvalidUtf8` (1007); the frames completed before it in that push are
   * still appended. A message whose first frame has an RSV bit is left alone: an extension
   * transforms its bytes first (permessage-deflate inflates them), so they are checked after it.
   * Control frames between fragments do not disturb a message's validation.
   *
   * A change applies from the next message whose first frame header is read after it; a message
   * already open goes on as it started (so, to have every message validated, turn it on before
   * the first push, or while `atFrameBoundary` and not `inMessage`).
   */
  get validateUtf8(): boolean {
    return (this.bits & VALIDATE_UTF8) !== 0
  }

  set validateUtf8(on: boolean) {
    this.bits = on ? this.bits | VALIDATE_UTF8 : this.bits & ~VALIDATE_UTF8
  }

  /**
   * Whether this parser validated every text message without RSV bits it has started so far,
   * and will validate the next ones: `validateUtf8` is on and was on when each of them started
   * (for instance since construction, or turned on before the first text message). A user that
   * would otherwise check complete text messages itself can then skip that.
   */
  get validatesAllText(): boolean {
    return (this.bits & (VALIDATE_UTF8 | UNVALIDATED_TEXT)) === VALIDATE_UTF8
  }

  private get expectMasked(): boolean {
    return (this.bits & EXPECT_MASKED) !== 0
  }

  private get masked(): boolean {
    return (this.bits & MASKED) !== 0
  }

  private get messageOpen(): boolean {
    return (this.bits & MESSAGE_OPEN) !== 0
  }

  /** The violation that stopped this parser, if any. */
  get failed(): ProtocolViolation | undefined {
    return this.failure
  }

  /**
   * Bytes allocated for an incomplete frame (header and payload buffer): what this parser holds
   * now. It grows with the bytes received (at most about twice them, or 64 KiB), not with the
   * length a header declares.
   */
  get bufferedBytes(): number {
    return this.headerFilled + (this.payload === undefined ? 0 : this.payload.length)
  }

  /** Whether the bytes pushed so far end exactly at a frame boundary. */
  get atFrameBoundary(): boolean {
    return this.headerFilled === 0 && this.payload === undefined
  }

  /**
   * Whether a frame appended by the last `push` is a zero-copy view of the chunk pushed. When
   * `false`, the parser holds no reference to that chunk (its bytes were copied or consumed), so
   * the caller may reuse or free it (see `Transport.release` in core).
   */
  get viewsLastChunk(): boolean {
    return (this.bits & VIEWED) !== 0
  }

  /**
   * Drops the bytes held for an incomplete frame (header and payload), as if the input had ended
   * at the last frame boundary: the next `push` starts with a frame header. A payload buffer the
   * parser allocated is freed at once (see `allocate`) rather than left to the garbage collector,
   * which an idle process may not run for a long time. For a connection that ended mid-frame
   * (core's reader calls it when its input is over).
   */
  discard(): void {
    if (this.payload !== undefined) free(this.payload)
    this.payload = undefined
    this.payloadFilled = 0
    this.headerFilled = 0
  }

  /** Whether a fragmented message is open (a later frame must be a Continuation). */
  get inMessage(): boolean {
    return this.messageOpen
  }

  /**
   * Parses `chunk`, appending every complete frame to `out`. Returns the first violation, or
   * `undefined`. Frames completed before a violation are still appended, in order.
   */
  push(chunk: Uint8Array, out: Array<Frame.Frame>): ProtocolViolation | undefined {
    this.bits &= ~VIEWED
    if (this.failure !== undefined) return this.failure
    const end = chunk.length
    let pos = 0
    if (this.payload !== undefined) {
      pos = this.continuePayload(chunk, out)
      if (pos === end) return this.failure
    } else if (this.headerFilled > 0) {
      pos = this.continueHeader(chunk)
      if (this.failure !== undefined) return this.failure
      if (this.headerFilled < this.headerSize || this.headerSize === 0) return undefined
      this.headerFilled = 0
      pos = this.startPayload(chunk, pos, out)
    }
    while (pos < end) {
      if (end - pos < 2) {
        this.headerBuffer()[0] = chunk[pos]!
        this.headerFilled = 1
        this.headerSize = 0
        return undefined
      }
      if (!this.begin(chunk[pos]!, chunk[pos + 1]!)) return this.failure
      if (end - pos < this.headerSize) {
        // Check a length that has arrived even if the masking key has not (H4: fail before buffering).
        if (end - pos >= this.lengthEnd && !this.readLength(chunk, pos)) return this.failure
        const header = this.headerBuffer()
        for (let i = pos; i < end; i++) header[i - pos] = chunk[i]!
        this.headerFilled = end - pos
        return undefined
      }
      if (!this.readLength(chunk, pos)) return this.failure
      this.readMaskKey(chunk, pos)
      pos = this.startPayload(chunk, pos + this.headerSize, out)
    }
    // A payload that failed (invalid UTF-8) returned the chunk's end: the loop is over, and so is the parser.
    return this.failure
  }

  /** Decodes and checks the first two header bytes; sets `headerSize`. False on a violation. */
  private begin(b0: number, b1: number): boolean {
    const opcode = b0 & 0x0f
    const fin = (b0 & 0x80) !== 0
    const rsv = b0 & 0x70
    const len7 = b1 & 0x7f
    this.b0 = b0
    this.bits = (this.bits & ~(MASKED | TEXT_FRAME)) | (b1 >>> 7) // MASKED is bit 0
    if (!isDefinedOpcode(opcode)) {
      return this.fail(violation("ReservedOpcode", 1002, `Reserved opcode ${opcode}`))
    }
    if (opcode >= Opcode.Close) {
      if (rsv !== 0) return this.fail(violation("ReservedBits", 1002, "RSV bits set on a control frame"))
      if (!fin) return this.fail(violation("FragmentedControlFrame", 1002, "Fragmented control frame"))
      if (len7 > Frame.MAX_CONTROL_PAYLOAD) {
        return this.fail(violation("ControlFrameTooLarge", 1002, "Control frame payload over 125 bytes"))
      }
    } else {
      if ((rsv & ~(this.bits & ALLOWED_RSV)) !== 0) {
        return this.fail(violation("ReservedBits", 1002, "RSV bits set without a negotiated extension"))
      }
      if (opcode === Opcode.Continuation) {
        if (!this.messageOpen) {
          return this.fail(violation("UnexpectedContinuation", 1002, "Continuation frame without an open message"))
        }
      } else if (this.messageOpen) {
        return this.fail(violation("UnfinishedMessage", 1002, "New data frame while a fragmented message is open"))
      } else {
        // A new message (its validator state starts at 0): text without RSV bits is validated here.
        const bits = this.bits & FLAGS & ~TEXT_MESSAGE
        this.bits = opcode !== Opcode.Text || rsv !== 0
          ? bits
          : (bits & VALIDATE_UTF8) !== 0
          ? bits | TEXT_MESSAGE
          : bits | UNVALIDATED_TEXT
      }
      const bits = fin ? this.bits & ~MESSAGE_OPEN : this.bits | MESSAGE_OPEN
      // Every data frame of a validated text message (Text, then Continuations) is validated.
      this.bits = (bits & TEXT_MESSAGE) !== 0 ? bits | TEXT_FRAME : bits
    }
    if (this.masked !== this.expectMasked) {
      return this.fail(
        this.expectMasked
          ? violation("UnmaskedFrame", 1002, "Unmasked frame from a client")
          : violation("MaskedFrame", 1002, "Masked frame from a server")
      )
    }
    this.headerSize = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (this.masked ? 4 : 0)
    if (len7 < 126) return this.checkLength(len7)
    return true
  }

  /** Offset just after the length fields of the current header (before the masking key). */
  private get lengthEnd(): number {
    return this.masked ? this.headerSize - 4 : this.headerSize
  }

  /** Reads and checks the extended length of the header at `bytes[at]` (length fields present). False on a violation. */
  private readLength(bytes: Uint8Array, at: number): boolean {
    const len7 = bytes[at + 1]! & 0x7f
    const p = at + 2
    if (len7 === 126) {
      return this.checkLength((bytes[p]! << 8) | bytes[p + 1]!)
    } else if (len7 === 127) {
      const hi = ((bytes[p]! << 24) | (bytes[p + 1]! << 16) | (bytes[p + 2]! << 8) | bytes[p + 3]!) >>> 0
      const lo = ((bytes[p + 4]! << 24) | (bytes[p + 5]! << 16) | (bytes[p + 6]! << 8) | bytes[p + 7]!) >>> 0
      if (hi >= 0x80000000) {
        return this.fail(violation("LengthTopBitSet", 1002, "64-bit payload length with the top bit set"))
      }
      return this.checkLength(hi * 0x100000000 + lo)
    }
    return true
  }

  /** Reads the masking key of the complete header at `bytes[at]`, if the frame is masked. */
  private readMaskKey(bytes: Uint8Array, at: number): void {
    if (this.masked) this.maskKey = readKey(bytes, at + this.headerSize - 4)
  }

  /**
   * Checks the declared payload length of the current frame: against `maxFrameSize`, and for a
   * data frame, with what its message's earlier frames declared, against `maxMessageSize`.
   */
  private checkLength(length: number): boolean {
    // A length read from 64 bits is computed in floating point: kept as a small integer when it
    // is one, so the offsets derived from it stay small integers (see `checkUtf8`).
    this.payloadLength = length <= 0x7fffffff ? length | 0 : length
    if (length > this.maxFrameSize) {
      return this.fail(violation("FrameTooBig", 1009, `Frame of ${length} bytes exceeds the limit of ${this.maxFrameSize}`))
    }
    if ((this.b0 & 0x08) === 0) {
      // Runs once per header (see `continueHeader`), so a Continuation adds to its message's count.
      const total = ((this.b0 & 0x0f) === Opcode.Continuation ? this.messageLength : 0) + length
      this.messageLength = total
      if (total > this.maxMessageSize) {
        return this.fail(
          violation("MessageTooBig", 1009, `Message of at least ${total} bytes exceeds the limit of ${this.maxMessageSize}`)
        )
      }
    }
    return true
  }

  /** The buffer for a header that spans chunks, allocated on first use (most connections never need it). */
  private headerBuffer(): Uint8Array {
    return this.header ??= new Uint8Array(14)
  }

  /** Collects header bytes kept from earlier chunks; returns the position in `chunk` after them. */
  private continueHeader(chunk: Uint8Array): number {
    const header = this.header! // `headerFilled > 0`: allocated by `push`
    let pos = 0
    if (this.headerSize === 0) {
      if (chunk.length === 0) return 0
      header[1] = chunk[0]!
      this.headerFilled = 2
      pos = 1
      if (!this.begin(header[0]!, header[1]!)) return pos
    }
    const before = this.headerFilled
    const take = Math.min(this.headerSize - before, chunk.length - pos)
    for (let i = 0; i < take; i++) header[before + i] = chunk[pos + i]!
    this.headerFilled += take
    pos += take
    // The length is checked once, as soon as its bytes are in (they may have been checked already).
    if (before < this.lengthEnd && this.headerFilled >= this.lengthEnd && !this.readLength(header, 0)) return pos
    if (this.headerFilled === this.headerSize) this.readMaskKey(header, 0)
    return pos
  }

  /**
   * Starts the payload of the current frame at `chunk[pos]`; returns the position after what it
   * used (the chunk's end after a violation).
   */
  private startPayload(chunk: Uint8Array, pos: number, out: Array<Frame.Frame>): number {
    const length = this.payloadLength
    const available = chunk.length - pos
    if (available >= length) {
      const payload = chunk.subarray(pos, pos + length)
      if (this.masked) mask(payload, this.maskKey)
      // The whole frame at once. A whole message (a final Text frame: the common case) gets
      // exactly the whole-message check, from a call site of its own (V8 optimizes it for that).
      if (
        (this.bits & TEXT_FRAME) !== 0 &&
        ((this.b0 & 0x8f) === (0x80 | Opcode.Text)
          ? !isValidUtf8(payload) && !this.fail(invalidUtf8())
          : !this.checkUtf8(payload, 0, payload.length, (this.b0 & 0x80) !== 0))
      ) {
        return chunk.length
      }
      this.bits |= VIEWED
      this.emit(payload, out)
      return pos + length
    }
    // Nothing is allocated until payload bytes come; the first piece is copied (so the chunk can
    // be released at once) into a buffer of the frame's size when it is at most 64 KiB.
    this.payload = EMPTY
    this.payloadFilled = 0
    if (available > 0) this.continuePayload(pos === 0 ? chunk : chunk.subarray(pos), out)
    return chunk.length
  }

  /**
   * Adds bytes to a payload that spans chunks; returns the position in `chunk` after them (the
   * chunk's end after a violation).
   */
  private continuePayload(chunk: Uint8Array, out: Array<Frame.Frame>): number {
    const filled = this.payloadFilled
    const take = Math.min(this.payloadLength - filled, chunk.length)
    const now = filled + take
    const payload = now > this.payload!.length ? this.grow(now) : this.payload!
    payload.set(take === chunk.length ? chunk : chunk.subarray(0, take), filled)
    this.payloadFilled = now
    const done = now === this.payloadLength // the buffer grows to exactly the frame's size
    if ((this.bits & TEXT_FRAME) !== 0) {
      // `mask` takes the key position modulo 4: byte `filled` of the payload sits at `filled & 3`.
      if (this.masked) mask(payload, this.maskKey, filled, filled, now)
      if (!this.checkUtf8(payload, filled, now, done && (this.b0 & 0x80) !== 0)) return chunk.length
    } else if (done && this.masked) {
      mask(payload, this.maskKey)
    }
    if (done) {
      this.payload = undefined // handed out: the frame's now
      this.emit(payload, out)
    }
    return take
  }

  /**
   * Replaces the payload buffer by one of at least `needed` bytes (twice the old one, capped at
   * the frame's size), keeping the bytes received so far: the buffer grows with the bytes that
   * arrive, and ends at exactly the frame's size.
   */
  private grow(needed: number): Uint8Array {
    const old = this.payload!
    const grown = this.allocate(Math.min(this.payloadLength, Math.max(needed, 2 * old.length, MIN_PAYLOAD_BUFFER)))
    if (this.payloadFilled > 0) grown.set(old.subarray(0, this.payloadFilled), 0)
    free(old)
    return this.payload = grown
  }

  /**
   * Validates `bytes[start, end)`, the next unmasked bytes of the open text message; `ends`: they
   * end it (its final frame is complete), so it must end on a character boundary. On invalid
   * UTF-8 the parser fails (1007) and this returns false. `start` and `end` must be small
   * integers from array lengths and offsets (as `checkLength` keeps `payloadLength`): a heap
   * number there (a 64-bit length computed in floating point) deoptimizes the shared validator into slower code (~15 %).
   */
  private checkUtf8(bytes: Uint8Array, start: number, end: number, ends: boolean): boolean {
    const v = validator
    v.state = this.bits >>> UTF8_SHIFT
    if (v.update(bytes, start, end) !== -1 || (ends && !v.complete)) return this.fail(invalidUtf8())
    this.bits = (this.bits & FLAGS) | (v.state << UTF8_SHIFT)
    return true
  }

  private emit(payload: Uint8Array, out: Array<Frame.Frame>): void {
    const b0 = this.b0
    out.push(
      Frame.make(TAGS[b0 & 0x0f]!, (b0 & 0x80) !== 0, (b0 & 0x40) !== 0, (b0 & 0x20) !== 0, (b0 & 0x10) !== 0, payload)
    )
  }

  private fail(v: ProtocolViolation): false {
    this.failure = v
    this.discard()
    return false
  }
}

/** Everything `parseFrames` found: the frames, the violation that stopped parsing (if any), and leftover bytes. */
export interface ParseResult {
  readonly frames: ReadonlyArray<Frame.Frame>
  readonly violation: ProtocolViolation | undefined
  /** Whether the bytes ended inside a frame. */
  readonly incomplete: boolean
}

/** Parses a whole byte sequence at once (for tests and tools). Unmasks `bytes` in place. */
export const parseFrames = (bytes: Uint8Array, options: FrameParserOptions): ParseResult => {
  const parser = new FrameParser(options)
  const frames: Array<Frame.Frame> = []
  const v = parser.push(bytes, frames)
  return { frames, violation: v, incomplete: v === undefined && !parser.atFrameBoundary }
}
