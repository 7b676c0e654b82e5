/**
 * A scripted WebSocket client peer for conformance runs: it speaks raw bytes over a real TCP
 * socket (so it can send what no well-behaved library would: reserved opcodes, RSV bits, bad
 * UTF-8, one byte per write), reads the server's frames with our codec in the client role, and
 * reports what the server did. Every wait is bounded by a deadline.
 */
import { Frame, FrameParser, Handshake, Mask, Serializer } from "@effect-ws/codec"
import * as net from "node:net"

/** What the server did next. */
export type Event =
  | { readonly _tag: "Frame"; readonly frame: Frame.Frame }
  | { readonly _tag: "TcpClosed" }
  | { readonly _tag: "Violation"; readonly message: string }
  | { readonly _tag: "Timeout" }

/** A raw frame to send; anything goes (reserved opcodes, RSV bits, oversized control frames). */
export interface RawFrame {
  readonly opcode: number
  readonly payload?: Uint8Array
  readonly fin?: boolean
  readonly rsv?: number
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Serializes a raw frame, masked as a client must. */
export const rawFrameBytes = (f: RawFrame): Uint8Array => {
  const payload = f.payload ?? new Uint8Array()
  const n = payload.length
  const ext = n < 126 ? 0 : n < 65536 ? 2 : 8
  const out = new Uint8Array(2 + ext + 4 + n)
  out[0] = (f.fin === false ? 0 : 0x80) | ((f.rsv ?? 0) << 4) | f.opcode
  out[1] = 0x80 | (n < 126 ? n : n < 65536 ? 126 : 127)
  if (ext === 2) {
    out[2] = n >> 8
    out[3] = n & 0xff
  } else if (ext === 8) {
    const view = new DataView(out.buffer)
    view.setUint32(2, Math.floor(n / 2 ** 32))
    view.setUint32(6, n >>> 0)
  }
  const key = new Uint8Array(4)
  crypto.getRandomValues(key)
  out.set(key, 2 + ext)
  out.set(payload, 6 + ext)
  Mask.mask(out, Mask.readKey(key, 0), 0, 6 + ext, out.length)
  return out
}

/** One connection to the server under test. */
export class Peer {
  private readonly socket: net.Socket
  private readonly parser = new FrameParser.FrameParser({ role: "client", maxFrameSize: 64 * 1024 * 1024 })
  private readonly serializer = new Serializer.Serializer({ mask: true })
  private readonly events: Array<Event> = []
  private wake: (() => void) | undefined = undefined
  private failed = false

  private constructor(socket: net.Socket, rest: Uint8Array) {
    this.socket = socket
    socket.on("data", (chunk: Buffer) => this.onData(chunk))
    socket.on("close", () => this.push({ _tag: "TcpClosed" }))
    socket.on("error", () => {})
    if (rest.length > 0) this.onData(rest)
  }

  /** Opens a connection and completes the opening handshake (rejects on any failure). */
  static async connect(url: URL, timeoutMs = 5000): Promise<Peer> {
    const socket = net.connect({ host: url.hostname, port: Number(url.port || 80) })
    socket.setNoDelay(true)
    const key = Handshake.generateKey()
    const request = Handshake.makeUpgradeRequest({ host: url.host, path: url.pathname + url.search, key })
    if (typeof request !== "string") throw new Error(request.message)
    socket.write(request)
    const head = new Handshake.HttpHeadParser({ kind: "response" })
    return await new Promise<Peer>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error("opening handshake timed out"))
      }, timeoutMs)
      const onData = (chunk: Buffer) => {
        const r = head.push(chunk)
        if (r === undefined) return
        socket.off("data", onData)
        clearTimeout(timer)
        if (r._tag === "HttpHeadError") return reject(new Error(r.message))
        const v = Handshake.validateUpgradeResponse({ status: r.status ?? 0, headers: r.headers }, { key, protocols: [], extensions: [] })
        if (v._tag === "HandshakeFailure") {
          socket.destroy()
          return reject(new Error(v.message))
        }
        resolve(new Peer(socket, head.rest()))
      }
      socket.on("data", onData)
      socket.once("error", (e) => {
        clearTimeout(timer)
        reject(e)
      })
    })
  }

  private onData(chunk: Uint8Array): void {
    if (this.failed) return
    const frames: Array<Frame.Frame> = []
    const v = this.parser.push(new Uint8Array(chunk), frames)
    for (const frame of frames) this.push({ _tag: "Frame", frame })
    if (v !== undefined) {
      this.failed = true
      this.push({ _tag: "Violation", message: `server sent an invalid frame: ${v.kind} (${v.message})` })
    }
  }

  private push(e: Event): void {
    this.events.push(e)
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  /** Sends bytes, optionally in chunks of `chunkSize` (each its own write, with a pause to defeat coalescing). */
  async sendBytes(bytes: Uint8Array, chunkSize?: number): Promise<void> {
    if (this.socket.destroyed) return
    if (chunkSize === undefined || chunkSize >= bytes.length) {
      if (!this.socket.write(bytes)) await new Promise<void>((r) => this.socket.once("drain", () => r()))
      return
    }
    for (let p = 0; p < bytes.length && !this.socket.destroyed; p += chunkSize) {
      this.socket.write(bytes.subarray(p, p + chunkSize))
      if (chunkSize < 16 && (p / chunkSize) % 64 === 0) await sleep(0)
    }
  }

  /** Sends well-formed frames (masked). */
  async send(frames: ReadonlyArray<Frame.Frame>, chunkSize?: number): Promise<void> {
    const parts: Array<Uint8Array> = []
    this.serializer.serializeBatch(frames, parts)
    await this.sendBytes(Serializer.concat(parts), chunkSize)
  }

  /** Sends raw frames. */
  async sendRaw(frames: ReadonlyArray<RawFrame>, chunkSize?: number): Promise<void> {
    await this.sendBytes(Serializer.concat(frames.map(rawFrameBytes)), chunkSize)
  }

  /** The next event, or `Timeout` after `ms`. */
  async next(ms: number): Promise<Event> {
    const deadline = Date.now() + ms
    while (this.events.length === 0) {
      const left = deadline - Date.now()
      if (left <= 0) return { _tag: "Timeout" }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(t)
          resolve()
        }
      })
    }
    return this.events.shift()!
  }

  /** Half-closes our side (TCP FIN). */
  end(): void {
    this.socket.end()
  }

  /** Drops the connection. */
  destroy(): void {
    this.socket.destroy()
  }
}
