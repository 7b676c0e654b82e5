/**
 * The in-memory test kit: a connected pair of `Transport`s with configurable chunking, latency
 * and buffer size, so sessions (yours and ours) can be tested without a network. Latency uses
 * the Effect `Clock`, so `TestClock` drives it.
 *
 * @module
 */
import { Deferred, Duration, Effect } from "effect"
import { TransportClosed } from "./Errors.ts"
import { BufferedInput, type Transport } from "./Transport.ts"

/** How the in-memory pipe behaves; both directions use the same settings. */
export interface TestTransportOptions {
  /** Split every write into reads of at most this many bytes (default: one read per written buffer). */
  readonly chunkSize?: number
  /** Latency of every write: bytes reach the peer this long after `write` is called (default 0). */
  readonly delay?: Duration.Input
  /** Bytes buffered towards the peer above which `write` suspends until the peer reads (default 64 KiB). */
  readonly highWaterMark?: number
  /** Offer `Transport.poll` (default `true`); `false` leaves only `read`, like a transport that cannot poll. */
  readonly poll?: boolean
}

/** One end of an in-memory pipe: a `Transport` plus controls and counters for tests. */
export interface TestTransport extends Transport {
  /** Simulates a broken connection: both ends fail with `Reset`, buffered bytes are lost. */
  readonly reset: Effect.Effect<void>
  /** Total bytes this end has written so far. */
  readonly bytesWritten: () => number
  /** Bytes written by this end that the peer has not read yet. */
  readonly bufferedOutput: () => number
  /** Whether `end` or `destroy` was called on this end (or the pipe was reset). */
  readonly outputClosed: () => boolean
}

const DEFAULT_HIGH_WATER_MARK = 64 * 1024

/** One direction of the pipe. */
class Pipe extends BufferedInput {
  readonly chunks: Array<Uint8Array> = []
  head = 0
  buffered = 0
  /** The writer half-closed: the reader gets `Eof` once the buffer is drained. */
  eof = false
  /** The reader fails with this at once (reset or destroyed), buffered bytes discarded. */
  readFailure: TransportClosed | undefined = undefined
  /** The reader fails with this once the buffered bytes are read (the writer destroyed its end). */
  failureAfterDrain: TransportClosed | undefined = undefined
  /** The writer fails with this. */
  writeFailure: TransportClosed | undefined = undefined
  written = 0
  readonly drainWaiters = new Set<() => void>()
  readonly highWaterMark: number

  constructor(highWaterMark: number) {
    super()
    this.highWaterMark = highWaterMark
  }

  /** The next chunk, the reason input is over, or undefined when the reader must wait. */
  override tryRead(): Uint8Array | TransportClosed | undefined {
    if (this.readFailure !== undefined) return this.readFailure
    if (this.head < this.chunks.length) {
      const chunk = this.chunks[this.head]!
      this.chunks[this.head++] = EMPTY
      if (this.head === this.chunks.length) {
        this.chunks.length = 0
        this.head = 0
      }
      this.buffered -= chunk.length
      if (this.buffered <= this.highWaterMark) this.wakeWriters()
      return chunk
    }
    if (this.eof) return EOF
    return this.failureAfterDrain
  }

  wakeWriters(): void {
    if (this.drainWaiters.size === 0) return
    const waiters = Array.from(this.drainWaiters)
    this.drainWaiters.clear()
    for (const wake of waiters) wake()
  }

  /** Fails both sides of this direction; buffered bytes are discarded. */
  break(readFailure: TransportClosed, writeFailure: TransportClosed): void {
    if (this.readFailure === undefined) this.readFailure = readFailure
    if (this.writeFailure === undefined || this.writeFailure.reason === "Ended") this.writeFailure = writeFailure
    this.chunks.length = 0
    this.head = 0
    this.buffered = 0
    this.wakeReader()
    this.wakeWriters()
  }
}

const EMPTY = new Uint8Array(0)
const EOF = new TransportClosed({ reason: "Eof" })
const RESET = new TransportClosed({ reason: "Reset" })
const DESTROYED = new TransportClosed({ reason: "Destroyed" })
const ENDED = new TransportClosed({ reason: "Ended" })

interface End {
  readonly input: Pipe
  readonly output: Pipe
  readonly ended: Deferred.Deferred<TransportClosed>
}

const settle = (end: End, reason: TransportClosed): void => {
  Deferred.doneUnsafe(end.ended, Effect.succeed(reason))
}

const checkOrderlyEnd = (end: End): void => {
  if (end.input.eof && end.output.eof) settle(end, EOF)
}

const makeEnd = (self: End, peer: End, options: TestTransportOptions | undefined): TestTransport => {
  const { input, output } = self
  const chunkSize = options?.chunkSize !== undefined && options.chunkSize > 0 ? Math.floor(options.chunkSize) : 0
  const delay = options?.delay === undefined ? undefined : Duration.fromInputUnsafe(options.delay)

  const waitDrain: Effect.Effect<void, TransportClosed> = Effect.callback<void, TransportClosed>((resume) => {
    const wake = () => {
      const failure = output.writeFailure
      if (failure !== undefined && failure.reason !== "Ended") resume(Effect.fail(failure))
      else if (output.buffered <= output.highWaterMark || output.readFailure !== undefined) resume(Effect.void)
      else output.drainWaiters.add(wake)
    }
    output.drainWaiters.add(wake)
    return Effect.sync(() => {
      output.drainWaiters.delete(wake)
    })
  })

  const push = (chunks: ReadonlyArray<Uint8Array>): Effect.Effect<void, TransportClosed> => {
    const failure = output.writeFailure
    if (failure !== undefined) return Effect.fail(failure)
    for (const chunk of chunks) {
      const step = chunkSize > 0 ? chunkSize : chunk.length
      for (let i = 0; i < chunk.length; i += step) {
        const piece = chunk.slice(i, Math.min(chunk.length, i + step))
        output.chunks.push(piece)
        output.buffered += piece.length
        output.written += piece.length
      }
    }
    output.wakeReader()
    return output.buffered > output.highWaterMark ? waitDrain : Effect.void
  }

  const write = (chunks: ReadonlyArray<Uint8Array>): Effect.Effect<void, TransportClosed> =>
    Effect.suspend(() => {
      if (output.writeFailure !== undefined) return Effect.fail(output.writeFailure)
      return delay === undefined || Duration.isZero(delay)
        ? push(chunks)
        : Effect.andThen(Effect.sleep(delay), Effect.suspend(() => push(chunks)))
    })

  const end = Effect.sync(() => {
    if (output.writeFailure !== undefined) return
    output.writeFailure = ENDED
    output.eof = true
    // Settle first: waking the peer's reader may run its fiber at once.
    checkOrderlyEnd(self)
    checkOrderlyEnd(peer)
    output.wakeReader()
  })

  // Like a socket's destroy: our input is dropped at once; bytes we already wrote still reach the
  // peer, followed by Reset (or Eof when we had half-closed before).
  const destroy = Effect.sync(() => {
    if (output.writeFailure !== undefined && output.writeFailure.reason !== "Ended") return
    input.break(DESTROYED, RESET)
    output.writeFailure = DESTROYED
    if (output.failureAfterDrain === undefined) output.failureAfterDrain = RESET
    output.wakeReader()
    output.wakeWriters()
    settle(self, DESTROYED)
    settle(peer, RESET)
  })

  const reset = Effect.sync(() => {
    input.break(RESET, RESET)
    output.break(RESET, RESET)
    settle(self, RESET)
    settle(peer, RESET)
  })

  const transport: TestTransport = {
    read: input.read,
    write,
    end,
    destroy,
    ended: Deferred.await(self.ended),
    reset,
    bytesWritten: () => output.written,
    bufferedOutput: () => output.buffered,
    outputClosed: () => output.writeFailure !== undefined
  }
  return options?.poll === false ? transport : { ...transport, poll: (wake) => input.poll(wake) }
}

/**
 * A connected pair of in-memory transports: bytes written to one are read from the other.
 * Typically one end runs the session under test and the other a test peer (or another session).
 */
export const makePair = (
  options?: TestTransportOptions
): Effect.Effect<readonly [TestTransport, TestTransport]> =>
  Effect.sync(() => {
    const hwm = options?.highWaterMark ?? DEFAULT_HIGH_WATER_MARK
    const ab = new Pipe(hwm)
    const ba = new Pipe(hwm)
    const a: End = { input: ba, output: ab, ended: Deferred.makeUnsafe<TransportClosed>() }
    const b: End = { input: ab, output: ba, ended: Deferred.makeUnsafe<TransportClosed>() }
    return [makeEnd(a, b, options), makeEnd(b, a, options)] as const
  })
