/**
 * `Transport`: the byte channel a WebSocket session runs over (a TCP/TLS socket in the Node
 * adapter, an in-memory pipe in tests). Reads and writes apply backpressure; the output can be
 * half-closed; the whole channel can be destroyed; `ended` says why it stopped.
 *
 * @module
 */
import { Effect } from "effect"
import type { TransportClosed } from "./Errors.ts"

/**
 * A bidirectional byte channel. Implementations must deliver written bytes in order, and must
 * hand each chunk returned by `read` to the caller for good (the frame parser unmasks in place).
 */
export interface Transport {
  /**
   * The next chunk of input (never empty). Suspends until bytes arrive; a reader that does not
   * call `read` applies backpressure to the peer. Fails with `TransportClosed` once input is over:
   * `Eof` after the peer half-closed, `Reset` when the connection broke, `Destroyed` after `destroy`.
   */
  readonly read: Effect.Effect<Uint8Array, TransportClosed>
  /**
   * Writes the buffers in order (one `writev` where the transport supports it). Completes when the
   * transport has accepted them, suspending while its output buffer is above its high-water mark.
   * The transport may keep references to the buffers. Fails with `TransportClosed` (`Ended` after
   * `end`, `Reset`, `Destroyed`) when the output is no longer writable.
   */
  readonly write: (chunks: ReadonlyArray<Uint8Array>) => Effect.Effect<void, TransportClosed>
  /**
   * Optional non-suspending `read`, so a session needs no fiber waiting for input: the next chunk,
   * or why input is over (the `TransportClosed` that `read` would fail with), or `undefined` when
   * nothing is available yet. In that case `wake` is called once, later (from the transport's own
   * event), when `poll` would return something; a later `poll` replaces the `wake` registered
   * before. Same chunks, same order and same backpressure as `read`; use one or the other.
   */
  readonly poll?: (wake: () => void) => Uint8Array | TransportClosed | undefined
  /** Half-closes the output after the bytes already written (TCP FIN). Idempotent; never fails. */
  readonly end: Effect.Effect<void>
  /** Closes both directions at once, discarding buffered output. Idempotent; never fails. */
  readonly destroy: Effect.Effect<void>
  /**
   * Completes when the transport is fully closed (both directions ended, or destroyed, or reset),
   * with why: `Eof` for an orderly close, `Reset` or `Destroyed` otherwise.
   */
  readonly ended: Effect.Effect<TransportClosed>
  /**
   * Allocates a buffer for incoming bytes that the session fills completely before reading it
   * (a frame that spans chunks). Optional: a transport on a platform with uninitialised
   * allocation (Node's `Buffer.allocUnsafe`) saves zero-filling; the default is `new Uint8Array`.
   */
  readonly allocate?: (size: number) => Uint8Array
  /**
   * Hands back a chunk returned by `read`/`poll` that the session is done with: every byte was
   * copied or consumed and no view of it is kept anywhere. The transport may then free or reuse
   * its memory at once (the Node transport detaches the chunk's `ArrayBuffer`, which releases the
   * backing store without waiting for a full garbage collection). Optional; never fails.
   */
  readonly release?: (chunk: Uint8Array) => void
}

/**
 * The read side of a transport that buffers the chunks it receives (the Node socket transport,
 * the in-memory test pipe): `read` and `poll` over the subclass's `tryRead`. The transport calls
 * `wakeReader` when input arrives or ends; it resumes a waiting `read` and calls the `wake` of the
 * last `poll` that found nothing (once).
 */
export abstract class BufferedInput {
  /** Resumes the waiting `read`, if one waits (it tries again and keeps waiting if still empty). */
  protected reader: (() => void) | undefined = undefined
  /** The `wake` of the last `poll` that found nothing; called (once) by `wakeReader`. */
  protected pollWaker: (() => void) | undefined = undefined
  private readEffect: Effect.Effect<Uint8Array, TransportClosed> | undefined = undefined

  /** The next chunk, the reason input is over, or `undefined` when the reader must wait. */
  protected abstract tryRead(): Uint8Array | TransportClosed | undefined

  /** `Transport.poll`. */
  poll(wake: () => void): Uint8Array | TransportClosed | undefined {
    const next = this.tryRead()
    if (next === undefined) this.pollWaker = wake
    return next
  }

  /** `Transport.read` (one effect per transport, built on first use). */
  get read(): Effect.Effect<Uint8Array, TransportClosed> {
    return this.readEffect ??= Effect.suspend(() => {
      const first = this.tryRead()
      if (first instanceof Uint8Array) return Effect.succeed(first)
      if (first !== undefined) return Effect.fail(first)
      return Effect.callback<Uint8Array, TransportClosed>((resume) => {
        this.reader = () => {
          const next = this.tryRead()
          if (next === undefined) return
          this.reader = undefined
          resume(next instanceof Uint8Array ? Effect.succeed(next) : Effect.fail(next))
        }
        return Effect.sync(() => {
          this.reader = undefined
        })
      })
    })
  }

  /** Whether a `read` or a `poll` waits for input. */
  protected get awaited(): boolean {
    return this.reader !== undefined || this.pollWaker !== undefined
  }

  /** For the transport to call when input arrives or ends. */
  wakeReader(): void {
    const reader = this.reader
    if (reader !== undefined) reader()
    const waker = this.pollWaker
    if (waker !== undefined) {
      this.pollWaker = undefined
      waker()
    }
  }
}
