/**
 * The servers a benchmark can measure, each an echo server in its own process on 127.0.0.1:
 *
 * - `floor`: a hand-made `node:net` echo doing only what every echo server must (`servers/floor.ts`):
 *   the least CPU and memory a Node server can spend; a reference, not a product;
 * - `ws`: `ws`'s `WebSocketServer` with its pure-JS masking (WS_NO_BUFFER_UTIL=1 in its environment);
 * - `ws+bufferutil`: the same server with the `bufferutil` addon loaded, as `ws` users deploy it
 *   (ws loads it by itself when it is installed);
 * - `ours`: effect-ws's standalone `WebSocketServer` (`servers/ours.ts`);
 * - `route`: effect-ws served as the demo deploys it: `WebSocketRoute.handler` on `HttpRouter` +
 *   `NodeHttpServer` (`servers/route.ts`);
 * - `bun`: `Bun.serve`'s WebSocket echo on Bun (`servers/bun.ts`; Bun from the npm `bun` package,
 *   installed on first use into `node_modules/.cache/effect-ws-runtimes`, see `../runtimes.ts`).
 *
 * BENCH_SERVERS selects some of them (comma-separated names, e.g. "floor,ws,ours"; default all
 * that the benchmark supports). `withBench` starts the selected servers and the load generator,
 * `alternate` runs a measurement on each in a rotating order.
 */
import * as Os from "node:os"
import { bun } from "../runtimes.ts"
import { Child, guardChildren } from "./ipc.ts"
import type { ServerStats } from "./protocol.ts"

/** The names BENCH_SERVERS accepts, in the order the tables show them. */
export const TARGET_NAMES = ["floor", "ws", "ws+bufferutil", "ours", "route", "bun"] as const
export type TargetName = (typeof TARGET_NAMES)[number]

/** How to start one target. */
export interface Target {
  readonly name: TargetName
  /** The column title in the printed tables. */
  readonly label: string
  /** The server's file, relative to this folder. */
  readonly file: string
  readonly runtime: "node" | "bun"
  /** Added to the server's environment (`undefined`: removed from it). */
  readonly env: Readonly<Record<string, string | undefined>>
}

export const TARGETS: Readonly<Record<TargetName, Target>> = {
  floor: { name: "floor", label: "floor", file: "./servers/floor.ts", runtime: "node", env: {} },
  ws: { name: "ws", label: "ws", file: "./servers/ws.ts", runtime: "node", env: { WS_NO_BUFFER_UTIL: "1" } },
  "ws+bufferutil": {
    name: "ws+bufferutil",
    label: "ws+bufferutil",
    file: "./servers/ws.ts",
    runtime: "node",
    env: { WS_NO_BUFFER_UTIL: undefined }
  },
  ours: { name: "ours", label: "effect-ws", file: "./servers/ours.ts", runtime: "node", env: {} },
  route: { name: "route", label: "effect-ws route", file: "./servers/route.ts", runtime: "node", env: {} },
  bun: { name: "bun", label: "Bun", file: "./servers/bun.ts", runtime: "bun", env: {} }
}

/** The Node servers among which "best Node server" is chosen (the floor is a reference, not a server one deploys). */
export const NODE_SERVERS: ReadonlyArray<TargetName> = ["ws", "ws+bufferutil", "ours", "route"]

/**
 * The targets named by BENCH_SERVERS (default: all of `supported`), in `TARGET_NAMES` order;
 * throws on an unknown or unsupported name.
 */
export const selectTargets = (supported: ReadonlyArray<TargetName> = TARGET_NAMES): ReadonlyArray<TargetName> => {
  const raw = process.env["BENCH_SERVERS"]
  if (raw === undefined || raw.trim() === "") return TARGET_NAMES.filter((name) => supported.includes(name))
  const asked = raw.split(",").map((name) => name.trim()).filter((name) => name !== "")
  for (const name of asked) {
    if (!supported.includes(name as TargetName)) {
      throw new Error(`BENCH_SERVERS: unknown server "${name}" (this benchmark has ${supported.join(", ")})`)
    }
  }
  return TARGET_NAMES.filter((name) => asked.includes(name))
}

/** One server under test: its process and the port it listens on. */
export interface Server {
  readonly name: TargetName
  readonly label: string
  readonly child: Child
  readonly port: number
  /** What the server said about itself when ready (e.g. whether ws loaded bufferutil). */
  readonly ready: Readonly<Record<string, unknown>>
}

/** The servers under test (in `TARGET_NAMES` order) and the load generator, ready to use. */
export interface Bench {
  readonly servers: ReadonlyArray<Server>
  readonly generator: Child
}

/**
 * Starts the `names` servers (each Node server given `flags(name)`; Bun takes none) and the load
 * generator, waits until all are ready, prints `title` with the machine's facts, runs `body`, and
 * stops every child however `body` ends.
 */
export const withBench = async <A>(
  title: string,
  names: ReadonlyArray<TargetName>,
  flags: (name: TargetName) => ReadonlyArray<string>,
  body: (bench: Bench) => Promise<A>
): Promise<A> => {
  guardChildren(30 * 60_000)
  const bunPath = names.some((name) => TARGETS[name].runtime === "bun") ? bun() : undefined
  const children = names.map((name) => {
    const target = TARGETS[name]
    return target.runtime === "bun"
      ? new Child(name, target.file, [], { execPath: bunPath, env: target.env })
      : new Child(name, target.file, flags(name), { env: target.env })
  })
  const generator = new Child("generator", "./load.ts", [])
  try {
    const servers: Array<Server> = []
    for (const [i, name] of names.entries()) {
      const child = children[i]!
      const ready = await child.waitReady()
      servers.push({ name, label: TARGETS[name].label, child, port: ready["port"] as number, ready })
    }
    await generator.waitReady()
    const cpus = Os.cpus()
    console.log(
      `${title}: Node ${process.version}, ${cpus.length} × ${cpus[0]?.model ?? "?"}, load average ${Os.loadavg().map((x) => x.toFixed(2)).join(" ")}`
    )
    console.log(`servers: ${servers.map((s) => `${s.label} (${describe(s)})`).join("; ")}`)
    return await body({ servers, generator })
  } finally {
    await Promise.all([generator.stop(), ...children.map((child) => child.stop())])
  }
}

/** What a server reported about itself, in a few words. */
const describe = (server: Server): string => {
  const facts = Object.entries(server.ready)
    .filter(([key]) => key !== "type" && key !== "port" && key !== "deflate")
    .map(([key, value]) => `${key} ${String(value)}`)
  return facts.join(", ")
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
 * Runs `run` `rounds` times for each server, starting each round one server further along the
 * list (so that no server always runs first, on a warmer or cooler machine); returns each
 * server's runs in order.
 */
export const alternate = async <R>(
  rounds: number,
  servers: ReadonlyArray<Server>,
  run: (server: Server) => Promise<R>
): Promise<Partial<Record<TargetName, Array<R>>>> => {
  const runs: Partial<Record<TargetName, Array<R>>> = {}
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < servers.length; i++) {
      const server = servers[(round + i) % servers.length]!
      const result = await run(server)
      ;(runs[server.name] ??= []).push(result)
    }
  }
  return runs
}
