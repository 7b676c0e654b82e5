/**
 * The soak's load generator (a child of `run.ts`, never run by hand): `conns` clients of the
 * `ws` package (a different implementation from the server's) on the demo's `/echo`, half of
 * them offering permessage-deflate (ws compresses ≥ 1 KiB, its default threshold). Each client
 * sends one message at a time and the next one after its echo and a random pause (mean
 * `thinkMs`); sizes 32 B–64 KiB, mostly small (80 % under 512 B, 15 % under 8 KiB, 5 % up to
 * 64 KiB), text or binary, with text-like (compressible) ASCII bytes. Every message starts with
 * the connection id, its sequence number and the CRC-32 of the rest (in hex), so the echo is
 * checked for loss, reordering and corruption; every client also pings every `pingMs`. Reports
 * `progress` events and replies to `soak` with the totals once every client has closed.
 */
import * as Zlib from "node:zlib"
import WebSocket from "ws"
import { emit, serve } from "../bench/ipc.ts"

/** What `run.ts` asks for. */
export interface SoakParams {
  readonly url: string
  readonly conns: number
  readonly durationMs: number
  readonly thinkMs: number
  readonly pingMs: number
  readonly openConcurrency: number
  /** How long to wait for outstanding echoes after the sending stops. */
  readonly drainMs: number
}

/** The generator's totals. */
export interface SoakTotals {
  readonly opened: number
  readonly openFailures: number
  readonly sent: number
  readonly echoed: number
  readonly bytesSent: number
  /** Sent but never echoed (a client's outstanding message at the end, or the sent messages of a client that lost its connection). */
  readonly lost: number
  /** An echo whose CRC did not match. */
  readonly corrupted: number
  /** An echo of another message than the one outstanding (out of order, duplicated, or another connection's). */
  readonly misordered: number
  readonly pingsSent: number
  readonly pongs: number
  /** Connections that closed before the end, with their codes. */
  readonly unexpectedCloses: Readonly<Record<string, number>>
  readonly deflateConns: number
}

/** Every message starts with the connection id, its sequence number and the CRC-32 of the rest, 8 hex digits each (valid text). */
const HEADER = 24

const hex = (n: number) => (n >>> 0).toString(16).padStart(8, "0")

/** Deterministic bytes per client (xorshift), text-like so that deflate has work to do. */
const makeRandom = (seed: number) => {
  let x = (seed * 2654435761) >>> 0 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 2 ** 32
  }
}

const ALPHABET = Buffer.from("the quick brown fox jumps over a lazy dog 0123456789 {}[],:\"\n")

const messageSize = (random: () => number): number => {
  const r = random()
  if (r < 0.8) return 32 + Math.floor(random() * 480)
  if (r < 0.95) return 512 + Math.floor(random() * (8 * 1024 - 512))
  return 8 * 1024 + Math.floor(random() * (56 * 1024))
}

interface Client {
  readonly id: number
  readonly ws: WebSocket
  readonly random: () => number
  seq: number
  /** The outstanding message's sequence number, or -1. */
  waiting: number
  done: boolean
}

const run = async (params: SoakParams): Promise<SoakTotals> => {
  const totals = {
    opened: 0, openFailures: 0, sent: 0, echoed: 0, bytesSent: 0, lost: 0, corrupted: 0, misordered: 0,
    pingsSent: 0, pongs: 0, deflateConns: 0
  }
  const unexpectedCloses: Record<string, number> = {}
  const clients: Array<Client> = []
  let stopping = false
  const timers = new Set<ReturnType<typeof setTimeout>>()
  const later = (ms: number, f: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t)
      f()
    }, ms)
    timers.add(t)
  }

  const sendNext = (client: Client) => {
    if (stopping || client.done || client.ws.readyState !== WebSocket.OPEN) return
    const size = messageSize(client.random)
    const message = Buffer.allocUnsafe(size)
    for (let i = HEADER; i < size; i++) message[i] = ALPHABET[Math.floor(client.random() * ALPHABET.length)]!
    const seq = client.seq++
    message.write(hex(client.id) + hex(seq) + hex(Zlib.crc32(message.subarray(HEADER))), 0, "latin1")
    client.waiting = seq
    totals.sent++
    totals.bytesSent += size
    client.ws.send(message, { binary: client.random() < 0.5 })
  }

  const open = (id: number) =>
    new Promise<void>((resolve) => {
      const deflate = id % 2 === 0
      const ws = new WebSocket(params.url, { perMessageDeflate: deflate, handshakeTimeout: 10_000 })
      const client: Client = { id, ws, random: makeRandom(id + 1), seq: 0, waiting: -1, done: false }
      let settled = false
      ws.on("open", () => {
        settled = true
        totals.opened++
        if (deflate && ws.extensions.includes("permessage-deflate")) totals.deflateConns++
        clients.push(client)
        later(client.random() * params.thinkMs * 2, () => sendNext(client))
        const ping = setInterval(() => {
          if (ws.readyState !== WebSocket.OPEN) return clearInterval(ping)
          totals.pingsSent++
          ws.ping()
        }, params.pingMs)
        ws.once("close", () => clearInterval(ping))
        resolve()
      })
      ws.on("pong", () => totals.pongs++)
      ws.on("message", (data: Buffer) => {
        const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)
        const field = (at: number) => Number.parseInt(bytes.toString("latin1", at, at + 8), 16)
        if (bytes.length < HEADER || field(0) !== id || field(8) !== client.waiting) totals.misordered++
        else if (Zlib.crc32(bytes.subarray(HEADER)) !== field(16)) totals.corrupted++
        else totals.echoed++
        client.waiting = -1
        later(client.random() * params.thinkMs * 2, () => sendNext(client))
      })
      ws.on("error", () => {
        if (!settled) {
          settled = true
          totals.openFailures++
          resolve()
        }
      })
      ws.on("close", (code) => {
        if (!client.done && settled && !stopping) {
          unexpectedCloses[String(code)] = (unexpectedCloses[String(code)] ?? 0) + 1
          client.done = true
        }
        if (!settled) {
          settled = true
          totals.openFailures++
          resolve()
        }
      })
    })

  // Open, `openConcurrency` at a time.
  let next = 0
  await Promise.all(Array.from({ length: Math.min(params.openConcurrency, params.conns) }, async () => {
    while (next < params.conns) await open(next++)
  }))
  emit({ type: "progress", phase: "open", opened: totals.opened, failures: totals.openFailures })

  const started = Date.now()
  const progress = setInterval(() => emit({ type: "progress", phase: "run", ...totals, elapsedMs: Date.now() - started }), 10_000)
  await new Promise((resolve) => setTimeout(resolve, params.durationMs))
  stopping = true
  for (const t of timers) clearTimeout(t)
  timers.clear()
  // Outstanding echoes may still come (bounded wait).
  const drainDeadline = Date.now() + params.drainMs
  while (Date.now() < drainDeadline && clients.some((c) => c.waiting !== -1 && !c.done)) {
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  clearInterval(progress)
  for (const c of clients) if (c.waiting !== -1) totals.lost++
  // Close everyone (1000) and wait, bounded, for the closes.
  await Promise.all(clients.map((c) =>
    new Promise<void>((resolve) => {
      c.done = true
      if (c.ws.readyState === WebSocket.CLOSED) return resolve()
      const t = setTimeout(() => {
        c.ws.terminate()
        resolve()
      }, 5_000)
      c.ws.once("close", () => {
        clearTimeout(t)
        resolve()
      })
      c.ws.close(1000)
    })
  ))
  return { ...totals, unexpectedCloses }
}

serve({ soak: (message) => run(message["params"] as SoakParams) })
emit({ type: "ready" })
