/**
 * The send gate: the order of outgoing messages. A whole message (`send`, `sendFrame`,
 * `outgoing`) goes straight to the writer's queue when nothing holds the gate (no extensions, no
 * open fragmented message: one bit test, `SEND_GATE_BUSY`). With extensions, each message holds
 * the gate while the extension chain processes it and it is queued (`processAndEnqueue`), so the
 * wire order is the processing order; senders that find it held wait in call order
 * (`Extra.sendGateWaiters`). An outgoing fragmented message (a Text/Binary frame without `fin`,
 * then Continuations) holds the gate from its first frame to its final one; it belongs to the
 * fiber that sent its latest fragment, and when that fiber ends first (or starts another message)
 * the message is abandoned: the session closes with 1011 "Fragmented message left open" and the
 * waiting senders fail. `outgoingFragmentSize` splits large messages here (`enqueueMessage`).
 *
 * Backpressure: the writer's outgoing queue (`channels.outgoing`): a full queue suspends
 * `writer.enqueue` (policy `"suspend"`) or fails it with `ChannelOverflow` (`"fail"`).
 *
 * @internal
 * @module
 */
import { Frame } from "@effect-ws/codec"
import { Effect, Exit, Fiber } from "effect"
import type { Message, SendError } from "../../DefaultWebSocketSession.ts"
import type { ChannelOverflow, OutgoingClosed } from "../../Errors.ts"
import { defineFlags } from "../flags.ts"
import { FRAGMENT_LEFT_OPEN } from "./close.ts"
import type { Restore } from "./extensions.ts"
import { Pinger } from "./pinger.ts"

/** Bits of `flags` owned by the send gate (see `state.ts` for the whole table). */
const SEND_GATE_BUSY = 1 << 10

/** Splits a message into frames of at most `size` payload bytes (RSV bits on the first only). */
const fragment = (message: Message, size: number): Array<Frame.Frame> => {
  const payload = message.payload
  const count = Math.ceil(payload.length / size)
  const frames: Array<Frame.Frame> = []
  for (let i = 0; i < count; i++) {
    const chunk = payload.subarray(i * size, Math.min(payload.length, (i + 1) * size))
    const fin = i === count - 1
    frames.push(
      i === 0
        ? Frame.make(message._tag, fin, message.rsv1, message.rsv2, message.rsv3, chunk)
        : Frame.make("Continuation", fin, false, false, false, chunk)
    )
  }
  return frames
}

/** The session's layer that orders outgoing messages and fragmented messages (see the module notes). */
export abstract class SendGate extends Pinger {
  /**
   * The send gate of a session with extensions: extension processing + enqueue of one outgoing
   * message at a time, in call order (a compressor with context takeover depends on the wire
   * order matching the order it compressed in). Taken synchronously when free; waiters queue
   * (`Extra.sendGateWaiters`).
   */
  private declare sendGateBusy: boolean

  protected sendMessage(message: Message): Effect.Effect<void, SendError> {
    if (this.extensions.length === 0) {
      // Without extensions the gate is only ever held by an open fragmented message (and its
      // waiters): checked when the send runs, at the cost `writer.enqueue`'s own suspension had.
      return Effect.suspend(() => {
        if ((this.flags & SEND_GATE_BUSY) !== 0) return this.sendMessageGated(message)
        const size = this.options.outgoingFragmentSize
        return (size === undefined || message.payload.length <= size) && this.writer.tryEnqueue(message)
          ? Effect.void
          : this.enqueueMessage(message)
      })
    }
    return Effect.suspend(() => this.sendMessageGated(message))
  }

  /** Sends a message through the send gate (always with extensions; without, only while the gate is held). */
  private sendMessageGated(message: Message): Effect.Effect<void, SendError> {
    const owner = this.extra?.fragmentOwner
    if (owner !== undefined && owner === Fiber.getCurrent()) {
      this.abandonFragmentedMessage() // its owner starts a new message: it would wait for itself
    }
    if (!this.sendGateBusy) {
      // The gate is free: taken here and, in the common case, released before returning.
      this.sendGateBusy = true
      return this.processAndEnqueue(message, undefined)
    }
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(this.awaitSendGate()), () => this.processAndEnqueue(message, restore))
    )
  }

  /**
   * Runs `effect` with the send gate held and passes the gate on when it ends. Outside a mask the
   * gate is also passed on if this fiber ends without ever running `effect` (interrupted before
   * its finalizer was in place), so a lost continuation can never wedge the gate.
   */
  protected holdingSendGate<E>(
    effect: Effect.Effect<void, E>,
    restore: Restore | undefined
  ): Effect.Effect<void, E> {
    if (restore !== undefined) return this.releasingSendGate(restore(effect))
    let released = false
    let stopObserving: (() => void) | undefined = undefined
    const release = (): void => {
      if (released) return
      released = true
      stopObserving?.()
      this.releaseSendGate()
    }
    stopObserving = Fiber.getCurrent()?.addObserver(release)
    return Effect.ensuring(effect, Effect.sync(release))
  }

  private releasingSendGate<E>(effect: Effect.Effect<void, E>): Effect.Effect<void, E> {
    return Effect.ensuring(effect, Effect.sync(() => this.releaseSendGate()))
  }

  /** Hands the send gate to the first waiter, or frees it. */
  protected releaseSendGate(): void {
    const next = this.extra?.sendGateWaiters?.shift()
    if (next === undefined) this.sendGateBusy = false
    else next()
  }

  /** Waits (interruptibly) until the send gate is handed over; an interrupted waiter passes it on. */
  private awaitSendGate(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      let handedOver = false
      const waiter = () => {
        handedOver = true
        resume(Effect.void)
      }
      const waiters = this.more.sendGateWaiters ??= []
      waiters.push(waiter)
      return Effect.sync(() => {
        if (handedOver) return this.releaseSendGate()
        const at = waiters.indexOf(waiter)
        if (at >= 0) waiters.splice(at, 1)
      })
    })
  }

  /**
   * The first frame of a fragmented message: waits for the send gate (like a whole message), queues
   * the frame, and keeps the gate until the final fragment (see `sendFrame`). The gate is passed on
   * if the frame could not be queued (failure, interruption).
   */
  protected sendFirstFragment(frame: Frame.Frame): Effect.Effect<void, SendError> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const extra = this.extra
        if (extra?.fragmentOwner !== undefined && extra.fragmentOwner === Fiber.getCurrent()) {
          this.abandonFragmentedMessage() // its owner starts a new message: it would wait for itself
        }
        const queue = (): Effect.Effect<void, SendError> => {
          if (this.writer.tryEnqueue(frame)) {
            this.watchFragmentOwner()
            return Effect.void
          }
          return Effect.onExit(restore(this.writer.enqueue(frame)), (exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit) && !this.finished) this.watchFragmentOwner()
              else this.releaseSendGate()
            }))
        }
        if (!this.sendGateBusy) {
          this.sendGateBusy = true
          return queue()
        }
        return Effect.flatMap(restore(this.awaitSendGate()), queue)
      })
    )
  }

  /**
   * A Continuation: while a fragmented message is open, its sender becomes the owner and the final
   * one passes the gate on; otherwise it is sent as it is.
   */
  protected sendContinuation(frame: Frame.Continuation): Effect.Effect<void, SendError> {
    return Effect.suspend(() => {
      if (this.extra?.fragmentOwner === undefined) return this.writer.enqueue(frame)
      const current = Fiber.getCurrent()
      if (current !== undefined && current !== this.extra?.fragmentOwner) this.watchFragmentOwner(current)
      if (!frame.fin) return this.writer.enqueue(frame)
      if (this.writer.tryEnqueue(frame)) {
        this.endFragmentedMessage()
        return Effect.void
      }
      return Effect.tap(this.writer.enqueue(frame), () => Effect.sync(() => this.endFragmentedMessage()))
    })
  }

  /** Makes `owner` (default: the current fiber) the owner of the open fragmented message (see `sendFrame`). */
  private watchFragmentOwner(owner: Fiber.Fiber<unknown, unknown> | undefined = Fiber.getCurrent()): void {
    const extra = this.more
    extra.stopWatchingOwner?.()
    extra.fragmentOwner = owner
    extra.stopWatchingOwner = owner?.addObserver(() => {
      if (extra.fragmentOwner === owner) this.abandonFragmentedMessage()
    })
  }

  /** The open fragmented message is complete (or the session ended): no owner any more, the gate is passed on. */
  protected endFragmentedMessage(): void {
    const extra = this.extra
    if (extra?.fragmentOwner === undefined) return
    extra.stopWatchingOwner?.()
    extra.stopWatchingOwner = undefined
    extra.fragmentOwner = undefined
    this.releaseSendGate()
  }

  /**
   * The open fragmented message was left open by its owner (see `sendFrame`): the session closes
   * with 1011 (before the gate is passed on, so no waiting sender's frame can follow the fragment),
   * then the gate is passed on (the waiters fail with `OutgoingClosed`).
   */
  private abandonFragmentedMessage(): void {
    if (this.extra?.fragmentOwner === undefined) return
    let closing = false
    if (this.draining) {
      this.applyPendingFailure() // a failure held back for the handler: its Close goes out instead
      closing = true
    } else if (!this.finished && !this.writer.closeSent && !this.writer.isClosedForSending) {
      this.sentFirst = FRAGMENT_LEFT_OPEN
      this.sendClose(FRAGMENT_LEFT_OPEN)
      closing = true
    }
    this.endFragmentedMessage()
    // The closer bounds the handshake by `closeTimeout`, as after `close` (this may run in a fiber's
    // observer, outside any fiber: the closer is forked into the session's scope from a new one).
    if (closing && !this.closerStarted && !this.scopeClosing) Effect.runForkWith(this.services)(this.beginClosing)
  }

  /** Queues a whole (processed) message, fragmented when `outgoingFragmentSize` asks for it. */
  protected enqueueMessage(message: Message): Effect.Effect<void, OutgoingClosed | ChannelOverflow> {
    const size = this.options.outgoingFragmentSize
    return size === undefined || message.payload.length <= size
      ? this.writer.enqueue(message)
      : this.writer.enqueueFragments(fragment(message, size))
  }
}

defineFlags(SendGate.prototype, { sendGateBusy: SEND_GATE_BUSY })
