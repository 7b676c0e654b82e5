/**
 * The hostile test's side of the wire: a raw `node:net` peer on 127.0.0.1 that sends whatever
 * bytes it is told (hand-built frame headers included) and parses what the server sends with the
 * codec's own `FrameParser` (client role), and the server process (`server.ts`) it talks to.
 * Every wait here has a deadline; nothing waits for a timer of the library's without one.
 */
import { CloseReason, Frame, FrameParser, Mask } from "@effect-ws/codec"
import * as Net from "node:net"
import { Child } from "../../bench/ipc.ts"
import type { ServerStats } from "../../bench/protocol.ts"
import { clientFrameBytes } from "../../bench/rawclient.ts"
import { upgradeRequest } from "../../../packages/node-adapter/test/helpers.ts"

export { clientFrameBytes, upgradeRequest }

/** The close code a peer saw: the Close frame's code, 1005 for a Close without one, 1006 for a TCP close without any. */
export type SeenClose = number

/** A raw client connection. `frames` collects the server's frames (only counted when `keepFrames` is false). */
export class Peer {
  readonly socket: Net.Socket
  /** HTTP status of the upgrade response (0 before one came). */
  status = 0
  /** The response head (or the whole answer when it was not a 101). */
  head = ""
  readonly frames: Array<Frame.Frame> = []
  /** Data frames received (counted even when not kept). */
  dataFrames = 0
  /** Bytes received after the head. */
  bytesIn = 0
  /** The server's Close code, once it came (1005 for an empty Close). */
  closeCode: number | undefined = undefined
  /** The protocol violation in the server's frames, if any. */
  violation: string | undefined = undefined
  /** Whether the TCP connection has closed. */
  tcpClosed = false
  keepFrames = true
  /** Every byte received after the head, when set to an array (for exact wire comparisons). */
  wire: Array<Buffer> | undefined = undefined
  /** Called for every data frame (after it is counted). */
  onData: ((frame: Frame.Frame) => void) | undefined = undefined
  /** RSV1 allowed: a deflate-negotiated server compresses its frames (payloads are counted, never inflated here). */
  private readonly parser = new FrameParser.FrameParser({ role: "client", maxFrameSize: 256 * 1024 * 1024, allowedRsv: { rsv1: true } })
  private headBuffer: Buffer | undefined = undefined
  private readonly waiters = new Set<() => void>()

  private constructor(socket: Net.Socket) {
    this.socket = socket
    socket.on("data", (chunk: Buffer) => this.receive(chunk))
    socket.on("error", () => {})
    socket.on("close", () => {
      this.tcpClosed = true
      this.wake()
    })
  }

  /**
   * Connects to 127.0.0.1:`port` (fails after `timeoutMs`). With `allowHalfOpen` the peer does
   * not end its side when the server's FIN arrives (a peer that never answers).
   */
  static connect(port: number, options: { readonly timeoutMs?: number; readonly allowHalfOpen?: boolean } = {}): Promise<Peer> {
    const timeoutMs = options.timeoutMs ?? 5_000
    return new Promise((resolve, reject) => {
      const socket = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: options.allowHalfOpen ?? false })
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error(`connect to ${port}: no connection within ${timeoutMs} ms`))
      }, timeoutMs)
      socket.once("error", (error) => {
        clearTimeout(timer)
        reject(error)
      })
      socket.once("connect", () => {
        clearTimeout(timer)
        socket.setNoDelay(true)
        resolve(new Peer(socket))
      })
    })
  }

  /** Connects and completes an upgrade on `path`; throws unless the answer is 101. */
  static async open(port: number, path: string, extra: ReadonlyArray<string> = [], allowHalfOpen = false): Promise<Peer> {
    const peer = await Peer.connect(port, { allowHalfOpen })
    const status = await peer.upgrade(path, extra)
    if (status !== 101) {
      peer.destroy()
      throw new Error(`upgrade to ${path}: ${status} ${peer.head.slice(0, 200)}`)
    }
    return peer
  }

  /** Sends an upgrade request for `path` and waits (at most `timeoutMs`) for the status line and head. */
  async upgrade(path: string, extra: ReadonlyArray<string> = [], timeoutMs = 5_000): Promise<number> {
    this.headBuffer = Buffer.alloc(0)
    this.socket.write(upgradeRequest(path, extra))
    await this.until(() => this.status !== 0 || this.tcpClosed, timeoutMs, `the answer to the upgrade of ${path}`)
    return this.status
  }

  /** From now on, parse what arrives as an HTTP answer first (for a request sent by hand). */
  expectHttp(): void {
    this.headBuffer = Buffer.alloc(0)
  }

  /** Sends a raw head (anything) and waits for an HTTP answer or the close; returns the status (0: closed without one). */
  async request(head: string | Uint8Array, timeoutMs = 5_000): Promise<number> {
    this.headBuffer = Buffer.alloc(0)
    this.socket.write(head)
    await this.until(() => this.status !== 0 || this.tcpClosed, timeoutMs, "an HTTP answer")
    return this.status
  }

  send(bytes: Uint8Array | string): boolean {
    return this.socket.write(bytes)
  }

  /** Sends `bytes` and waits until the socket has taken them (its buffer drained), at most `timeoutMs`. */
  async sendDrained(bytes: Uint8Array, timeoutMs = 10_000): Promise<void> {
    if (this.socket.write(bytes)) return
    await this.drained(timeoutMs)
  }

  /** Waits for `drain` (at most `timeoutMs`; rejects on a closed socket). */
  drained(timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (error?: Error) => {
        clearTimeout(timer)
        this.socket.off("drain", onDrain)
        this.socket.off("close", onClose)
        if (error === undefined) resolve()
        else reject(error)
      }
      const onDrain = () => done()
      const onClose = () => done(new Error("the socket closed while we were sending"))
      const timer = setTimeout(() => done(new Error(`no drain within ${timeoutMs} ms`)), timeoutMs)
      this.socket.on("drain", onDrain)
      this.socket.on("close", onClose)
      if (this.socket.destroyed) onClose()
    })
  }

  /** Waits until `check()` holds, re-checked on every arrival and close; rejects after `timeoutMs`. */
  until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (check()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const waiter = () => {
        if (!check()) return
        clearTimeout(timer)
        this.waiters.delete(waiter)
        resolve()
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        reject(new Error(`no ${what} within ${timeoutMs} ms (status ${this.status}, close ${this.closeCode}, tcp closed ${this.tcpClosed}, ${this.dataFrames} data frames)`))
      }, timeoutMs)
      this.waiters.add(waiter)
    })
  }

  /** The server's Close code, or 1006 when TCP closed without one; rejects after `timeoutMs`. */
  async closed(timeoutMs = 2_000): Promise<SeenClose> {
    await this.until(() => this.closeCode !== undefined || this.tcpClosed, timeoutMs, "Close from the server")
    return this.closeCode ?? 1006
  }

  /** Waits for the TCP connection to close. */
  tcpClose(timeoutMs = 2_000): Promise<void> {
    return this.until(() => this.tcpClosed, timeoutMs, "TCP close")
  }

  destroy(): void {
    this.socket.destroy()
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter()
  }

  private receive(chunk: Buffer): void {
    if (this.headBuffer !== undefined && this.status === 0) {
      this.headBuffer = Buffer.concat([this.headBuffer, chunk])
      const end = this.headBuffer.indexOf("\r\n\r\n")
      if (end === -1 && this.headBuffer.length < 64 * 1024) return
      this.head = this.headBuffer.toString("latin1", 0, end === -1 ? this.headBuffer.length : end + 4)
      this.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(this.head)?.[1] ?? "-1")
      const rest = end === -1 ? Buffer.alloc(0) : this.headBuffer.subarray(end + 4)
      this.headBuffer = undefined
      if (this.status !== 101) {
        this.head += rest.toString("latin1")
        this.wake()
        return
      }
      chunk = rest
    }
    this.bytesIn += chunk.length
    this.wire?.push(Buffer.from(chunk))
    if (this.violation === undefined && chunk.length > 0) {
      const out: Array<Frame.Frame> = []
      const violation = this.parser.push(chunk, out)
      if (violation !== undefined) this.violation = violation.message
      for (const frame of out) {
        if (frame._tag === "Close") {
          const reason = frame.payload.length === 0 ? undefined : CloseReason.decodeCloseReason(frame.payload)
          this.closeCode = reason === undefined ? 1005 : "code" in reason ? reason.code : -1
        } else if (!Frame.isControl(frame)) {
          this.dataFrames++
          this.onData?.(frame)
        }
        if (this.keepFrames || Frame.isControl(frame)) this.frames.push(frame)
      }
    }
    this.wake()
  }
}

/**
 * A client frame header (masked with key 0 unless `key` is given) announcing `length` payload
 * bytes: `first` is the first byte (FIN, RSV, opcode), `length` may exceed what will be sent.
 */
export const header = (first: number, length: bigint | number, key = 0): Buffer => {
  const n = BigInt(length)
  const mask = Buffer.alloc(4)
  mask.writeUInt32BE(key >>> 0)
  if (n < 126n) return Buffer.concat([Buffer.from([first, 0x80 | Number(n)]), mask])
  if (n < 65536n) {
    const b = Buffer.from([first, 0x80 | 126, 0, 0])
    b.writeUInt16BE(Number(n), 2)
    return Buffer.concat([b, mask])
  }
  const b = Buffer.alloc(10)
  b[0] = first
  b[1] = 0x80 | 127
  b.writeBigUInt64BE(n, 2)
  return Buffer.concat([b, mask])
}

/** A whole masked client frame (`first`: FIN/RSV/opcode byte) with `payload`, masked with `key`. */
export const rawFrame = (first: number, payload: Uint8Array, key = 0x5a17c3e1): Buffer => {
  const body = Buffer.from(payload)
  Mask.mask(body, key)
  return Buffer.concat([header(first, body.length, key), body])
}

/** An unmasked client frame (a protocol violation from a client). */
export const unmaskedFrame = (first: number, payload: Uint8Array): Buffer => Buffer.concat([Buffer.from([first, payload.length]), payload])

/** Bytes of a Close frame with this payload. */
export const closeFrame = (payload: Uint8Array): Buffer => rawFrame(0x88, payload)

/** The server process and its three ports. */
export interface Target {
  readonly child: Child
  /** The demo (`/chat`, `/echo`). */
  readonly demo: number
  /** Short handshake and close timeouts, large heads. */
  readonly strict: number
  /** Pings every 250 ms. */
  readonly pinging: number
}

/** Forks `server.ts` (with `--expose-gc`) and waits for its ports. */
export const startTarget = async (): Promise<Target> => {
  const child = new Child("hostile-server", "../test/hostile/server.ts", ["--expose-gc"])
  const ready = await child.waitReady(30_000)
  return { child, demo: ready["port"] as number, strict: ready["strict"] as number, pinging: ready["pinging"] as number }
}

/** The server's memory after a full `gc()`, in MB. */
export const memory = async (target: Target): Promise<ServerStats & { readonly rssMB: number; readonly heapMB: number; readonly arrayBuffersMB: number }> => {
  const stats = await target.child.stats(true)
  return { ...stats, rssMB: stats.rss / 2 ** 20, heapMB: stats.heapUsed / 2 ** 20, arrayBuffersMB: stats.arrayBuffers / 2 ** 20 }
}

/** Close codes the strict and pinging servers' sessions ended with since the last call. */
export const serverCloses = (target: Target) =>
  target.child.request<ReadonlyArray<{ readonly server: string; readonly code: number; readonly message: string }>>({ type: "closes" }, 5_000)

let probe = 0
/**
 * A fresh client gets its message echoed on `/echo` within `withinMs` (from connect to echo):
 * what every attack must leave working. Returns the milliseconds it took.
 */
export const freshEcho = async (port: number, withinMs = 1_000): Promise<number> => {
  const started = performance.now()
  const peer = await Peer.open(port, "/echo")
  try {
    const text = `probe ${++probe}`
    peer.send(clientFrameBytes(Frame.text(text)))
    await peer.until(() => peer.dataFrames >= 1, withinMs, "echo of the probe")
    const echoed = peer.frames.find((f) => f._tag === "Text")
    if (echoed === undefined || Frame.readText(echoed as Frame.Text) !== text) throw new Error("the probe came back different")
    const ms = performance.now() - started
    if (ms > withinMs) throw new Error(`the probe took ${ms.toFixed(0)} ms (more than ${withinMs})`)
    return ms
  } finally {
    peer.destroy()
  }
}

/** Polls the server until it has at most `count` TCP sockets open (bounded by `timeoutMs`); returns the last count. */
export const awaitSockets = async (target: Target, count: number, timeoutMs = 5_000): Promise<number> => {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const { connections } = await target.child.stats()
    if (connections <= count || performance.now() > deadline) return connections
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** Resolves after `ms` (for pacing a sender, never for waiting on the library). */
export const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
