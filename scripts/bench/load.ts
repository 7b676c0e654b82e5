/**
 * The load generator (a child of `echo.ts` / `conns.ts`, one process for both servers): raw
 * sockets speaking WebSocket through `rawclient.ts`, so that both servers face exactly the same
 * client. Requests (see `ipc.ts`):
 *
 * - `echo`: opens `conns` connections, keeps `inFlight` messages of `size` bytes in flight on
 *   each (every echo received is answered by the next message, several per `write` when a chunk
 *   completes several), warms up, then measures for `durationMs` (and, with `minSamples`, until
 *   that many round trips were timed). It emits `mark` events at the start and the end of the
 *   window so that the orchestrator can sample the server's CPU at the same moments, and returns
 *   the messages echoed in the window, the RTTs (with 1 connection × 1 in flight) and its own
 *   CPU time, so one can see it is not the bottleneck. Then it closes every connection.
 * - `open`: opens `count` idle connections, at most `concurrency` handshakes at a time, and
 *   returns how long that took; `closeAll` closes them.
 *
 * Every wait is bounded (`maxMs`, handshake and close timeouts).
 */
import { Frame } from "@effect-ws/codec"
import type * as Net from "node:net"
import { emit, HOST, type Message, serve } from "./ipc.ts"
import { answerPings, clientFrameBytes, closeGracefully, EchoReader, open, type Opened } from "./rawclient.ts"

/** Parameters of an `echo` run. */
export interface EchoParams {
  readonly port: number
  readonly conns: number
  readonly inFlight: number
  readonly size: number
  readonly binary: boolean
  readonly warmupMs: number
  readonly durationMs: number
  /** Keep measuring past `durationMs` until this many RTTs were timed (latency runs), bounded by `maxMs`. */
  readonly minSamples: number
  /** Hard limit on the measuring window. */
  readonly maxMs: number
}

/** What an `echo` run measured in its window. */
export interface EchoResult {
  readonly messages: number
  readonly seconds: number
  /** This process's CPU time in the window, µs. */
  readonly generatorCpuMicros: number
  /** RTT percentiles in µs (1 connection × 1 in flight only). */
  readonly rtt: { readonly samples: number; readonly p50: number; readonly p99: number; readonly mean: number } | null
}

/** What an `open` request measured. */
export interface OpenResult {
  readonly opened: number
  readonly failed: number
  readonly firstError: string | null
  readonly seconds: number
  readonly generatorCpuMicros: number
}

const HANDSHAKE_TIMEOUT_MS = 15_000
const CLOSE_TIMEOUT_MS = 5_000
const MAX_SAMPLES = 2_000_000

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const cpuMicros = () => {
  const usage = process.cpuUsage()
  return usage.user + usage.system
}

/** Opens `count` connections with at most `concurrency` handshakes in flight, all within `maxMs`. */
const openMany = async (
  port: number,
  count: number,
  concurrency: number,
  maxMs: number
): Promise<{ opened: Array<Opened>; failed: number; firstError: string | null }> => {
  const opened: Array<Opened> = []
  const deadline = performance.now() + maxMs
  let next = 0
  let failed = 0
  let firstError: string | null = null
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      next++
      try {
        opened.push(await open(HOST, port, "/", HANDSHAKE_TIMEOUT_MS))
      } catch (error) {
        failed++
        firstError ??= String(error)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  failed += count - opened.length - failed // not attempted before the deadline
  return { opened, failed, firstError }
}

const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

const echo = async (message: Message): Promise<EchoResult> => {
  const p = message["params"] as EchoParams
  const run = message.id
  const payload = new Uint8Array(p.size).fill(0x61) // "aaa…": valid UTF-8 for the text runs
  const one = clientFrameBytes(p.binary ? Frame.binary(payload) : Frame.text(payload))
  const batch = Buffer.concat(Array.from({ length: p.inFlight }, () => one))
  const timed = p.conns === 1 && p.inFlight === 1

  const { opened, failed, firstError } = await openMany(p.port, p.conns, 50, 30_000)
  if (failed > 0) {
    await Promise.all(opened.map((c) => closeGracefully(c.socket, CLOSE_TIMEOUT_MS)))
    throw new Error(`${failed} of ${p.conns} connections failed: ${firstError}`)
  }

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
    const reader = new EchoReader(p.binary ? 2 : 1, p.size)
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
    conn.socket.write(batch)
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
  return { messages: r1 - r0, seconds: (t1 - t0) / 1000, generatorCpuMicros: c1 - c0, rtt }
}

/** Idle connections held for `conns.ts`. */
let held: Array<Net.Socket> = []

const openIdle = async (message: Message): Promise<OpenResult> => {
  const port = message["port"] as number
  const count = message["count"] as number
  const concurrency = message["concurrency"] as number
  const maxMs = message["maxMs"] as number
  const c0 = cpuMicros()
  const t0 = performance.now()
  const { opened, failed, firstError } = await openMany(port, count, concurrency, maxMs)
  const seconds = (performance.now() - t0) / 1000
  const generatorCpuMicros = cpuMicros() - c0
  for (const { head, socket } of opened) {
    const reader = new EchoReader(1, 0)
    const onData = (chunk: Buffer) => {
      try {
        reader.push(chunk)
        answerPings(socket, reader)
      } catch {
        socket.destroy()
      }
    }
    socket.on("data", onData)
    socket.on("error", () => {})
    if (head.length > 0) onData(head)
    socket.resume()
    held.push(socket)
  }
  return { opened: opened.length, failed, firstError, seconds, generatorCpuMicros }
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
