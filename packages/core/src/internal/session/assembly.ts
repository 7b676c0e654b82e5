/**
 * Message assembly and UTF-8: turns the data frames the raw reader parsed into whole messages.
 * A final Text/Binary frame is a message as it is; a non-final one opens a fragmented message
 * that Continuation frames extend (`Assembly`, one per session, created with the first
 * fragmented message: one buffer grown by doubling, bounded by `maxMessageSize`) until the one
 * with `fin`. Fails with 1002 (`UnexpectedContinuation`, RSV bits on a Continuation) or 1009
 * (`MessageTooBig`, `TooManyFragments`); the caller (`Session.onFrames`) hands the failure to the
 * close handshake.
 *
 * UTF-8 (RFC 6455 §8.1, fail fast): text without RSV bits is validated by the raw parser as its
 * bytes arrive when it can validate every text message of the session (`validateUtf8In`,
 * `PARSER_VALIDATES_UTF8`); otherwise here, incrementally across fragments (`Utf8Validator`) or
 * at once for a single frame. Text with an RSV bit is validated after the extensions
 * (`ExtensionChain.checkTransformed`). The size limit is first enforced by the raw parser at
 * every frame header (`FrameParser.maxMessageSize`, set by `make`) and checked again here.
 *
 * @internal
 * @module
 */
import { Frame, type FrameParser, Utf8 } from "@effect-ws/codec"
import type { Message } from "../../DefaultWebSocketSession.ts"
import { FrameTooBig, type ProtocolViolation } from "../../Errors.ts"
import { defineFlags } from "../flags.ts"
import { Inbox } from "./inbox.ts"
import { violation } from "./state.ts"

/** The default `maxFragments`. */
const DEFAULT_MAX_FRAGMENTS = 1 << 20
const EMPTY = new Uint8Array(0)

/** Bits of `flags` owned by message assembly (see `state.ts` for the whole table). */
const PARSER_VALIDATES_UTF8 = 1 << 13

const concatBytes = (a: Uint8Array, length: number): Uint8Array => (a.length === length ? a : a.slice(0, length))

/** A fragmented message being reassembled (one per session, created with its first fragmented message). */
export class Assembly {
  open: "Text" | "Binary" | undefined = undefined
  rsv1 = false
  rsv2 = false
  rsv3 = false
  buffer: Uint8Array = EMPTY
  size = 0
  fragments = 0
  utf8: Utf8.Utf8Validator | undefined = undefined
  validateOnTheFly = false

  /** Starts a message with its first (non-final) frame. */
  begin(frame: Frame.Text | Frame.Binary, validate: boolean): void {
    this.open = frame._tag
    this.rsv1 = frame.rsv1
    this.rsv2 = frame.rsv2
    this.rsv3 = frame.rsv3
    this.size = 0
    this.fragments = 1
    this.validateOnTheFly = validate
    if (validate) (this.utf8 ??= new Utf8.Utf8Validator()).reset()
  }

  /** Appends a fragment's payload, growing the buffer (at least doubling, at most to `maxMessageSize`). */
  append(payload: Uint8Array, maxMessageSize: number): void {
    const needed = this.size + payload.length
    if (needed > this.buffer.length) {
      const grown = new Uint8Array(
        Math.min(Math.max(needed, this.buffer.length * 2, 256), Math.max(needed, maxMessageSize))
      )
      grown.set(this.buffer.subarray(0, this.size))
      this.buffer = grown
    }
    this.buffer.set(payload, this.size)
    this.size = needed
  }

  /** No message open any more (completed, or abandoned after a failure); the buffer is released. */
  reset(): void {
    this.open = undefined
    this.buffer = EMPTY
    this.size = 0
  }
}

/** What `onData` returns: a completed message, `undefined` (the message goes on), or why the input failed. */
export type DataResult = Message | undefined | FrameTooBig | ProtocolViolation

/** The session's layer that assembles messages from data frames and validates their UTF-8 (see the module notes). */
export abstract class MessageAssembly extends Inbox {
  /**
   * The raw parser validates the UTF-8 of every text message without RSV bits as its bytes
   * arrive (see `validateUtf8In`): such messages need no check here.
   */
  private declare parserValidatesUtf8: boolean

  /**
   * Hands the UTF-8 check of text messages without RSV bits to the raw reader's parser, which
   * fails (1007) in the chunk that brings the first invalid byte instead of when the frame or the
   * message is complete (RFC 6455 §8.1 fail fast). Only when the parser then validates every text
   * message of this session from its first byte (`validatesAllText`: it validated from the start,
   * as the raw session's `validateUtf8` option asks, or no text message started before now);
   * otherwise the session keeps checking complete frames itself, as without this. Messages with
   * an RSV bit are checked after the extensions either way.
   */
  validateUtf8In(parser: FrameParser.FrameParser): void {
    const before = parser.validateUtf8
    parser.validateUtf8 = true
    if (parser.validatesAllText) this.parserValidatesUtf8 = true
    else parser.validateUtf8 = before // it would validate only later messages: checked here instead
  }

  /** Handles one data frame; returns a completed message, `undefined`, or a failure. */
  protected onData(frame: Frame.Text | Frame.Binary | Frame.Continuation): DataResult {
    const limit = this.maxMessageSize
    if (frame._tag !== "Continuation") {
      const rsv = frame.rsv1 || frame.rsv2 || frame.rsv3
      if (frame.fin) {
        if (frame.payload.length > limit) {
          return new FrameTooBig({ kind: "MessageTooBig", message: `Message of ${frame.payload.length} bytes exceeds ${limit}` })
        }
        if (
          frame._tag === "Text" && !rsv && (this.flags & PARSER_VALIDATES_UTF8) === 0 && !Utf8.isValidUtf8(frame.payload)
        ) {
          return violation("InvalidUtf8", 1007, "Text message is not valid UTF-8")
        }
        return frame
      }
      ;(this.more.assembly ??= new Assembly()).begin(
        frame,
        frame._tag === "Text" && !rsv && (this.flags & PARSER_VALIDATES_UTF8) === 0
      )
    } else {
      const assembly = this.extra?.assembly
      if (assembly === undefined || assembly.open === undefined) {
        return violation("UnexpectedContinuation", 1002, "Continuation frame without a message")
      }
      if (frame.rsv1 || frame.rsv2 || frame.rsv3) {
        return violation("ReservedBits", 1002, "RSV bits set on a continuation frame")
      }
      assembly.fragments++
      const maxFragments = this.options.maxFragments ?? DEFAULT_MAX_FRAGMENTS
      if (assembly.fragments > maxFragments) {
        return new FrameTooBig({ kind: "TooManyFragments", message: `Message has more than ${maxFragments} fragments` })
      }
    }
    const assembly = this.extra!.assembly!
    if (assembly.size + frame.payload.length > limit) {
      return new FrameTooBig({ kind: "MessageTooBig", message: `Message exceeds ${limit} bytes` })
    }
    if (assembly.validateOnTheFly && assembly.utf8!.update(frame.payload) !== -1) {
      return violation("InvalidUtf8", 1007, "Text message is not valid UTF-8")
    }
    if (frame.payload.length > 0) assembly.append(frame.payload, limit)
    if (!frame.fin) return undefined
    if (assembly.validateOnTheFly && !assembly.utf8!.finish()) {
      return violation("InvalidUtf8", 1007, "Text message is not valid UTF-8")
    }
    const payload = concatBytes(assembly.buffer, assembly.size)
    const message = Frame.make(assembly.open!, true, assembly.rsv1, assembly.rsv2, assembly.rsv3, payload)
    assembly.reset()
    return message
  }
}

defineFlags(MessageAssembly.prototype, { parserValidatesUtf8: PARSER_VALIDATES_UTF8 })
