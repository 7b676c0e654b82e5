/**
 * The floor of the benchmarks (a child of `echo.ts` / `conns.ts`): a hand-made `node:net` echo
 * server that does only what every WebSocket echo server must, so that its CPU per message and
 * memory per connection are the least any Node server can spend. A reference to measure the
 * others against, NOT a product: it validates nothing and limits nothing (no UTF-8 check, no
 * fragmentation rules, no RSV or opcode check, no size limit, no close codes, no timeouts) and
 * trusts its client. It echoes frame by frame: each data or continuation frame goes back with its
 * own opcode and fin bit, so a fragmented message comes back fragmented the same way.
 *
 * Per connection, it:
 * - buffers the HTTP upgrade request until its blank line, takes `Sec-WebSocket-Key` and answers
 *   101 with `Sec-WebSocket-Accept` (SHA-1 + base64 from node:crypto);
 * - parses each frame header (2 to 14 bytes, kept across chunks), then allocates ONE buffer for
 *   the reply frame: its header (opcode copied, unmasked, length) right before the payload,
 *   which starts at a 4-byte aligned offset. The payload is gathered into that buffer as chunks
 *   arrive (`Buffer.copy`, i.e. memcpy) and unmasked in place by a plain JavaScript loop over
 *   32-bit words (`Uint32Array` XOR with the mask key, bytes at the edges one by one): no native
 *   addon, no second copy of the payload;
 * - writes that buffer: one write of header + payload per frame, all the writes caused by one
 *   incoming chunk corked together (one `writev` per chunk);
 * - answers Ping with Pong and Close with Close (then ends the socket); Pong is dropped.
 *
 * It reports `ready` with its port and answers `stats` requests with its own CPU and memory (see
 * `../ipc.ts`).
 */
import { createHash } from "node:crypto"
import * as Net from "node:net"
import { emit, serve, serverHandlers } from "../ipc.ts"
import { HOST } from "../protocol.ts"

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/** The payload starts at this offset of a reply buffer: room for the longest server header (10 B), 4-byte aligned. */
const PAYLOAD_AT = 12
const HEAD_END = Buffer.from("\r\n\r\n", "latin1")

/** The 101 response to an upgrade request's head (latin1), or undefined when it has no key. */
const switchingProtocols = (head: string): string | undefined => {
  const key = /^sec-websocket-key:[ \t]*([^\r\n]*?)[ \t]*$/im.exec(head)?.[1]
  if (key === undefined) return undefined
  const accept = createHash("sha1").update(key + GUID).digest("base64")
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`
}

/** The mask key as the 32-bit word that XORs 4 payload bytes at once (in this machine's byte order). */
const maskBytes = new Uint8Array(4)
const maskWord = new Uint32Array(maskBytes.buffer)

/** WebSocket connections open (upgraded and not yet closed). */
let connections = 0

/** One connection's reader: the handshake, then frames. */
class Connection {
  private handshaken = false
  private pendingHead: Buffer | undefined = undefined
  /** The frame header being read (at most 14 bytes: 2 + 8 of length + 4 of mask). */
  private readonly header = Buffer.alloc(14)
  private headerFilled = 0
  private opcode = 0
  private readonly mask = new Uint8Array(4)
  private word = 0
  /** The reply being filled: header at `start`, payload at `PAYLOAD_AT`, `length` bytes, `filled` so far. */
  private reply: Buffer | undefined = undefined
  private start = 0
  private length = 0
  private filled = 0

  private readonly socket: Net.Socket

  constructor(socket: Net.Socket) {
    this.socket = socket
  }

  push(chunk: Buffer): void {
    let at = 0
    if (!this.handshaken) {
      const head = this.pendingHead === undefined ? chunk : Buffer.concat([this.pendingHead, chunk])
      const end = head.indexOf(HEAD_END)
      if (end === -1) {
        this.pendingHead = head
        return
      }
      this.pendingHead = undefined
      const response = switchingProtocols(head.toString("latin1", 0, end))
      if (response === undefined) {
        this.socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
        return
      }
      this.socket.write(response, "latin1")
      this.handshaken = true
      connections++
      this.socket.once("close", () => connections--)
      chunk = head
      at = end + 4
    }
    while (at < chunk.length) {
      if (this.reply === undefined) {
        at = this.readHeader(chunk, at)
        if (this.reply === undefined) return // header incomplete
      }
      at = this.readPayload(chunk, at)
    }
  }

  /** Reads header bytes from `chunk` at `at`; once the header is whole, allocates the reply. Returns the new offset. */
  private readHeader(chunk: Buffer, at: number): number {
    const h = this.header
    while (at < chunk.length) {
      h[this.headerFilled++] = chunk[at++]!
      if (this.headerFilled < 2) continue
      const len7 = h[1]! & 0x7f
      const needed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((h[1]! & 0x80) !== 0 ? 4 : 0)
      if (this.headerFilled < needed) continue
      const length = len7 === 126 ? h.readUInt16BE(2) : len7 === 127 ? Number(h.readBigUInt64BE(2)) : len7
      const maskAt = needed - ((h[1]! & 0x80) !== 0 ? 4 : 0)
      if (maskAt < needed) {
        for (let i = 0; i < 4; i++) maskBytes[i] = this.mask[i] = h[maskAt + i]!
        this.word = maskWord[0]!
      } else {
        this.mask.fill(0)
        this.word = 0
      }
      this.opcode = h[0]! & 0x0f
      this.headerFilled = 0
      this.begin(h[0]!, length)
      return at
    }
    return at
  }

  /** Allocates the reply frame of `length` payload bytes and writes its header (first byte `b0`). */
  private begin(b0: number, length: number): void {
    const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10
    const reply = Buffer.allocUnsafe(PAYLOAD_AT + length)
    const start = PAYLOAD_AT - headerLength
    reply[start] = b0 & 0x8f // fin and opcode; no RSV bits
    if (length < 126) reply[start + 1] = length
    else if (length < 65536) {
      reply[start + 1] = 126
      reply.writeUInt16BE(length, start + 2)
    } else {
      reply[start + 1] = 127
      reply.writeBigUInt64BE(BigInt(length), start + 2)
    }
    this.reply = reply
    this.start = start
    this.length = length
    this.filled = 0
    if (length === 0) this.finish()
  }

  /** Copies payload bytes from `chunk` at `at` into the reply and unmasks them; sends the reply once whole. */
  private readPayload(chunk: Buffer, at: number): number {
    const reply = this.reply!
    const n = Math.min(this.length - this.filled, chunk.length - at)
    const from = PAYLOAD_AT + this.filled
    chunk.copy(reply, from, at, at + n)
    this.unmask(reply, from, from + n)
    this.filled += n
    if (this.filled === this.length) this.finish()
    return at + n
  }

  /** XORs `reply[from, to)` with the mask, whose byte i applies to payload byte i mod 4. */
  private unmask(reply: Buffer, from: number, to: number): void {
    if (this.word === 0) return
    const mask = this.mask
    let i = from
    // Bytes up to the next 4-byte boundary of the payload (which is 4-byte aligned in memory).
    while (i < to && ((i - PAYLOAD_AT) & 3) !== 0) {
      reply[i] = reply[i]! ^ mask[(i - PAYLOAD_AT) & 3]!
      i++
    }
    const words = (to - i) >>> 2
    // A word view costs an allocation: worth it past a few words.
    if (words >= 8) {
      const base = reply.byteOffset + i
      if ((base & 3) === 0) {
        const view = new Uint32Array(reply.buffer, base, words)
        const word = this.word
        for (let w = 0; w < words; w++) view[w] = view[w]! ^ word
        i += words << 2
      }
    }
    for (; i < to; i++) reply[i] = reply[i]! ^ mask[(i - PAYLOAD_AT) & 3]!
  }

  /** The reply is whole: echo it (data), answer it (Ping, Close) or drop it (Pong). */
  private finish(): void {
    const reply = this.reply!
    this.reply = undefined
    const frame = reply.subarray(this.start)
    switch (this.opcode) {
      case 0x8: // Close: the same payload back, then FIN.
        this.socket.end(frame)
        return
      case 0x9: // Ping: the same frame as a Pong.
        frame[0] = 0x8a
        this.socket.write(frame)
        return
      case 0xa:
        return
      default:
        this.socket.write(frame)
    }
  }
}

const server = Net.createServer({ noDelay: true }, (socket) => {
  const connection = new Connection(socket)
  socket.on("data", (chunk: Buffer) => {
    socket.cork()
    connection.push(chunk)
    socket.uncork()
  })
  socket.on("error", () => {})
})
server.on("error", (error) => {
  console.error("floor server:", error)
  process.exit(1)
})
server.listen(0, HOST, () => {
  serve(serverHandlers(() => connections))
  emit({ type: "ready", port: (server.address() as Net.AddressInfo).port, server: "floor", unmask: "JS loop over 32-bit words" })
})
