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
import * as Zlib from "node:zlib"
import type { ReplyCompression } from "./protocol.ts"

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
 * (fin) with `opcode`, and plain with `length` or compressed as `compression` allows; anything
 * else throws. Pings are collected (to be answered), a Close sets `closed`.
 */
export class EchoReader {
  closed = false
  readonly pings: Array<Uint8Array> = []
  /** Receives the payload bytes of every compressed data frame (views into the chunks, not copies), when set. */
  onPayload: ((bytes: Uint8Array) => void) | undefined = undefined
  /** Called after each compressed data message, when set. */
  onMessageEnd: (() => void) | undefined = undefined
  /** Compressed (RSV1) data messages read so far. */
  compressedMessages = 0
  private readonly expectOpcode: number
  private readonly expectLength: number
  private readonly compression: ReplyCompression
  private readonly header = new Uint8Array(10)
  private headerFilled = 0
  private opcode = 0
  private fin = false
  private rsv1 = false
  private length = 0
  private remaining = 0
  private control: Uint8Array | undefined = undefined
  private controlFilled = 0

  constructor(opcode: number, length: number, compression: ReplyCompression = "plain") {
    this.expectOpcode = opcode
    this.expectLength = length
    this.compression = compression
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
        } else if (this.rsv1 && this.onPayload !== undefined) {
          this.onPayload(chunk.subarray(pos, pos + take))
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
      this.rsv1 = (h[0]! & 0x40) !== 0
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
        if (
          this.opcode !== this.expectOpcode || !this.fin ||
          (this.rsv1 ? this.compression === "plain" : this.compression === "compressed" || this.length !== this.expectLength)
        ) {
          throw new Error(
            `unexpected frame: opcode ${this.opcode}, fin ${this.fin}, rsv1 ${this.rsv1}, ${this.length} B (expected opcode ${this.expectOpcode}, ${this.compression}, ${this.expectLength} B uncompressed)`
          )
        }
        if (this.rsv1) {
          this.compressedMessages++
          if (this.onMessageEnd !== undefined) this.onMessageEnd()
        }
        return 1
    }
  }
}

/**
 * An open connection right after the handshake; `head` holds the bytes received after the 101's
 * head, `extensions` the response's `Sec-WebSocket-Extensions` value (when it had one).
 */
export interface Opened {
  readonly socket: Net.Socket
  readonly head: Buffer
  readonly extensions: string | undefined
}

const MAX_RESPONSE_HEAD = 16 * 1024

/**
 * Connects and completes the opening handshake (101 with the right accept), within `timeoutMs`;
 * `extensions`, when given, is sent as the `Sec-WebSocket-Extensions` offer.
 */
export const open = (host: string, port: number, path: string, timeoutMs: number, extensions?: string): Promise<Opened> =>
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
      const answered = lines.find((line) => line.toLowerCase().startsWith("sec-websocket-extensions:"))
      clearTimeout(timer)
      socket.off("data", onData)
      socket.off("error", fail)
      socket.off("close", onClose)
      socket.pause()
      resolve({
        socket,
        head: received.subarray(end + 4),
        extensions: answered === undefined ? undefined : answered.slice(answered.indexOf(":") + 1).trim()
      })
    }
    const onClose = () => fail(new Error("closed during the handshake"))
    socket.on("data", onData)
    socket.once("error", fail)
    socket.once("close", onClose)
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        (extensions === undefined ? "" : `Sec-WebSocket-Extensions: ${extensions}\r\n`) +
        "\r\n"
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

// ---- permessage-deflate (RFC 7692) on the client side ----

/**
 * What the generator offers: with `client_no_context_takeover` we promise to compress every
 * message on its own (no LZ77 history across messages), so one compressed message can be
 * written again and again; `client_max_window_bits` lets the server limit our window.
 */
export const DEFLATE_OFFER = "permessage-deflate; client_no_context_takeover; client_max_window_bits"

/**
 * Checks a server's answer to `DEFLATE_OFFER` (exactly one `permessage-deflate`, nothing else)
 * and returns the window we must compress with (its `client_max_window_bits`, default 15). Throws
 * when the server declined.
 */
export const acceptDeflate = (answer: string | undefined): number => {
  if (answer === undefined) throw new Error("the server did not accept permessage-deflate")
  const extensions = answer.split(",").map((e) => e.trim())
  if (extensions.length !== 1) throw new Error(`unexpected extensions answer: ${answer}`)
  const [name, ...params] = extensions[0]!.split(";").map((p) => p.trim())
  if (name !== "permessage-deflate") throw new Error(`unexpected extensions answer: ${answer}`)
  let bits = 15
  for (const param of params) {
    const [key, value] = param.split("=").map((p) => p.trim().replace(/^"|"$/g, ""))
    if (key === "client_max_window_bits" && value !== undefined) bits = Number(value)
  }
  if (!(bits >= 8 && bits <= 15)) throw new Error(`bad client_max_window_bits in ${answer}`)
  return bits
}

const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])

/**
 * One message's compressed payload as permessage-deflate sends it without context takeover: a
 * fresh raw deflate stream (zlib's default level), sync-flushed, with its `00 00 FF FF` tail removed.
 */
export const deflateMessage = (payload: Uint8Array, windowBits: number): Buffer => {
  const out = Zlib.deflateRawSync(payload, {
    finishFlush: Zlib.constants.Z_SYNC_FLUSH,
    windowBits: Math.max(9, windowBits)
  })
  if (!out.subarray(out.length - 4).equals(DEFLATE_TAIL)) throw new Error("sync flush did not end with 00 00 FF FF")
  return out.subarray(0, out.length - 4)
}

/**
 * Inflates one connection's compressed replies (the server keeps its context across messages,
 * so every message is fed, in order, to one inflate stream) and checks that the output is
 * `expected` again and again. Runs on libuv's threadpool; `finish` waits for it (bounded).
 */
export class ReplyInflater {
  /** Messages fed, and bytes inflated and checked so far. */
  messages = 0
  inflated = 0
  private error: Error | undefined = undefined
  private readonly stream: Zlib.InflateRaw
  private readonly expected: Uint8Array

  constructor(expected: Uint8Array) {
    this.expected = expected
    this.stream = Zlib.createInflateRaw({ windowBits: 15 })
    this.stream.on("data", (chunk: Buffer) => {
      const size = expected.length
      for (let i = 0; i < chunk.length; i++) {
        if (chunk[i] !== expected[(this.inflated + i) % size]) {
          this.error ??= new Error(`inflated reply differs from the message sent at byte ${this.inflated + i}`)
          break
        }
      }
      this.inflated += chunk.length
    })
    this.stream.on("error", (error) => (this.error ??= error))
  }

  /** Feeds payload bytes of the current message (copied: the stream may read them later). */
  readonly push = (bytes: Uint8Array): void => {
    this.stream.write(Buffer.from(bytes))
  }

  /** Ends the current message (restores the tail the server removed). */
  readonly end = (): void => {
    this.messages++
    this.stream.write(DEFLATE_TAIL)
  }

  /** Waits (at most `timeoutMs`) until everything fed is inflated; throws on a mismatch. */
  async finish(timeoutMs: number): Promise<{ readonly messages: number; readonly inflated: number }> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`inflating replies took over ${timeoutMs} ms`)), timeoutMs)
      this.stream.flush(Zlib.constants.Z_SYNC_FLUSH, () => {
        clearTimeout(timer)
        resolve()
      })
    })
    this.stream.close()
    if (this.error !== undefined) throw this.error
    if (this.inflated !== this.messages * this.expected.length) {
      throw new Error(`${this.messages} replies inflated to ${this.inflated} B, expected ${this.messages} × ${this.expected.length} B`)
    }
    return { messages: this.messages, inflated: this.inflated }
  }
}
