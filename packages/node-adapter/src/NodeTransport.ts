/**
 * `NodeTransport`: core's `Transport` over a `net.Socket` (or a `tls.TLSSocket`, which is one).
 *
 * - Reads are pulled: a chunk that arrives while nobody is reading is kept and the socket is
 *   paused until `read` takes it, so at most a few chunks plus Node's own readable buffer are
 *   held per connection, whatever the peer sends.
 * - Writes honour `socket.write`'s return value: a batch is written under `cork`/`uncork` (one
 *   `writev`), and `write` suspends until `drain` when the socket's buffer is over its
 *   high-water mark.
 * - Ends are mapped to `TransportClosed`: `Eof` after the peer's FIN, `Reset` after a socket
 *   error (ECONNRESET, EPIPE, ...) or a close we did not ask for, `Destroyed` after `destroy`,
 *   `Ended` for a write after `end`.
 *
 * @module
 */
import { Errors, type Transport } from "@effect-ws/core"
import { Deferred, Effect, type Scope } from "effect"
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
}

/** A `Transport` over a Node socket, with the socket itself for diagnostics. */
export interface NodeTransport extends Transport.Transport {
  /** The underlying socket. Reading or writing it directly breaks the transport's ordering. */
  readonly socket: Net.Socket
  /** Chunks received and not yet taken by `read` (0, 1 or a few; the socket is paused meanwhile). */
  readonly bufferedInput: () => number
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
  Effect.acquireRelease(
    Effect.sync(() => makeUnsafe(socket, options)),
    (transport) => transport.destroy
  )

/**
 * Wraps a socket as a `Transport` without a scope: the caller must run `destroy` when done.
 * Same behaviour as `make`. Never throws.
 */
export const makeUnsafe = (socket: Net.Socket, options: NodeTransportOptions = {}): NodeTransport => {
  const chunks: Array<Uint8Array> = []
  if (options.initialBytes !== undefined && options.initialBytes.length > 0) chunks.push(options.initialBytes)
  /** The peer half-closed (`end` event). */
  let eof = false
  /** We called `end`. */
  let outputEnded = false
  /** Why the connection broke (Reset) or was destroyed by us (Destroyed); first one wins. */
  let failure: Errors.TransportClosed | undefined = undefined
  let reader: (() => void) | undefined = undefined
  const drainWaiters = new Set<() => void>()
  const ended = Deferred.makeUnsafe<Errors.TransportClosed>()

  const settle = (reason: Errors.TransportClosed): void => {
    Deferred.doneUnsafe(ended, Effect.succeed(reason))
  }
  const wakeReader = (): void => {
    const wake = reader
    if (wake !== undefined) wake()
  }
  const wakeWriters = (): void => {
    if (drainWaiters.size === 0) return
    const waiters = Array.from(drainWaiters)
    drainWaiters.clear()
    for (const wake of waiters) wake()
  }
  const fail = (reason: Errors.TransportClosed): void => {
    if (failure === undefined) failure = reason
    chunks.length = 0
    wakeReader()
    wakeWriters()
  }

  const onData = (data: Buffer): void => {
    if (failure !== undefined || data.length === 0) return
    chunks.push(data)
    if (reader !== undefined) wakeReader()
    // Still not taken (no reader waiting): stop the flow until `read` takes it.
    if (chunks.length > 0) socket.pause()
  }
  const onEnd = (): void => {
    eof = true
    wakeReader()
  }
  const onError = (error: Error): void => {
    fail(new Errors.TransportClosed({ reason: "Reset", cause: error }))
  }
  const onDrain = (): void => wakeWriters()
  const onClose = (): void => {
    if (failure === undefined) {
      // Closed without an error and without our destroy: orderly only if both sides ended.
      if (!(eof && outputEnded)) fail(new Errors.TransportClosed({ reason: "Reset" }))
    }
    socket.off("data", onData)
    wakeReader()
    wakeWriters()
    settle(failure ?? EOF)
  }

  socket.on("data", onData)
  socket.on("end", onEnd)
  socket.on("error", onError)
  socket.on("drain", onDrain)
  socket.on("close", onClose)
  if (options.noDelay !== false && typeof socket.setNoDelay === "function") socket.setNoDelay(true)
  if (socket.destroyed) onClose()
  else if (chunks.length > 0) socket.pause()
  else socket.resume()

  /** The next chunk, the reason input is over, or `undefined` when the reader must wait. */
  const tryRead = (): Uint8Array | Errors.TransportClosed | undefined => {
    if (failure !== undefined) return failure
    const chunk = chunks.shift()
    if (chunk !== undefined) {
      if (chunks.length === 0 && !eof) socket.resume()
      return chunk
    }
    return eof ? EOF : undefined
  }

  const read: Effect.Effect<Uint8Array, Errors.TransportClosed> = Effect.suspend(() => {
    const first = tryRead()
    if (first instanceof Uint8Array) return Effect.succeed(first)
    if (first !== undefined) return Effect.fail(first)
    return Effect.callback<Uint8Array, Errors.TransportClosed>((resume) => {
      reader = () => {
        const next = tryRead()
        if (next === undefined) return
        reader = undefined
        resume(next instanceof Uint8Array ? Effect.succeed(next) : Effect.fail(next))
      }
      return Effect.sync(() => {
        reader = undefined
      })
    })
  })

  const writeFailure = (): Errors.TransportClosed | undefined =>
    failure ?? (outputEnded || socket.writableEnded ? ENDED : undefined)

  const waitDrain: Effect.Effect<void, Errors.TransportClosed> = Effect.callback<void, Errors.TransportClosed>((resume) => {
    const wake = (): void => {
      const problem = writeFailure()
      if (problem !== undefined) resume(Effect.fail(problem))
      else if (!socket.writableNeedDrain) resume(Effect.void)
      else drainWaiters.add(wake)
    }
    drainWaiters.add(wake)
    return Effect.sync(() => {
      drainWaiters.delete(wake)
    })
  })

  const write = (batch: ReadonlyArray<Uint8Array>): Effect.Effect<void, Errors.TransportClosed> =>
    Effect.suspend(() => {
      const problem = writeFailure()
      if (problem !== undefined) return Effect.fail(problem)
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
      return ok && !socket.writableNeedDrain ? Effect.void : waitDrain
    })

  const end: Effect.Effect<void> = Effect.sync(() => {
    if (outputEnded || failure !== undefined) return
    outputEnded = true
    socket.end()
    wakeWriters()
  })

  const destroy: Effect.Effect<void> = Effect.sync(() => {
    if (failure === undefined) fail(DESTROYED)
    if (!socket.destroyed) socket.destroy()
    settle(failure ?? DESTROYED)
  })

  return {
    socket,
    bufferedInput: () => chunks.length,
    read,
    write,
    end,
    destroy,
    ended: Deferred.await(ended),
    allocate
  }
}

/** Uninitialised buffers for frames that span chunks: the parser writes every byte before use. */
const allocate = (size: number): Uint8Array => Buffer.allocUnsafe(size)
