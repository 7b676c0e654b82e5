/**
 * `WebSocketReader`: the incoming half of a session. One fiber reads transport chunks, parses
 * every complete frame in a chunk synchronously and offers them to the incoming queue as one
 * batch (a bounded queue then pushes back on the transport). On a protocol violation it asks
 * for the right Close (1002/1007/1009) and fails the queue after the frames parsed before it.
 *
 * @module
 */
import { CloseReason, type Frame, FrameParser } from "@effect-ws/codec"
import { Cause, Deferred, Effect, Queue } from "effect"
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

/** Sends a Close frame on behalf of the reader (a violation, an overflow); returns whether it was accepted. */
export type SendClose = (reason: CloseReason.CloseReason) => boolean

/** The reader state of one connection; `run` is the reader fiber's loop. */
export class WebSocketReader {
  private readonly transport: Transport
  readonly parser: FrameParser.FrameParser
  private readonly queue: Queue.Queue<Frame.Frame, RawIncomingError | Cause.Done>
  private readonly config: ChannelsConfig.ChannelConfig
  private readonly sendClose: SendClose
  private readonly finished = Deferred.makeUnsafe<void>()
  /** A Close frame was received (it is the last frame delivered). */
  closeReceived = false
  /** Why the transport input ended, once it did. */
  inputEnd: TransportClosed | undefined = undefined

  constructor(
    transport: Transport,
    parser: FrameParser.FrameParser,
    queue: Queue.Queue<Frame.Frame, RawIncomingError | Cause.Done>,
    config: ChannelsConfig.ChannelConfig,
    sendClose: SendClose
  ) {
    this.transport = transport
    this.parser = parser
    this.queue = queue
    this.config = config
    this.sendClose = sendClose
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
    const self = this
    return Effect.gen(function*() {
      let delivering = true
      const frames: Array<Frame.Frame> = []
      while (true) {
        const read = yield* Effect.result(self.transport.read)
        if (read._tag === "Failure") {
          self.inputEnd = read.failure
          if (delivering) yield* Queue.fail(self.queue, new AbnormalClosure({ cause: read.failure }))
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
        if (frames.length > 0) {
          const offered = yield* Effect.result(ChannelsConfig.offerAll(self.queue, self.config, "incoming", frames))
          frames.length = 0
          if (offered._tag === "Failure") {
            delivering = false
            self.sendClose(CloseReason.CloseReason(1008, "Incoming queue overflow"))
            yield* Queue.fail(self.queue, offered.failure)
            continue
          }
        }
        if (self.closeReceived) {
          delivering = false
          yield* Queue.end(self.queue)
        } else if (violation !== undefined) {
          delivering = false
          self.sendClose(CloseReason.CloseReason(violation.code, CloseReason.truncateReason(violation.message)))
          yield* Queue.fail(self.queue, fromViolation(violation))
        }
      }
    }).pipe(Effect.ensuring(Effect.sync(() => {
      // Interrupted (scope closed) while still delivering: takers must not wait forever.
      if (this.queue.state._tag === "Open") {
        Queue.failCauseUnsafe(this.queue, Cause.fail(new AbnormalClosure({ cause: new TransportClosed({ reason: "Destroyed" }) })))
      }
      Deferred.doneUnsafe(this.finished, Effect.void)
    })))
  }
}
