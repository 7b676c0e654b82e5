/**
 * The extension chain (RFC 6455 §9, `WebSocketExtension`): whole messages pass through the
 * negotiated extensions in order, incoming after assembly (`applyIncomingExtensions`), outgoing
 * before the writer (`processAndEnqueue`, run with the send gate held so that the wire order is
 * the order the extensions processed in, which a compressor with context takeover relies on).
 * A hook that completes during its call (returns an `Exit`) is folded synchronously, so a chain
 * of such hooks costs no effect at all; `incomingUnchanged`/`outgoingUnchanged` let an extension
 * pass a message by without its hook. A message an extension transformed (RSV bits set) is
 * checked again: size, and UTF-8 unless the last hook validated it (`HOOK_VALIDATED_UTF8`).
 * Which RSV bits an extension may claim is checked when the raw session is made (`Extension.ts`).
 *
 * @internal
 * @module
 */
import { Utf8 } from "@effect-ws/codec"
import { Effect, Exit } from "effect"
import type { Message, SendError } from "../../DefaultWebSocketSession.ts"
import { type ChannelOverflow, type ExtensionError, FrameTooBig, type OutgoingClosed, type ProtocolViolation } from "../../Errors.ts"
import type { WebSocketExtension } from "../../Extension.ts"
import { defineFlags } from "../flags.ts"
import { MessageAssembly } from "./assembly.ts"
import { violation } from "./state.ts"

/** Bits of `flags` owned by the extension chain (see `state.ts` for the whole table). */
const HOOK_VALIDATED_UTF8 = 1 << 14

/** Whether an effect is already a successful `Exit` (an extension hook that completed during its call). */
export const completed = <A, E>(effect: Effect.Effect<A, E>): effect is Exit.Success<A, E> =>
  Exit.isExit(effect) && Exit.isSuccess(effect)

/** An extension's outgoing step in an effect chain: its hook, or the message itself when `outgoingUnchanged` accepts it. */
const outgoingHook = (extension: WebSocketExtension) => (message: Message): Effect.Effect<Message, ExtensionError> =>
  extension.outgoingUnchanged?.(message) === true ? Effect.succeed(message) : extension.processOutgoingMessage(message)

/** The mask of a sender that waited for the send gate (`Effect.uninterruptibleMask`'s `restore`). */
export type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/** The session's layer that runs messages through the extensions, both ways (see the module notes). */
export abstract class ExtensionChain extends MessageAssembly {
  /**
   * The last incoming hook that ran (for the message being processed: one at a time) belongs to
   * an extension that `validatesIncomingUtf8`.
   */
  private declare hookValidatedUtf8: boolean

  /**
   * Where a complete incoming message enters the extensions: the index of the first extension
   * whose `incomingUnchanged` does not accept it (all before it pass it through), the number of
   * extensions when all pass it through but it has an RSV bit (it still needs the re-check), or
   * -1 when it goes on exactly as without extensions.
   */
  protected firstIncomingHook(message: Message): number {
    const extensions = this.extensions
    for (let i = 0; i < extensions.length; i++) {
      if (extensions[i]!.incomingUnchanged?.(message) !== true) return i
    }
    return message.rsv1 || message.rsv2 || message.rsv3 ? extensions.length : -1
  }

  /**
   * Runs a message through the extensions from index `from` on (see `firstIncomingHook`), then
   * validates text that an extension produced. Hooks that complete during their call (returning
   * an `Exit`) are folded synchronously, so when all of them do the result is an `Exit` too; the
   * first hook that returns an ordinary effect makes the rest an effect chain.
   */
  protected applyIncomingExtensions(
    message: Message,
    from: number
  ): Effect.Effect<Message, ProtocolViolation | FrameTooBig | ExtensionError> {
    const extensions = this.extensions
    let current = message
    let last: Exit.Success<Message, ProtocolViolation | FrameTooBig | ExtensionError> | undefined = undefined
    this.hookValidatedUtf8 = false
    for (let i = from; i < extensions.length; i++) {
      const extension = extensions[i]!
      if (i !== from && extension.incomingUnchanged?.(current) === true) continue
      this.hookValidatedUtf8 = extension.validatesIncomingUtf8 === true
      const result = extension.processIncomingMessage(current)
      if (completed(result)) {
        current = result.value
        last = result
        continue
      }
      let effect = result
      for (let j = i + 1; j < extensions.length; j++) effect = Effect.flatMap(effect, this.incomingStep(extensions[j]!))
      return Effect.flatMap(effect, (m) => this.checkTransformed(message, m))
    }
    // A message without RSV bits needs no re-check: the last hook's own result will do.
    if (last !== undefined && !(message.rsv1 || message.rsv2 || message.rsv3)) return last
    return this.checkTransformed(message, current)
  }

  /**
   * An extension's incoming step in an effect chain: its hook (noting whether that hook validates
   * UTF-8), or the message itself when `incomingUnchanged` accepts it.
   */
  private incomingStep(extension: WebSocketExtension) {
    return (message: Message): Effect.Effect<Message, ProtocolViolation | FrameTooBig | ExtensionError> => {
      if (extension.incomingUnchanged?.(message) === true) return Effect.succeed(message)
      this.hookValidatedUtf8 = extension.validatesIncomingUtf8 === true
      return extension.processIncomingMessage(message)
    }
  }

  /**
   * Re-checks a message an extension transformed (RSV bits set): the size limit, and UTF-8 for
   * text unless the last hook that ran validated it (`validatesIncomingUtf8`).
   */
  private checkTransformed(original: Message, m: Message): Effect.Effect<Message, ProtocolViolation | FrameTooBig> {
    if (!(original.rsv1 || original.rsv2 || original.rsv3)) return Effect.succeed(m)
    const limit = this.maxMessageSize
    if (m.payload.length > limit) {
      return Effect.fail(new FrameTooBig({ kind: "MessageTooBig", message: `Message exceeds ${limit} bytes` }))
    }
    if (m._tag === "Text" && (this.flags & HOOK_VALIDATED_UTF8) === 0 && !Utf8.isValidUtf8(m.payload)) {
      return Effect.fail(violation("InvalidUtf8", 1007, "Text message is not valid UTF-8"))
    }
    return Effect.succeed(m)
  }

  /**
   * With the send gate held: runs the outgoing hooks (synchronously as far as they complete
   * during their call; skipped for a message an extension's `outgoingUnchanged` accepts) and
   * queues the result, then passes the gate on. When every hook completed (or was skipped) and
   * the writer has room, all of it happens now; otherwise the rest is an effect that keeps the
   * gate until it ends (`restore` is the mask of a sender that waited for the gate).
   */
  protected processAndEnqueue(
    message: Message,
    restore: Restore | undefined
  ): Effect.Effect<void, SendError> {
    const extensions = this.extensions
    let current = message
    for (let i = 0; i < extensions.length; i++) {
      const extension = extensions[i]!
      if (extension.outgoingUnchanged?.(current) === true) continue
      const result = extension.processOutgoingMessage(current)
      if (completed(result)) {
        current = result.value
        continue
      }
      let effect = result
      for (let j = i + 1; j < extensions.length; j++) effect = Effect.flatMap(effect, outgoingHook(extensions[j]!))
      return this.holdingSendGate(Effect.flatMap(effect, (m) => this.enqueueMessage(m)), restore)
    }
    const size = this.options.outgoingFragmentSize
    if ((size === undefined || current.payload.length <= size) && this.writer.tryEnqueue(current)) {
      this.releaseSendGate()
      return Effect.void
    }
    return this.holdingSendGate(this.enqueueMessage(current), restore)
  }

  /** Runs `effect` with the send gate held and passes the gate on when it ends (`SendGate`). */
  protected abstract holdingSendGate<E>(effect: Effect.Effect<void, E>, restore: Restore | undefined): Effect.Effect<void, E>
  /** Hands the send gate to the first waiter, or frees it (`SendGate`). */
  protected abstract releaseSendGate(): void
  /** Queues a whole (processed) message, fragmented when `outgoingFragmentSize` asks for it (`SendGate`). */
  protected abstract enqueueMessage(message: Message): Effect.Effect<void, OutgoingClosed | ChannelOverflow>
}

defineFlags(ExtensionChain.prototype, { hookValidatedUtf8: HOOK_VALIDATED_UTF8 })
