/**
 * The load generator (a child of `echo.ts` / `conns.ts` / `deflate.ts`, one process for every
 * server): raw sockets speaking WebSocket through `rawclient.ts`, so that every server faces
 * exactly the same client. Requests (types in `protocol.ts`, transport in `ipc.ts`):
 *
 * - `echo`: opens `conns` connections, keeps `inFlight` messages of `size` bytes in flight on
 *   each (every echo received is answered by the next message), warms up, then measures for
 *   `durationMs` (and, with `minSamples`, until that many round trips were timed). It emits `mark` events at the start and the end of the
 *   window so that the orchestrator can sample the server's CPU at the same moments, and returns
 *   the messages echoed in the window, the RTTs (with 1 connection × 1 in flight) and its own
 *   CPU time, so one can see it is not the bottleneck. Then it closes every connection.
 *   How messages are written (`writes`): by default one `write` per message, as real clients do
 *   (a browser or a `ws` client sends each message on its own); `"batched"` is the pipelined
 *   load: every message due on a connection goes in one `write` (the `inFlight` messages at the
 *   start, then all those answered by the chunks read in one event-loop turn), so the server
 *   reads many frames per chunk.
 * - `open`: opens `count` idle connections, at most `concurrency` handshakes at a time, and
 *   returns how long that took; `closeAll` closes them. With `exchangeSize` (permessage-deflate
 *   offered), each connection then sends `exchanges` (default 1) compressed JSON-ish messages of
 *   that size and waits for their echoes (as `replies` allows) before it idles.
 *
 * permessage-deflate (`deflate.ts`): with `deflate` set, connections offer `DEFLATE_OFFER`
 * (`client_no_context_takeover`, so each message we send is compressed on its own and the same
 * compressed bytes are written again and again: the message is deflated once per run with
 * node:zlib) and fail unless the server accepts. `"compressed"` sends RSV1 messages,
 * `"negotiated"` sends plain ones (as a client does below its threshold). `replies` says which
 * replies are accepted (plain: RSV1 clear and the right length; compressed: RSV1 set, any
 * length; see `EchoReader`); the compressed replies of the first `verifyConns` connections are
 * all inflated (in order: the server keeps its context) and checked byte for byte against what
 * was sent; the others are only counted.
 *
 * Every wait is bounded (`maxMs`, handshake and close timeouts).
 */
import { Frame } from "@effect-ws/codec"
import type * as Net from "node:net"
import { emit, serve } from "./ipc.ts"
import { type EchoParams, type EchoResult, HOST, type Message, type OpenResult, type ReplyCompression } from "./protocol.ts"
import {
  acceptDeflate,
  answerPings,
  clientFrameBytes,
  closeGracefully,
  DEFLATE_OFFER,
  deflateMessage,
  EchoReader,
  open,
  type Opened,
  ReplyInflater
} from "./rawclient.ts"

const HANDSHAKE_TIMEOUT_MS = 15_000
const CLOSE_TIMEOUT_MS = 5_000
const MAX_SAMPLES = 2_000_000

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const cpuMicros = () => {
  const usage = process.cpuUsage()
  return usage.user + usage.system
}

/**
 * Compressible text of `size` bytes: one JSON-ish record repeated (ASCII, so valid UTF-8 however
 * it is cut).
 */
export const jsonishPayload = (size: number): Uint8Array => {
  const record = '{"id":12345,"type":"chat.message","user":{"name":"alice","roles":["admin","dev"]},"text":"hello, world","ok":true},'
  const out = new Uint8Array(size)
  for (let i = 0; i < size; i++) out[i] = record.charCodeAt(i % record.length)
  return out
}

/**
 * Opens `count` connections with at most `concurrency` handshakes in flight, all within `maxMs`;
 * with `deflate`, each offers permessage-deflate and fails unless the server accepts it.
 */
const openMany = async (
  port: number,
  count: number,
  concurrency: number,
  maxMs: number,
  deflate = false
): Promise<{ opened: Array<Opened>; failed: number; firstError: string | null; windowBits: number }> => {
  const opened: Array<Opened> = []
  const deadline = performance.now() + maxMs
  let next = 0
  let failed = 0
  let firstError: string | null = null
  let windowBits = 15
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      next++
      try {
        const connection = await open(HOST, port, "/", HANDSHAKE_TIMEOUT_MS, deflate ? DEFLATE_OFFER : undefined)
        if (deflate) {
          try {
            windowBits = Math.min(windowBits, acceptDeflate(connection.extensions))
          } catch (error) {
            connection.socket.destroy()
            throw error
          }
        }
        opened.push(connection)
      } catch (error) {
        failed++
        firstError ??= String(error)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  failed += count - opened.length - failed // not attempted before the deadline
  return { opened, failed, firstError, windowBits }
}

const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

const echo = async (message: Message): Promise<EchoResult> => {
  const p = message["params"] as EchoParams
  const run = message.id
  // "aaa…" (valid UTF-8 for the text runs) or JSON-ish text.
  const payload = p.payload === "json" ? jsonishPayload(p.size) : new Uint8Array(p.size).fill(0x61)
  const deflate = p.deflate ?? "off"
  const replies = p.replies ?? "plain"
  const timed = p.conns === 1 && p.inFlight === 1
  const batched = p.writes === "batched"

  const { opened, failed, firstError, windowBits } = await openMany(p.port, p.conns, 50, 30_000, deflate !== "off")
  if (failed > 0) {
    await Promise.all(opened.map((c) => closeGracefully(c.socket, CLOSE_TIMEOUT_MS)))
    throw new Error(`${failed} of ${p.conns} connections failed: ${firstError}`)
  }
  // Deflated once: without client context takeover every copy is a valid message on its own.
  const sent = deflate === "compressed" ? deflateMessage(payload, windowBits) : payload
  const one = clientFrameBytes(Frame.make(p.binary ? "Binary" : "Text", true, deflate === "compressed", false, false, sent))
  const batch = Buffer.concat(Array.from({ length: p.inFlight }, () => one))
  const inflaters: Array<ReplyInflater> = []
  const readers: Array<EchoReader> = []

  let received = 0
  let stopping = false
  let failure: unknown = undefined
  let recording = false
  const samples = new Float64Array(timed ? MAX_SAMPLES : 0)
  let sampleCount = 0
  let sentAt = 0
  /** Per connection: messages sent and not yet echoed, and echoes not yet answered. */
  interface Conn {
    readonly socket: Net.Socket
    outstanding: number
    due: number
  }
  const conns: Array<Conn> = []
  let dirty: Array<Conn> = []
  let flushScheduled = false
  const flush = () => {
    flushScheduled = false
    const ready = dirty
    dirty = []
    for (const conn of ready) {
      const n = conn.due
      conn.due = 0
      if (stopping || conn.socket.destroyed) continue
      conn.socket.write(n === p.inFlight ? batch : batch.subarray(0, n * one.length))
      conn.outstanding += n
    }
  }

  for (const { head, socket } of opened) {
    const conn: Conn = { socket, outstanding: 0, due: 0 }
    conns.push(conn)
    const reader = new EchoReader(p.binary ? 2 : 1, p.size, replies)
    readers.push(reader)
    if (replies !== "plain" && inflaters.length < (p.verifyConns ?? 1)) {
      const inflater = new ReplyInflater(payload)
      inflaters.push(inflater)
      reader.onPayload = inflater.push
      reader.onMessageEnd = inflater.end
    }
    const onData = (chunk: Buffer) => {
      let n: number
      try {
        n = reader.push(chunk)
      } catch (error) {
        failure ??= error
        socket.destroy()
        return
      }
      if (reader.pings.length > 0) answerPings(socket, reader)
      if (n === 0) return
      received += n
      conn.outstanding -= n
      if (timed) {
        const now = performance.now()
        if (recording && sampleCount < MAX_SAMPLES) samples[sampleCount++] = now - sentAt
        sentAt = now
      }
      if (stopping) return
      if (timed) {
        socket.write(batch)
        conn.outstanding += n
      } else if (!batched) {
        // As a real client: each message its own write.
        for (let i = 0; i < n; i++) socket.write(one)
        conn.outstanding += n
      } else {
        // Coalesced: one write per connection per event-loop turn, however many chunks it read.
        if (conn.due === 0) dirty.push(conn)
        conn.due += n
        if (!flushScheduled) {
          flushScheduled = true
          setImmediate(flush)
        }
      }
    }
    socket.on("data", onData)
    socket.on("error", (error) => (failure ??= error))
    socket.on("close", () => {
      if (!stopping) failure ??= new Error("the server closed a connection during the run")
    })
    if (head.length > 0) onData(head)
    socket.resume()
  }

  // Fill the pipelines.
  sentAt = performance.now()
  for (const conn of conns) {
    if (batched) conn.socket.write(batch)
    else for (let i = 0; i < p.inFlight; i++) conn.socket.write(one)
    conn.outstanding = p.inFlight
  }

  await sleep(p.warmupMs)
  const r0 = received
  const c0 = cpuMicros()
  const t0 = performance.now()
  recording = true
  emit({ type: "mark", run, phase: "start" })
  while (failure === undefined) {
    await sleep(20)
    const elapsed = performance.now() - t0
    if (elapsed >= p.maxMs || (elapsed >= p.durationMs && sampleCount >= p.minSamples)) break
  }
  const r1 = received
  const c1 = cpuMicros()
  const t1 = performance.now()
  recording = false
  emit({ type: "mark", run, phase: "end" })

  // Let the last echoes arrive (bounded), then close every connection.
  stopping = true
  const drainDeadline = performance.now() + 10_000
  while (failure === undefined && conns.some((c) => c.outstanding > 0) && performance.now() < drainDeadline) await sleep(5)
  await Promise.all(conns.map((c) => closeGracefully(c.socket, CLOSE_TIMEOUT_MS)))
  if (failure !== undefined) throw failure
  let verified: EchoResult["verified"] = null
  if (inflaters.length > 0) {
    const checked = await Promise.all(inflaters.map((inflater) => inflater.finish(30_000)))
    verified = {
      messages: checked.reduce((n, c) => n + c.messages, 0),
      inflated: checked.reduce((n, c) => n + c.inflated, 0)
    }
    if (replies === "compressed" && verified.messages === 0) throw new Error("no compressed reply was inflated")
  }

  let rtt: EchoResult["rtt"] = null
  if (timed) {
    const sorted = samples.subarray(0, sampleCount).sort()
    let sum = 0
    for (const x of sorted) sum += x
    rtt = {
      samples: sampleCount,
      p50: percentile(sorted, 0.5) * 1000,
      p99: percentile(sorted, 0.99) * 1000,
      mean: (sum / sampleCount) * 1000
    }
  }
  return { messages: r1 - r0, seconds: (t1 - t0) / 1000, generatorCpuMicros: c1 - c0, rtt,
    wireBytes: one.length,
    verified,
    replies: received,
    compressedReplies: readers.reduce((n, r) => n + r.compressedMessages, 0)
  }
}

/** Idle connections held for `conns.ts`. */
let held: Array<Net.Socket> = []

const openIdle = async (message: Message): Promise<OpenResult> => {
  const port = message["port"] as number
  const count = message["count"] as number
  const concurrency = message["concurrency"] as number
  const maxMs = message["maxMs"] as number
  const exchangeSize = typeof message["exchangeSize"] === "number" ? message["exchangeSize"] : undefined
  const exchanges = typeof message["exchanges"] === "number" ? Math.max(1, Math.min(100, message["exchanges"])) : 1
  const replies = (message["replies"] ?? "plain") as ReplyCompression
  const c0 = cpuMicros()
  const t0 = performance.now()
  const { opened, failed, firstError, windowBits } = await openMany(port, count, concurrency, maxMs, exchangeSize !== undefined)
  const seconds = (performance.now() - t0) / 1000
  const generatorCpuMicros = cpuMicros() - c0
  const payload = jsonishPayload(exchangeSize ?? 0)
  const batch = exchangeSize === undefined
    ? undefined
    : Buffer.concat(
      Array.from(
        { length: exchanges },
        () => clientFrameBytes(Frame.make("Text", true, true, false, false, deflateMessage(payload, windowBits)))
      )
    )
  let exchanged = 0
  let failure: unknown = undefined
  for (const { head, socket } of opened) {
    const reader = new EchoReader(1, payload.length, replies)
    const onData = (chunk: Buffer) => {
      try {
        exchanged += reader.push(chunk)
        answerPings(socket, reader)
      } catch (error) {
        failure ??= error
        socket.destroy()
      }
    }
    socket.on("data", onData)
    socket.on("error", () => {})
    if (head.length > 0) onData(head)
    socket.resume()
    held.push(socket)
    if (batch !== undefined) socket.write(batch)
  }
  if (batch !== undefined) {
    const expected = opened.length * exchanges
    const deadline = performance.now() + maxMs
    while (failure === undefined && exchanged < expected && performance.now() < deadline) await sleep(10)
    if (failure !== undefined) throw failure
    if (exchanged < expected) throw new Error(`only ${exchanged} of ${expected} messages echoed within ${maxMs} ms`)
  }
  return { opened: opened.length, failed, firstError, seconds, generatorCpuMicros, exchanged }
}

const closeAll = async (): Promise<number> => {
  const sockets = held
  held = []
  await Promise.all(sockets.map((socket) => closeGracefully(socket, CLOSE_TIMEOUT_MS)))
  return sockets.length
}

serve({ echo, open: openIdle, closeAll, exit: () => {
  setTimeout(() => process.exit(0), 10)
  return null
} })
emit({ type: "ready" })
