/**
 * `NodeTransport`: core's `Transport` over a `net.Socket` (or a `tls.TLSSocket`, which is one).
 *
 * - Reads are pulled: a chunk that arrives while nobody is reading is kept and the socket is
 *   paused until `read` takes it, so at most a few chunks plus Node's own readable buffer are
 *   held per connection, whatever the peer sends.
 * - Writes honour `socket.write`'s return value: a batch is written under `cork`/`uncork` (one
 *   `writev`), and `write` suspends until `drain` when the socket's buffer is over its
 *   high-water mark.
 * - Chunks the session hands back with `release` (every byte copied, no view kept) are freed at
 *   once by detaching their buffer: with large messages V8 would otherwise start a full GC for
 *   every ~64 MB of socket reads (their buffers are external memory).
 * - Ends are mapped to `TransportClosed`: `Eof` after the peer's FIN, `Reset` after a socket
 *   error (ECONNRESET, EPIPE, ...) or a close we did not ask for, `Destroyed` after `destroy`,
 *   `Ended` for a write after `end`.
 *
 * @module
 */
import { Errors, Transport } from "@effect-ws/core"
import { Deferred, Effect, Scope } from "effect"
import type * as Net from "node:net"

/** Options of `make`. */
export interface NodeTransportOptions {
  /**
   * Bytes that were read from the socket before it was handed over (the `head` of node:http's
   * `"upgrade"` event, or what followed a client's handshake response). They are the first
   * bytes `read` returns. Empty or absent: none.
   */
  readonly initialBytes?: Uint8Array
  /** Disable Nagle's algorithm (default `true`: frames go out as soon as they are written). */
  readonly noDelay?: boolean
  /**
   * Called with the socket from the transport's own `close` listener, before the transport
   * handles the close. The owner of the socket can pass this instead of keeping a `close`
   * listener of its own: with two listeners the socket keeps a listener array per connection.
   */
  readonly onClose?: (socket: Net.Socket) => void
}

/** A `Transport` over a Node socket, with the socket itself for diagnostics. */
export interface NodeTransport extends Transport.Transport {
  /** The underlying socket. Reading or writing it directly breaks the transport's ordering. */
  readonly socket: Net.Socket
  /** Chunks received and not yet taken by `read` (0, 1 or a few; the socket is paused meanwhile). */
  readonly bufferedInput: () => number
  /** Non-suspending `read` (see `Transport.poll`). */
  readonly poll: (wake: () => void) => Uint8Array | Errors.TransportClosed | undefined
  /** Allocates with `Buffer.allocUnsafe` (see `Transport.allocate`). */
  readonly allocate: (size: number) => Uint8Array
  /**
   * Frees a chunk the session is done with (see `Transport.release`) by detaching its
   * `ArrayBuffer`, when that is safe: the chunk came from a socket read (not `initialBytes`),
   * spans its whole buffer, and the transport is the socket's only `data` listener. Otherwise
   * it does nothing. Never throws.
   */
  readonly release: (chunk: Uint8Array) => void
}

const EOF = new Errors.TransportClosed({ reason: "Eof" })
const ENDED = new Errors.TransportClosed({ reason: "Ended" })
const DESTROYED = new Errors.TransportClosed({ reason: "Destroyed" })

/**
 * Wraps a connected socket as a `Transport` in the current scope; closing the scope destroys
 * the socket. Installs its own `error` listener (a socket error never crashes the process; it
 * becomes `Reset`). For half-close to mean what `Transport` says, create the socket with
 * `allowHalfOpen: true` (node:http's upgraded sockets already are); otherwise Node ends our
 * output by itself when the peer's FIN arrives. Never fails.
 */
export const make = (
  socket: Net.Socket,
  options: NodeTransportOptions = {}
): Effect.Effect<NodeTransport, never, Scope.Scope> =>
  Effect.flatMap(Effect.scope, (scope) => {
    const transport = makeUnsafe(socket, options)
    // `destroy` is cached by the transport: the finalizer allocates nothing more per connection.
    return Effect.as(Scope.addFinalizer(scope, transport.destroy), transport)
  })

/**
 * Wraps a socket as a `Transport` without a scope: the caller must run `destroy` when done.
 * Same behaviour as `make`. Never throws.
 */
export const makeUnsafe = (socket: Net.Socket, options: NodeTransportOptions = {}): NodeTransport => {
  const transport = new SocketTransport(socket)
  if (options.initialBytes !== undefined && options.initialBytes.length > 0) {
    transport.chunks = [options.initialBytes]
    transport.initialBytes = options.initialBytes
  }
  if (options.onClose !== undefined) transport.closeHook = options.onClose
  const owned = socket as TransportSocket
  owned[kTransport] = transport
  socket.on("data", onSocketData)
  socket.on("end", onSocketEnd)
  socket.on("error", onSocketError)
  socket.on("drain", onSocketDrain)
  socket.on("close", onSocketClose)
  if (options.noDelay !== false && typeof socket.setNoDelay === "function") socket.setNoDelay(true)
  if (socket.destroyed) transport.onClose()
  else if (transport.initialBytes !== undefined) socket.pause()
  else socket.resume()
  return transport
}

const kTransport: unique symbol = Symbol("effect-ws/NodeTransport")

/** A socket wrapped by a transport: the listeners below are shared by every socket and find it here. */
interface TransportSocket extends Net.Socket {
  [kTransport]?: SocketTransport
}

function onSocketData(this: TransportSocket, data: Buffer): void {
  this[kTransport]?.onData(data)
}
function onSocketEnd(this: TransportSocket): void {
  this[kTransport]?.onEnd()
}
function onSocketError(this: TransportSocket, error: Error): void {
  this[kTransport]?.fail(new Errors.TransportClosed({ reason: "Reset", cause: error }))
}
function onSocketDrain(this: TransportSocket): void {
  this[kTransport]?.wakeWriters()
}
function onSocketClose(this: TransportSocket): void {
  const transport = this[kTransport]
  if (transport === undefined) return
  if (transport.closeHook !== undefined) transport.closeHook(this)
  transport.onClose()
}

/** The rarely used state of a transport, created when first needed (ending, a full output buffer, `initialBytes`). */
class TransportExtra {
  /** Why the transport ended, once it did (first one wins). */
  endReason: Errors.TransportClosed | undefined = undefined
  endedDeferred: Deferred.Deferred<Errors.TransportClosed> | undefined = undefined
  drainWaiters: Array<() => void> | undefined = undefined
  endEffect: Effect.Effect<void> | undefined = undefined
  /** The `initialBytes` chunk, which came from elsewhere (node:http's `head`) and is never detached by `release`. */
  initialBytes: Uint8Array | undefined = undefined
}

/** Bits of `SocketTransport.flags`. */
const EOF_SEEN = 1
const OUTPUT_ENDED = 2

/** The state of one transport, in one object: no closures per connection beyond what is in use. */
class SocketTransport extends Transport.BufferedInput implements NodeTransport {
  readonly socket: Net.Socket
  /** Chunks received and not yet taken by `read`/`poll`; created when the first one arrives, then reused. */
  chunks: Array<Uint8Array> | undefined = undefined
  /** `EOF_SEEN` (the peer half-closed: `end` event) and `OUTPUT_ENDED` (we called `end`). */
  private flags = 0
  /** Why the connection broke (Reset) or was destroyed by us (Destroyed); first one wins. */
  private failure: Errors.TransportClosed | undefined = undefined
  private destroyEffect: Effect.Effect<void> | undefined = undefined
  /** The rarely used state, created when first needed. */
  private extra: TransportExtra | undefined = undefined
  /** `NodeTransportOptions.onClose`. */
  closeHook: ((socket: Net.Socket) => void) | undefined = undefined

  constructor(socket: Net.Socket) {
    super()
    this.socket = socket
  }

  private get more(): TransportExtra {
    return this.extra ??= new TransportExtra()
  }

  private get eof(): boolean {
    return (this.flags & EOF_SEEN) !== 0
  }

  private get outputEnded(): boolean {
    return (this.flags & OUTPUT_ENDED) !== 0
  }

  /** The `initialBytes` chunk, which came from elsewhere (node:http's `head`) and is never detached by `release`. */
  get initialBytes(): Uint8Array | undefined {
    return this.extra?.initialBytes
  }

  set initialBytes(bytes: Uint8Array | undefined) {
    this.more.initialBytes = bytes
  }

  bufferedInput(): number {
    return this.chunks === undefined ? 0 : this.chunks.length
  }

  private settle(reason: Errors.TransportClosed): void {
    const extra = this.more
    if (extra.endReason !== undefined) return
    extra.endReason = reason
    if (extra.endedDeferred !== undefined) Deferred.doneUnsafe(extra.endedDeferred, Effect.succeed(reason))
  }

  get ended(): Effect.Effect<Errors.TransportClosed> {
    return Effect.suspend(() => {
      const extra = this.more
      if (extra.endReason !== undefined) return Effect.succeed(extra.endReason)
      return Deferred.await(extra.endedDeferred ??= Deferred.makeUnsafe<Errors.TransportClosed>())
    })
  }

  wakeWriters(): void {
    const waiters = this.extra?.drainWaiters
    if (waiters === undefined || waiters.length === 0) return
    this.extra!.drainWaiters = undefined
    for (const wake of waiters) wake()
  }

  fail(reason: Errors.TransportClosed): void {
    if (this.failure === undefined) this.failure = reason
    if (this.chunks !== undefined) this.chunks.length = 0
    this.wakeReader()
    this.wakeWriters()
  }

  onData(data: Buffer): void {
    if (this.failure !== undefined || data.length === 0) return
    const chunks = this.chunks ??= []
    chunks.push(data)
    if (this.awaited) this.wakeReader()
    // Still not taken (no reader waiting): stop the flow until `read` takes it.
    if (chunks.length > 0) this.socket.pause()
  }

  onEnd(): void {
    this.flags |= EOF_SEEN
    this.wakeReader()
  }

  onClose(): void {
    if (this.failure === undefined) {
      // Closed without an error and without our destroy: orderly only if both sides ended.
      if (!(this.eof && this.outputEnded)) this.fail(new Errors.TransportClosed({ reason: "Reset" }))
    }
    this.socket.off("data", onSocketData)
    this.wakeReader()
    this.wakeWriters()
    this.settle(this.failure ?? EOF)
  }

  /** The next chunk, the reason input is over, or `undefined` when the reader must wait. */
  protected override tryRead(): Uint8Array | Errors.TransportClosed | undefined {
    if (this.failure !== undefined) return this.failure
    const chunks = this.chunks
    const chunk = chunks === undefined ? undefined : chunks.shift()
    if (chunk !== undefined) {
      if (chunks!.length === 0 && !this.eof) this.socket.resume()
      return chunk
    }
    return this.eof ? EOF : undefined
  }



  /**
   * Frees a chunk the session is done with by detaching its `ArrayBuffer` (its views become
   * empty): the memory is returned at once, instead of at the next full GC that V8 would start
   * for the external memory of every 64 KiB read. Only a chunk that came from this socket's
   * `data` event and spans its whole buffer is detached (Node allocates one buffer per read),
   * and only while the transport is the socket's only `data` listener (no one else can hold it).
   * Never throws.
   */
  release(chunk: Uint8Array): void {
    const buffer = chunk.buffer
    if (
      chunk.byteOffset !== 0 || chunk.byteLength !== buffer.byteLength || chunk === this.initialBytes ||
      !(buffer instanceof ArrayBuffer) || this.socket.listenerCount("data") !== 1
    ) return
    try {
      ;(buffer as DetachableBuffer).transfer?.(0)
    } catch {
      // Not detachable (Node marks some buffers so): it is left to the garbage collector.
    }
  }

  /** A prototype method, not a field: `Buffer.allocUnsafe` (it does not use `this`, so it may be passed on unbound). */
  allocate(size: number): Uint8Array {
    return Buffer.allocUnsafe(size)
  }

  private writeFailure(): Errors.TransportClosed | undefined {
    return this.failure ?? (this.outputEnded || this.socket.writableEnded ? ENDED : undefined)
  }

  private get waitDrain(): Effect.Effect<void, Errors.TransportClosed> {
    return Effect.callback<void, Errors.TransportClosed>((resume) => {
      const wake = (): void => {
        const problem = this.writeFailure()
        if (problem !== undefined) resume(Effect.fail(problem))
        else if (!this.socket.writableNeedDrain) resume(Effect.void)
        else (this.more.drainWaiters ??= []).push(wake)
      }
      ;(this.more.drainWaiters ??= []).push(wake)
      return Effect.sync(() => {
        const waiters = this.extra?.drainWaiters
        const index = waiters === undefined ? -1 : waiters.indexOf(wake)
        if (index !== -1) waiters!.splice(index, 1)
      })
    })
  }

  /** A prototype method, not a bound function: `Transport.write` is always called on the transport. */
  write(batch: ReadonlyArray<Uint8Array>): Effect.Effect<void, Errors.TransportClosed> {
    return Effect.suspend(() => {
      const problem = this.writeFailure()
      if (problem !== undefined) return Effect.fail(problem)
      const socket = this.socket
      let ok = true
      if (batch.length === 1) {
        ok = socket.write(batch[0]!)
      } else if (batch.length > 1) {
        socket.cork()
        for (const chunk of batch) {
          if (chunk.length > 0) ok = socket.write(chunk)
        }
        socket.uncork()
      }
      return ok && !socket.writableNeedDrain ? Effect.void : this.waitDrain
    })
  }

  get end(): Effect.Effect<void> {
    return this.more.endEffect ??= Effect.sync(() => {
      if (this.outputEnded || this.failure !== undefined) return
      this.flags |= OUTPUT_ENDED
      this.socket.end()
      this.wakeWriters()
    })
  }

  get destroy(): Effect.Effect<void> {
    return this.destroyEffect ??= Effect.sync(() => {
      if (this.failure === undefined) this.fail(DESTROYED)
      if (!this.socket.destroyed) this.socket.destroy()
      this.settle(this.failure ?? DESTROYED)
    })
  }
}

/** `ArrayBuffer.prototype.transfer` (ES2024; Node ≥ 21), which detaches the buffer it is called on. */
interface DetachableBuffer extends ArrayBuffer {
  readonly transfer?: (newLength?: number) => ArrayBuffer
}

