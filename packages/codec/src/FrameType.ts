/**
 * Opcodes (RFC 6455 §5.2) and Ktor's `FrameType`: the five frame kinds an application sees,
 * each with its opcode and whether it is a control frame.
 *
 * @module
 */

/** Every opcode RFC 6455 defines; 3–7 and 11–15 are reserved and rejected by the parser. */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa
} as const

/** One of the defined opcodes. */
export type Opcode = (typeof Opcode)[keyof typeof Opcode]

/** Whether an opcode (0–15) names a control frame (the high bit of the nibble is set). */
export const isControlOpcode = (opcode: number): boolean => (opcode & 0x8) !== 0

/** Whether an opcode is one RFC 6455 defines (0, 1, 2, 8, 9, 10). */
export const isDefinedOpcode = (opcode: number): opcode is Opcode =>
  opcode <= 0x2 || (opcode >= 0x8 && opcode <= 0xa)

/** A frame kind as Ktor names it: `Text`, `Binary`, `Close`, `Ping`, `Pong`. */
export interface FrameType {
  readonly name: "Text" | "Binary" | "Close" | "Ping" | "Pong"
  readonly opcode: Opcode
  /** Control frames (Close, Ping, Pong) may not be fragmented and carry at most 125 bytes. */
  readonly controlFrame: boolean
}

const type = (name: FrameType["name"], opcode: Opcode): FrameType =>
  Object.freeze({ name, opcode, controlFrame: isControlOpcode(opcode) })

/** The five frame types, by name. */
export const FrameType = {
  Text: type("Text", Opcode.Text),
  Binary: type("Binary", Opcode.Binary),
  Close: type("Close", Opcode.Close),
  Ping: type("Ping", Opcode.Ping),
  Pong: type("Pong", Opcode.Pong)
} as const

/** The frame type for an opcode, or `undefined` for continuation (0) and reserved opcodes (as Ktor's `FrameType[op]`). */
export const frameTypeOf = (opcode: number): FrameType | undefined => {
  switch (opcode) {
    case Opcode.Text:
      return FrameType.Text
    case Opcode.Binary:
      return FrameType.Binary
    case Opcode.Close:
      return FrameType.Close
    case Opcode.Ping:
      return FrameType.Ping
    case Opcode.Pong:
      return FrameType.Pong
    default:
      return undefined
  }
}
