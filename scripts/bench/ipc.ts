/**
 * The benchmark processes' plumbing, shared by the orchestrators (`echo.ts`, `conns.ts`) and
 * their children (the two servers and the load generator):
 *
 * - children answer requests `{ type, id, ... }` from the parent over the IPC channel of
 *   `child_process.fork` with `{ type: "reply", id, ok, result | error }`, and may send
 *   unsolicited events (`ready`, `mark`); a child exits when its parent disconnects;
 * - the parent forks children with explicit flags, matches replies to requests (every request
 *   has a timeout), and kills every child it started when it exits, fails or is interrupted.
 */
import { type ChildProcess, execFileSync, fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as Os from "node:os"
import * as V8 from "node:v8"
import type { EchoParams, EchoResult } from "./load.ts"

/** Where every server listens, and the generator connects. */
export const HOST = "127.0.0.1"

/** A message on an IPC channel: `type` plus anything JSON can carry. */
export interface Message {
  readonly type: string
  readonly id?: number | undefined
  readonly [key: string]: unknown
}

/** A server's own view of its resources, taken when asked (after `gc()` when asked to). */
export interface ServerStats {
  /** `process.cpuUsage()` user + system, µs. */
  readonly cpuMicros: number
  /** `performance.now()` in µs, when the sample was taken. */
  readonly wallMicros: number
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
  readonly arrayBuffers: number
  /**
   * Bytes of V8's young generation (new space) in physical memory: part of `rss`, sized by V8's
   * scavenger heuristics (it grows with survivors and does not shrink at `gc()`), not by what is live.
   */
  readonly newSpace: number
  /** WebSocket connections the server currently has open. */
  readonly connections: number
}

// ---- child side ----

const sendToParent = (message: Message): void => {
  if (process.send === undefined) throw new Error("not started with an IPC channel (run the orchestrator, not this file)")
  process.send(message)
}

/** Sends an unsolicited event to the parent. */
export const emit = (message: Message): void => sendToParent(message)

/**
 * Serves the parent's requests with `handlers` (by `type`); a handler's result (or rejection) is
 * the reply. The process exits when the parent goes away.
 */
export const serve = (handlers: Readonly<Record<string, (message: Message) => unknown>>): void => {
  if (process.send === undefined) throw new Error("not started with an IPC channel (run the orchestrator, not this file)")
  process.on("disconnect", () => process.exit(0))
  process.on("message", (raw: unknown) => {
    const message = raw as Message
    const handler = handlers[message.type]
    const reply = (ok: boolean, payload: unknown) =>
      sendToParent(ok ? { type: "reply", id: message.id, ok, result: payload } : { type: "reply", id: message.id, ok, error: payload })
    if (handler === undefined) return reply(false, `unknown request ${message.type}`)
    Promise.resolve()
      .then(() => handler(message))
      .then(
        (result) => reply(true, result ?? null),
        (error: unknown) => reply(false, error instanceof Error ? (error.stack ?? error.message) : String(error))
      )
  })
}

declare const gc: (() => void) | undefined

/** The `stats` and `exit` handlers every server has; `connections` counts its open WebSocket connections. */
export const serverHandlers = (connections: () => number): Record<string, (message: Message) => unknown> => ({
  stats: (message) => {
    if (message["gc"] === true) {
      if (typeof gc !== "function") throw new Error("gc() is not exposed: start the server with --expose-gc")
      for (let i = 0; i < 3; i++) gc()
    }
    const cpu = process.cpuUsage()
    const memory = process.memoryUsage()
    const stats: ServerStats = {
      cpuMicros: cpu.user + cpu.system,
      wallMicros: performance.now() * 1000,
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      external: memory.external,
      arrayBuffers: memory.arrayBuffers,
      newSpace: V8.getHeapSpaceStatistics().find((space) => space.space_name === "new_space")?.physical_space_size ?? 0,
      connections: connections()
    }
    return stats
  },
  // An orderly exit (so that --cpu-prof / --heap-prof write their files).
  exit: () => {
    setTimeout(() => process.exit(0), 10)
    return null
  }
})

// ---- parent side ----

const children = new Set<ChildProcess>()

const killAll = (): void => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
  children.clear()
}

let guarded = false
/**
 * Makes sure no child outlives this process: on exit, on SIGINT/SIGTERM and on an uncaught
 * failure every child is killed; and the whole run is bounded by `maxMs`.
 */
export const guardChildren = (maxMs: number): void => {
  if (guarded) return
  guarded = true
  process.on("exit", killAll)
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      console.error(`\n${signal}: stopping`)
      killAll()
      process.exit(130)
    })
  }
  process.on("uncaughtException", (error) => {
    console.error(error)
    killAll()
    process.exit(1)
  })
  process.on("unhandledRejection", (error) => {
    console.error(error)
    killAll()
    process.exit(1)
  })
  setTimeout(() => {
    console.error(`benchmark took longer than ${maxMs / 1000} s: stopping`)
    killAll()
    process.exit(1)
  }, maxMs).unref()
}

interface Pending {
  readonly resolve: (value: unknown) => void
  readonly reject: (error: Error) => void
  readonly timer: ReturnType<typeof setTimeout>
}

/** A forked child we talk to over IPC. */
export class Child {
  readonly name: string
  readonly process: ChildProcess
  /** Unsolicited events (anything but replies). */
  onEvent: (message: Message) => void = () => {}
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private readonly exited: Promise<void>
  private readyWaiters: Array<(message: Message) => void> = []
  private ready: Message | undefined = undefined

  constructor(name: string, file: string, execArgv: ReadonlyArray<string>) {
    this.name = name
    const child = fork(fileURLToPath(new URL(file, import.meta.url)), [], {
      execArgv: ["--conditions=@effect-ws/source", ...execArgv],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: { ...process.env, NODE_NO_WARNINGS: "1" }
    })
    this.process = child
    children.add(child)
    child.on("message", (raw: unknown) => {
      const message = raw as Message
      if (message.type === "reply" && typeof message.id === "number") {
        const pending = this.pending.get(message.id)
        if (pending === undefined) return
        this.pending.delete(message.id)
        clearTimeout(pending.timer)
        if (message["ok"] === true) pending.resolve(message["result"])
        else pending.reject(new Error(`${name}: ${String(message["error"])}`))
      } else if (message.type === "ready") {
        this.ready = message
        for (const waiter of this.readyWaiters) waiter(message)
        this.readyWaiters = []
      } else {
        this.onEvent(message)
      }
    })
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        children.delete(child)
        for (const [id, pending] of this.pending) {
          clearTimeout(pending.timer)
          pending.reject(new Error(`${name} exited (code ${code}, signal ${signal}) during request ${id}`))
        }
        this.pending.clear()
        resolve()
      })
    })
  }

  /** The child's `ready` event (servers send their port in it). */
  waitReady(timeoutMs = 30_000): Promise<Message> {
    if (this.ready !== undefined) return Promise.resolve(this.ready)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} not ready within ${timeoutMs} ms`)), timeoutMs)
      const exit = () => reject(new Error(`${this.name} exited before it was ready`))
      this.process.once("exit", exit)
      this.readyWaiters.push((message) => {
        clearTimeout(timer)
        this.process.off("exit", exit)
        resolve(message)
      })
    })
  }

  request<A>(message: Message, timeoutMs: number): Promise<A> {
    const id = this.nextId++
    return new Promise<A>((resolve, reject) => {
      if (!this.process.connected) return reject(new Error(`${this.name} is not running`))
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.name}: no reply to ${message.type} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer })
      this.process.send({ ...message, id })
    })
  }

  stats(gc = false): Promise<ServerStats> {
    return this.request<ServerStats>({ type: "stats", gc }, 30_000)
  }

  /** Asks for an orderly exit, then kills the child if it has not exited within `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return
    if (this.process.connected) this.process.send({ type: "exit", id: 0 })
    const timer = setTimeout(() => this.process.kill("SIGKILL"), graceMs)
    await this.exited
    clearTimeout(timer)
  }
}

/** The soft limit on open files of this process (its children inherit it). */
export const openFileLimit = (): number => {
  try {
    const out = execFileSync("/bin/sh", ["-c", "ulimit -n"], { encoding: "utf8" }).trim()
    return out === "unlimited" ? Number.POSITIVE_INFINITY : Number(out)
  } catch {
    return Number.NaN
  }
}

/** Formats a number with thousands separators. */
export const fmt = (x: number, digits = 0): string =>
  Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "n/a"

/** The median of some numbers (NaN for none). */
export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** One server under test: its process and the port it listens on. */
export interface Server {
  readonly name: "ours" | "ws"
  readonly child: Child
  readonly port: number
}

/** Both servers under test and the load generator, ready to use. */
export interface Bench {
  readonly ours: Server
  readonly ws: Server
  readonly generator: Child
}

/**
 * Starts our server and the ws server (each node given `flags(name)`) and the load generator,
 * waits until all are ready, prints `title` with the machine's facts, runs `body`, and stops every
 * child however `body` ends.
 */
export const withBench = async <A>(
  title: string,
  flags: (name: Server["name"]) => ReadonlyArray<string>,
  body: (bench: Bench) => Promise<A>
): Promise<A> => {
  guardChildren(15 * 60_000)
  const ours = new Child("ours", "./servers/ours.ts", [...flags("ours")])
  const ws = new Child("ws", "./servers/ws.ts", [...flags("ws")])
  const generator = new Child("generator", "./load.ts", [])
  try {
    const oursPort = (await ours.waitReady())["port"] as number
    const wsPort = (await ws.waitReady())["port"] as number
    await generator.waitReady()
    const cpus = Os.cpus()
    console.log(
      `${title}: Node ${process.version}, ${cpus.length} × ${cpus[0]?.model ?? "?"}, load average ${Os.loadavg().map((x) => x.toFixed(2)).join(" ")}`
    )
    return await body({ ours: { name: "ours", child: ours, port: oursPort }, ws: { name: "ws", child: ws, port: wsPort }, generator })
  } finally {
    await Promise.all([generator.stop(), ours.stop(), ws.stop()])
  }
}

/** Polls `server` until it counts `count` open connections, at most `maxMs`; returns its last stats. */
export const awaitConnections = async (server: Server, count: number, maxMs: number): Promise<ServerStats> => {
  const deadline = performance.now() + maxMs
  for (;;) {
    const stats = await server.child.stats()
    if (stats.connections === count) return stats
    if (performance.now() > deadline) {
      throw new Error(`${server.name} has ${stats.connections} connections open, expected ${count} (waited ${maxMs} ms)`)
    }
    await new Promise<void>((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * Runs `run` `rounds` times for each server, alternating which one goes first in each round (so
 * neither always runs on a warmer or cooler machine); returns each server's runs in order.
 */
export const alternate = async <R>(
  rounds: number,
  servers: readonly [Server, Server],
  run: (server: Server) => Promise<R>
): Promise<Record<Server["name"], Array<R>>> => {
  const runs: Record<Server["name"], Array<R>> = { ours: [], ws: [] }
  for (let round = 0; round < rounds; round++) {
    for (const server of round % 2 === 0 ? servers : [servers[1], servers[0]]) runs[server.name].push(await run(server))
  }
  return runs
}


/** A number from the environment (at least `min`), or `fallback` when unset or not a number. */
export const envNumber = (name: string, fallback: number, min: number): number => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isFinite(value) ? Math.max(min, value) : fallback
}

/** Runs per server (BENCH_ROUNDS), warm-up and measured window (BENCH_WARMUP_MS, BENCH_DURATION_MS) of the echo benchmarks. */
export const ROUNDS = envNumber("BENCH_ROUNDS", 3, 1)
export const WARMUP_MS = envNumber("BENCH_WARMUP_MS", 1_000, 200)
export const DURATION_MS = envNumber("BENCH_DURATION_MS", 4_000, 500)

/** The rates of one echo run: messages/s, and the server's and the generator's CPU. */
export interface EchoRates {
  readonly messagesPerSecond: number
  readonly serverCpuPerMessage: number
  readonly serverCpuPercent: number
  readonly generatorCpuPercent: number
}

/**
 * Watches the generator across echo runs: a run where it was busy (≥ 80 % of a core) while the
 * server was not saturated (< 90 %) may have been bounded by the generator, not the server.
 */
export class GeneratorCheck {
  private busiest = 0
  private readonly suspect: Array<string> = []

  /** Records one run; `label` names it in the warning. */
  add(label: string, run: EchoRates): void {
    this.busiest = Math.max(this.busiest, run.generatorCpuPercent)
    if (run.generatorCpuPercent >= 80 && run.serverCpuPercent < 90) this.suspect.push(label)
  }

  /** The one-line verdict printed under a benchmark's table. */
  get verdict(): string {
    return this.suspect.length === 0
      ? `Generator: at most ${fmt(this.busiest)} % of a core in any run, and never ≥ 80 % while the server was under 90 %: not the bottleneck.`
      : `WARNING: the generator used ≥ 80 % of a core while the server was under 90 % in ${this.suspect.join(", ")}: those runs may be bounded by the generator.`
  }
}

/** One echo run as the server saw it: the generator's result and the server's CPU over the generator's window. */
export interface MeasuredEcho extends EchoRates {
  readonly result: EchoResult
}

/**
 * Has the generator run `params` against `server` (warm-up and window from the settings above)
 * and reads the server's own CPU at the window's start and end marks. Throws when the generator
 * did not mark its window or no message was echoed.
 */
export const measureEcho = async (
  generator: Child,
  server: Server,
  params: Omit<EchoParams, "port" | "warmupMs" | "durationMs" | "maxMs">,
  label: string
): Promise<MeasuredEcho> => {
  const marks = new Map<string, Promise<ServerStats>>()
  generator.onEvent = (event) => {
    if (event.type === "mark") marks.set(String(event["phase"]), server.child.stats())
  }
  const full: EchoParams = {
    ...params,
    port: server.port,
    warmupMs: WARMUP_MS,
    durationMs: DURATION_MS,
    maxMs: Math.max(4 * DURATION_MS, 30_000)
  }
  const result = await generator.request<EchoResult>({ type: "echo", params: full }, 120_000 + 4 * DURATION_MS)
  generator.onEvent = () => {}
  const start = marks.get("start")
  const end = marks.get("end")
  if (start === undefined || end === undefined) throw new Error("the generator did not mark its window")
  const [s0, s1] = await Promise.all([start, end])
  if (result.messages === 0) throw new Error(`${server.name}: no message echoed in ${label}`)
  const serverCpu = s1.cpuMicros - s0.cpuMicros
  return {
    result,
    messagesPerSecond: result.messages / result.seconds,
    serverCpuPerMessage: serverCpu / result.messages,
    serverCpuPercent: (100 * serverCpu) / (s1.wallMicros - s0.wallMicros),
    generatorCpuPercent: (100 * result.generatorCpuMicros) / (result.seconds * 1e6)
  }
}
