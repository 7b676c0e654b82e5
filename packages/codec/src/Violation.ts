/**
 * Protocol violations: the typed outcome of bad input anywhere in the codec. Each carries the
 * close code to answer with (1002 protocol error, 1007 invalid payload data, 1009 too big).
 *
 * @module
 */

/** The close codes a violation can answer with. */
export type ViolationCode = 1002 | 1007 | 1009

/** What exactly was wrong; stable strings that tests and users can switch on. */
export type ViolationKind =
  | "ReservedOpcode"
  | "ReservedBits"
  | "FragmentedControlFrame"
  | "ControlFrameTooLarge"
  | "LengthTopBitSet"
  | "FrameTooBig"
  | "UnmaskedFrame"
  | "MaskedFrame"
  | "UnexpectedContinuation"
  | "UnfinishedMessage"
  | "ClosePayloadTooShort"
  | "InvalidCloseCode"
  | "CloseReasonTooLong"
  | "InvalidUtf8"
  | "InvalidCompressedData"
  | "MessageTooBig"
  | "TooManyFragments"

/** A violation of RFC 6455 / RFC 7692 by the peer's bytes, with the close code to reply with. */
export interface ProtocolViolation {
  readonly _tag: "ProtocolViolation"
  readonly kind: ViolationKind
  readonly code: ViolationCode
  /** Human-readable detail, short enough (≤ 123 UTF-8 bytes) to be sent as a close reason. */
  readonly message: string
}

/** Builds a violation. */
export const violation = (kind: ViolationKind, code: ViolationCode, message: string): ProtocolViolation => ({
  _tag: "ProtocolViolation",
  kind,
  code,
  message
})

/** Narrows any value to a `ProtocolViolation`. */
export const isProtocolViolation = (u: unknown): u is ProtocolViolation =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "ProtocolViolation"
