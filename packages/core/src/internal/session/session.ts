/**
 * `Session`, the one class a `DefaultWebSocketSession` is: the top of the class chain (see
 * `state.ts`), with the public API (`WebSocketSession`) and the dispatch of incoming frames.
 *
 * Incoming (`FrameHandler`): the raw reader's fiber parses a chunk and calls `onFrames` with its
 * frames; data frames go to message assembly (`onData`), whole messages through the extension
 * chain to the inbox (`deliver`), Pings to the writer's Pong mailbox (`onPing`), Pongs to the
 * pinger (`onPong`), the Close to the close handshake (`onClose`). When something must wait (a
 * full inbox, an extension hook, Pongs piling up, a held-back failure) `onFrames` returns an
 * effect and the reader's fiber runs it before it reads on: that is where incoming backpressure
 * comes from. `onEnd` is called once when no frame will follow.
 *
 * @internal
 * @module
 */
import { CloseReason, Frame } from "@effect-ws/codec"
import { Cause, Deferred, Effect, Exit, type Fiber, Queue, Sink, Stream } from "effect"
import type { Message, SendError, WebSocketSession } from "../../DefaultWebSocketSession.ts"
import {
  ChannelOverflow,
  type ConnectionClosed,
  type ExtensionNotFound,
  InvalidCloseReason,
  type SessionError
} from "../../Errors.ts"
import { findExtension, getExtension, type WebSocketExtension, type WebSocketExtensionFactory } from "../../Extension.ts"
import type { FrameHandler } from "../../WebSocketReader.ts"
import { completed } from "./extensions.ts"
import { describe, NORMAL, reasonOf } from "./close.ts"
import { TAKE_EACH, TAKE_ONE, TAKE_PULL } from "./inbox.ts"
import { SendGate } from "./sendGate.ts"

/**
 * One message-level session. Everything an idle connection holds lives in this object's fields
 * (its inbox is its base class, its booleans are bits of one number, and the rarely used state
 * is in an `Extra` created when first needed): the incoming frames are processed by
 * `onFrames`/`onEnd`, called from the raw reader's fiber (no fiber or queue of its own), Pings are
 * answered through the writer's Pong mailbox (created with the first Ping), and the functions of
 * the public API are bound only when first used.
 */
export class Session extends SendGate implements WebSocketSession, FrameHandler {
  // ---- Public API ----

  extension<Ext extends WebSocketExtension>(factory: WebSocketExtensionFactory<never, Ext>): Effect.Effect<Ext, ExtensionNotFound> {
    return getExtension(this.extensions, factory)
  }

  extensionOrNull<Ext extends WebSocketExtension>(factory: WebSocketExtensionFactory<never, Ext>): Ext | null {
    return findExtension(this.extensions, factory) ?? null
  }

  get incoming(): Queue.Queue<Message, SessionError> {
    return this.queue
  }

  get receive(): Effect.Effect<Message, SessionError> {
    return this.takeEffect(TAKE_ONE)
  }

  get messages(): Stream.Stream<Message, Exclude<SessionError, ConnectionClosed>> {
    // One pull straight on the inbox (no `catchTag` stage): a normal close ends the stream.
    return Stream.fromPull(Effect.succeed(this.takeEffect(TAKE_PULL)))
  }

  consumeEach<E, R>(
    f: (message: Message) => Effect.Effect<unknown, E, R>
  ): Effect.Effect<void, E | Exclude<SessionError, ConnectionClosed>, R> {
    type Consumed = Effect.Effect<void, E | Exclude<SessionError, ConnectionClosed>, R>
    const take = this.takeEffect(TAKE_EACH)
    // Runs `f` on the messages of one take from `start` on; effects `f` completed during its call
    // (an `Exit`) are taken without scheduling anything. Then the next take, until a normal close.
    const each = (batch: ReadonlyArray<Message> | undefined, start: number): Consumed => {
      if (batch === undefined) return Effect.void
      for (let i = start; i < batch.length; i++) {
        const result = f(batch[i]!)
        if (Exit.isExit(result)) {
          if (Exit.isFailure(result)) return result
          continue
        }
        const next = i + 1
        return Effect.flatMap(result, () => each(batch, next))
      }
      return loop
    }
    const loop: Consumed = Effect.flatMap(take, (batch) => each(batch, 0))
    return loop
  }

  get send(): WebSocketSession["send"] {
    return this.bound.send ??= (data) => this.sendMessage(typeof data === "string" ? Frame.text(data) : Frame.binary(data))
  }

  get sendFrame(): WebSocketSession["sendFrame"] {
    return this.bound.sendFrame ??= (frame) => this.sendFrameImpl(frame)
  }

  get outgoing(): Sink.Sink<void, string | Uint8Array, never, SendError> {
    return Sink.forEach(this.send)
  }

  get flush(): Effect.Effect<void> {
    return this.writer.flush
  }

  get close(): WebSocketSession["close"] {
    return this.bound.close ??= (reason = NORMAL) => this.closeImpl(reason)
  }

  get closeExceptionally(): WebSocketSession["closeExceptionally"] {
    return this.bound.closeExceptionally ??= (cause) => Effect.ignore(this.closeImpl(reasonOf(1011, describe(cause))))
  }

  get terminate(): Effect.Effect<void> {
    return Effect.suspend(() => {
      // A failure held back for the handler ends the session now (its Close is queued, but the
      // transport is destroyed before the writer's next turn, as on the other paths).
      this.applyPendingFailure()
      return this.raw.terminate
    })
  }

  get run(): WebSocketSession["run"] {
    return this.bound.run ??= (handler) => this.runImpl(handler)
  }

  fibers(): ReadonlyArray<Fiber.Fiber<unknown, unknown>> {
    const own = this.extra?.ownFibers
    return own === undefined ? [...this.raw.fibers] : [...this.raw.fibers, ...own]
  }

  // ---- Incoming: called by the raw reader's fiber ----

  /** Processes a batch of raw frames from `start`; returns an effect when it must wait (a full queue, an extension). */
  onFrames(frames: ReadonlyArray<Frame.Frame>, start = 0): Effect.Effect<void> | undefined {
    for (let i = start; i < frames.length && !this.discarding; i++) {
      const frame = frames[i]!
      switch (frame._tag) {
        case "Text":
        case "Binary":
        case "Continuation": {
          const result = this.onData(frame)
          if (result === undefined) break
          if (result._tag === "FrameTooBig" || result._tag === "ProtocolViolation") {
            this.failSession(result) // messages before it were delivered already
            break
          }
          const first = this.extensions.length === 0 ? -1 : this.firstIncomingHook(result)
          if (first !== -1) {
            const applied = this.applyIncomingExtensions(result, first)
            const next = i + 1
            if (completed(applied)) {
              // Every hook completed during its call: stay in this synchronous loop.
              const wait = this.deliver(applied.value)
              if (wait !== undefined) return Effect.andThen(wait, Effect.suspend(() => this.continueFrom(frames, next)))
              break
            }
            return Effect.flatMap(Effect.result(applied), (processed) => {
              if (processed._tag === "Failure") {
                this.failSession(processed.failure)
                return this.continueFrom(frames, next)
              }
              const wait = this.deliver(processed.success)
              return wait === undefined
                ? this.continueFrom(frames, next)
                : Effect.andThen(wait, Effect.suspend(() => this.continueFrom(frames, next)))
            })
          }
          const wait = this.deliver(result)
          if (wait !== undefined) {
            const next = i + 1
            return Effect.andThen(wait, Effect.suspend(() => this.continueFrom(frames, next)))
          }
          break
        }
        case "Ping": {
          // Answered through the writer's Pong mailbox; past the bound, the rest waits (`Pinger.onPing`).
          const wait = this.onPing(frame, frames, i + 1)
          if (wait !== undefined) return wait
          break
        }
        case "Pong":
          this.onPong(frame.payload)
          break
        case "Close":
          this.onClose(frame)
          break
      }
    }
    const extra = this.extra
    if (extra === undefined) return this.finished ? this.beginClosing : undefined
    if (extra.pendingFailure !== undefined) return this.failAfterDrain
    return this.finished || extra.sentFirst !== undefined ? this.beginClosing : undefined
  }

  protected continueFrom(frames: ReadonlyArray<Frame.Frame>, start: number): Effect.Effect<void> {
    return this.onFrames(frames, start) ?? Effect.void
  }

  /** Offers one message; returns an effect when the queue is full with policy `"suspend"`. Nothing is delivered after the session finished. */
  private deliver(message: Message): Effect.Effect<void> | undefined {
    if (this.finished) return undefined
    if (this.offer(message)) return undefined
    const config = this.inboxConfig
    if (config.overflow === "fail" && Number.isFinite(config.capacity)) {
      this.failSession(new ChannelOverflow({ channel: "incoming", capacity: config.capacity }))
      return undefined
    }
    // On the `incoming` queue, an offer waiting for room would outlast the session (a failed queue
    // keeps it until its messages are taken): it gives up when the session ends, as `deliver`
    // drops a message that arrives after the end.
    if (this.inboxHasQueue) return Effect.raceFirst(this.offerWaiting(message), Effect.asVoid(Deferred.await(this.closeReason)))
    return Effect.andThen(this.waitForRoom, Effect.suspend(() => this.deliver(message) ?? Effect.void))
  }

  /** Drains the raw `incoming` queue into `onFrames`/`onEnd` (only when it was used before this session attached). */
  get pump(): Effect.Effect<void> {
    const self = this
    return Effect.gen(function*() {
      while (true) {
        const taken = yield* Effect.result(Queue.takeAll(self.raw.incoming))
        if (taken._tag === "Failure") {
          const after = self.onEnd(taken.failure)
          if (after !== undefined) yield* after
          return
        }
        const after = self.onFrames(taken.success)
        if (after !== undefined) yield* after
      }
    })
  }

  trackFiber(fiber: Fiber.Fiber<void>): void {
    this.addFiber(fiber)
  }

  // ---- Sending and closing ----

  private sendFrameImpl(frame: Frame.Frame): Effect.Effect<void, SendError | InvalidCloseReason> {
    switch (frame._tag) {
      case "Close": {
        const decoded = CloseReason.decodeCloseReason(frame.payload)
        if ("_tag" in decoded) {
          const code = frame.payload.length >= 2 ? (frame.payload[0]! << 8) | frame.payload[1]! : 1005
          return Effect.fail(new InvalidCloseReason({ code, message: decoded.message }))
        }
        return decoded.code === 1005 ? Effect.fail(new InvalidCloseReason({ code: 1005, message: "" })) : this.closeImpl(decoded)
      }
      case "Text":
      case "Binary":
        return frame.fin ? this.sendMessage(frame) : this.sendFirstFragment(frame)
      case "Continuation":
        return this.sendContinuation(frame)
      default:
        return this.writer.enqueue(frame)
    }
  }

  private runImpl<A, E, R>(handler: (session: WebSocketSession) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    return Effect.onExit(handler(this), (exit) => {
      if (Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)) return Effect.void
      // The handler is done: messages it did not take never will be (see `abandonInbox`).
      const closing = Effect.andThen(
        this.abandonInbox,
        Exit.isSuccess(exit) ? Effect.ignore(this.closeImpl(NORMAL)) : this.closeExceptionally(Cause.squash(exit.cause))
      )
      // Wait for the end of the session, then for our last Close (or echo) to be written.
      const ended = Effect.andThen(closing, Effect.andThen(this.awaitClose, this.writer.flush))
      // A client then waits for the server to close the connection: the closer does exactly that.
      return this.role === "client" ? Effect.andThen(ended, this.awaitCloser) : ended
    })
  }
}
