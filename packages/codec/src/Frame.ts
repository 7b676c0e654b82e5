/**
 * `Frame`: one WebSocket frame as a tagged union (Text, Binary, Close, Ping, Pong and, at the
 * raw level, Continuation), carrying `fin`, `rsv1..3` and the payload bytes (not copied).
 *
 * @module
 */
import { type CloseReason, encodeCloseReason } from "./CloseReason.ts"
import { Opcode } from "./FrameType.ts"
import { decodeUtf8Lenient, encodeUtf8 } from "./Utf8.ts"

/** The largest payload of a control frame (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125

/** The fields every frame has. `payload` is the unmasked application data. */
export interface FrameFields {
  readonly fin: boolean
  readonly rsv1: boolean
  readonly rsv2: boolean
  readonly rsv3: boolean
  readonly payload: Uint8Array
}

/** A text frame (opcode 1); a complete message when `fin`, else the first fragment. */
export interface Text extends FrameFields {
  readonly _tag: "Text"
}
/** A binary frame (opcode 2); a complete message when `fin`, else the first fragment. */
export interface Binary extends FrameFields {
  readonly _tag: "Binary"
}
/** A continuation frame (opcode 0): a later fragment of the open message. Raw level only. */
export interface Continuation extends FrameFields {
  readonly _tag: "Continuation"
}
/** A Close frame (opcode 8): empty, or a 2-byte code and a UTF-8 reason. */
export interface Close extends FrameFields {
  readonly _tag: "Close"
}
/** A Ping frame (opcode 9). */
export interface Ping extends FrameFields {
  readonly _tag: "Ping"
}
/** A Pong frame (opcode 10). */
export interface Pong extends FrameFields {
  readonly _tag: "Pong"
}

/** Any frame. */
export type Frame = Text | Binary | Continuation | Close | Ping | Pong
/** The frames that carry (part of) a message. */
export type DataFrame = Text | Binary | Continuation
/** The frames that control the connection. */
export type ControlFrame = Close | Ping | Pong

/** Optional header bits of a data frame. */
export interface DataFrameOptions {
  /** Last fragment of the message (default true). */
  readonly fin?: boolean
  readonly rsv1?: boolean
  readonly rsv2?: boolean
  readonly rsv3?: boolean
}

const empty = new Uint8Array(0)

/**
 * Builds a frame from its wire fields without validation (the parser's constructor; every
 * frame has the same shape, which keeps property access monomorphic).
 */
export const make = <Tag extends Frame["_tag"]>(
  _tag: Tag,
  fin: boolean,
  rsv1: boolean,
  rsv2: boolean,
  rsv3: boolean,
  payload: Uint8Array
): Extract<Frame, { _tag: Tag }> => ({ _tag, fin, rsv1, rsv2, rsv3, payload }) as Extract<Frame, { _tag: Tag }>

const data = <Tag extends DataFrame["_tag"]>(tag: Tag, payload: Uint8Array, options?: DataFrameOptions) =>
  make(tag, options?.fin ?? true, options?.rsv1 ?? false, options?.rsv2 ?? false, options?.rsv3 ?? false, payload)

const control = <Tag extends ControlFrame["_tag"]>(tag: Tag, payload: Uint8Array) => {
  if (payload.length > MAX_CONTROL_PAYLOAD) {
    throw new RangeError(`${tag} payload of ${payload.length} bytes exceeds ${MAX_CONTROL_PAYLOAD}`)
  }
  return make(tag, true, false, false, false, payload)
}

/** A text frame from a string (encoded as UTF-8) or from UTF-8 bytes. */
export const text = (content: string | Uint8Array, options?: DataFrameOptions): Text =>
  data("Text", typeof content === "string" ? encodeUtf8(content) : content, options)

/** A binary frame. */
export const binary = (payload: Uint8Array, options?: DataFrameOptions): Binary => data("Binary", payload, options)

/** A continuation frame (a later fragment of a message). */
export const continuation = (payload: Uint8Array, options?: DataFrameOptions): Continuation =>
  data("Continuation", payload, options)

/**
 * A Close frame: empty, from a `CloseReason`, or from raw payload bytes. Throws a `RangeError`
 * when the payload exceeds 125 bytes.
 */
export const close = (reason?: CloseReason | Uint8Array): Close =>
  control("Close", reason === undefined ? empty : reason instanceof Uint8Array ? reason : encodeCloseReason(reason))

/** A Ping frame. Throws a `RangeError` when the payload exceeds 125 bytes. */
export const ping = (payload: Uint8Array = empty): Ping => control("Ping", payload)

/** A Pong frame. Throws a `RangeError` when the payload exceeds 125 bytes. */
export const pong = (payload: Uint8Array = empty): Pong => control("Pong", payload)

/** Whether a frame is Close, Ping or Pong. */
export const isControl = (frame: Frame): frame is ControlFrame =>
  frame._tag === "Close" || frame._tag === "Ping" || frame._tag === "Pong"

/** The opcode of a frame. */
export const opcodeOf = (frame: Frame): Opcode => Opcode[frame._tag]

/** The UTF-8 text of a (whole) text frame, decoded leniently (invalid bytes become U+FFFD), as Ktor's `readText`. */
export const readText = (frame: Text): string => decodeUtf8Lenient(frame.payload)

/** A copy of the frame's payload, as Ktor's `readBytes`. */
export const readBytes = (frame: Frame): Uint8Array => frame.payload.slice()
