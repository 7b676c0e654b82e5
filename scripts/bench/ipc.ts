/**
 * The benchmark processes' plumbing, shared by the orchestrators (`echo.ts`, `conns.ts`,
 * `deflate.ts`) and their children (the servers and the load generator):
 *
 * - children answer requests `{ type, id, ... }` from the parent over the IPC channel of
 *   `child_process.fork` with `{ type: "reply", id, ok, result | error }`, and may send
 *   unsolicited events (`ready`, `mark`); a child exits when its parent disconnects. This works
 *   the same in a Bun child: Bun reads Node's IPC channel (`NODE_CHANNEL_FD`, JSON
 *   serialization), so `process.send` and `process.on("message")` behave as in Node;
 * - the parent forks children with explicit flags (and, for Bun, Bun's binary as `execPath`),
 *   matches replies to requests (every request has a timeout), and kills every child it started
 *   when it exits, fails or is interrupted.
 *
 * The message types are in `protocol.ts`.
 */
import { type ChildProcess, fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as V8 from "node:v8"
import type { Message, ServerStats } from "./protocol.ts"

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
declare const Bun: { readonly gc: (force: boolean) => void } | undefined

/** True in a Bun process. */
const isBun = typeof Bun !== "undefined"

/** A full collection: `gc()` three times on Node (needs --expose-gc), `Bun.gc(true)` on Bun. */
const collectGarbage = (): void => {
  if (isBun) return Bun!.gc(true)
  if (typeof gc !== "function") throw new Error("gc() is not exposed: start the server with --expose-gc")
  for (let i = 0; i < 3; i++) gc()
}

/** The `stats` and `exit` handlers every server has; `connections` counts its open WebSocket connections. */
export const serverHandlers = (connections: () => number): Record<string, (message: Message) => unknown> => ({
  stats: (message) => {
    if (message["gc"] === true) collectGarbage()
    const cpu = process.cpuUsage()
    const memory = process.memoryUsage()
    const stats: ServerStats = {
      runtime: isBun ? "bun" : "node",
      cpuMicros: cpu.user + cpu.system,
      wallMicros: performance.now() * 1000,
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      external: memory.external,
      arrayBuffers: memory.arrayBuffers,
      newSpace: isBun ? 0 : (V8.getHeapSpaceStatistics().find((space) => space.space_name === "new_space")?.physical_space_size ?? 0),
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

  /**
   * Forks `file` (relative to this folder) with `execArgv`. With `options.execPath` (Bun's binary)
   * the file runs on that runtime, without Node's flags; `options.env` is added to this
   * process's environment, and a variable set to `undefined` there is removed from it.
   */
  constructor(
    name: string,
    file: string,
    execArgv: ReadonlyArray<string>,
    options: { readonly execPath?: string | undefined; readonly env?: Readonly<Record<string, string | undefined>> } = {}
  ) {
    this.name = name
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_NO_WARNINGS: "1" }
    for (const [key, value] of Object.entries(options.env ?? {})) {
      if (value === undefined) delete env[key]
      else env[key] = value
    }
    const child = fork(fileURLToPath(new URL(file, import.meta.url)), [], {
      ...(options.execPath === undefined
        ? { execArgv: ["--conditions=@effect-ws/source", ...execArgv] }
        : { execPath: options.execPath, execArgv: [...execArgv] }),
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env
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

