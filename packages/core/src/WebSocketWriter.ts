/**
 * `WebSocketWriter`: the outgoing half of a session. Frames wait in a queue; one fiber takes
 * them in batches, serializes each batch (coalescing small frames) and hands it to the
 * transport in one write. After a Close frame is written the output is half-closed and every
 * later send fails with `OutgoingClosed`.
 *
 * @module
 */
import { type Frame, Serializer } from "@effect-ws/codec"
import { Deferred, Effect, Queue } from "effect"
import type { ChannelConfig } from "./ChannelsConfig.ts"
import { ChannelOverflow, OutgoingClosed, type TransportClosed } from "./Errors.ts"
import type { Transport } from "./Transport.ts"

/** A flush request: completed once every frame enqueued before it was handed to the transport. */
interface FlushRequest {
  readonly _tag: "Flush"
  readonly done: Deferred.Deferred<void>
}

type Item = Frame.Frame | FlushRequest

/** Largest number of frames serialized into one transport write. */
const MAX_BATCH = 1024

/**
 * The writer state of one connection. `enqueue` is called by senders; `run` is the writer
 * fiber's loop. Capacity counts accepted frames not yet written.
 */
export class WebSocketWriter {
  private readonly transport: Transport
  private readonly serializer: Serializer.Serializer
  private readonly config: ChannelConfig
  private readonly queue: Queue.Queue<Item>
  /** Frames accepted by `enqueue` (subject to capacity) and not yet written. */
  private pending = 0
  /** Of those, the ones still in the queue (not yet taken by the writer). */
  private countedQueued = 0
  private readonly roomWaiters: Array<() => void> = []
  /** Set when a Close was accepted or the writer stopped: nothing more is accepted. */
  private closedForSending = false
  private closeFrameAccepted = false
  private stopped = false
  private readonly finished: Deferred.Deferred<void>
  /** Why the transport refused our bytes, if it did. */
  failure: TransportClosed | undefined = undefined
  /** Whether a Close frame was written to the transport. */
  closeWritten = false

  constructor(transport: Transport, mask: boolean, config: ChannelConfig, queue: Queue.Queue<Item>) {
    this.transport = transport
    this.serializer = new Serializer.Serializer({ mask })
    this.config = config
    this.queue = queue
    this.finished = Deferred.makeUnsafe<void>()
  }

  /** Creates a writer with an unbounded internal queue (capacity is enforced by `enqueue`). */
  static make(transport: Transport, mask: boolean, config: ChannelConfig): Effect.Effect<WebSocketWriter> {
    return Effect.map(Queue.unbounded<Item>(), (queue) => new WebSocketWriter(transport, mask, config, queue))
  }

  /** Whether a Close frame was accepted (or the writer stopped), so no frame is accepted any more. */
  get isClosedForSending(): boolean {
    return this.closedForSending
  }

  /** Whether a Close frame has been accepted for sending. */
  get closeSent(): boolean {
    return this.closeFrameAccepted
  }

  /** Completes when the writer loop has stopped (after writing a Close, or on a transport failure). */
  get done(): Effect.Effect<void> {
    return Deferred.await(this.finished)
  }

  /**
   * Accepts a frame for writing. Fails with `OutgoingClosed` after a Close was accepted or the
   * writer stopped. When the queue is full, suspends (policy `"suspend"`) or fails with
   * `ChannelOverflow` (policy `"fail"`). `bypassCapacity` is for Close and Pong frames the
   * session itself sends, which must never wait behind a full queue.
   */
  enqueue(frame: Frame.Frame, bypassCapacity = false): Effect.Effect<void, OutgoingClosed | ChannelOverflow> {
    return Effect.suspend(() => {
      if (this.closedForSending) return Effect.fail(new OutgoingClosed({ frameType: frame._tag }))
      if (bypassCapacity || frame._tag === "Close" || this.pending < this.config.capacity) {
        this.accept(frame, !bypassCapacity && frame._tag !== "Close")
        return Effect.void
      }
      if (this.config.overflow === "fail") {
        return Effect.fail(new ChannelOverflow({ channel: "outgoing", capacity: this.config.capacity }))
      }
      return Effect.andThen(this.waitForRoom, this.enqueue(frame))
    })
  }

  /** Accepts a frame synchronously if it can (not closed, room available); returns whether it did. */
  tryEnqueue(frame: Frame.Frame, bypassCapacity = false): boolean {
    if (this.closedForSending) return false
    if (!bypassCapacity && frame._tag !== "Close" && this.pending >= this.config.capacity) return false
    this.accept(frame, !bypassCapacity && frame._tag !== "Close")
    return true
  }

  private accept(frame: Frame.Frame, counted: boolean): void {
    if (frame._tag === "Close") {
      this.closedForSending = true
      this.closeFrameAccepted = true
    }
    if (counted) {
      this.pending++
      this.countedQueued++
    }
    Queue.offerUnsafe(this.queue, frame)
  }

  private readonly waitForRoom: Effect.Effect<void> = Effect.callback<void>((resume) => {
    const wake = () => resume(Effect.void)
    this.roomWaiters.push(wake)
    return Effect.sync(() => {
      const i = this.roomWaiters.indexOf(wake)
      if (i >= 0) this.roomWaiters.splice(i, 1)
    })
  })

  private wakeSenders(): void {
    const waiters = this.roomWaiters.splice(0, this.roomWaiters.length)
    for (const wake of waiters) wake()
  }

  /** Completes when every frame accepted before it has been handed to the transport, or the writer has stopped. Never fails. */
  get flush(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.stopped) return Effect.void
      const done = Deferred.makeUnsafe<void>()
      Queue.offerUnsafe(this.queue, { _tag: "Flush", done })
      return Deferred.await(done)
    })
  }

  /** Stops accepting frames (later sends fail with `OutgoingClosed`) without writing a Close. */
  closeForSending(): void {
    this.closedForSending = true
    this.wakeSenders()
  }

  /** The writer fiber: take a batch, write it, repeat until a Close is written or the transport fails. */
  get run(): Effect.Effect<void> {
    const self = this
    return Effect.gen(function*() {
      const frames: Array<Frame.Frame> = []
      const flushes: Array<Deferred.Deferred<void>> = []
      const out: Array<Uint8Array> = []
      while (!self.stopped) {
        const items = yield* Queue.takeAll(self.queue)
        // `takeAll` drains the queue, so every counted frame queued so far is in this batch.
        const counted = self.countedQueued
        self.countedQueued = 0
        let sawClose = false
        let i = 0
        for (; i < items.length; i++) {
          const item = items[i]!
          if (item._tag === "Flush") {
            flushes.push(item.done)
            continue
          }
          if (sawClose) continue // nothing is accepted after a Close; defensive
          frames.push(item)
          if (item._tag === "Close") sawClose = true
          if (frames.length >= MAX_BATCH) yield* self.writeFrames(frames, out)
        }
        if (frames.length > 0) yield* self.writeFrames(frames, out)
        self.pending -= counted
        if (self.failure === undefined && sawClose) {
          self.closeWritten = true
          self.stopped = true
          yield* self.transport.end
        }
        if (self.failure !== undefined) self.stopped = true
        for (const d of flushes) Deferred.doneUnsafe(d, Effect.void)
        flushes.length = 0
        self.wakeSenders()
      }
    }).pipe(Effect.ensuring(Effect.sync(() => this.stop())))
  }

  private writeFrames(frames: Array<Frame.Frame>, out: Array<Uint8Array>): Effect.Effect<void> {
    if (this.failure !== undefined) {
      frames.length = 0
      return Effect.void
    }
    this.serializer.serializeBatch(frames, out)
    const chunks = out.slice()
    frames.length = 0
    out.length = 0
    return Effect.catch(this.transport.write(chunks), (e) =>
      Effect.sync(() => {
        this.failure = e
      }))
  }

  private stop(): void {
    this.stopped = true
    this.closedForSending = true
    this.wakeSenders()
    // Complete any flush still queued.
    let item = Queue.takeUnsafe(this.queue)
    let guard = 0
    while (item !== undefined && guard++ < 1_000_000) {
      if (item._tag === "Success" && item.value._tag === "Flush") Deferred.doneUnsafe(item.value.done, Effect.void)
      if (item._tag !== "Success") break
      item = Queue.takeUnsafe(this.queue)
    }
    Deferred.doneUnsafe(this.finished, Effect.void)
  }
}
