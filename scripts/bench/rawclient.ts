/**
 * The load generator's WebSocket client: raw `net` sockets, the opening handshake written by
 * hand and checked with our codec's `Handshake.computeAccept`, client frames serialized once by
 * our codec's `Serializer` (masked) and then written as the same bytes again and again, and a
 * reader that walks server frames without copying payloads (it checks each data frame's opcode,
 * fin bit and length; it keeps only control payloads). Neither server's code is on the client
 * side, and the per-message client work is a header parse and a `write` of prepared bytes.
 */
import { CloseReason, Frame, Handshake, Serializer } from "@effect-ws/codec"
import * as Net from "node:net"

/** Serializes `frame` as a client (masked) into one buffer. */
export const clientFrameBytes = (frame: Frame.Frame): Buffer => {
  const parts: Array<Uint8Array> = []
  new Serializer.Serializer({ mask: true }).serialize(frame, parts)
  const bytes = Serializer.concat(parts)
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
}

const CLOSE_NORMAL = clientFrameBytes(Frame.close(CloseReason.CloseReason(1000, "")))

/**
 * Counts the server's data frames in a stream of chunks, expecting each to be a whole message
 * (fin) with `opcode` and `length`; anything else throws. Pings are collected (to be answered),
 * a Close sets `closed`.
 */
export class EchoReader {
  closed = false
  readonly pings: Array<Uint8Array> = []
  private readonly expectOpcode: number
  private readonly expectLength: number
  private readonly header = new Uint8Array(10)
  private headerFilled = 0
  private opcode = 0
  private fin = false
  private length = 0
  private remaining = 0
  private control: Uint8Array | undefined = undefined
  private controlFilled = 0

  constructor(opcode: number, length: number) {
    this.expectOpcode = opcode
    this.expectLength = length
  }

  /** Reads `chunk`; returns the number of data messages it completed. */
  push(chunk: Uint8Array): number {
    let messages = 0
    let pos = 0
    const end = chunk.length
    while (pos < end) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, end - pos)
        if (this.control !== undefined) {
          this.control.set(chunk.subarray(pos, pos + take), this.controlFilled)
          this.controlFilled += take
        }
        pos += take
        this.remaining -= take
        if (this.remaining === 0) messages += this.finish()
        continue
      }
      const h = this.header
      h[this.headerFilled++] = chunk[pos++]!
      if (this.headerFilled < 2) continue
      if ((h[1]! & 0x80) !== 0) throw new Error("server frame is masked")
      const len7 = h[1]! & 0x7f
      const need = len7 === 126 ? 4 : len7 === 127 ? 10 : 2
      if (this.headerFilled < need) continue
      let length = len7
      if (len7 === 126) length = (h[2]! << 8) | h[3]!
      else if (len7 === 127) {
        length = 0
        for (let i = 2; i < 10; i++) length = length * 256 + h[i]!
      }
      this.headerFilled = 0
      this.fin = (h[0]! & 0x80) !== 0
      this.opcode = h[0]! & 0x0f
      this.length = length
      this.remaining = length
      this.control = this.opcode >= 8 ? new Uint8Array(length) : undefined
      this.controlFilled = 0
      if (length === 0) messages += this.finish()
    }
    return messages
  }

  private finish(): number {
    switch (this.opcode) {
      case 8:
        this.closed = true
        return 0
      case 9:
        this.pings.push(this.control!)
        return 0
      case 10:
        return 0
      default:
        if (this.opcode !== this.expectOpcode || !this.fin || this.length !== this.expectLength) {
          throw new Error(
            `unexpected frame: opcode ${this.opcode}, fin ${this.fin}, ${this.length} B (expected opcode ${this.expectOpcode}, ${this.expectLength} B)`
          )
        }
        return 1
    }
  }
}

/** An open connection right after the handshake; `head` holds the bytes received after the 101's head. */
export interface Opened {
  readonly socket: Net.Socket
  readonly head: Buffer
}

const MAX_RESPONSE_HEAD = 16 * 1024

/** Connects and completes the opening handshake (101 with the right accept), within `timeoutMs`. */
export const open = (host: string, port: number, path: string, timeoutMs: number): Promise<Opened> =>
  new Promise((resolve, reject) => {
    const key = Handshake.generateKey()
    const socket = Net.connect({ host, port, noDelay: true })
    let received: Buffer = Buffer.alloc(0)
    const fail = (error: Error) => {
      clearTimeout(timer)
      socket.off("data", onData)
      socket.destroy()
      reject(error)
    }
    const timer = setTimeout(() => fail(new Error(`handshake not done within ${timeoutMs} ms`)), timeoutMs)
    const onData = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk])
      const end = received.indexOf("\r\n\r\n")
      if (end === -1) {
        if (received.length > MAX_RESPONSE_HEAD) fail(new Error("response head too large"))
        return
      }
      const lines = received.subarray(0, end).toString("latin1").split("\r\n")
      if (!/^HTTP\/1\.1 101\b/.test(lines[0] ?? "")) return fail(new Error(`handshake refused: ${lines[0]}`))
      const accept = lines.find((line) => line.toLowerCase().startsWith("sec-websocket-accept:"))
      if (accept?.slice(accept.indexOf(":") + 1).trim() !== Handshake.computeAccept(key)) {
        return fail(new Error("bad Sec-WebSocket-Accept"))
      }
      clearTimeout(timer)
      socket.off("data", onData)
      socket.off("error", fail)
      socket.off("close", onClose)
      socket.pause()
      resolve({ socket, head: received.subarray(end + 4) })
    }
    const onClose = () => fail(new Error("closed during the handshake"))
    socket.on("data", onData)
    socket.once("error", fail)
    socket.once("close", onClose)
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
    )
  })

/** Answers the pings `reader` collected (servers here send none, but a generator must not stall on one). */
export const answerPings = (socket: Net.Socket, reader: EchoReader): void => {
  while (reader.pings.length > 0) socket.write(clientFrameBytes(Frame.pong(reader.pings.shift()!)))
}

/**
 * Closes like a client: our Close (1000), then our FIN; waits for the server to close the TCP
 * connection, at most `timeoutMs`, then destroys the socket. Never rejects.
 */
export const closeGracefully = (socket: Net.Socket, timeoutMs: number): Promise<void> =>
  new Promise((resolve) => {
    if (socket.destroyed) return resolve()
    const timer = setTimeout(() => socket.destroy(), timeoutMs)
    socket.once("close", () => {
      clearTimeout(timer)
      resolve()
    })
    socket.on("error", () => {})
    socket.resume() // drain whatever the server still sends (its Close)
    if (socket.writable) socket.end(CLOSE_NORMAL)
    else socket.destroy()
  })
