/**
 * Conformance cases for an echo server, after `shared/docs/conformance.md` §1–7, §9 and the
 * opening handshake. Each case connects, drives the server with raw bytes, and checks the
 * strict outcome: **echo** (the messages come back exactly, then a clean close), or **fail**
 * (a Close with the expected code, then the TCP connection closes), or **fail fast** (the Close
 * arrives before the rest of the offending message is sent).
 */
import { CloseReason, Frame, Serializer, Utf8 } from "@effect-ws/codec"
import * as net from "node:net"
import { Peer, type RawFrame, rawFrameBytes } from "./peer.ts"

/** A case's result: passed, or why not. */
export type Verdict = { readonly ok: true } | { readonly ok: false; readonly why: string }

/** One conformance case. */
export interface Case {
  readonly id: string
  readonly section: string
  readonly description: string
  readonly run: (url: URL) => Promise<Verdict>
}

const pass: Verdict = { ok: true }
const failWith = (why: string): Verdict => ({ ok: false, why })
const enc = (s: string) => Utf8.encodeUtf8(s)
const bytes = (...xs: Array<number>) => Uint8Array.from(xs)
const filled = (n: number, seed = 0) => {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff
  return b
}
const textOf = (n: number) => enc("*".repeat(n))
const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i])

const TEXT = 1
const BINARY = 2
const CLOSE = 8
const PING = 9
const PONG = 10

/** A message the server must send back. */
interface Message {
  readonly type: "Text" | "Binary"
  readonly data: Uint8Array
}
const text = (data: Uint8Array | string): Message => ({ type: "Text", data: typeof data === "string" ? enc(data) : data })
const binary = (data: Uint8Array): Message => ({ type: "Binary", data })

interface Expect {
  readonly messages?: ReadonlyArray<Message>
  readonly pongs?: ReadonlyArray<Uint8Array>
  readonly ms?: number
}

/** Reads the expected messages and pongs (in any interleaving); anything else is a failure. */
const expectMessages = async (peer: Peer, expect: Expect): Promise<Verdict> => {
  const messages = [...(expect.messages ?? [])]
  const pongs = [...(expect.pongs ?? [])]
  const deadline = Date.now() + (expect.ms ?? 5000)
  let open: { type: "Text" | "Binary"; parts: Array<Uint8Array> } | undefined
  while (messages.length > 0 || pongs.length > 0) {
    const e = await peer.next(deadline - Date.now())
    if (e._tag === "Timeout") return failWith(`timed out waiting for ${messages.length} message(s) and ${pongs.length} pong(s)`)
    if (e._tag === "TcpClosed") return failWith("the server closed TCP while messages were expected")
    if (e._tag === "Violation") return failWith(e.message)
    const f = e.frame
    if (f._tag === "Ping") continue
    if (f._tag === "Pong") {
      // One Pong per Ping, in order (conformance §2: no coalescing, though RFC 6455 §5.5.3 allows it).
      const want = pongs.shift()
      if (want === undefined || !equal(want, f.payload)) return failWith("a Pong that does not answer the oldest unanswered Ping")
      continue
    }
    if (f._tag === "Close") return failWith(`unexpected Close ${describeClose(f.payload)}`)
    if (f._tag === "Continuation") {
      if (open === undefined) return failWith("server sent a continuation without a message")
      open.parts.push(f.payload)
    } else {
      open = { type: f._tag, parts: [f.payload] }
    }
    if (f.fin) {
      const got = open!
      open = undefined
      const want = messages.shift()
      if (want === undefined) return failWith("an extra message")
      const data = Serializer.concat(got.parts)
      if (got.type !== want.type) return failWith(`expected ${want.type}, got ${got.type}`)
      if (!equal(data, want.data)) return failWith(`${want.type} message of ${want.data.length} bytes came back different (${data.length} bytes)`)
    }
  }
  return pass
}

const describeClose = (payload: Uint8Array) => {
  if (payload.length < 2) return "(no code)"
  return `${(payload[0]! << 8) | payload[1]!}`
}

/** Expects a Close with `code` (or any of `codes`), then the TCP close (we answer the Close first). */
const expectClose = async (peer: Peer, codes: ReadonlyArray<number | undefined>, ms = 5000): Promise<Verdict> => {
  const deadline = Date.now() + ms
  for (;;) {
    const e = await peer.next(deadline - Date.now())
    if (e._tag === "Timeout") return failWith(`no Close ${codes.join("/")} within ${ms} ms`)
    if (e._tag === "TcpClosed") return failWith(`TCP closed without a Close ${codes.join("/")}`)
    if (e._tag === "Violation") return failWith(e.message)
    const f = e.frame
    if (f._tag === "Ping" || f._tag === "Pong") continue
    if (f._tag !== "Close") return failWith(`expected Close ${codes.join("/")}, got ${f._tag}`)
    const code = f.payload.length >= 2 ? (f.payload[0]! << 8) | f.payload[1]! : undefined
    if (!codes.includes(code)) return failWith(`expected Close ${codes.join("/")}, got ${describeClose(f.payload)}`)
    await peer.send([Frame.close(code === undefined ? undefined : CloseReason.CloseReason(code))]).catch(() => {})
    for (;;) {
      const after = await peer.next(deadline - Date.now())
      if (after._tag === "TcpClosed") return pass
      if (after._tag === "Timeout") return failWith("the server did not close TCP after the Close exchange")
      if (after._tag === "Violation") return failWith(after.message)
      if (after.frame._tag !== "Ping" && after.frame._tag !== "Pong") return failWith(`a ${after.frame._tag} frame after the Close`)
    }
  }
}

/** Closes cleanly: our Close 1000, the server's Close 1000, TCP closed. */
const closeCleanly = async (peer: Peer): Promise<Verdict> => {
  await peer.send([Frame.close(CloseReason.CloseReason(1000))])
  const deadline = Date.now() + 5000
  for (;;) {
    const e = await peer.next(deadline - Date.now())
    if (e._tag === "Timeout") return failWith("no Close reply within 5 s")
    if (e._tag === "TcpClosed") return failWith("TCP closed without a Close reply")
    if (e._tag === "Violation") return failWith(e.message)
    if (e.frame._tag === "Close") {
      const code = describeClose(e.frame.payload)
      if (code !== "1000") return failWith(`Close reply ${code}, expected 1000`)
      const after = await peer.next(deadline - Date.now())
      return after._tag === "TcpClosed" ? pass : failWith("TCP not closed after the Close exchange")
    }
  }
}

const withPeer = async (url: URL, body: (peer: Peer) => Promise<Verdict>): Promise<Verdict> => {
  let peer: Peer | undefined
  try {
    peer = await Peer.connect(url)
    return await body(peer)
  } catch (e) {
    return failWith(`error: ${e instanceof Error ? e.message : String(e)}`)
  } finally {
    peer?.destroy()
  }
}

const seq = async (...steps: ReadonlyArray<() => Promise<Verdict>>): Promise<Verdict> => {
  for (const step of steps) {
    const v = await step()
    if (!v.ok) return v
  }
  return pass
}

/** Sends `frames` (raw) and expects `messages`/`pongs` back, then a clean close. */
const echoCase = (frames: ReadonlyArray<RawFrame>, expect: Expect, chunkSize?: number) => (url: URL) =>
  withPeer(url, (peer) =>
    seq(
      async () => {
        await peer.sendRaw(frames, chunkSize)
        return pass
      },
      () => expectMessages(peer, expect),
      () => closeCleanly(peer)
    ))

/** Sends `frames` and expects `before` messages, then a Close with one of `codes`. */
const failCase = (frames: ReadonlyArray<RawFrame>, codes: ReadonlyArray<number | undefined>, before: Expect = {}, chunkSize?: number) => (url: URL) =>
  withPeer(url, (peer) =>
    seq(
      async () => {
        await peer.sendRaw(frames, chunkSize)
        return pass
      },
      () => expectMessages(peer, before),
      () => expectClose(peer, codes)
    ))

const cases: Array<Case> = []
const add = (section: string, id: string, description: string, run: (url: URL) => Promise<Verdict>) =>
  cases.push({ section, id, description, run })

// §1 Framing: every length-encoding boundary, whole and in small chunks.
for (const n of [0, 125, 126, 127, 128, 65535, 65536]) {
  for (const [type, op] of [["text", TEXT], ["binary", BINARY]] as const) {
    const data = type === "text" ? textOf(n) : filled(n)
    const message = type === "text" ? text(data) : binary(data)
    add("1 framing", `1.${type}.${n}`, `${type} message of ${n} bytes`, echoCase([{ opcode: op, payload: data }], { messages: [message] }))
    const chunk = n <= 128 ? 1 : 997
    add("1 framing", `1.${type}.${n}.chunked`, `${type} message of ${n} bytes in ${chunk}-byte writes`, echoCase([{ opcode: op, payload: data }], { messages: [message] }, chunk))
  }
}

// §2 Ping / Pong.
for (const [name, payload] of [["empty", new Uint8Array()], ["text", enc("Hello, world!")], ["binary", bytes(0, 0xff, 0xfe, 0xfd, 0xfc)], ["125 bytes", filled(125)]] as const) {
  add("2 ping/pong", `2.ping.${name}`, `Ping with ${name} payload is answered by an identical Pong`, echoCase([{ opcode: PING, payload }], { pongs: [payload] }))
}
add("2 ping/pong", "2.ping.126", "Ping with a 126-byte payload fails 1002", failCase([{ opcode: PING, payload: filled(126) }], [1002]))
add("2 ping/pong", "2.pong.unsolicited", "unsolicited Pongs are ignored", echoCase([{ opcode: PONG }, { opcode: PONG, payload: enc("x") }, { opcode: TEXT, payload: enc("after") }], { messages: [text("after")] }))
add("2 ping/pong", "2.ping.ten", "ten Pings in a row get one Pong each, in order", echoCase(Array.from({ length: 10 }, (_, i) => ({ opcode: PING, payload: enc(`ping ${i}`) })), { pongs: Array.from({ length: 10 }, (_, i) => enc(`ping ${i}`)) }))
add("2 ping/pong", "2.ping.ten.chunked", "ten Pings in 1-byte writes get one Pong each, in order", echoCase(Array.from({ length: 10 }, (_, i) => ({ opcode: PING, payload: enc(`ping ${i}`) })), { pongs: Array.from({ length: 10 }, (_, i) => enc(`ping ${i}`)) }, 1))

// §3 Reserved bits.
for (const rsv of [4, 2, 1, 7]) {
  add("3 rsv", `3.rsv${rsv}.text`, `RSV bits ${rsv} on a text frame fail 1002`, failCase([{ opcode: TEXT, payload: enc("x"), rsv }], [1002]))
  add("3 rsv", `3.rsv${rsv}.binary`, `RSV bits ${rsv} on a binary frame fail 1002`, failCase([{ opcode: BINARY, payload: bytes(1), rsv }], [1002]))
  add("3 rsv", `3.rsv${rsv}.ping`, `RSV bits ${rsv} on a Ping fail 1002`, failCase([{ opcode: PING, rsv }], [1002]))
}
add("3 rsv", "3.rsv.after-valid", "RSV bits after a valid message: the echo first, then 1002", failCase([{ opcode: TEXT, payload: enc("ok") }, { opcode: TEXT, payload: enc("x"), rsv: 4 }], [1002], { messages: [text("ok")] }))

// §4 Reserved opcodes.
for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) {
  add("4 opcodes", `4.op${op}`, `reserved opcode ${op} fails 1002`, failCase([{ opcode: op }], [1002]))
  add("4 opcodes", `4.op${op}.payload`, `reserved opcode ${op} with payload, after a valid message, fails 1002`, failCase([{ opcode: TEXT, payload: enc("ok") }, { opcode: op, payload: enc("reserved") }], [1002], { messages: [text("ok")] }))
}

// §5 Fragmentation.
add("5 fragmentation", "5.ping.fragmented", "a fragmented Ping fails 1002", failCase([{ opcode: PING, payload: enc("a"), fin: false }, { opcode: 0, payload: enc("b") }], [1002]))
add("5 fragmentation", "5.pong.fragmented", "a fragmented Pong fails 1002", failCase([{ opcode: PONG, payload: enc("a"), fin: false }, { opcode: 0, payload: enc("b") }], [1002]))
add("5 fragmentation", "5.text.two", "text in two fragments echoes as one message", echoCase([{ opcode: TEXT, payload: enc("frag"), fin: false }, { opcode: 0, payload: enc("ment") }], { messages: [text("fragment")] }))
add("5 fragmentation", "5.binary.many", "binary in 10 fragments echoes as one message", echoCase([{ opcode: BINARY, payload: filled(10), fin: false }, ...Array.from({ length: 8 }, (_, i) => ({ opcode: 0, payload: filled(10, i + 1), fin: false })), { opcode: 0, payload: filled(10, 9) }], { messages: [binary(Serializer.concat(Array.from({ length: 10 }, (_, i) => filled(10, i))))] }))
add("5 fragmentation", "5.text.pings-between", "Pings and Pongs between fragments are handled, the message echoes", echoCase([{ opcode: TEXT, payload: enc("a"), fin: false }, { opcode: PING, payload: enc("p1") }, { opcode: 0, payload: enc("b"), fin: false }, { opcode: PONG }, { opcode: PING, payload: enc("p2") }, { opcode: 0, payload: enc("c") }], { messages: [text("abc")], pongs: [enc("p1"), enc("p2")] }))
add("5 fragmentation", "5.text.one-byte-fragments", "one-byte fragments in one-byte writes echo as one message", echoCase([{ opcode: TEXT, payload: enc("h"), fin: false }, ...[..."ello worl"].map((c) => ({ opcode: 0, payload: enc(c), fin: false })), { opcode: 0, payload: enc("d") }], { messages: [text("hello world")] }, 1))
add("5 fragmentation", "5.continuation.none-open", "a continuation with no message open fails 1002", failCase([{ opcode: 0, payload: enc("x") }], [1002]))
add("5 fragmentation", "5.continuation.after-complete", "a continuation after a complete message fails 1002", failCase([{ opcode: TEXT, payload: enc("done") }, { opcode: 0, payload: enc("x") }], [1002], { messages: [text("done")] }))
add("5 fragmentation", "5.new-message-while-open", "a new text frame while a message is open fails 1002", failCase([{ opcode: TEXT, payload: enc("a"), fin: false }, { opcode: TEXT, payload: enc("b") }], [1002]))

// §6 UTF-8.
const validUtf8 = enc("κόσμε \u007f\u0080\u07ff\u0800\uffff\u{10000}\u{10ffff}")
add("6 utf-8", "6.valid", "valid UTF-8 including edge code points echoes", echoCase([{ opcode: TEXT, payload: validUtf8 }], { messages: [text(validUtf8)] }))
add("6 utf-8", "6.valid.split-everywhere", "valid UTF-8 fragmented at every byte position echoes", async (url) => {
  for (let cut = 1; cut < validUtf8.length; cut++) {
    const v = await echoCase([{ opcode: TEXT, payload: validUtf8.subarray(0, cut), fin: false }, { opcode: 0, payload: validUtf8.subarray(cut) }], { messages: [text(validUtf8)] })(url)
    if (!v.ok) return failWith(`split at ${cut}: ${v.why}`)
  }
  return pass
})
const invalidUtf8: Array<[string, Uint8Array]> = [
  ["overlong", bytes(0x61, 0xc0, 0xaf)],
  ["surrogate", bytes(0x61, 0xed, 0xa0, 0x80)],
  ["above U+10FFFF", bytes(0xf4, 0x90, 0x80, 0x80)],
  ["lone continuation", bytes(0x80)],
  ["truncated", bytes(0x61, 0xe2, 0x82)],
  ["0xFE", bytes(0xfe)],
  ["0xFF", bytes(0x61, 0xff)]
]
for (const [name, payload] of invalidUtf8) {
  add("6 utf-8", `6.invalid.${name}`, `invalid UTF-8 (${name}) fails 1007`, failCase([{ opcode: TEXT, payload }], [1007]))
}
add("6 utf-8", "6.fail-fast", "invalid UTF-8 in the first fragment fails 1007 before the message is complete", (url) =>
  withPeer(url, async (peer) => {
    await peer.sendRaw([{ opcode: TEXT, payload: bytes(0x61, 0xed, 0xa0, 0x80, 0x62), fin: false }])
    return expectClose(peer, [1007], 3000)
  }))
add("6 utf-8", "6.fail-fast.in-frame", "invalid UTF-8 early in a text frame fails 1007 before the frame is complete (Autobahn 6.4.x)", (url) =>
  withPeer(url, async (peer) => {
    // A 1,000-byte text frame whose 10th byte is invalid: only its header and first 10 bytes are sent.
    const payload = new Uint8Array(1000).fill(0x61)
    payload[9] = 0xc0
    const frame = rawFrameBytes({ opcode: TEXT, payload })
    await peer.sendBytes(frame.subarray(0, frame.length - 1000 + 10))
    return expectClose(peer, [1007], 3000)
  }))

// §7 Close.
add("7 close", "7.empty", "an empty Close is answered with Close (empty or 1000) and TCP closes", failCase([{ opcode: CLOSE }], [undefined, 1000]))
add("7 close", "7.frames-after-close", "frames after a Close are ignored", failCase([{ opcode: CLOSE, payload: bytes(0x03, 0xe8) }, { opcode: TEXT, payload: enc("ignored") }], [1000]))
add("7 close", "7.one-byte", "a 1-byte Close payload fails 1002", failCase([{ opcode: CLOSE, payload: bytes(0x03) }], [1002]))
add("7 close", "7.invalid-utf8-reason", "a Close reason with invalid UTF-8 fails 1007", failCase([{ opcode: CLOSE, payload: bytes(0x03, 0xe8, 0xce, 0xba, 0xed, 0xa0, 0x80) }], [1007]))
for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]) {
  add("7 close", `7.valid.${code}`, `Close ${code} is echoed`, failCase([{ opcode: CLOSE, payload: bytes(code >> 8, code & 0xff, 0x6f, 0x6b) }], [code]))
}
for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
  add("7 close", `7.invalid.${code}`, `Close ${code} on the wire fails 1002`, failCase([{ opcode: CLOSE, payload: bytes(code >> 8, code & 0xff) }], [1002]))
}

// §9 Limits and performance (sizes up to 16 MiB; the runner prints each case's time).
for (const n of [64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024]) {
  const data = filled(n)
  add("9 limits", `9.binary.${n}`, `binary message of ${n} bytes`, echoCase([{ opcode: BINARY, payload: data }], { messages: [binary(data)], ms: 30_000 }))
  const fragment = Math.max(64, n >> 6)
  const parts = Array.from({ length: Math.ceil(n / fragment) }, (_, i) => data.subarray(i * fragment, (i + 1) * fragment))
  add("9 limits", `9.binary.${n}.fragmented`, `binary message of ${n} bytes in ${parts.length} fragments`, echoCase(parts.map((payload, i) => ({ opcode: i === 0 ? BINARY : 0, payload, fin: i === parts.length - 1 })), { messages: [binary(data)], ms: 30_000 }, 65536))
}
add("9 limits", "9.sequential-1000", "1,000 small messages round-tripped one at a time", (url) =>
  withPeer(url, async (peer) => {
    for (let i = 0; i < 1000; i++) {
      await peer.send([Frame.text(`message ${i}`)])
      const v = await expectMessages(peer, { messages: [text(`message ${i}`)] })
      if (!v.ok) return failWith(`message ${i}: ${v.why}`)
    }
    return closeCleanly(peer)
  }))

// Opening handshake (§4): the server rejects bad requests with the right status.
const rawRequest = (url: URL, lines: ReadonlyArray<string>) =>
  new Promise<string>((resolve) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port || 80) })
    let response = ""
    const timer = setTimeout(() => socket.destroy(), 5000)
    socket.on("data", (b) => (response += b.toString("latin1")))
    socket.on("close", () => {
      clearTimeout(timer)
      resolve(response)
    })
    socket.on("error", () => {})
    socket.write(lines.join("\r\n") + "\r\n\r\n")
    socket.end()
  })
const handshakeCase = (id: string, description: string, lines: (url: URL) => ReadonlyArray<string>, status: ReadonlyArray<number>, header?: RegExp) =>
  add("handshake", id, description, async (url) => {
    const response = await rawRequest(url, lines(url))
    const m = /^HTTP\/1\.1 (\d{3})/.exec(response)
    if (m === null) return failWith(`no HTTP response (${JSON.stringify(response.slice(0, 40))})`)
    if (!status.includes(Number(m[1]))) return failWith(`status ${m[1]}, expected ${status.join("/")}`)
    if (header !== undefined && !header.test(response)) return failWith(`missing header ${header}`)
    return pass
  })
const base = (url: URL) => [`GET ${url.pathname} HTTP/1.1`, `Host: ${url.host}`, "Upgrade: websocket", "Connection: Upgrade"]
handshakeCase("hs.version", "a version other than 13 gets 426 with Sec-WebSocket-Version: 13", (u) => [...base(u), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 8"], [426], /sec-websocket-version: 13/i)
handshakeCase("hs.no-key", "a missing key gets 400", (u) => [...base(u), "Sec-WebSocket-Version: 13"], [400])
handshakeCase("hs.bad-key", "a key that is not base64 of 16 bytes gets 400", (u) => [...base(u), "Sec-WebSocket-Key: c2hvcnQ=", "Sec-WebSocket-Version: 13"], [400])
handshakeCase("hs.method", "a POST upgrade is refused", (u) => [`POST ${u.pathname} HTTP/1.1`, `Host: ${u.host}`, "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13", "Content-Length: 0"], [400, 405])
handshakeCase("hs.token-list", "Upgrade and Connection tokens are matched case-insensitively in lists", (u) => [`GET ${u.pathname} HTTP/1.1`, `Host: ${u.host}`, "Upgrade: WebSocket", "Connection: keep-alive, UPGRADE", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"], [101], /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i)

/** Every case, in section order. */
export const allCases: ReadonlyArray<Case> = cases
