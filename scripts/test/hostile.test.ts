/**
 * Hostile peers against the demo over real sockets on 127.0.0.1 (issue 19, `hostile-inputs.md`):
 * one test per row H1–H18, plus the issue's cases (over-limit headers on `/chat`, 40 connections
 * each declaring a 64 MiB frame, a deflate bomb of 1 GiB of zeros, a reader that never reads, a
 * chat member that never reads, 5,000 connections opened at once). The server runs in its own
 * process (`hostile/server.ts`), so its RSS and heap are sampled from that process (after `gc()`).
 * Each attack asserts the close code or HTTP status, a bound on the server's memory, and that a
 * fresh client still gets an echo on `/echo` within 1 s afterwards. Rows about timeouts (H3, H13,
 * H17's pings) run against the process's second and third servers, which have 250–500 ms timeouts,
 * so no test waits for a timer of seconds. Every loop is bounded in count and time.
 */
import { Frame, Handshake, ExtensionHeader } from "@effect-ws/codec"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { WebSocketClient } from "@effect-ws/node-adapter"
import { Effect } from "effect"
import * as Net from "node:net"
import * as Zlib from "node:zlib"
import { switchingProtocols } from "../../packages/node-adapter/test/helpers.ts"
import { openFileLimit } from "../bench/settings.ts"
import { fuzzFrameParser, fuzzHeadParser } from "./hostile/fuzz.ts"
import {
  awaitSockets,
  clientFrameBytes,
  closeFrame,
  freshEcho,
  header,
  memory,
  pause,
  Peer,
  rawFrame,
  serverCloses,
  startTarget,
  type Target,
  unmaskedFrame,
  upgradeRequest
} from "./hostile/wire.ts"

const MiB = 2 ** 20
let target: Target
/** Figures printed at the end (for the report). */
const figures: Array<string> = []
const note = (line: string) => figures.push(line)

/** H3 on the demo itself: a silent connection and a half-sent head, opened first and checked last (its deadline is 10 s). */
let demoSlow: { readonly openedAt: number; readonly silent: Peer; readonly partial: Peer; closedAt: Array<number> } | undefined

beforeAll(async () => {
  target = await startTarget()
  await freshEcho(target.demo, 5_000) // warm up the route and the JIT
  const silent = await Peer.connect(target.demo)
  const partial = await Peer.connect(target.demo)
  partial.expectHttp()
  partial.send("GET /echo HTTP/1.1\r\nHost: x\r\n")
  const slow = { openedAt: performance.now(), silent, partial, closedAt: [] as Array<number> }
  for (const peer of [silent, partial]) peer.socket.once("close", () => slow.closedAt.push(performance.now() - slow.openedAt))
  demoSlow = slow
}, 60_000)

afterAll(async () => {
  console.log(`hostile figures:\n  ${figures.join("\n  ")}`)
  await target?.child.stop(3_000)
}, 10_000)

type Memory = Awaited<ReturnType<typeof memory>>

/**
 * Slack on every RSS bound after an attack, in MB: V8's young generation grows in steps of 16 MB
 * with the allocation rate (to 60–130 MB here after a million tiny frames) and does not shrink at
 * `gc()`, and its physical size (`newSpace`) does not follow RSS closely enough to subtract it.
 * What the server keeps is bounded tightly by the heap and arrayBuffers checks.
 */
const YOUNG_GENERATION_SLACK = 64

/**
 * What every attack ends with: a fresh client gets an echo within 1 s, and the server's memory
 * (after `gc()`) grew since `before` by less than `rssMB` (+ the young-generation slack) in RSS,
 * `heapMB` (default 16) in heap and 8 MB in arrayBuffers. The attacker's connection may still be
 * ending on the server's side (a session that failed finishes its close), so memory is sampled
 * until it is within the bounds, for 3 s at most.
 */
const survived = async (label: string, before: Memory, bounds: { readonly rssMB: number; readonly heapMB?: number }) => {
  const echoMs = await freshEcho(target.demo, 1_000)
  const within = (m: Memory) =>
    m.rssMB - before.rssMB < bounds.rssMB + YOUNG_GENERATION_SLACK && m.heapMB - before.heapMB < (bounds.heapMB ?? 16) &&
    m.arrayBuffersMB - before.arrayBuffersMB < 8
  let after = await memory(target)
  for (let i = 0; i < 30 && !within(after); i++) {
    await pause(100)
    after = await memory(target)
  }
  note(
    `${label}: RSS ${before.rssMB.toFixed(0)} → ${after.rssMB.toFixed(0)} MB, heap ${before.heapMB.toFixed(1)} → ${after.heapMB.toFixed(1)} MB, ` +
      `arrayBuffers ${before.arrayBuffersMB.toFixed(1)} → ${after.arrayBuffersMB.toFixed(1)} MB; fresh echo in ${echoMs.toFixed(0)} ms`
  )
  expect(after.rssMB - before.rssMB, `${label}: RSS growth (MB)`).toBeLessThan(bounds.rssMB + YOUNG_GENERATION_SLACK)
  expect(after.heapMB - before.heapMB, `${label}: heap growth (MB)`).toBeLessThan(bounds.heapMB ?? 16)
  expect(after.arrayBuffersMB - before.arrayBuffersMB, `${label}: arrayBuffers growth (MB)`).toBeLessThan(8)
  return after
}

/** Opens `path` on the demo, sends `bytes`, returns the close code the server answers with (within `ms`). */
const closeCodeFor = async (path: string, bytes: ReadonlyArray<Uint8Array>, ms = 1_000, port = target.demo, extra: ReadonlyArray<string> = []) => {
  const peer = await Peer.open(port, path, extra)
  try {
    for (const b of bytes) peer.send(b)
    return await peer.closed(ms)
  } finally {
    peer.destroy()
  }
}

const text = (s: string) => Buffer.from(s, "utf8")

describe("hostile inputs (hostile-inputs.md)", () => {
  it("H1: thousands of header lines, or a head over the limit → 431 and the connection closed; memory flat", async () => {
    const before = await memory(target)
    const heads = {
      "3,000 header lines": upgradeRequest("/echo", Array.from({ length: 3_000 }, (_, i) => `X-${i}: a`)),
      "150 header lines (over maxHeaders 100)": upgradeRequest("/echo", Array.from({ length: 150 }, (_, i) => `X-${i}: a`)),
      "one 20 KB header": upgradeRequest("/echo", [`X-Big: ${"a".repeat(20_000)}`])
    }
    for (const [what, head] of Object.entries(heads)) {
      const peer = await Peer.connect(target.demo)
      const status = await peer.request(head)
      expect(status, what).toBe(431)
      await peer.tcpClose(2_000)
      peer.destroy()
    }
    // 8 MB of header lines streamed: answered 431 after the first 16 KiB, never buffered.
    const peer = await Peer.connect(target.demo)
    peer.expectHttp()
    peer.send("GET /echo HTTP/1.1\r\nHost: x\r\n")
    const line = Buffer.from(`X-Pad: ${"b".repeat(1_000)}\r\n`)
    for (let i = 0; i < 8_000 && !peer.tcpClosed && peer.status === 0; i++) {
      if (!peer.send(line)) await peer.drained(2_000).catch(() => {})
    }
    await peer.until(() => peer.status !== 0 || peer.tcpClosed, 2_000, "431")
    await peer.tcpClose(2_000)
    // The server stops after 16 KiB: it answers 431 and closes; the bytes we were still sending
    // then make its kernel reset the connection, which may discard the 431 before we read it.
    note(`H1: 8 MB of header lines → ${peer.status === 0 ? "connection reset (the 431 lost to the RST)" : peer.status} after ${peer.socket.bytesWritten} B written`)
    expect([0, 431]).toContain(peer.status)
    expect(peer.socket.bytesWritten, "bytes the server took before closing").toBeLessThan(4 * MiB)
    await survived("H1", before, { rssMB: 16 })
  })

  it("H2: crafted extension and protocol headers parse in linear time; bad syntax → 400, never 500 or a hang", async () => {
    const before = await memory(target)
    const crafted = {
      spaces: `permessage-deflate;${" ".repeat(1_000_000)}x`,
      commas: `${",".repeat(1_000_000)}permessage-deflate`,
      semicolons: `permessage-deflate${";".repeat(1_000_000)}`,
      quotes: `permessage-deflate; a="${"\\\"".repeat(500_000)}`,
      unterminated: `permessage-deflate; a="${"x ".repeat(500_000)}`
    }
    // The best of 5 (the machine is shared), and 1 MB against 100 KB: linear, not quadratic.
    const best = (value: string) => {
      let ms = Number.POSITIVE_INFINITY
      for (let i = 0; i < 5; i++) {
        const started = performance.now()
        ExtensionHeader.parseWebSocketExtensions(value)
        Handshake.headerList({ "sec-websocket-protocol": value }, "sec-websocket-protocol")
        ms = Math.min(ms, performance.now() - started)
      }
      return ms
    }
    for (const [what, value] of Object.entries(crafted)) {
      const ms = best(value)
      const tenth = best(value.slice(0, value.length / 10))
      note(`H2 parse of "${what}": 1 MB in ${ms.toFixed(1)} ms, 100 KB in ${tenth.toFixed(1)} ms`)
      expect(ms, what).toBeLessThan(50)
      // Quadratic would be 100×; 40× leaves room for a GC pause on a shared machine.
      expect(ms, `${what}: 10× the input`).toBeLessThan(40 * tenth + 10)
    }
    // Over a real socket: 1 MB values on the strict server (2 MiB heads), 15 KB ones on the demo.
    for (const [port, size] of [[target.strict, 1_000_000], [target.demo, 15_000]] as const) {
      for (const [what, value] of Object.entries(crafted)) {
        for (const name of ["Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol"]) {
          const peer = await Peer.connect(port)
          const started = performance.now()
          const status = await peer.request(upgradeRequest("/echo", [`${name}: ${value.slice(0, size)}`]), 2_000)
          const ms = performance.now() - started
          peer.destroy()
          expect([101, 400], `${name} ${what} (${size} B) → ${status}`).toContain(status)
          expect(ms, `${name} ${what} answered in`).toBeLessThan(1_000)
        }
      }
    }
    await survived("H2", before, { rssMB: 32 })
  })

  it("H3: a connection that sends nothing, or trickles its request, is dropped after the handshake timeout (500 ms here)", async () => {
    const sockets = (await target.child.stats()).connections
    const silent = await Peer.connect(target.strict)
    const trickling = await Peer.connect(target.strict)
    const started = performance.now()
    const request = upgradeRequest("/echo")
    let sent = 0
    const trickle = setInterval(() => {
      if (sent < request.length && !trickling.tcpClosed) trickling.send(request[sent++]!)
    }, 50)
    try {
      await silent.tcpClose(2_500)
      await trickling.tcpClose(2_500)
    } finally {
      clearInterval(trickle)
    }
    const ms = performance.now() - started
    note(`H3: silent and trickling connections dropped after ${ms.toFixed(0)} ms (handshakeTimeout 500 ms); trickled ${sent} bytes`)
    expect(ms).toBeGreaterThan(400)
    expect(trickling.status).toBe(0)
    expect(await awaitSockets(target, sockets)).toBeLessThanOrEqual(sockets)
    await freshEcho(target.demo)
  })

  it("H4: a header announcing 2^63−1 bytes → 1009, a 64-bit length with the top bit set → 1002, before any payload", async () => {
    const before = await memory(target)
    expect(await closeCodeFor("/echo", [header(0x82, 2n ** 63n - 1n)])).toBe(1009)
    expect(await closeCodeFor("/echo", [header(0x82, 2n ** 63n + 5n)])).toBe(1002)
    expect(await closeCodeFor("/chat", [header(0x81, 2n ** 63n - 1n)])).toBe(1009)
    await survived("H4", before, { rssMB: 8 })
  })

  it("H5: millions of tiny fragments → 1009 at maxMessageSize (/chat) or maxFragments (/echo); memory bounded", async () => {
    const before = await memory(target)
    // /chat (64 KiB messages): 1-byte continuations, 1009 once the message passes 64 KiB.
    const chat = await Peer.open(target.demo, "/chat")
    chat.send(rawFrame(0x01, text("a")))
    const one = rawFrame(0x00, text("a"))
    const batch = Buffer.concat(Array.from({ length: 4_096 }, () => one))
    for (let i = 0; i < 40 && chat.closeCode === undefined && !chat.tcpClosed; i++) await chat.sendDrained(batch).catch(() => {})
    expect(await chat.closed(2_000)).toBe(1009)
    chat.destroy()
    // /echo (default maxFragments 1,048,576): empty continuations; memory sampled just below the limit.
    const echo = await Peer.open(target.demo, "/echo")
    echo.send(rawFrame(0x02, new Uint8Array(0)))
    const empty = Buffer.concat(Array.from({ length: 16_384 }, () => rawFrame(0x00, new Uint8Array(0))))
    let fragments = 1
    const started = performance.now()
    let during: Memory | undefined
    for (let i = 0; i < 72 && echo.closeCode === undefined && !echo.tcpClosed; i++) {
      await echo.sendDrained(empty).catch(() => {})
      fragments += 16_384
      if (during === undefined && fragments > 1_000_000) during = await memory(target)
    }
    const code = await echo.closed(5_000)
    echo.destroy()
    note(
      `H5: /echo closed ${code} after ${fragments.toLocaleString("en-US")} empty fragments sent in ${(performance.now() - started).toFixed(0)} ms; ` +
        `server at 1,000,000 fragments: RSS +${((during?.rssMB ?? 0) - before.rssMB).toFixed(0)} MB, heap +${((during?.heapMB ?? 0) - before.heapMB).toFixed(1)} MB`
    )
    expect(code).toBe(1009)
    expect((during?.heapMB ?? 0) - before.heapMB, "heap growth at 1M fragments (MB)").toBeLessThan(64)
    await survived("H5", before, { rssMB: 48 })
  }, 30_000)

  it("H6: a 16 KiB frame in one-byte TCP writes is echoed intact; memory bounded by the frame", async () => {
    const before = await memory(target)
    const peer = await Peer.open(target.demo, "/echo")
    const payload = Buffer.alloc(16 * 1024)
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff
    const bytes = clientFrameBytes(Frame.binary(payload))
    const cpu0 = (await target.child.stats()).cpuMicros
    const started = performance.now()
    for (let i = 0; i < bytes.length; i++) {
      peer.send(bytes.subarray(i, i + 1))
      if (i % 64 === 63) await new Promise((resolve) => setImmediate(resolve))
    }
    await peer.until(() => peer.dataFrames === 1, 5_000, "the echo")
    const cpu = ((await target.child.stats()).cpuMicros - cpu0) / 1000
    note(`H6: 16 KiB frame in ${bytes.length} one-byte writes echoed after ${(performance.now() - started).toFixed(0)} ms, server CPU ${cpu.toFixed(0)} ms`)
    expect(Buffer.from(peer.frames[0]!.payload).equals(payload)).toBe(true)
    peer.destroy()
    await survived("H6", before, { rssMB: 8 })
  })

  it("H7: a permessage-deflate bomb (1 GiB of zeros in ~1 MB) → 1009 without inflating it all; memory bounded", async () => {
    // /echo gets 1 GiB in 1 MB; /chat (8,000 B frames) 6 MiB in a frame under its frame limit, so
    // that its inflated-size limit, not the frame limit, is what stops it.
    const bombs = { "/chat": deflateBomb(6), "/echo": deflateBomb(1024) }
    expect(bombs["/echo"].length, "bomb size on the wire").toBeLessThan(2 * MiB)
    expect(bombs["/chat"].length, "/chat bomb under the frame limit").toBeLessThan(8_000)
    const before = await memory(target)
    const offer = ["Sec-WebSocket-Extensions: permessage-deflate"]
    for (const [path, bomb] of Object.entries(bombs)) {
      const peer = await Peer.open(target.demo, path, offer)
      expect(peer.head).toMatch(/permessage-deflate/i)
      const started = performance.now()
      peer.send(rawFrame(0xc2, bomb))
      const code = await peer.closed(5_000)
      note(`H7: ${path} bomb of ${bomb.length.toLocaleString("en-US")} B → ${code} in ${(performance.now() - started).toFixed(0)} ms`)
      expect(code).toBe(1009)
      peer.destroy()
    }
    await survived("H7", before, { rssMB: 96 })
  })

  it("H8: an unmasked frame from a client → 1002; a masked frame from a server → our client closes 1002", async () => {
    const before = await memory(target)
    expect(await closeCodeFor("/echo", [unmaskedFrame(0x81, text("hi"))])).toBe(1002)
    expect(await closeCodeFor("/chat", [unmaskedFrame(0x81, text("hi"))])).toBe(1002)
    // A hostile server (a raw socket here) answering the upgrade, then sending a masked Text frame.
    const server = Net.createServer((socket) => {
      let head = ""
      socket.on("error", () => {})
      socket.on("data", (chunk: Buffer) => {
        if (head.endsWith("\r\n\r\n")) return
        head += chunk.toString("latin1")
        if (head.endsWith("\r\n\r\n")) socket.write(Buffer.concat([Buffer.from(switchingProtocols(head), "latin1"), rawFrame(0x81, text("masked"))]))
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    try {
      const { port } = server.address() as Net.AddressInfo
      const reason = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}/`, { session: { closeTimeout: "200 millis" } })
        return yield* Effect.timeout(session.awaitClose, "2 seconds")
      })))
      expect(reason.code).toBe(1002)
    } finally {
      server.close()
    }
    await survived("H8", before, { rssMB: 8 })
  })

  it("H9: reserved opcodes, RSV bits without extension, fragmented or oversized control frames → 1002", async () => {
    const before = await memory(target)
    const cases = {
      "opcode 0x3": rawFrame(0x83, text("x")),
      "opcode 0xB": rawFrame(0x8b, text("x")),
      "RSV1 without permessage-deflate": rawFrame(0xc1, text("x")),
      "RSV2": rawFrame(0xa2, text("x")),
      "RSV3 on a Ping": rawFrame(0x99, text("x")),
      "Ping without FIN": rawFrame(0x09, text("x")),
      "Ping of 126 bytes": rawFrame(0x89, new Uint8Array(126)),
      "continuation without a message": rawFrame(0x80, text("x"))
    }
    for (const [what, bytes] of Object.entries(cases)) expect(await closeCodeFor("/echo", [bytes]), what).toBe(1002)
    await survived("H9", before, { rssMB: 8 })
  })

  it("H10: invalid UTF-8 split across fragments → 1007 before the message ends; in a close reason → 1007", async () => {
    const before = await memory(target)
    // "€" is E2 82 AC: E2 82 then 28 is invalid at the third byte, which arrives in the second fragment.
    expect(await closeCodeFor("/echo", [rawFrame(0x01, Buffer.from([0x61, 0xe2, 0x82])), rawFrame(0x00, Buffer.from([0x28]))])).toBe(1007)
    expect(await closeCodeFor("/chat", [rawFrame(0x01, Buffer.from([0xe2])), rawFrame(0x00, Buffer.from([0x82, 0xff]))])).toBe(1007)
    expect(await closeCodeFor("/echo", [closeFrame(Buffer.from([0x03, 0xe8, 0xc3, 0x28]))])).toBe(1007)
    await survived("H10", before, { rssMB: 8 })
  })

  it("H11: a Close with a 1-byte payload or an invalid code → 1002", async () => {
    const before = await memory(target)
    const code = (n: number) => Buffer.from([n >> 8, n & 0xff])
    const cases = { "1 byte": Buffer.from([0x03]), "999": code(999), "1004": code(1004), "1005": code(1005), "1006": code(1006), "1015": code(1015), "5000": code(5000) }
    for (const [what, payload] of Object.entries(cases)) expect(await closeCodeFor("/echo", [closeFrame(payload)]), what).toBe(1002)
    await survived("H11", before, { rssMB: 8 })
  })

  it("H12: a client that never reads on /echo while it keeps sending (3 s): the server stops reading, memory bounded, others unaffected", async () => {
    const before = await memory(target)
    const peer = await Peer.open(target.demo, "/echo")
    peer.socket.pause()
    const message = clientFrameBytes(Frame.binary(Buffer.alloc(64 * 1024, 7)))
    let sent = 0
    let blocked = 0
    const deadline = performance.now() + 3_000
    let peak = before
    let probes = 0
    while (performance.now() < deadline && !peer.tcpClosed) {
      if (peer.send(message)) sent++
      else {
        blocked++
        await peer.drained(250).catch(() => {})
        if (blocked % 4 === 0) {
          await freshEcho(target.demo)
          probes++
          const now = await memory(target)
          if (now.rssMB > peak.rssMB) peak = now
        }
      }
    }
    note(
      `H12: sent ${sent} × 64 KiB (${((sent * 64) / 1024).toFixed(0)} MiB accepted by our socket) in 3 s without reading; ` +
        `blocked ${blocked} times; peak server RSS +${(peak.rssMB - before.rssMB).toFixed(0)} MB; ${probes} fresh echoes meanwhile`
    )
    expect(peer.tcpClosed).toBe(false)
    expect(sent * 64 * 1024, "the server stopped taking bytes").toBeLessThan(128 * MiB)
    expect(peak.rssMB - before.rssMB, "server RSS growth while blocked (MB)").toBeLessThan(128)
    peer.destroy()
    // What the server held for this connection (its queues, about 256 frames each way) is released.
    let held = Number.POSITIVE_INFINITY
    for (let i = 0; i < 30 && held > 4; i++) {
      held = (await memory(target)).arrayBuffersMB - before.arrayBuffersMB
      if (held > 4) await pause(100)
    }
    note(`H12: arrayBuffers held after the connection closed: ${held.toFixed(1)} MB`)
    expect(held, "arrayBuffers still held after close (MB)").toBeLessThan(4)
    await survived("H12", before, { rssMB: 48 })
  }, 20_000)

  it("H13: a peer that sends Close and never reads, or never answers our Close: the session ends, TCP destroyed after the close timeout (500 ms here)", async () => {
    const before = await memory(target)
    const sockets = (await target.child.stats()).connections
    await serverCloses(target)
    // Sends Close and never reads: the server answers, ends its output, and the session ends 1000.
    const deaf = await Peer.open(target.strict, "/echo")
    deaf.socket.pause()
    deaf.send(closeFrame(Buffer.from([0x03, 0xe8])))
    const deafCloses = await waitCloses(1)
    deaf.destroy()
    // Never answers the server's Close (half-open allowed, so not even its FIN): the session ends
    // 1006 "Close handshake timed out" after closeTimeout, and the server's socket is destroyed.
    const mute = await Peer.open(target.strict, "/echo", [], true)
    mute.send(clientFrameBytes(Frame.text("close-me")))
    await mute.until(() => mute.closeCode !== undefined, 1_000, "the server's Close")
    const started = performance.now()
    const muteCloses = await waitCloses(1)
    const ms = performance.now() - started
    const left = await awaitSockets(target, sockets)
    note(`H13: deaf peer → ${JSON.stringify(deafCloses)}; mute peer → ${JSON.stringify(muteCloses)} ${ms.toFixed(0)} ms after the server's Close arrived (closeTimeout 500 ms); server sockets ${left} (before ${sockets})`)
    mute.destroy()
    expect(deafCloses.map((c) => c.code)).toEqual([1000])
    expect(muteCloses).toEqual([{ server: "strict", code: 1006, message: "Close handshake timed out" }])
    expect(ms).toBeGreaterThan(300)
    expect(left).toBeLessThanOrEqual(sockets)
    await survived("H13", before, { rssMB: 8 })
  })

  it("H14: a TCP reset mid-frame, or a FIN without Close → the session ends 1006, sockets released", async () => {
    const before = await memory(target)
    const sockets = (await target.child.stats()).connections
    await serverCloses(target)
    const reset = await Peer.open(target.strict, "/echo")
    reset.send(header(0x82, 1000))
    reset.send(Buffer.alloc(300))
    await pause(20)
    reset.socket.resetAndDestroy()
    const half = await Peer.open(target.strict, "/echo")
    half.send(header(0x82, 10))
    half.socket.end()
    await half.tcpClose(2_000)
    const closes = await waitCloses(2)
    note(`H14: server closeReasons after reset and FIN: ${JSON.stringify(closes)}`)
    expect(closes.map((c) => c.code)).toEqual([1006, 1006])
    expect(await awaitSockets(target, sockets)).toBeLessThanOrEqual(sockets)
    await survived("H14", before, { rssMB: 8 })
  })

  it("H15: a ping flood gets one Pong per Ping in order; a flood that is not read stops the server reading, memory bounded", async () => {
    const before = await memory(target)
    const peer = await Peer.open(target.demo, "/echo")
    peer.keepFrames = false
    const count = 100_000
    const pings = Buffer.concat(Array.from({ length: count }, (_, i) => rawFrame(0x89, Buffer.from(String(i).padStart(120, "p")))))
    // 12.6 MB of Pings, their Pongs not read: more than the socket buffers hold, so once the
    // server's unwritten Pongs pass its bound it must stop reading, and our writes must stall.
    peer.socket.pause()
    const started = performance.now()
    let written = 0
    let stalled = 0
    const slice = 64 * 1024
    while (written < pings.length && performance.now() - started < 3_000) {
      const ok = peer.send(pings.subarray(written, written + slice))
      written += slice
      if (!ok) await peer.drained(300).catch(() => stalled++)
    }
    const during = await memory(target)
    peer.socket.resume()
    if (written < pings.length) peer.send(pings.subarray(written))
    peer.send(clientFrameBytes(Frame.text("after the flood")))
    await peer.until(() => peer.dataFrames === 1, 10_000, "the echo after the flood")
    const pongs = peer.frames.filter((f) => f._tag === "Pong")
    note(
      `H15: ${count} Pings (${(pings.length / MiB).toFixed(1)} MiB) while not reading: our writes stalled ${stalled} times (300 ms each), ` +
        `${(Math.min(written, pings.length) / MiB).toFixed(1)} MiB handed to our socket in 3 s; ` +
        `server RSS +${(during.rssMB - before.rssMB).toFixed(0)} MB; ${pongs.length} Pongs`
    )
    expect(stalled, "the server stopped reading while its Pongs were not read").toBeGreaterThan(0)
    expect(pongs.length).toBe(count)
    for (let i = 0; i < count; i += 997) expect(Buffer.from(pongs[i]!.payload).toString()).toBe(String(i).padStart(120, "p"))
    expect(during.rssMB - before.rssMB, "server RSS growth during the flood (MB)").toBeLessThan(64)
    peer.destroy()
    await survived("H15", before, { rssMB: 16 })
  }, 20_000)

  it("H16: Pongs, echoes and Close replies carry exactly the bytes given, nothing more", async () => {
    const before = await memory(target)
    const peer = await Peer.open(target.demo, "/echo")
    peer.wire = []
    const exchanges: ReadonlyArray<readonly [Buffer, Buffer]> = [
      [rawFrame(0x89, text("abc")), Buffer.concat([Buffer.from([0x8a, 3]), text("abc")])],
      [rawFrame(0x89, Buffer.alloc(0)), Buffer.from([0x8a, 0])],
      [rawFrame(0x82, Buffer.from([1, 2, 3, 4, 5])), Buffer.from([0x82, 5, 1, 2, 3, 4, 5])],
      [rawFrame(0x81, text("")), Buffer.from([0x81, 0])],
      [rawFrame(0x82, Buffer.alloc(200, 9)), Buffer.concat([Buffer.from([0x82, 126, 0, 200]), Buffer.alloc(200, 9)])]
    ]
    let expected = 0
    for (const [send, reply] of exchanges) {
      peer.send(send)
      expected += reply.length
      await peer.until(() => peer.bytesIn >= expected, 1_000, "the reply")
    }
    peer.send(closeFrame(Buffer.concat([Buffer.from([0x0f, 0xa0]), text("four thousand")])))
    await peer.tcpClose(2_000)
    const wire = Buffer.concat(peer.wire)
    expect(wire.subarray(0, expected).toString("hex")).toBe(Buffer.concat(exchanges.map(([, reply]) => reply)).toString("hex"))
    // The Close reply: one Close frame, nothing after it; a reason, if any, is ours (here the peer's code echoed).
    const close = wire.subarray(expected)
    note(`H16: Close reply ${close.toString("hex")}`)
    expect(close[0]).toBe(0x88)
    expect(close.length).toBe(2 + close[1]!)
    expect(close.readUInt16BE(2)).toBe(4000)
    await survived("H16", before, { rssMB: 8 })
  })

  it("H17: 1,000 idle connections that never answer Pings are all closed 1011 by the ping timeout (250 ms + 250 ms here)", async () => {
    const sockets = (await target.child.stats()).connections
    const before = await memory(target)
    await serverCloses(target)
    const peers = await openMany(target.pinging, "/echo", 1_000, 100)
    const open = await memory(target)
    const started = performance.now()
    await Promise.all(peers.map((p) => p.closed(3_000)))
    const ms = performance.now() - started
    const codes = new Set(peers.map((p) => p.closeCode))
    note(
      `H17: 1,000 idle connections on the pinging server: +${((open.rss - before.rss) / 1000 / 1024).toFixed(1)} KiB RSS and ` +
        `+${((open.heapUsed - before.heapUsed) / 1000 / 1024).toFixed(1)} KiB heap per connection; all closed within ${ms.toFixed(0)} ms, codes ${[...codes].join(",")}`
    )
    for (const p of peers) p.destroy()
    expect([...codes]).toEqual([1011])
    expect(await awaitSockets(target, sockets)).toBeLessThanOrEqual(sockets)
    await survived("H17", before, { rssMB: 32 })
  }, 30_000)

  it("H18: random bytes in random chunkings: 100,000 cases each for the frame and head parsers; and over real sockets", async () => {
    const before = await memory(target)
    const started = performance.now()
    fuzzFrameParser(100_000, 19)
    fuzzHeadParser(100_000, 19)
    note(`H18: 200,000 parser cases in ${(performance.now() - started).toFixed(0)} ms`)
    // Over sockets: random bytes after a good handshake, and as the handshake itself.
    let seed = 0x1905
    const random = (n: number) => {
      const b = Buffer.alloc(n)
      for (let i = 0; i < n; i++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
        b[i] = seed >>> 24
      }
      return b
    }
    const outcomes = new Map<string, number>()
    for (let i = 0; i < 100; i++) {
      const peer = i % 2 === 0 ? await Peer.open(target.demo, "/echo") : await Peer.connect(target.demo)
      const bytes = random(8 + (i % 40) * 25)
      if (i % 2 === 1) peer.expectHttp()
      for (let at = 0; at < bytes.length; at += 1 + (i % 7)) peer.send(bytes.subarray(at, at + 1 + (i % 7)))
      await peer.until(() => peer.tcpClosed || peer.closeCode !== undefined || peer.status > 0, 300, "an answer").catch(() => {})
      const outcome = peer.closeCode !== undefined ? `close ${peer.closeCode}` : peer.status > 0 && i % 2 === 1 ? `HTTP ${peer.status}` : peer.tcpClosed ? "TCP closed" : "still open"
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
      peer.destroy()
    }
    note(`H18: 100 connections of random bytes: ${JSON.stringify(Object.fromEntries(outcomes))}`)
    for (const outcome of outcomes.keys()) expect(outcome).toMatch(/^(close 100[279]|HTTP (400|404|405|426|431)|TCP closed|still open)$/)
    await survived("H18", before, { rssMB: 16 })
  }, 40_000)
})

describe("hostile inputs (issue 19)", () => {
  it("/chat: frame headers declaring 1 MiB and 60 MiB → 1009 within 1 s", async () => {
    const before = await memory(target)
    for (const size of [MiB, 60 * MiB]) {
      const started = performance.now()
      expect(await closeCodeFor("/chat", [header(0x81, size)], 1_000), `${size} B`).toBe(1009)
      note(`/chat header of ${size} B → 1009 in ${(performance.now() - started).toFixed(0)} ms`)
    }
    // The running total across fragments counts too (/chat takes 8,000 B): 6,000 B, then a fragment declaring 4,000 more.
    expect(await closeCodeFor("/chat", [rawFrame(0x01, Buffer.alloc(6_000, 0x61)), header(0x00, 4_000)], 1_000)).toBe(1009)
    await survived("/chat headers", before, { rssMB: 8 })
  })

  it("40 connections each declaring a 64 MiB frame and sending 2 MiB of it: server memory grows with what was sent, and returns after close", async () => {
    const before = await memory(target)
    const conns = 40
    const sentPer = 2 * MiB
    const peers = await openMany(target.demo, "/echo", conns, conns)
    const chunk = Buffer.alloc(256 * 1024, 0x33)
    await Promise.all(peers.map(async (peer) => {
      peer.send(header(0x82, 64 * MiB, 0))
      for (let sent = 0; sent < sentPer; sent += chunk.length) await peer.sendDrained(chunk, 10_000)
    }))
    // The server has read it all once its memory stops growing; the sockets stay open.
    await pause(200)
    const during = await memory(target)
    for (const p of peers) p.destroy()
    const sentMB = (conns * sentPer) / MiB
    note(
      `64 MiB declared × ${conns}, ${sentMB} MiB sent: RSS ${before.rssMB.toFixed(0)} → ${during.rssMB.toFixed(0)} MB, ` +
        `arrayBuffers ${before.arrayBuffersMB.toFixed(0)} → ${during.arrayBuffersMB.toFixed(0)} MB while open`
    )
    expect(during.arrayBuffersMB - before.arrayBuffersMB, "arrayBuffers growth (MB) while the frames are open").toBeLessThan(2 * sentMB + 16)
    expect(during.rssMB - before.rssMB, "RSS growth (MB) while the frames are open").toBeLessThan(2 * sentMB + 64)
    await awaitSockets(target, (await target.child.stats()).connections - conns)
    const after = await survived("64 MiB declared × 40", before, { rssMB: sentMB + 32 })
    expect(after.arrayBuffersMB - before.arrayBuffersMB, "arrayBuffers after close (MB)").toBeLessThan(8)
  }, 30_000)

  it("/chat: one member never reads while 50 others send 10,000 messages: the others get their broadcasts, the server stays bounded", async () => {
    const before = await memory(target)
    const slow = await Peer.open(target.demo, "/chat")
    slow.socket.pause()
    const members = await openMany(target.demo, "/chat", 50, 50)
    for (const m of members) m.keepFrames = false
    const perMember = 200
    const line = (i: number) => clientFrameBytes(Frame.text(`line ${i} ${"x".repeat(100)}`))
    const started = performance.now()
    await Promise.all(members.map(async (m) => {
      for (let i = 0; i < perMember; i += 10) {
        await m.sendDrained(Buffer.concat(Array.from({ length: 10 }, (_, k) => line(i + k))))
        await new Promise((resolve) => setImmediate(resolve))
      }
    }))
    const total = 50 * perMember
    // Each member gets the 10,000 lines plus join notices; wait (bounded) until nothing more comes for 600 ms.
    let last = -1
    for (let i = 0, quiet = 0; i < 75 && quiet < 3; i++) {
      const received = members.reduce((n, m) => n + m.dataFrames, 0)
      quiet = received === last ? quiet + 1 : 0
      last = received
      await pause(200)
    }
    const during = await memory(target)
    const counts = members.map((m) => m.dataFrames).sort((a, b) => a - b)
    note(
      `chat: 50 members sent ${total} lines in ${(performance.now() - started).toFixed(0)} ms; each fast member received ${counts[0]}–${counts[counts.length - 1]} events ` +
        `(of ${total} lines + joins); the member that never reads got ${slow.dataFrames} (socket paused); server RSS +${(during.rssMB - before.rssMB).toFixed(0)} MB, heap +${(during.heapMB - before.heapMB).toFixed(1)} MB`
    )
    expect(slow.tcpClosed).toBe(false)
    // The room is a sliding hub of 256 events: under a burst faster than the server can forward
    // (10,000 lines × 51 members in 1–3 s here) every member loses the oldest ones, with or without
    // a member that never reads (measured: 6–19 % of the lines either way), so the count is only
    // reported. What must hold: nobody is stalled by that member, a line sent now reaches all.
    const marker = "after the burst"
    const got = members.map(() => false)
    members.forEach((m, i) => {
      m.onData = (frame) => {
        if (Buffer.from(frame.payload).includes(marker)) got[i] = true
      }
    })
    const sentAt = performance.now()
    members[0]!.send(clientFrameBytes(Frame.text(marker)))
    await poll(() => got.every(Boolean), 1_000, "the marker line at every fast member")
    note(`chat: a line sent after the burst reached all 50 fast members in ${(performance.now() - sentAt).toFixed(0)} ms`)
    expect(during.rssMB - before.rssMB, "server RSS growth (MB)").toBeLessThan(96)
    slow.destroy()
    for (const m of members) m.destroy()
    await survived("chat slow member", before, { rssMB: 48 })
  }, 40_000)

  it("H3 on the demo: a silent connection and a half-sent head are dropped after its 10 s head deadline (408 for the head)", async () => {
    const slow = demoSlow!
    await poll(() => slow.closedAt.length === 2, Math.max(1_000, 13_000 - (performance.now() - slow.openedAt)), "both closes")
    note(`H3 demo: closed after ${slow.closedAt.map((ms) => (ms / 1000).toFixed(1)).join(" and ")} s; half-sent head answered ${slow.partial.status}`)
    for (const ms of slow.closedAt) expect(ms).toBeGreaterThan(9_000)
    expect(slow.partial.status).toBe(408)
    expect(slow.silent.status).toBe(0)
  }, 20_000)

  it("5,000 connections opened as fast as possible (200 at a time): all succeed; memory reported; all closed after", async () => {
    // Both processes hold one descriptor per connection: fewer when the open-file limit is lower (said in the figures).
    const limit = openFileLimit()
    const count = Math.min(5_000, Number.isFinite(limit) ? limit - 500 : 5_000)
    const sockets = (await target.child.stats()).connections
    const before = await memory(target)
    const started = performance.now()
    const peers = await openMany(target.demo, "/echo", count, 200)
    const openMs = performance.now() - started
    const open = await memory(target)
    const alive = peers.filter((p) => !p.tcpClosed && p.status === 101).length
    note(
      `${count} connections (open-file limit ${limit}): ${alive} open after ${openMs.toFixed(0)} ms, server sockets ${open.connections}; server RSS ${before.rssMB.toFixed(0)} → ${open.rssMB.toFixed(0)} MB ` +
        `(${((open.rss - before.rss) / count / 1024).toFixed(1)} KiB/connection), heap +${((open.heapUsed - before.heapUsed) / count / 1024).toFixed(1)} KiB/connection`
    )
    expect(alive).toBe(count)
    expect(open.connections - sockets).toBe(count)
    await freshEcho(target.demo)
    for (const p of peers) p.destroy()
    const left = await awaitSockets(target, sockets, 10_000)
    note(`${count} connections: ${left} server sockets left after closing (${sockets} before)`)
    expect(left).toBeLessThanOrEqual(sockets)
    // RSS is not given back at once after thousands of sockets (the allocator keeps it, see the report); the heap is.
    await survived(`${count} connections`, before, { rssMB: 256, heapMB: 16 })
  }, 60_000)
})

/** Polls `check` every 10 ms until it holds; throws after `ms`. */
const poll = async (check: () => boolean, ms: number, what: string) => {
  const deadline = performance.now() + ms
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`no ${what} within ${ms} ms`)
    await pause(10)
  }
}

/** Waits (bounded) until the strict/pinging servers report `n` ended sessions. */
const waitCloses = async (n: number) => {
  const all: Array<{ readonly server: string; readonly code: number; readonly message: string }> = []
  for (let i = 0; i < 100 && all.length < n; i++) {
    all.push(...await serverCloses(target))
    if (all.length < n) await pause(20)
  }
  return all
}

/** Opens `count` upgraded connections to `path`, `concurrency` at a time; an upgrade that fails throws. */
const openMany = async (port: number, path: string, count: number, concurrency: number): Promise<Array<Peer>> => {
  const peers: Array<Peer> = []
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      next++
      peers.push(await Peer.open(port, path))
    }
  }))
  return peers
}

/**
 * permessage-deflate payload of `mib` MiB of zeros: one sync-flushed deflate of 1 MiB repeated
 * (no block is final, so the copies make one valid stream), without the trailing 00 00 ff ff.
 */
const deflateBomb = (mib: number): Buffer => {
  const block = Zlib.deflateRawSync(Buffer.alloc(MiB), { finishFlush: Zlib.constants.Z_SYNC_FLUSH, level: 9 })
  const all = Buffer.concat(Array.from({ length: mib }, () => block))
  return all.subarray(0, all.length - 4)
}
