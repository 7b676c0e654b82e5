/**
 * `WebSocketReader`: the incoming half of a session. A reader fiber reads transport chunks,
 * parses every complete frame in a chunk synchronously and offers them to the incoming queue as
 * one batch (a bounded queue then pushes back on the transport). On a protocol violation it asks
 * for the right Close (1002/1007/1009) and fails the queue after the frames parsed before it.
 *
 * Over a transport with `poll`, the reader fiber runs only while there is input to handle: the
 * reader polls synchronously (at start, and in the transport's wake-up) and starts a fiber only
 * for a chunk it got; the fiber ends when no chunk is available, so an idle connection holds no
 * reader fiber (and never had one if no byte came). Over a transport without `poll`, one reader
 * fiber waits on `read` for the whole session. Either way `start` ties the reader to a scope:
 * closing it interrupts a running reader fiber and no new one is started.
 *
 * A chunk of which no frame is a view (the parser copied every byte: frames spanning chunks) is
 * handed back to the transport's `release`, if it has one, as soon as it is parsed.
 *
 * A session built on top (the default session) can instead `attach` a `FrameHandler`: the reader
 * then hands each batch straight to it, in its own fiber, with no queue in between.
 *
 * @module
 */
import { defineFlags } from "./internal/flags.ts"
import { dispatchersBy } from "./internal/dispatchers.ts"
import { CloseReason, type Frame, FrameParser } from "@effect-ws/codec"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Queue, Scheduler, Scope } from "effect"
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

/** One dispatcher per scheduler, shared by every reader (for `startSoon`). */
const dispatcherOf = dispatchersBy()

/** Bits of `WebSocketReader.flags`. */
const USED_QUEUE = 1
const END_DELIVERED = 2
const DELIVERING = 4
const RUNNING = 8
const STOPPED = 16
const SHUTTING_DOWN = 32
const FINISHED = 64
const CLOSE_RECEIVED = 128

/** The rarely used state of a reader, created when first needed: an idle reader attached to a handler has none. */
class ReaderExtra {
  /** The incoming queue, created on first use (a session that attaches a handler never needs it). */
  queue: Queue.Queue<Frame.Frame, RawIncomingError | Cause.Done> | undefined = undefined
  /** Completed by `finish`; created on first use of `done` (most sessions never ask). */
  finished: Deferred.Deferred<void> | undefined = undefined
  /** `fiberExited` bound to the reader, created when a reader fiber first had to wait. */
  onFiberExit: ((exit: Exit.Exit<void>) => void) | undefined = undefined
  /** Why the transport input ended, once it did. */
  inputEnd: TransportClosed | undefined = undefined
}

/** The reader state of one connection; `start` runs it in a scope. */
export class WebSocketReader {
  private readonly transport: Transport
  readonly parser: FrameParser.FrameParser
  private readonly config: ChannelsConfig.ChannelConfig
  /** The services the queue is created with (those of the fiber that made the session). */
  private readonly services: Context.Context<never>
  private readonly closeSender: SendClose
  private handler: FrameHandler | undefined = undefined
  /** The reader's booleans, one bit each (accessors defined by `defineFlags` below): one field instead of eight per connection. */
  protected flags = DELIVERING
  /** The reader fiber, while one runs. */
  private fiber: Fiber.Fiber<void> | undefined = undefined
  /** Wakes the reader when the transport has input again (handed to `Transport.poll`; a bound function keeps no closure context). */
  private readonly wake: () => void = this.startNow.bind(this)
  /** The rarely used state (the incoming queue, `done`, the input's end), created when first needed. */
  private extra: ReaderExtra | undefined = undefined

  /** Something (a frame or the end) went to the queue: a handler can no longer take over. */
  private declare usedQueue: boolean
  /** The end of the frame stream was delivered (queue ended/failed, or `onEnd` called). */
  private declare endDelivered: boolean
  /** Frames are still delivered (false after a Close, a violation or an overflow: the rest is discarded). */
  private declare delivering: boolean
  /** A reader fiber is being started or runs (set before `fiber` is known). */
  private declare running: boolean
  /** No reader fiber may start any more (the input ended, or the scope closed). */
  private declare stopped: boolean
  /** The scope is closing (`shutdown` finishes the reader itself). */
  private declare shuttingDown: boolean
  /** `finish` ran. */
  private declare finishedFlag: boolean
  /** A Close frame was received (it is the last frame delivered). */
  declare closeReceived: boolean

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

  /** Why the transport input ended, once it did. */
  get inputEnd(): TransportClosed | undefined {
    return this.extra?.inputEnd
  }

  private get more(): ReaderExtra {
    return this.extra ??= new ReaderExtra()
  }

  /** The incoming queue (frames as received), created on first access. */
  get incoming(): Queue.Queue<Frame.Frame, RawIncomingError | Cause.Done> {
    return this.more.queue ??= Effect.runSyncWith(this.services)(
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
    return Effect.suspend(() => this.finishedFlag ? Effect.void : Deferred.await(this.more.finished ??= Deferred.makeUnsafe<void>()))
  }

  /**
   * Starts reading in the current scope, at once (a reader fiber runs with the current services,
   * over a polling transport only when a chunk is there).
   * Delivers frames until a Close frame (then the queue ends), a violation (Close sent, queue
   * failed) or the end of input without a Close (queue failed with `AbnormalClosure`). Afterwards
   * it keeps reading and discarding until the input ends, so the peer's EOF is observed; the
   * session bounds that wait with its close timeout. Closing the scope interrupts a running reader
   * fiber; takers of a queue not ended yet then fail with `AbnormalClosure` (`Destroyed`).
   */
  get start(): Effect.Effect<void, never, Scope.Scope> {
    return Effect.flatMap(Effect.scope, (scope) =>
      Effect.andThen(
        Scope.addFinalizer(scope, Effect.suspend(() => this.shutdown())),
        Effect.sync(() => this.startNow())
      ))
  }

  /**
   * Like `start`, without a scope: reading starts at once, and the caller must run `shutdown`
   * when the reader must stop (a session does it in its own scope finalizer). Also the wake-up
   * handed to `Transport.poll`: it does nothing while a reader fiber runs or after the reader stopped.
   */
  startNow(): void {
    if (this.running || this.stopped) return
    const transport = this.transport
    if (transport.poll === undefined) return this.runFiber(undefined)
    // Poll here: a fiber only when there is something to handle (`wake` calls this again later).
    const first = transport.poll(this.wake)
    if (first !== undefined) this.runFiber(first)
  }

  /**
   * Like `startNow`, at the next scheduler turn (`RawWebSocket.make` starts its reader so): a
   * handler attached in the same step (a default session made right after its raw session)
   * receives every frame, also those of bytes that were waiting before (a client's bytes right
   * after the 101 head, a server's after the upgrade request), so that it, not the bare raw
   * session, answers a violation among them (after the messages before it, see `FrameHandler`).
   */
  startSoon(): void {
    if (this.running || this.stopped) return
    dispatcherOf(Context.get(this.services, Scheduler.Scheduler)).scheduleTask(this.wake, 0)
  }

  /** The reader fiber while it runs, for diagnostics (`undefined` while the reader waits for input or has stopped). */
  get currentFiber(): Fiber.Fiber<void> | undefined {
    return this.fiber
  }

  /**
   * Runs the reader fiber, `first` being what `poll` returned (undefined without `poll`): until the
   * input is over, or (with `poll`) until no chunk is available.
   */
  private runFiber(first: Uint8Array | TransportClosed | undefined): void {
    this.running = true
    const fiber = Effect.runForkWith(this.services)(Effect.gen(() => WebSocketReader.loop.call(this, first)))
    if (fiber.pollUnsafe() === undefined) {
      this.fiber = fiber
      // An observer, not `onExit`: it costs nothing when the input is handled without waiting.
      fiber.addObserver(this.more.onFiberExit ??= (exit) => this.fiberExited(exit))
    } else {
      this.running = false
    }
  }

  /** A reader fiber that waited ended. Interrupted other than by `shutdown`: finish here (in a fiber of its own). */
  private fiberExited(exit: Exit.Exit<void>): void {
    this.fiber = undefined
    this.running = false
    if (Exit.isFailure(exit) && !this.shuttingDown) {
      const after = this.finish()
      if (after !== undefined) Effect.runForkWith(this.services)(after)
    }
  }

  /** Stops the reader: no new reader fiber, a running one is interrupted (and awaited), then it finishes (see `start`). */
  shutdown(): Effect.Effect<void> {
    this.stopped = true
    this.shuttingDown = true
    const fiber = this.fiber
    const finish = Effect.suspend(() => this.finish() ?? Effect.void)
    return fiber === undefined ? finish : Effect.andThen(Fiber.interrupt(fiber), finish)
  }

  /** The reader has stopped for good: end the frame stream if it was still delivering, complete `done`. */
  private finish(): Effect.Effect<void> | undefined {
    if (this.finishedFlag) return undefined
    this.finishedFlag = true
    this.stopped = true
    // A frame left half-received: its buffer is freed now, not whenever the next GC comes.
    this.parser.discard()
    // Interrupted (scope closed) while still delivering: takers must not wait forever.
    const after = this.endWith(new AbnormalClosure({ cause: new TransportClosed({ reason: "Destroyed" }) }))
    const finished = this.extra?.finished
    if (finished !== undefined) Deferred.doneUnsafe(finished, Effect.void)
    return after
  }

  /** The loop body, a shared generator function (one per class, not one per connection); starts with `first` if given. */
  private static *loop(
    this: WebSocketReader,
    first: Uint8Array | TransportClosed | undefined
  ): Generator<Effect.Effect<unknown, never, never>, void, never> {
    const self = this
    const transport = self.transport
    const release = transport.release
    const frames: Array<Frame.Frame> = []
    let next = first // already taken from the transport by `startNow`
    while (!self.stopped) {
      let chunk: Uint8Array | TransportClosed | undefined = next
      next = undefined
      if (chunk !== undefined) {
        // `first`, handled below.
      } else if (transport.poll !== undefined) {
        chunk = transport.poll(self.wake)
        if (chunk === undefined) return // nothing to read: this fiber ends, `wake` starts the next
      } else {
        const read = yield* Effect.result(transport.read)
        chunk = read._tag === "Success" ? read.success : read.failure
      }
      if (!(chunk instanceof Uint8Array)) {
        self.more.inputEnd = chunk
        self.stopped = true
        if (self.delivering) {
          const after = self.endWith(new AbnormalClosure({ cause: chunk }))
          if (after !== undefined) yield* after
        }
        const after = self.finish() // the end was delivered above: this only completes `done`
        if (after !== undefined) yield* after
        return
      }
      if (!self.delivering) {
        if (release !== undefined) release.call(transport, chunk) // discarded unread
        continue
      }
      const violation = self.parser.push(chunk, frames)
      // Every byte was copied (frames spanning chunks) or consumed: the transport may free it now.
      if (release !== undefined && !self.parser.viewsLastChunk) release.call(transport, chunk)
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
          self.delivering = false
          self.closeSender.sendClose(CloseReason.CloseReason(1008, "Incoming queue overflow"))
          self.endWith(offered.failure)
          continue
        }
      }
      if (self.closeReceived) {
        self.delivering = false
        const after = self.endWith(Cause.Done())
        if (after !== undefined) yield* after
      } else if (violation !== undefined) {
        self.delivering = false
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

defineFlags(WebSocketReader.prototype, {
  usedQueue: USED_QUEUE,
  endDelivered: END_DELIVERED,
  delivering: DELIVERING,
  running: RUNNING,
  stopped: STOPPED,
  shuttingDown: SHUTTING_DOWN,
  finishedFlag: FINISHED,
  closeReceived: CLOSE_RECEIVED
})
