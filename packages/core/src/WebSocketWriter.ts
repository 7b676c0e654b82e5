/**
 * `WebSocketWriter`: the outgoing half of a session. Frames wait in a mailbox (a plain array,
 * not a queue object, to keep idle connections small); a writer fiber takes them in batches,
 * serializes each batch (coalescing small frames) and hands it to the transport in one write.
 * The fiber runs only while there is something to write: it is started (through the scheduler,
 * so frames sent in the same turn are written together) when the mailbox gets an item, and ends
 * once the mailbox is empty, so an idle connection holds no writer fiber. `start` ties the writer
 * to a scope: closing it interrupts a running writer fiber and no new one is started.
 * Pongs wait in a mailbox of their own (one Pong per Ping, in order, each batch's Pongs ahead of
 * its frames), and `pendingPongBytes`/`awaitPongRoom` let the session bound them. After a Close
 * frame is written the output is half-closed and every later send fails with `OutgoingClosed`.
 *
 * @module
 */
import { defineFlags } from "./internal/flags.ts"
import { dispatchersBy } from "./internal/dispatchers.ts"
import { Frame, Serializer } from "@effect-ws/codec"
import { Context, Deferred, Effect, Fiber, Scheduler, Scope } from "effect"
import type { ChannelConfig } from "./ChannelsConfig.ts"
import { ChannelOverflow, OutgoingClosed, type TransportClosed } from "./Errors.ts"
import type { Transport } from "./Transport.ts"

/** A flush request: completed once every frame enqueued before it was handed to the transport. */
interface FlushRequest {
  readonly _tag: "Flush"
  readonly done: Deferred.Deferred<void>
}

/** Wakes the writer for the Pongs waiting in their own mailbox (`PendingPongs`). */
interface PongSignal {
  readonly _tag: "PongSignal"
}
const PONG_SIGNAL: PongSignal = { _tag: "PongSignal" }

type Item = Frame.Frame | FlushRequest | PongSignal
const NO_ITEMS: ReadonlyArray<Item> = []

/** Largest number of frames serialized into one transport write. */
const MAX_BATCH = 1024

/** One dispatcher per scheduler, shared by every writer: wake-ups are deferred to it so frames sent together are written together. */
const dispatcherOf = dispatchersBy()

/**
 * The serializers of every writer, one masking and one not (instead of one per connection): an
 * unmasking serializer keeps no state, and the masking one only a pool of random bytes its
 * masking keys are drawn from, which any number of connections can share.
 */
const MASKING_SERIALIZER = new Serializer.Serializer({ mask: true })
const PLAIN_SERIALIZER = new Serializer.Serializer({ mask: false })

/** The wire size of a Pong with `length` payload bytes (a control payload is under 126 bytes: a 2-byte header, plus a 4-byte masking key when masked). */
const pongWireSize = (length: number, masked: boolean): number => (masked ? 6 : 2) + length

/** The first buffer of a burst of Pongs: room for one Pong of the largest payload (a length byte + 125). */
const MIN_PONG_BUFFER = 128

/**
 * The Pongs of a writer, created with the first Ping it answers and dropped once they are all
 * written (a writer that never answers a Ping has none). Each payload is copied, after a length
 * byte (a control payload is at most 125 bytes), into one buffer that grows by doubling: a burst
 * costs one buffer, not a copy and an array slot per Ping, and the memory is what `bytes` counts.
 */
class PendingPongs {
  /** `[length, ...payload]` per Pong not yet taken by a batch, in arrival order; `undefined` when none. */
  buffer: Uint8Array | undefined = undefined
  /** Bytes used in `buffer`. */
  used = 0
  /** Wire bytes of the Pongs accepted and not yet handed to the transport (waiting, or in the batch being written). */
  bytes = 0
  /** The reader waiting in `awaitPongRoom` (one at most: the reader fiber). */
  waiter: (() => void) | undefined = undefined
}

/** Bits of `WebSocketWriter.flags`. */
const SCHEDULED = 1
const CLOSED_FOR_SENDING = 2
const CLOSE_FRAME_ACCEPTED = 4
const STOPPED = 8
const STOPPED_FULLY = 16
const CLOSE_WRITTEN = 32
const MASK = 64

/** The rarely used state of a writer, created when first needed: an idle writer has none. */
class WriterExtra {
  /** Senders waiting for room (policy `"suspend"`). */
  roomWaiters: Array<() => void> | undefined = undefined
  /** Completed by `stop`; created on first use of `done` (most sessions never ask). */
  finished: Deferred.Deferred<void> | undefined = undefined
  /** Why the transport refused our bytes, if it did. */
  failure: TransportClosed | undefined = undefined
  /** `afterRun` bound to the writer, created when a writer fiber first had to wait. */
  boundAfterRun: (() => void) | undefined = undefined
  /**
   * Flush requests the writer fiber took into the batch it is writing, completed after the write,
   * or by `stop` when the fiber is interrupted during it (else their waiters would wait forever).
   */
  takenFlushes: Array<Deferred.Deferred<void>> | undefined = undefined
}

/**
 * The writer state of one connection. `enqueue` is called by senders; `run` is the writer
 * fiber's loop. Capacity counts accepted frames not yet written.
 */
export class WebSocketWriter {
  private readonly transport: Transport
  private readonly config: ChannelConfig
  /**
   * The mailbox: items not yet taken by the writer fiber (a plain array, no queue object per
   * connection); `undefined` when empty (an idle connection keeps no array).
   */
  private items: Array<Item> | undefined = undefined
  /** The writer fiber, while one runs (started by `schedule`, gone once the mailbox is empty). */
  private fiber: Fiber.Fiber<void> | undefined = undefined
  /** The services the writer fiber runs with and its dispatcher (set by `start`). */
  private services: Context.Context<never> | undefined = undefined
  private dispatcher: Scheduler.SchedulerDispatcher | undefined = undefined
  /** `startFiber` bound to this writer, created on first use. */
  private boundStart: (() => void) | undefined = undefined
  /** Frames accepted by `enqueue` (subject to capacity) and not yet written. */
  private pending = 0
  /** Of those, the ones still in the queue (not yet taken by the writer). */
  private countedQueued = 0
  /**
   * The writer's booleans, one bit each (accessors defined by `defineFlags` below), and whether
   * it masks (`MASK`): one field instead of seven per connection.
   */
  protected flags = 0
  /** The rarely used state (room waiters, `done`, a transport failure), created when first needed. */
  private extra: WriterExtra | undefined = undefined
  /** The Pongs waiting to be written (see `pong`), created with the first Ping answered and dropped once written. */
  private pongs: PendingPongs | undefined = undefined

  /** A start of the writer fiber is scheduled. */
  private declare scheduled: boolean
  /** Set when a Close was accepted or the writer stopped: nothing more is accepted. */
  private declare closedForSending: boolean
  /** A Close frame was accepted. */
  private declare closeFrameAccepted: boolean
  /** No writer fiber may start any more. */
  private declare stopped: boolean
  /** `stop` ran: every waiter was released and `done` completed. */
  private declare stoppedFully: boolean
  /** Whether a Close frame was written to the transport. */
  declare closeWritten: boolean

  constructor(transport: Transport, mask: boolean, config: ChannelConfig) {
    this.transport = transport
    this.config = config
    if (mask) this.flags = MASK
  }

  /** Why the transport refused our bytes, if it did. */
  get failure(): TransportClosed | undefined {
    return this.extra?.failure
  }

  set failure(failure: TransportClosed | undefined) {
    ;(this.extra ??= new WriterExtra()).failure = failure
  }

  /** Creates a writer (capacity is enforced by `enqueue`); it writes nothing before `start`. */
  static make(transport: Transport, mask: boolean, config: ChannelConfig): Effect.Effect<WebSocketWriter> {
    return Effect.sync(() => new WebSocketWriter(transport, mask, config))
  }

  /**
   * Ties the writer to the current scope: from now on the mailbox is written by a writer fiber
   * running with the current services; closing the scope interrupts it (and waits for it), then
   * the writer stops (later sends fail with `OutgoingClosed`, waiting flushes complete).
   */
  get start(): Effect.Effect<void, never, Scope.Scope> {
    return Effect.flatMap(Effect.context<Scope.Scope>(), (services) => {
      this.startWith(services)
      return Scope.addFinalizer(Context.get(services, Scope.Scope), Effect.suspend(() => this.shutdown()))
    })
  }

  /**
   * Like `start`, without a scope: writer fibers run with `services`, and the caller must run
   * `shutdown` when the writer must stop (a session does it in its own scope finalizer).
   */
  startWith(services: Context.Context<never>): void {
    this.services = services
    this.dispatcher = dispatcherOf(Context.get(services, Scheduler.Scheduler))
    this.schedule()
  }

  /** Stops the writer: no new writer fiber, a running one is interrupted (and awaited), then `done` completes. */
  shutdown(): Effect.Effect<void> {
    const fiber = this.fiber
    this.stopped = true
    if (fiber === undefined) {
      this.stop()
      return Effect.void
    }
    return Effect.ensuring(Fiber.interrupt(fiber), Effect.sync(() => this.stop()))
  }

  /** The writer fiber while it runs, for diagnostics (`undefined` while the writer is idle). */
  get currentFiber(): Fiber.Fiber<void> | undefined {
    return this.fiber
  }

  /** Adds an item to the mailbox and makes sure a writer fiber will take it. */
  private push(item: Item): void {
    ;(this.items ??= []).push(item)
    this.schedule()
  }

  /**
   * Schedules a writer fiber if the mailbox has items, unless one runs or is scheduled (deferred:
   * frames sent in the same turn are written as one batch).
   */
  private schedule(): void {
    if (
      this.items === undefined || this.fiber !== undefined || this.scheduled || this.stopped || this.dispatcher === undefined
    ) return
    this.scheduled = true
    this.dispatcher.scheduleTask(this.boundStart ??= () => this.startFiber(), 0)
  }

  private startFiber(): void {
    this.scheduled = false
    if (this.fiber !== undefined || this.stopped || this.items === undefined) return
    const fiber = Effect.runForkWith(this.services!)(Effect.gen({ self: this }, WebSocketWriter.loop))
    if (fiber.pollUnsafe() === undefined) {
      this.fiber = fiber
      // An observer, not `ensuring`: it costs nothing when the batch is written without waiting.
      const extra = this.extra ??= new WriterExtra()
      fiber.addObserver(extra.boundAfterRun ??= () => this.afterRun())
    } else {
      this.afterRun()
    }
  }

  /** Takes every item of the mailbox (which is then empty). */
  private drain(): ReadonlyArray<Item> {
    const items = this.items
    this.items = undefined
    return items ?? NO_ITEMS
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
    return Effect.suspend(() => this.stoppedFully ? Effect.void : Deferred.await((this.extra ??= new WriterExtra()).finished ??= Deferred.makeUnsafe<void>()))
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

  /**
   * Accepts the fragments of one message at once, so no other data frame can come between them;
   * against the capacity they count as one frame. Fails and suspends like `enqueue`.
   */
  enqueueFragments(frames: ReadonlyArray<Frame.Frame>): Effect.Effect<void, OutgoingClosed | ChannelOverflow> {
    return Effect.suspend(() => {
      if (this.closedForSending) return Effect.fail(new OutgoingClosed({ frameType: frames[0]?._tag ?? "Continuation" }))
      if (this.pending < this.config.capacity) {
        for (let i = 0; i < frames.length; i++) this.accept(frames[i]!, i === 0)
        return Effect.void
      }
      if (this.config.overflow === "fail") {
        return Effect.fail(new ChannelOverflow({ channel: "outgoing", capacity: this.config.capacity }))
      }
      return Effect.andThen(this.waitForRoom, this.enqueueFragments(frames))
    })
  }

  /** Accepts a frame synchronously if it can (not closed, room available); returns whether it did. */
  tryEnqueue(frame: Frame.Frame, bypassCapacity = false): boolean {
    if (this.closedForSending) return false
    if (!bypassCapacity && frame._tag !== "Close" && this.pending >= this.config.capacity) return false
    this.accept(frame, !bypassCapacity && frame._tag !== "Close")
    return true
  }

  /**
   * Answers a Ping (RFC 6455 §5.5.3): a Pong with a copy of `payload` (at most 125 bytes; the
   * caller's bytes are not kept) joins the Pongs waiting for the next batch, which go out in
   * arrival order ahead of that batch's frames, in the same write. Every Ping gets its own Pong:
   * the RFC allows answering only the latest, but Autobahn, `ws` and users who time round trips
   * expect one each. The queue is bounded by the caller (`pendingPongBytes`, `awaitPongRoom`):
   * the default session stops reading past its `maxPendingPongBytes`. Returns `false` (nothing
   * queued) once a Close was accepted or the writer stopped: no Pong may follow our Close.
   * Throws a `RangeError` for a payload over 125 bytes (the parser never hands out such a Ping).
   */
  pong(payload: Uint8Array): boolean {
    const length = payload.length
    if (length > Frame.MAX_CONTROL_PAYLOAD) throw new RangeError(`Pong payload of ${length} bytes exceeds 125`)
    if (this.closedForSending) return false
    const pongs = this.pongs ??= new PendingPongs()
    let buffer = pongs.buffer
    const used = pongs.used
    if (buffer === undefined) {
      buffer = pongs.buffer = new Uint8Array(MIN_PONG_BUFFER)
      this.push(PONG_SIGNAL) // the first Pong since the last batch took them: wake the writer
    } else if (used + 1 + length > buffer.length) {
      const grown = new Uint8Array(Math.max(buffer.length * 2, used + 1 + length))
      grown.set(buffer.subarray(0, used))
      buffer = pongs.buffer = grown
    }
    buffer[used] = length
    buffer.set(payload, used + 1)
    pongs.used = used + 1 + length
    pongs.bytes += pongWireSize(length, (this.flags & MASK) !== 0)
    return true
  }

  /**
   * Wire bytes of the Pongs accepted by `pong` and not yet handed to the transport: those waiting
   * for a batch and those of the batch being written (a write that waits for the transport to
   * drain still counts). 0 when there are none.
   */
  get pendingPongBytes(): number {
    return this.pongs?.bytes ?? 0
  }

  /**
   * Completes once `pendingPongBytes` is at most `limit` (the writer handed the Pongs over) or
   * the writer stopped. Interruptible; for one waiter at a time (the reader fiber).
   */
  awaitPongRoom(limit: number): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      const check = (): void => {
        const pongs = this.pongs
        if (pongs === undefined || pongs.bytes <= limit || this.stoppedFully) resume(Effect.void)
        else pongs.waiter = check
      }
      check()
      return Effect.sync(() => {
        const pongs = this.pongs
        if (pongs !== undefined && pongs.waiter === check) pongs.waiter = undefined
      })
    })
  }

  /** The Pongs of a batch (`bytes` wire bytes) were handed to the transport: wakes a reader waiting for room, drops the state once nothing is pending. */
  private pongsWritten(bytes: number): void {
    const pongs = this.pongs
    if (pongs === undefined) return
    pongs.bytes -= bytes
    const waiter = pongs.waiter
    pongs.waiter = undefined
    if (pongs.bytes === 0 && pongs.buffer === undefined && waiter === undefined) this.pongs = undefined
    if (waiter !== undefined) waiter()
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
    this.push(frame)
  }

  private get waitForRoom(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      const wake = () => resume(Effect.void)
      ;((this.extra ??= new WriterExtra()).roomWaiters ??= []).push(wake)
      return Effect.sync(() => {
        const i = this.extra?.roomWaiters?.indexOf(wake) ?? -1
        if (i >= 0) this.extra!.roomWaiters!.splice(i, 1)
      })
    })
  }

  private wakeSenders(): void {
    const waiters = this.extra?.roomWaiters
    if (waiters === undefined || waiters.length === 0) return
    this.extra!.roomWaiters = undefined
    for (const wake of waiters) wake()
  }

  /** Completes when every frame accepted before it has been handed to the transport, or the writer has stopped. Never fails. */
  get flush(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.stopped) return Effect.void
      const done = Deferred.makeUnsafe<void>()
      this.push({ _tag: "Flush", done })
      return Deferred.await(done)
    })
  }

  /** Stops accepting frames (later sends fail with `OutgoingClosed`) without writing a Close. */
  closeForSending(): void {
    this.closedForSending = true
    this.wakeSenders()
  }

  /** The writer fiber ended (or was interrupted): stop for good, or schedule the next one if items came meanwhile. */
  private afterRun(): void {
    this.fiber = undefined
    if (this.stopped) this.stop()
    else this.schedule()
  }

  /**
   * The writer fiber's body, a shared generator function (one per class, not one per connection):
   * take a batch, write it, repeat while the mailbox has items, until a Close is written or the
   * transport fails (then the writer stops).
   */
  private static *loop(this: WebSocketWriter): Generator<Effect.Effect<unknown, never, never>, void, never> {
    const self = this
    const frames: Array<Frame.Frame> = []
    const out: Array<Uint8Array> = []
    while (!self.stopped && self.items !== undefined) {
      const items = self.drain()
      // `takeAll` empties the mailbox, so every counted frame queued so far is in this batch.
      const counted = self.countedQueued
      self.countedQueued = 0
      let sawClose = false
      // The Pongs first, in arrival order (views of their buffer, which the serializer copies).
      let pongBytes = 0
      const pongs = self.pongs
      const pongBuffer = pongs?.buffer
      if (pongBuffer !== undefined) {
        const used = pongs!.used
        pongs!.buffer = undefined
        pongs!.used = 0
        const masked = (self.flags & MASK) !== 0
        for (let p = 0; p < used;) {
          const length = pongBuffer[p]!
          const start = p + 1
          p = start + length
          frames.push(Frame.make("Pong", true, false, false, false, pongBuffer.subarray(start, p)))
          pongBytes += pongWireSize(length, masked)
          if (frames.length >= MAX_BATCH) yield* self.writeFrames(frames, out)
        }
      }
      let i = 0
      for (; i < items.length; i++) {
        const item = items[i]!
        if (item._tag === "PongSignal") continue
        if (item._tag === "Flush") {
          // Kept on the writer, not in a local: `stop` completes them if this fiber is interrupted.
          ;((self.extra ??= new WriterExtra()).takenFlushes ??= []).push(item.done)
          continue
        }
        if (sawClose) continue // nothing is accepted after a Close; defensive
        frames.push(item)
        if (item._tag === "Close") sawClose = true
        if (frames.length >= MAX_BATCH) yield* self.writeFrames(frames, out)
      }
      if (frames.length > 0) yield* self.writeFrames(frames, out)
      if (pongBytes > 0) self.pongsWritten(pongBytes)
      self.pending -= counted
      if (self.failure === undefined && sawClose) {
        self.closeWritten = true
        self.stopped = true
        yield* self.transport.end
      }
      if (self.failure !== undefined) self.stopped = true
      self.completeTakenFlushes()
      self.wakeSenders()
    }
  }

  private writeFrames(frames: Array<Frame.Frame>, out: Array<Uint8Array>): Effect.Effect<void> {
    if (this.failure !== undefined) {
      frames.length = 0
      return Effect.void
    }
    ;((this.flags & MASK) !== 0 ? MASKING_SERIALIZER : PLAIN_SERIALIZER).serializeBatch(frames, out)
    const chunks = out.slice()
    frames.length = 0
    out.length = 0
    return Effect.catch(this.transport.write(chunks), (e) =>
      Effect.sync(() => {
        this.failure = e
      }))
  }

  /** Completes the flush requests taken into the batch (written, or never to be: the writer stopped). */
  private completeTakenFlushes(): void {
    const extra = this.extra
    const flushes = extra?.takenFlushes
    if (flushes === undefined) return
    extra!.takenFlushes = undefined
    for (const d of flushes) Deferred.doneUnsafe(d, Effect.void)
  }

  private stop(): void {
    if (this.stoppedFully) return
    this.stoppedFully = true
    this.stopped = true
    this.closedForSending = true
    this.wakeSenders()
    // Complete the flushes taken into a batch whose write was interrupted, then any still queued.
    this.completeTakenFlushes()
    for (const item of this.drain()) if (item._tag === "Flush") Deferred.doneUnsafe(item.done, Effect.void)
    // Pongs not written will never be: release them and a reader waiting for room.
    const pongs = this.pongs
    if (pongs !== undefined) {
      this.pongs = undefined
      pongs.waiter?.()
    }
    const finished = this.extra?.finished
    if (finished !== undefined) Deferred.doneUnsafe(finished, Effect.void)
  }
}

defineFlags(WebSocketWriter.prototype, {
  scheduled: SCHEDULED,
  closedForSending: CLOSED_FOR_SENDING,
  closeFrameAccepted: CLOSE_FRAME_ACCEPTED,
  stopped: STOPPED,
  stoppedFully: STOPPED_FULLY,
  closeWritten: CLOSE_WRITTEN
})
