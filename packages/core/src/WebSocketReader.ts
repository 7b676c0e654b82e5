/**
 * `WebSocketReader`: the incoming half of a session. One fiber reads transport chunks, parses
 * every complete frame in a chunk synchronously and offers them to the incoming queue as one
 * batch (a bounded queue then pushes back on the transport). On a protocol violation it asks
 * for the right Close (1002/1007/1009) and fails the queue after the frames parsed before it.
 *
 * A session built on top (the default session) can instead `attach` a `FrameHandler`: the reader
 * then hands each batch straight to it, in its own fiber, with no queue in between.
 *
 * @module
 */
import { CloseReason, type Frame, FrameParser } from "@effect-ws/codec"
import { Cause, type Context, Deferred, Effect, Queue } from "effect"
import * as ChannelsConfig from "./ChannelsConfig.ts"
import {
  AbnormalClosure,
  type ChannelOverflow,
  fromViolation,
  type FrameTooBig,
  type ProtocolViolation,
  TransportClosed
} from "./Errors.ts"
import type { Transport } from "./Transport.ts"

/** How the raw incoming queue can end (besides `Cause.Done` after a Close frame). */
export type RawIncomingError = ProtocolViolation | FrameTooBig | AbnormalClosure | ChannelOverflow

/** Sends a Close frame on behalf of the reader (a violation, an overflow). */
export interface SendClose {
  /** Queues the Close; returns whether it was accepted. */
  sendClose(reason: CloseReason.CloseReason): boolean
}

/**
 * Receives the reader's frames directly instead of the incoming queue (see `WebSocketReader.attach`).
 * Both methods run in the reader fiber; an effect they return is run before the next chunk is
 * read, so a handler that waits (a full queue) pushes back on the transport.
 */
export interface FrameHandler {
  /** The frames parsed from one chunk, in order; the array is reused once the returned effect (if any) completed. */
  onFrames(frames: ReadonlyArray<Frame.Frame>): Effect.Effect<void> | undefined
  /**
   * Called once when no frame will follow: `Cause.Done` after a Close frame, else why the input
   * ended. For a `ProtocolViolation`/`FrameTooBig` from the parser the handler sends the Close.
   */
  onEnd(end: RawIncomingError | Cause.Done): Effect.Effect<void> | undefined
}

/** The reader state of one connection; `run` is the reader fiber's loop. */
export class WebSocketReader {
  private readonly transport: Transport
  readonly parser: FrameParser.FrameParser
  /** The incoming queue, created on first use (a session that attaches a handler never needs it). */
  private queue: Queue.Queue<Frame.Frame, RawIncomingError | Cause.Done> | undefined = undefined
  private readonly config: ChannelsConfig.ChannelConfig
  /** The services the queue is created with (those of the fiber that made the session). */
  private readonly services: Context.Context<never>
  private readonly closeSender: SendClose
  private readonly finished = Deferred.makeUnsafe<void>()
  private handler: FrameHandler | undefined = undefined
  /** Something (a frame or the end) went to the queue: a handler can no longer take over. */
  private usedQueue = false
  /** The end of the frame stream was delivered (queue ended/failed, or `onEnd` called). */
  private endDelivered = false
  /** A Close frame was received (it is the last frame delivered). */
  closeReceived = false
  /** Why the transport input ended, once it did. */
  inputEnd: TransportClosed | undefined = undefined

  constructor(
    transport: Transport,
    parser: FrameParser.FrameParser,
    config: ChannelsConfig.ChannelConfig,
    sendClose: SendClose,
    services: Context.Context<never>
  ) {
    this.transport = transport
    this.parser = parser
    this.config = config
    this.closeSender = sendClose
    this.services = services
  }

  /** The incoming queue (frames as received), created on first access. */
  get incoming(): Queue.Queue<Frame.Frame, RawIncomingError | Cause.Done> {
    return this.queue ??= Effect.runSyncWith(this.services)(
      ChannelsConfig.makeQueue<Frame.Frame, RawIncomingError | Cause.Done>(this.config)
    )
  }

  /**
   * Routes every later batch and the end to `handler` instead of the incoming queue. Returns
   * `false` (nothing changed) when the queue was already used: the caller must then drain the queue.
   */
  attach(handler: FrameHandler): boolean {
    if (this.usedQueue || this.handler !== undefined) return false
    this.handler = handler
    return true
  }

  /** Delivers the end of the frame stream once, to the handler or the queue. */
  private endWith(end: RawIncomingError | Cause.Done): Effect.Effect<void> | undefined {
    if (this.endDelivered) return undefined
    this.endDelivered = true
    if (this.handler !== undefined) return this.handler.onEnd(end)
    this.usedQueue = true
    if (Cause.isDone(end)) Queue.endUnsafe(this.incoming)
    else Queue.failCauseUnsafe(this.incoming, Cause.fail(end))
    return undefined
  }

  /** Completes when the reader has stopped (the transport input ended or the fiber was interrupted). */
  get done(): Effect.Effect<void> {
    return Deferred.await(this.finished)
  }

  /**
   * The reader fiber. Delivers frames until a Close frame (then the queue ends), a violation
   * (Close sent, queue failed) or the end of input without a Close (queue failed with
   * `AbnormalClosure`). Afterwards it keeps reading and discarding until the input ends, so the
   * peer's EOF is observed; the session bounds that wait with its close timeout.
   */
  get run(): Effect.Effect<void> {
    return Effect.gen({ self: this }, WebSocketReader.loop).pipe(Effect.ensuring(Effect.suspend(() => {
      // Interrupted (scope closed) while still delivering: takers must not wait forever.
      const after = this.endWith(new AbnormalClosure({ cause: new TransportClosed({ reason: "Destroyed" }) }))
      Deferred.doneUnsafe(this.finished, Effect.void)
      return after ?? Effect.void
    })))
  }

  /** The loop body, a shared generator function (one per class, not one per connection). */
  private static *loop(this: WebSocketReader): Generator<Effect.Effect<unknown, never, never>, void, never> {
    const self = this
    let delivering = true
    const frames: Array<Frame.Frame> = []
    while (true) {
      const read = yield* Effect.result(self.transport.read)
      if (read._tag === "Failure") {
        self.inputEnd = read.failure
        if (delivering) {
          const after = self.endWith(new AbnormalClosure({ cause: read.failure }))
          if (after !== undefined) yield* after
        }
        return
      }
      if (!delivering) continue
      const violation = self.parser.push(read.success, frames)
      let end = frames.length
      for (let i = 0; i < frames.length; i++) {
        if (frames[i]!._tag === "Close") {
          end = i + 1
          self.closeReceived = true
          break
        }
      }
      if (end < frames.length) frames.length = end
      if (frames.length > 0 && self.handler !== undefined) {
        const after = self.handler.onFrames(frames)
        if (after !== undefined) yield* after
        frames.length = 0
      } else if (frames.length > 0) {
        self.usedQueue = true
        const offered = yield* Effect.result(ChannelsConfig.offerAll(self.incoming, self.config, "incoming", frames))
        frames.length = 0
        if (offered._tag === "Failure") {
          delivering = false
          self.closeSender.sendClose(CloseReason.CloseReason(1008, "Incoming queue overflow"))
          self.endWith(offered.failure)
          continue
        }
      }
      if (self.closeReceived) {
        delivering = false
        const after = self.endWith(Cause.Done())
        if (after !== undefined) yield* after
      } else if (violation !== undefined) {
        delivering = false
        // A bare raw session closes at once; an attached handler sends the Close itself, once the
        // messages that came before the violation are with the application.
        if (self.handler === undefined) {
          self.closeSender.sendClose(CloseReason.CloseReason(violation.code, CloseReason.truncateReason(violation.message)))
        }
        const after = self.endWith(fromViolation(violation))
        if (after !== undefined) yield* after
      }
    }
  }
}
