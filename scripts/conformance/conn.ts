/**
 * One connection of the conformance peer, in either role, over a real TCP socket:
 * - as a **client** (the implementation under test is a server): `connect` sends the opening
 *   handshake (with a permessage-deflate offer if asked), checks the 101, and masks every frame;
 * - as a **server** (the implementation under test is a client): `FuzzServer` accepts the next
 *   connection on 127.0.0.1, reads and checks the client's request, and the case answers it
 *   (`respond`, or any bytes it likes); its frames go out unmasked.
 *
 * Incoming bytes go through the peer's own frame reader (`wire.ts`) and are judged strictly: the
 * masking direction, RSV bits (RSV1 only on the first frame of a compressed message, only when
 * permessage-deflate was agreed), opcodes, control-frame rules, fragmentation order, Close
 * payloads (length, code, UTF-8 reason), UTF-8 of text messages, inflation under the agreed
 * terms, and nothing after a Close. The first breach becomes a `Violation` event and stops
 * reading. Pings from the implementation are answered and otherwise ignored. Every wait is
 * bounded by a deadline.
 */
import { createHash, randomBytes } from "node:crypto"
import * as net from "node:net"
import { agree, Compressor, type DeflateParams, type DeflateTerms, Decompressor, formatDeflate, parseExtensions, readDeflate } from "./deflate.ts"
import {
  BINARY,
  CLOSE,
  concat,
  CONTINUATION,
  encodeFrame,
  encodeFrames,
  FrameReader,
  isValidCloseCode,
  isValidUtf8,
  PING,
  PONG,
  type RawFrame,
  TEXT,
  type WireFrame
} from "./wire.ts"

/** The peer's role on a connection: `client` when testing a server, `server` when testing a client. */
export type PeerRole = "client" | "server"

/** A whole message from the implementation. */
export interface Message {
  readonly type: "Text" | "Binary"
  readonly data: Uint8Array
  /** Payload sizes of its frames on the wire (compressed sizes when compressed). */
  readonly frameSizes: ReadonlyArray<number>
  readonly compressed: boolean
}

/** What the implementation did next. */
export type Event =
  | { readonly _tag: "Message"; readonly message: Message }
  | { readonly _tag: "Pong"; readonly payload: Uint8Array }
  | { readonly _tag: "Close"; readonly code: number | undefined; readonly reason: string }
  | { readonly _tag: "TcpClosed" }
  | { readonly _tag: "Violation"; readonly message: string }
  | { readonly _tag: "Timeout" }

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Largest frame the peer accepts (the biggest case sends 16 MiB). */
const MAX_PAYLOAD = 64 * 1024 * 1024

/** How a message is sent. */
export interface SendOptions {
  /** Compress it (only when permessage-deflate was agreed; ignored otherwise). */
  readonly compress?: boolean
  /** Split its (compressed) payload into frames of at most this many bytes. */
  readonly fragmentSize?: number
  /** Write the bytes in chunks of this size (each its own write). */
  readonly chop?: number
}

/** A connection after the opening handshake. */
export class Conn {
  readonly role: PeerRole
  /** The agreed permessage-deflate parameters, if any. */
  readonly deflate: DeflateParams | undefined
  private readonly socket: net.Socket
  private readonly reader = new FrameReader(MAX_PAYLOAD)
  private readonly events: Array<Event> = []
  private wake: (() => void) | undefined = undefined
  private dead = false
  /** Whether we have sent a Close frame. */
  closeSent = false
  private closeSeen = false
  private open: { type: "Text" | "Binary"; parts: Array<Uint8Array>; compressed: boolean } | undefined = undefined
  private readonly compressor: Compressor | undefined
  private readonly decompressor: Decompressor | undefined

  constructor(socket: net.Socket, role: PeerRole, deflate: DeflateParams | undefined, initial: Uint8Array) {
    this.socket = socket
    this.role = role
    this.deflate = deflate
    if (deflate !== undefined) {
      const ours = role === "client"
        ? { bits: deflate.clientMaxWindowBits, reset: deflate.clientNoContextTakeover }
        : { bits: deflate.serverMaxWindowBits, reset: deflate.serverNoContextTakeover }
      const theirs = role === "client"
        ? { bits: deflate.serverMaxWindowBits, reset: deflate.serverNoContextTakeover }
        : { bits: deflate.clientMaxWindowBits, reset: deflate.clientNoContextTakeover }
      this.compressor = new Compressor(ours.bits, !ours.reset)
      this.decompressor = new Decompressor(theirs.bits, !theirs.reset)
    }
    socket.on("data", (chunk: Buffer) => this.onData(chunk))
    socket.on("close", () => this.push({ _tag: "TcpClosed" }))
    socket.on("error", () => {})
    if (initial.length > 0) this.onData(initial)
    socket.resume()
  }

  /** Whether the TCP connection is gone. */
  get destroyed(): boolean {
    return this.socket.destroyed
  }

  private violation(message: string): void {
    if (this.dead) return
    this.dead = true
    this.push({ _tag: "Violation", message })
  }

  private onData(chunk: Uint8Array): void {
    if (this.dead) return
    const frames: Array<WireFrame> = []
    const error = this.reader.push(chunk, frames)
    for (const f of frames) {
      this.onFrame(f)
      if (this.dead) return
    }
    if (error !== undefined) this.violation(`the implementation sent ${error}`)
  }

  private onFrame(f: WireFrame): void {
    const them = this.role === "client" ? "the server" : "the client"
    if (this.closeSeen) return this.violation(`${them} sent a frame (opcode ${f.opcode}) after its Close`)
    if (this.role === "client" && f.masked) return this.violation("the server sent a masked frame")
    if (this.role === "server" && !f.masked) return this.violation("the client sent an unmasked frame")
    const control = f.opcode >= 8
    if (f.opcode > 2 && !(f.opcode >= 8 && f.opcode <= 10)) return this.violation(`${them} sent reserved opcode ${f.opcode}`)
    if ((f.rsv & 3) !== 0) return this.violation(`${them} set RSV2/RSV3 (rsv=${f.rsv})`)
    if (f.rsv & 4) {
      if (this.deflate === undefined) return this.violation(`${them} set RSV1 without permessage-deflate`)
      if (control || f.opcode === CONTINUATION) return this.violation(`${them} set RSV1 on a ${control ? "control" : "continuation"} frame`)
    }
    if (control) {
      if (!f.fin) return this.violation(`${them} sent a fragmented control frame`)
      if (f.payload.length > 125) return this.violation(`${them} sent a control frame with ${f.payload.length} payload bytes`)
      if (f.opcode === PING) {
        if (!this.socket.destroyed) this.socket.write(encodeFrame({ opcode: PONG, payload: f.payload }, this.role === "client"))
        return
      }
      if (f.opcode === PONG) return this.push({ _tag: "Pong", payload: f.payload })
      return this.onClose(f.payload)
    }
    if (f.opcode === CONTINUATION) {
      if (this.open === undefined) return this.violation(`${them} sent a continuation frame with no message open`)
      this.open.parts.push(f.payload)
    } else {
      if (this.open !== undefined) return this.violation(`${them} started a new message while one was open`)
      this.open = { type: f.opcode === TEXT ? "Text" : "Binary", parts: [f.payload], compressed: (f.rsv & 4) !== 0 }
    }
    if (!f.fin) return
    const { type, parts, compressed } = this.open!
    this.open = undefined
    let data = concat(parts)
    if (compressed) {
      const r = this.decompressor!.decompress(data)
      if ("error" in r) return this.violation(`${them}'s ${type} message: ${r.error}`)
      data = r
    }
    if (type === "Text" && !isValidUtf8(data)) return this.violation(`${them} sent a Text message that is not valid UTF-8`)
    this.push({ _tag: "Message", message: { type, data, frameSizes: parts.map((p) => p.length), compressed } })
  }

  private onClose(payload: Uint8Array): void {
    const them = this.role === "client" ? "the server" : "the client"
    if (payload.length === 1) return this.violation(`${them} sent a Close with a 1-byte payload`)
    let code: number | undefined
    let reason = ""
    if (payload.length >= 2) {
      code = (payload[0]! << 8) | payload[1]!
      if (!isValidCloseCode(code)) return this.violation(`${them} sent Close code ${code}, which may not be sent`)
      const r = payload.subarray(2)
      if (!isValidUtf8(r)) return this.violation(`${them} sent a Close reason that is not valid UTF-8`)
      reason = Buffer.from(r).toString("utf8")
    }
    this.closeSeen = true
    this.push({ _tag: "Close", code, reason })
  }

  private push(e: Event): void {
    this.events.push(e)
    const w = this.wake
    this.wake = undefined
    w?.()
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

  /** The next event without taking it, or `Timeout` after `ms`. */
  async peek(ms: number): Promise<Event> {
    const e = await this.next(ms)
    if (e._tag !== "Timeout") this.events.unshift(e)
    return e
  }

  /** Writes bytes, in chunks of `chop` (each its own write), yielding after every `yieldEvery` writes. */
  async sendBytes(bytes: Uint8Array, chop?: number, yieldEvery?: number): Promise<void> {
    if (this.socket.destroyed) return
    if (chop === undefined || chop >= bytes.length) {
      if (!this.socket.write(bytes)) await this.drain()
      return
    }
    // Yield to the event loop between writes (after each one when there are not too many), so
    // the bytes leave in separate segments and an in-process implementation reads them apart.
    const every = yieldEvery ?? (Math.ceil(bytes.length / chop) <= 4096 ? 1 : 16)
    for (let p = 0, i = 0; p < bytes.length && !this.socket.destroyed; p += chop, i++) {
      const more = this.socket.write(bytes.subarray(p, p + chop))
      if (!more) await this.drain()
      else if (i % every === every - 1) await new Promise<void>((resolve) => setImmediate(resolve))
    }
  }

  /** Waits until the socket drains or closes; a peer that stops reading for 30 s gets its connection dropped. */
  private drain(): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.socket.off("drain", done)
        this.socket.off("close", done)
        resolve()
      }
      const timer = setTimeout(() => {
        this.violation("the implementation stopped reading (our writes did not drain for 30 s)")
        this.socket.destroy()
        done()
      }, 30_000)
      this.socket.once("drain", done)
      this.socket.once("close", done)
    })
  }

  /** Sends frames exactly as given (masked when we are the client). */
  sendFrames(frames: ReadonlyArray<RawFrame>, chop?: number, yieldEvery?: number): Promise<void> {
    if (frames.some((f) => f.opcode === CLOSE)) this.closeSent = true
    return this.sendBytes(encodeFrames(frames, this.role === "client"), chop, yieldEvery)
  }

  /** Sends each frame as its own write, with a short pause between them. */
  async sendFramewise(frames: ReadonlyArray<RawFrame>): Promise<void> {
    for (const f of frames) {
      await this.sendFrames([f])
      await sleep(2)
    }
  }

  /** The frames of a message: compressed (RSV1 on the first frame) when asked and agreed, fragmented when asked. */
  async messageFrames(type: "Text" | "Binary", data: Uint8Array, options: SendOptions = {}): Promise<Array<RawFrame>> {
    const compressed = options.compress === true && this.compressor !== undefined
    const payload = compressed ? await this.compressor!.compress(data) : data
    const size = options.fragmentSize ?? Infinity
    const opcode = type === "Text" ? TEXT : BINARY
    if (payload.length <= size) return [{ opcode, payload, rsv: compressed ? 4 : 0 }]
    const frames: Array<RawFrame> = []
    for (let at = 0; at < payload.length; at += size) {
      frames.push({
        opcode: at === 0 ? opcode : CONTINUATION,
        payload: payload.subarray(at, at + size),
        fin: at + size >= payload.length,
        rsv: at === 0 && compressed ? 4 : 0
      })
    }
    return frames
  }

  /** Sends one message. */
  async sendMessage(type: "Text" | "Binary", data: Uint8Array, options: SendOptions = {}): Promise<void> {
    return this.sendFrames(await this.messageFrames(type, data, options), options.chop)
  }

  /** Half-closes our side (TCP FIN). */
  end(): void {
    this.socket.end()
  }

  /** Drops the connection (and frees our compressor). */
  destroy(): void {
    this.socket.destroy()
    this.compressor?.close()
  }
}

/** An HTTP head as read off a socket. */
export interface HttpHead {
  /** The request line or status line. */
  readonly start: string
  /** Header values by lower-case name; repeated headers joined with ", ". */
  readonly headers: ReadonlyMap<string, string>
  /** Bytes that followed the head in the same reads. */
  readonly rest: Uint8Array
}

const MAX_HEAD = 16 * 1024

/** Reads one HTTP head (bounded size and time); rejects on timeout, overflow or a closed socket. */
export const readHead = (socket: net.Socket, ms: number): Promise<HttpHead> =>
  new Promise<HttpHead>((resolve, reject) => {
    let buffer = Buffer.alloc(0)
    const finish = (error: Error | undefined, head?: HttpHead) => {
      clearTimeout(timer)
      socket.off("data", onData)
      socket.off("close", onClose)
      // Keep what follows the head buffered until the connection's reader takes over.
      socket.pause()
      if (error !== undefined) reject(error)
      else resolve(head!)
    }
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      const end = buffer.indexOf("\r\n\r\n")
      if (end === -1) {
        if (buffer.length > MAX_HEAD) finish(new Error(`an HTTP head larger than ${MAX_HEAD} bytes`))
        return
      }
      const lines = buffer.subarray(0, end).toString("latin1").split("\r\n")
      const headers = new Map<string, string>()
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":")
        if (colon <= 0) return finish(new Error(`a malformed header line ${JSON.stringify(line)}`))
        const name = line.slice(0, colon).trim().toLowerCase()
        const value = line.slice(colon + 1).trim()
        headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value)
      }
      finish(undefined, { start: lines[0] ?? "", headers, rest: new Uint8Array(buffer.subarray(end + 4)) })
    }
    const onClose = () => finish(new Error("the connection closed during the opening handshake"))
    const timer = setTimeout(() => finish(new Error(`no complete HTTP head within ${ms} ms`)), ms)
    socket.on("data", onData)
    socket.once("close", onClose)
  })

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/** The `Sec-WebSocket-Accept` value for a key (RFC 6455 §4.2.2). */
export const acceptFor = (key: string): string => createHash("sha1").update(key + GUID).digest("base64")

const hasToken = (value: string | undefined, token: string): boolean =>
  value !== undefined && value.split(",").some((t) => t.trim().toLowerCase() === token)

/** The outcome of our opening handshake as a client. */
export interface Connected {
  readonly conn: Conn
  readonly head: HttpHead
}

/**
 * Connects to `url` as a client: sends the upgrade request (with `offer` as
 * `Sec-WebSocket-Extensions` when given), checks the 101 (status, `Upgrade`, `Connection`,
 * `Sec-WebSocket-Accept`) and the extension response against the offer. Rejects, saying why,
 * on any failure (the socket is then destroyed).
 */
export const connect = async (url: URL, offer?: string, ms = 5000): Promise<Connected> => {
  const socket = net.connect({ host: url.hostname, port: Number(url.port || 80) })
  socket.setNoDelay(true)
  socket.on("error", () => {})
  try {
    const key = randomBytes(16).toString("base64")
    const lines = [
      `GET ${url.pathname}${url.search} HTTP/1.1`,
      `Host: ${url.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
      ...(offer === undefined ? [] : [`Sec-WebSocket-Extensions: ${offer}`])
    ]
    socket.write(lines.join("\r\n") + "\r\n\r\n")
    const head = await readHead(socket, ms)
    const status = /^HTTP\/1\.1 (\d{3})/.exec(head.start)?.[1]
    if (status !== "101") throw new Error(`the server answered ${JSON.stringify(head.start)} instead of 101`)
    if (!hasToken(head.headers.get("upgrade"), "websocket")) throw new Error("the 101 lacks Upgrade: websocket")
    if (!hasToken(head.headers.get("connection"), "upgrade")) throw new Error("the 101 lacks Connection: Upgrade")
    if (head.headers.get("sec-websocket-accept") !== acceptFor(key)) throw new Error("the 101 has a wrong Sec-WebSocket-Accept")
    const deflate = negotiatedByResponse(offer, head.headers.get("sec-websocket-extensions"))
    if (typeof deflate === "string") throw new Error(deflate)
    return { conn: new Conn(socket, "client", deflate, head.rest), head }
  } catch (e) {
    socket.destroy()
    throw e
  }
}

/** Checks a server's `Sec-WebSocket-Extensions` response against our offer: the agreed terms, `undefined` (none), or why it is invalid. */
export const negotiatedByResponse = (offer: string | undefined, response: string | undefined): DeflateParams | undefined | string => {
  if (response === undefined || response.trim() === "") return undefined
  const elements = parseExtensions(response)
  if (typeof elements === "string") return `a malformed Sec-WebSocket-Extensions response: ${elements}`
  if (elements.length !== 1) return `the server accepted ${elements.length} extensions: ${JSON.stringify(response)}`
  const offers = offer === undefined ? [] : parseExtensions(offer)
  if (typeof offers === "string") throw new Error(`bad offer in the case: ${offers}`)
  const terms = readDeflate(elements[0]!, "response")
  if (typeof terms === "string") return `an invalid permessage-deflate response ${JSON.stringify(response)}: ${terms}`
  const why: Array<string> = []
  for (const o of offers) {
    const offered = readDeflate(o, "offer")
    if (typeof offered === "string") continue
    const agreed = agree(offered, terms)
    if (typeof agreed !== "string") return agreed
    why.push(agreed)
  }
  return `the response ${JSON.stringify(response)} accepts none of the offers (${why.join("; ") || "none was valid"})`
}

/** A client's upgrade request as the fuzzing server received it. */
export interface Incoming {
  readonly socket: net.Socket
  readonly head: HttpHead
  /** The request's path. */
  readonly path: string
  /** Its `Sec-WebSocket-Key`. */
  readonly key: string
  /** Its permessage-deflate offers, in order (invalid ones left out), and the header as sent. */
  readonly offers: ReadonlyArray<DeflateTerms>
  readonly extensionsHeader: string | undefined
  /** Why the request is not a valid RFC 6455 upgrade request, if it is not. */
  readonly invalid: string | undefined
}

/** Checks an upgrade request (RFC 6455 §4.1). */
const checkRequest = (head: HttpHead): string | undefined => {
  const m = /^GET (\S+) HTTP\/1\.1$/.exec(head.start)
  if (m === null) return `request line ${JSON.stringify(head.start)} is not GET … HTTP/1.1`
  if (!head.headers.has("host")) return "no Host header"
  if (!hasToken(head.headers.get("upgrade"), "websocket")) return "no Upgrade: websocket"
  if (!hasToken(head.headers.get("connection"), "upgrade")) return "no Connection: Upgrade"
  if (head.headers.get("sec-websocket-version") !== "13") return "Sec-WebSocket-Version is not 13"
  const key = head.headers.get("sec-websocket-key") ?? ""
  if (!/^[A-Za-z0-9+/]{22}==$/.test(key) || Buffer.from(key, "base64").length !== 16) return `Sec-WebSocket-Key ${JSON.stringify(key)} is not base64 of 16 bytes`
  const ext = head.headers.get("sec-websocket-extensions")
  if (ext !== undefined) {
    const parsed = parseExtensions(ext)
    if (typeof parsed === "string") return `a malformed Sec-WebSocket-Extensions offer: ${parsed}`
    for (const e of parsed) {
      const t = e.name === "permessage-deflate" ? readDeflate(e, "offer") : undefined
      if (typeof t === "string") return `an invalid permessage-deflate offer ${JSON.stringify(ext)}: ${t}`
    }
  }
  return undefined
}

/** The fuzzing server: accepts clients under test on 127.0.0.1, one case at a time. */
export class FuzzServer {
  private readonly server: net.Server
  private readonly waiting: Array<net.Socket> = []
  private wake: (() => void) | undefined = undefined
  private readonly sockets = new Set<net.Socket>()

  private constructor(server: net.Server) {
    this.server = server
    server.on("connection", (socket) => {
      socket.setNoDelay(true)
      socket.on("error", () => {})
      this.sockets.add(socket)
      socket.once("close", () => this.sockets.delete(socket))
      this.waiting.push(socket)
      const w = this.wake
      this.wake = undefined
      w?.()
    })
  }

  /** Listens on 127.0.0.1, on a free port. */
  static async start(): Promise<FuzzServer> {
    const server = net.createServer()
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(0, "127.0.0.1", () => resolve())
    })
    return new FuzzServer(server)
  }

  /** The port it listens on. */
  get port(): number {
    return (this.server.address() as net.AddressInfo).port
  }

  /** Waits (at most `ms`) for the next connection to `path` and reads its request; connections to other paths are dropped. */
  async accept(path: string, ms = 5000): Promise<Incoming> {
    const deadline = Date.now() + ms
    for (;;) {
      while (this.waiting.length === 0) {
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`no connection from the client within ${ms} ms`)
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left)
          this.wake = () => {
            clearTimeout(t)
            resolve()
          }
        })
      }
      const socket = this.waiting.shift()!
      const head = await readHead(socket, Math.max(1, deadline - Date.now())).catch((e: unknown) => {
        socket.destroy()
        throw e
      })
      const requested = /^\S+ (\S+)/.exec(head.start)?.[1] ?? ""
      if (requested !== path) {
        socket.destroy()
        continue
      }
      const extensionsHeader = head.headers.get("sec-websocket-extensions")
      const offers: Array<DeflateTerms> = []
      const parsed = extensionsHeader === undefined ? [] : parseExtensions(extensionsHeader)
      if (typeof parsed !== "string") {
        for (const e of parsed) {
          const t = e.name === "permessage-deflate" ? readDeflate(e, "offer") : undefined
          if (t !== undefined && typeof t !== "string") offers.push(t)
        }
      }
      return {
        socket,
        head,
        path: requested,
        key: head.headers.get("sec-websocket-key") ?? "",
        offers,
        extensionsHeader,
        invalid: checkRequest(head)
      }
    }
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

/** What the fuzzing server answers in a 101. */
export interface Answer {
  /** The permessage-deflate response (terms) to answer with, accepting the client's first offer. */
  readonly deflate?: DeflateTerms
  /** Raw `Sec-WebSocket-Extensions` value instead (for invalid responses). */
  readonly extensionsHeader?: string
  /** Extra header lines. */
  readonly headers?: ReadonlyArray<string>
  /** Bytes to send in the same write as the head (frames right after the 101). */
  readonly trailing?: Uint8Array
}

/**
 * Answers an upgrade request with a 101 and returns the connection (the fuzzing server's side).
 * With `deflate`, the answer must be a valid acceptance of one of the client's offers (a case
 * error otherwise); the agreed terms drive both directions' compression checks.
 */
export const respond = (incoming: Incoming, answer: Answer = {}): Conn => {
  let deflate: DeflateParams | undefined
  let ext = answer.extensionsHeader
  if (answer.deflate !== undefined) {
    const reasons: Array<string> = []
    for (const offer of incoming.offers) {
      const agreed = agree(offer, answer.deflate)
      if (typeof agreed !== "string") {
        deflate = agreed
        break
      }
      reasons.push(agreed)
    }
    if (deflate === undefined) throw new Error(`the client's offer ${JSON.stringify(incoming.extensionsHeader)} does not allow the answer ${formatDeflate(answer.deflate)} (${reasons.join("; ")})`)
    ext = formatDeflate(answer.deflate)
  }
  const lines = [
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Accept: ${acceptFor(incoming.key)}`,
    ...(ext === undefined ? [] : [`Sec-WebSocket-Extensions: ${ext}`]),
    ...(answer.headers ?? [])
  ]
  const head = Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1")
  incoming.socket.write(answer.trailing === undefined ? head : Buffer.concat([head, answer.trailing]))
  return new Conn(incoming.socket, "server", deflate, incoming.head.rest)
}
