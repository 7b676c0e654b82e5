/**
 * `npm run bench:conns`: what connections cost. Every server of `targets.ts` (floor, ws,
 * ws+bufferutil, effect-ws, effect-ws route, Bun; BENCH_SERVERS selects some), each in its own
 * process (Node ones started with --expose-gc; Bun collects with `Bun.gc(true)`), and one load
 * generator process (`load.ts`). For each server in turn:
 *
 * 1. warm-up: open and close WARMUP connections (so that code loaded and compiled on the first
 *    connection is not counted per connection);
 * 2. baseline: the server collects garbage and reports its memory;
 * 3. the generator opens N idle connections (BENCH_CONNS, default 5,000), 50 handshakes at a
 *    time: connections/s with 50 in flight, and the server's CPU per connection from its own
 *    `process.cpuUsage()`;
 * 4. once the server counts N open connections: collect again, and (RSS, heapUsed, external)
 *    minus the baseline, divided by N, is the cost of one idle connection; the growth of V8's
 *    young generation is shown as well, since it is part of RSS but set by V8's heuristics (it
 *    grows with the bytes that survive scavenges and is not given back at `gc()`). Bun's heap
 *    is JavaScriptCore's, not comparable: only its RSS is shown;
 * 5. the generator closes them all (Close 1000, then FIN) and the server is back to 0; heapUsed
 *    after `gc()` minus the baseline, divided by N, is what a closed connection leaves behind;
 * 6. the generator opens N again, 500 handshakes at a time (connections/s with 500 in flight),
 *    and closes them.
 *
 * Printed: per connection RSS and heap and connections/s at 50 and 500 in flight for each server,
 * each with its ratio to the best Node server (the least memory, the most connections/s among
 * ws, ws+bufferutil, effect-ws and effect-ws route); then every ratio (to the floor, the best
 * Node server and Bun) and the details.
 *
 * N is capped by this process's open-file limit (`ulimit -n`; every process here holds one
 * descriptor per connection, plus a few) and by the ephemeral port range; nothing system-wide is
 * raised.
 */
import { existsSync, readFileSync } from "node:fs"
import { fmt, ratio, table } from "./format.ts"
import type { Child } from "./ipc.ts"
import type { OpenResult, ServerStats } from "./protocol.ts"
import { envNumber, openFileLimit } from "./settings.ts"
import { awaitConnections, NODE_SERVERS, selectTargets, type Server, type TargetName, TARGETS, withBench } from "./targets.ts"

const TARGET = Math.trunc(envNumber("BENCH_CONNS", 5_000, 1))
/** Handshakes in flight while opening: the memory is measured after the first. */
const CONCURRENCY = [50, 500] as const
const WARMUP = 200
/** Descriptors every process keeps for itself (stdio, IPC, listener, epoll, …), with a margin. */
const FD_RESERVE = 256

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const ephemeralPorts = (): number => {
  const file = "/proc/sys/net/ipv4/ip_local_port_range"
  if (!existsSync(file)) return Number.POSITIVE_INFINITY
  const [low, high] = readFileSync(file, "utf8").trim().split(/\s+/).map(Number)
  return low !== undefined && high !== undefined ? high - low + 1 : Number.POSITIVE_INFINITY
}

interface Measured {
  readonly runtime: ServerStats["runtime"]
  /** Opening N with 50 handshakes in flight (the memory is measured on these). */
  readonly open: OpenResult
  /** Opening N with 500 handshakes in flight. */
  readonly open500: OpenResult
  readonly baseline: ServerStats
  readonly loaded: ServerStats
  /** After every connection was closed again (collected): what closed connections left behind. */
  readonly closed: ServerStats
  readonly serverCpuPerConnection: number
}

const open = async (generator: Child, server: Server, count: number, concurrency: number): Promise<OpenResult> => {
  const result = await generator.request<OpenResult>(
    { type: "open", port: server.port, count, concurrency, maxMs: 180_000 },
    240_000
  )
  if (result.failed > 0) {
    throw new Error(`${server.name}: ${result.failed} of ${count} connections failed: ${result.firstError}`)
  }
  return result
}

const closeAll = async (generator: Child, server: Server): Promise<void> => {
  await generator.request<number>({ type: "closeAll" }, 60_000)
  await awaitConnections(server, 0, 30_000)
}

/** Two collections, the second one's figures: what survives is live. */
const collected = async (server: Server): Promise<ServerStats> => {
  await server.child.stats(true)
  return server.child.stats(true)
}

const measure = async (generator: Child, server: Server, count: number): Promise<Measured> => {
  await open(generator, server, Math.min(WARMUP, count), CONCURRENCY[0])
  await awaitConnections(server, Math.min(WARMUP, count), 10_000)
  await closeAll(generator, server)
  await sleep(300)
  const baseline = await collected(server)
  const result = await open(generator, server, count, CONCURRENCY[0])
  const afterOpen = await awaitConnections(server, count, 30_000)
  await sleep(500)
  const loaded = await collected(server)
  await closeAll(generator, server)
  await sleep(300)
  const closed = await collected(server)
  const open500 = await open(generator, server, count, CONCURRENCY[1])
  await awaitConnections(server, count, 30_000)
  await closeAll(generator, server)
  return {
    runtime: baseline.runtime,
    open: result,
    open500,
    baseline,
    loaded,
    closed,
    serverCpuPerConnection: (afterOpen.cpuMicros - baseline.cpuMicros) / count
  }
}

/** One figure of the summary: how to read it off a measurement, and whether more is better. */
interface Metric {
  readonly name: string
  readonly f: (m: Measured) => number
  readonly higherIsBetter: boolean
  /** Not shown for Bun (its heap is JavaScriptCore's). */
  readonly v8Only: boolean
}

const perConnection = (f: (s: ServerStats) => number) => (m: Measured) => (f(m.loaded) - f(m.baseline)) / m.open.opened
const rate = (o: (m: Measured) => OpenResult) => (m: Measured) => o(m).opened / o(m).seconds

const SUMMARY: ReadonlyArray<Metric> = [
  { name: "RSS B/conn", f: perConnection((s) => s.rss), higherIsBetter: false, v8Only: false },
  { name: "heap B/conn", f: perConnection((s) => s.heapUsed), higherIsBetter: false, v8Only: true },
  { name: `connections/s (${CONCURRENCY[0]} in flight)`, f: rate((m) => m.open), higherIsBetter: true, v8Only: false },
  { name: `connections/s (${CONCURRENCY[1]} in flight)`, f: rate((m) => m.open500), higherIsBetter: true, v8Only: false }
]

const DETAILS: ReadonlyArray<Metric> = [
  { name: "server CPU µs per connection opened", f: (m) => m.serverCpuPerConnection, higherIsBetter: false, v8Only: false },
  { name: "generator CPU % while opening (50 in flight)", f: (m) => (100 * m.open.generatorCpuMicros) / (m.open.seconds * 1e6), higherIsBetter: false, v8Only: false },
  { name: "generator CPU % while opening (500 in flight)", f: (m) => (100 * m.open500.generatorCpuMicros) / (m.open500.seconds * 1e6), higherIsBetter: false, v8Only: false },
  { name: "V8 young generation growth B/conn (part of RSS)", f: perConnection((s) => s.newSpace), higherIsBetter: false, v8Only: true },
  { name: "external B/conn", f: perConnection((s) => s.external), higherIsBetter: false, v8Only: true },
  { name: "heap left per connection after closing all (B)", f: (m) => (m.closed.heapUsed - m.baseline.heapUsed) / m.open.opened, higherIsBetter: false, v8Only: true },
  { name: "baseline RSS (MiB)", f: (m) => m.baseline.rss / 2 ** 20, higherIsBetter: false, v8Only: false },
  { name: "baseline heap (MiB)", f: (m) => m.baseline.heapUsed / 2 ** 20, higherIsBetter: false, v8Only: true }
]

const main = async () => {
  const limit = openFileLimit()
  const ports = ephemeralPorts()
  const count = Math.max(1, Math.min(TARGET, limit - FD_RESERVE, ports - 1_000))
  const names = selectTargets()
  await withBench("connections benchmark", names, () => ["--expose-gc"], async ({ servers, generator }) => {
    console.log(
      `ulimit -n ${limit}, ${Number.isFinite(ports) ? ports : "unknown"} ephemeral ports: ${fmt(count)} connections per server` +
        (count < TARGET
          ? ` (not ${fmt(TARGET)}: each process needs one descriptor per connection plus ${FD_RESERVE} reserved, and a port per connection)`
          : "") +
        `, after a warm-up of ${Math.min(WARMUP, count)}; memory after a full GC with ${CONCURRENCY[0]} handshakes in flight, minus the baseline.`
    )

    const results: Partial<Record<TargetName, Measured>> = {}
    for (const server of servers) {
      const m = await measure(generator, server, count)
      results[server.name] = m
      console.error(
        `  ${server.label.padEnd(15)} opened ${fmt(m.open.opened)} in ${fmt(m.open.seconds, 2)} s (${fmt(m.open500.seconds, 2)} s at ${CONCURRENCY[1]} in flight), RSS ${fmt(m.baseline.rss / 2 ** 20, 1)} → ${fmt(m.loaded.rss / 2 ** 20, 1)} MiB, heapUsed ${fmt(m.baseline.heapUsed / 2 ** 20, 1)} → ${fmt(m.loaded.heapUsed / 2 ** 20, 1)} MiB`
      )
    }
    /** A figure of one server ("—" where it does not apply, NaN where the server was not measured). */
    const value = (metric: Metric, name: TargetName): number => {
      const m = results[name]
      return m === undefined || (metric.v8Only && m.runtime === "bun") ? Number.NaN : metric.f(m)
    }
    const best = (metric: Metric): TargetName | undefined =>
      NODE_SERVERS.filter((name) => Number.isFinite(value(metric, name))).sort((a, b) =>
        metric.higherIsBetter ? value(metric, b) - value(metric, a) : value(metric, a) - value(metric, b)
      )[0]
    const cell = (metric: Metric, name: TargetName, digits: number) => {
      const x = value(metric, name)
      return Number.isFinite(x) ? fmt(x, digits) : "—"
    }

    console.log("")
    console.log(
      table(
        [`${fmt(count)} connections (× best Node)`, ...names.map((name) => TARGETS[name].label)],
        SUMMARY.map((metric) => {
          const b = best(metric)
          return [
            metric.name,
            ...names.map((name) => {
              const x = value(metric, name)
              if (!Number.isFinite(x)) return "—"
              return b === undefined || b === name ? fmt(x) : `${fmt(x)} (${ratio(x, value(metric, b))})`
            })
          ]
        })
      )
    )
    console.log("")
    const rows: Array<ReadonlyArray<string>> = []
    for (const metric of SUMMARY) {
      const b = best(metric)
      for (const name of names) {
        const x = value(metric, name)
        if (!Number.isFinite(x)) continue
        rows.push([
          `${metric.name}, ${TARGETS[name].label}`,
          fmt(x),
          ratio(x, value(metric, "floor")),
          b === undefined ? "—" : `${ratio(x, value(metric, b))} ${TARGETS[b].label}`,
          ratio(x, value(metric, "bun"))
        ])
      }
    }
    console.log(table(["metric, server", "value", "× floor", "× best Node", "× Bun"], rows))
    console.log("")
    console.log(
      table(
        ["details", ...names.map((name) => TARGETS[name].label)],
        DETAILS.map((metric) => [metric.name, ...names.map((name) => cell(metric, name, metric.name.includes("MiB") ? 1 : 0))])
      )
    )
    console.log("")
    console.log(
      "Best Node: the least memory or the most connections/s among ws, ws+bufferutil, effect-ws, effect-ws route. — : not measured or not comparable (Bun's heap is JavaScriptCore's)."
    )
  })
}

await main()
