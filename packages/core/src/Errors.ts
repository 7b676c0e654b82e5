/**
 * Tagged errors of `@effect-ws/core`. Every way a session ends is one of `SessionError`; every
 * refused call has its own tag. Catch them with `Effect.catchTag`.
 *
 * @module
 */
import type { CloseReason, Violation } from "@effect-ws/codec"
import { Data } from "effect"

/** Why a transport stopped: the peer half-closed (`Eof`), the connection broke (`Reset`), we destroyed it (`Destroyed`), or we half-closed it and then wrote (`Ended`). */
export type TransportEndReason = "Eof" | "Reset" | "Destroyed" | "Ended"

/** A transport can no longer read or write; `reason` says why and `cause` carries the underlying error, if any. */
export class TransportClosed extends Data.TaggedError("TransportClosed")<{
  readonly reason: TransportEndReason
  readonly cause?: unknown
}> {
  override get message(): string {
    return `Transport closed (${this.reason})`
  }
}

/** The peer broke RFC 6455 (code 1002) or sent invalid UTF-8 (code 1007); we sent a Close with `code` and `message`. */
export class ProtocolViolation extends Data.TaggedError("ProtocolViolation")<{
  readonly kind: Violation.ViolationKind
  readonly code: 1002 | 1007
  readonly message: string
}> {}

/** A frame, a message or a fragment count exceeded its limit; we sent a Close 1009 with `message`. */
export class FrameTooBig extends Data.TaggedError("FrameTooBig")<{
  readonly kind: Violation.ViolationKind
  readonly message: string
}> {
  /** The close code sent: always 1009. */
  get code(): 1009 {
    return 1009
  }
}

/** Converts a codec violation to the matching tagged error (1009 → `FrameTooBig`, else `ProtocolViolation`). */
export const fromViolation = (v: Violation.ProtocolViolation): ProtocolViolation | FrameTooBig =>
  v.code === 1009
    ? new FrameTooBig({ kind: v.kind, message: v.message })
    : new ProtocolViolation({ kind: v.kind, code: v.code, message: v.message })

/**
 * The session ended by a completed (or abandoned) close handshake. `initiator` is who sent the
 * first Close; `reason` is the session's `closeReason`.
 */
export class ConnectionClosed extends Data.TaggedError("ConnectionClosed")<{
  readonly initiator: "local" | "peer"
  readonly reason: CloseReason.CloseReason
}> {
  override get message(): string {
    return `WebSocket closed by ${this.initiator === "local" ? "us" : "the peer"}: ${this.reason.code} ${this.reason.message}`
  }
}

/** No Pong answered our Ping within the timeout (milliseconds); we sent Close 1011 "Ping timeout". */
export class PingTimeout extends Data.TaggedError("PingTimeout")<{ readonly timeoutMillis: number }> {
  override get message(): string {
    return `No Pong within ${this.timeoutMillis} ms`
  }
}

/** The peer did not answer our Close within the close timeout (milliseconds); the transport was destroyed. `sent` is the Close we sent. */
export class CloseTimeout extends Data.TaggedError("CloseTimeout")<{
  readonly timeoutMillis: number
  readonly sent: CloseReason.CloseReason
}> {
  override get message(): string {
    return `No Close reply within ${this.timeoutMillis} ms`
  }
}

/**
 * The connection ended without a Close frame from the peer (EOF or reset): reported locally as
 * 1006 (RFC 6455 §7.1.5), also when we had sent a Close the peer never answered. `sent` is the
 * Close we had sent (or queued) by then, if any: the peer received it, or may have, but never
 * replied. Absent when the peer vanished while we had sent no Close.
 */
export class AbnormalClosure extends Data.TaggedError("AbnormalClosure")<{
  readonly cause: TransportClosed
  readonly sent?: CloseReason.CloseReason
}> {
  override get message(): string {
    const sent = this.sent === undefined ? "" : `; we had sent Close ${this.sent.code}`
    return `Connection closed without a Close frame (${this.cause.reason})${sent}`
  }
}

/** A queue configured with overflow `"fail"` was full. On `outgoing` only that send is refused; on `incoming` the session ends (Close 1008). */
export class ChannelOverflow extends Data.TaggedError("ChannelOverflow")<{
  readonly channel: "incoming" | "outgoing"
  readonly capacity: number
}> {
  override get message(): string {
    return `The ${this.channel} queue (capacity ${this.capacity}) overflowed`
  }
}

/** A frame was sent after our Close (or after the session ended): it was not accepted and will not be written. */
export class OutgoingClosed extends Data.TaggedError("OutgoingClosed")<{ readonly frameType: string }> {
  override get message(): string {
    return `Cannot send ${this.frameType}: the outgoing side is closed`
  }
}

/** `close`/`sendFrame` got a close code an endpoint may not send (RFC 6455 §7.4) or a reason over 123 UTF-8 bytes. */
export class InvalidCloseReason extends Data.TaggedError("InvalidCloseReason")<{
  readonly code: number
  readonly message: string
}> {}

/** A received message could not be turned into the requested value (wrong frame type, bad JSON, schema mismatch). */
export class DeserializeError extends Data.TaggedError("DeserializeError")<{
  readonly message: string
  readonly frameType: "Text" | "Binary"
  readonly cause?: unknown
}> {}

/** A value could not be encoded by its schema before sending. */
export class SerializeError extends Data.TaggedError("SerializeError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** Two extensions claim the same RSV bit (detected when the extensions are built). */
export class ExtensionConflict extends Data.TaggedError("ExtensionConflict")<{
  readonly bit: "rsv1" | "rsv2" | "rsv3"
  readonly first: string
  readonly second: string
}> {
  override get message(): string {
    return `Extensions ${this.first} and ${this.second} both claim ${this.bit}`
  }
}

/** `extension(factory)` found no installed extension of that factory. */
export class ExtensionNotFound extends Data.TaggedError("ExtensionNotFound")<{ readonly name: string }> {
  override get message(): string {
    return `Extension ${this.name} is not installed on this session`
  }
}

/** An extension's message hook failed (other than by a protocol violation). The session ends with Close 1011. */
export class ExtensionError extends Data.TaggedError("ExtensionError")<{
  readonly extension: string
  readonly message: string
  readonly cause?: unknown
}> {}

/** Every way a session can end, as seen by whoever waits on `incoming`/`receive`. */
export type SessionError =
  | ConnectionClosed
  | ProtocolViolation
  | FrameTooBig
  | PingTimeout
  | CloseTimeout
  | AbnormalClosure
  | ChannelOverflow
  | ExtensionError
