/**
 * `npm run bench:conns`: what idle connections cost. Our echo server and a `ws` echo server,
 * each in its own process started with --expose-gc, and one load generator process (`load.ts`).
 * For each server in turn:
 *
 * 1. warm-up: open and close WARMUP connections (so that code loaded and compiled on the first
 *    connection is not counted per connection);
 * 2. baseline: the server calls `gc()` and reports its memory;
 * 3. the generator opens N idle connections (BENCH_CONNS, default 5,000), CONCURRENCY handshakes at
 *    a time: connections/s, and the server's CPU per connection from its own `process.cpuUsage()`;
 * 4. once the server counts N open connections: `gc()` again, and (RSS, heapUsed, external) minus
 *    the baseline, divided by N, is the cost of one idle connection; the growth of V8's young
 *    generation is shown as well, since it is part of RSS but set by V8's heuristics (it grows
 *    with the bytes that survive scavenges and is not given back at `gc()`);
 * 5. the generator closes them all (Close 1000, then FIN) and the server is back to 0; heapUsed
 *    after `gc()` minus the baseline, divided by N, is what a closed connection leaves behind.
 *
 * N is capped by this process's open-file limit (`ulimit -n`; every process here holds one
 * descriptor per connection, plus a few) and by the ephemeral port range; nothing system-wide is
 * raised. Ratios are ours / ws (< 1 is better for everything but connections/s).
 */
import { existsSync, readFileSync } from "node:fs"
import { awaitConnections, type Child, fmt, openFileLimit, type Server, type ServerStats, withBench } from "./ipc.ts"
import type { OpenResult } from "./load.ts"

const TARGET = Math.max(1, Number(process.env["BENCH_CONNS"] ?? 5_000) || 5_000)
const CONCURRENCY = 64
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
  readonly open: OpenResult
  readonly baseline: ServerStats
  readonly loaded: ServerStats
  /** After every connection was closed again (gc'd): what closed connections left behind. */
  readonly closed: ServerStats
  readonly serverCpuPerConnection: number
}

const open = async (generator: Child, server: Server, count: number): Promise<OpenResult> => {
  const result = await generator.request<OpenResult>(
    { type: "open", port: server.port, count, concurrency: CONCURRENCY, maxMs: 180_000 },
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

const measure = async (generator: Child, server: Server, count: number): Promise<Measured> => {
  await open(generator, server, Math.min(WARMUP, count))
  await awaitConnections(server, Math.min(WARMUP, count), 10_000)
  await closeAll(generator, server)
  await sleep(300)
  await server.child.stats(true)
  const baseline = await server.child.stats(true)
  const result = await open(generator, server, count)
  const afterOpen = await awaitConnections(server, count, 30_000)
  await sleep(500)
  await server.child.stats(true)
  const loaded = await server.child.stats(true)
  await closeAll(generator, server)
  await sleep(300)
  await server.child.stats(true)
  const closed = await server.child.stats(true)
  return {
    open: result,
    baseline,
    loaded,
    closed,
    serverCpuPerConnection: (afterOpen.cpuMicros - baseline.cpuMicros) / count
  }
}

const main = async () => {
  const limit = openFileLimit()
  const ports = ephemeralPorts()
  const count = Math.max(1, Math.min(TARGET, limit - FD_RESERVE, ports - 1_000))
  await withBench("connections benchmark", () => ["--expose-gc"], async ({ ours, ws, generator }) => {
    console.log(
      `ulimit -n ${limit}, ${Number.isFinite(ports) ? ports : "unknown"} ephemeral ports: ${fmt(count)} connections per server` +
        (count < TARGET
          ? ` (not ${fmt(TARGET)}: each process needs one descriptor per connection plus ${FD_RESERVE} reserved, and a port per connection)`
          : "") +
        `, ${CONCURRENCY} handshakes in flight, after a warm-up of ${Math.min(WARMUP, count)}; memory after gc(), minus the baseline.`
    )

    const results: Record<Server["name"], Measured | undefined> = { ours: undefined, ws: undefined }
    for (const server of [ours, ws]) {
      const m = await measure(generator, server, count)
      results[server.name] = m
      console.error(
        `  ${server.name.padEnd(4)} opened ${fmt(m.open.opened)} in ${fmt(m.open.seconds, 2)} s, RSS ${fmt(m.baseline.rss / 2 ** 20, 1)} → ${fmt(m.loaded.rss / 2 ** 20, 1)} MiB, heapUsed ${fmt(m.baseline.heapUsed / 2 ** 20, 1)} → ${fmt(m.loaded.heapUsed / 2 ** 20, 1)} MiB`
      )
    }
    const a = results.ours!
    const b = results.ws!
    const row = (metric: string, f: (m: Measured) => number, digits: number) => {
      const x = f(a)
      const y = f(b)
      console.log(`| ${metric} | ${fmt(x, digits)} | ${fmt(y, digits)} | ${fmt(x / y, 2)} |`)
    }
    const perConnection = (f: (s: ServerStats) => number) => (m: Measured) => (f(m.loaded) - f(m.baseline)) / m.open.opened
    console.log("")
    console.log("| metric | ours | ws | ours/ws |")
    console.log("|---|---:|---:|---:|")
    row("connections opened", (m) => m.open.opened, 0)
    row("connections/s (opening)", (m) => m.open.opened / m.open.seconds, 0)
    row("server CPU µs per connection opened", (m) => m.serverCpuPerConnection, 0)
    row("generator CPU % while opening", (m) => (100 * m.open.generatorCpuMicros) / (m.open.seconds * 1e6), 0)
    row("RSS per connection (B)", perConnection((s) => s.rss), 0)
    row("heapUsed per connection (B)", perConnection((s) => s.heapUsed), 0)
    row("V8 young generation growth per connection (B, part of RSS)", perConnection((s) => s.newSpace), 0)
    row("external per connection (B)", perConnection((s) => s.external), 0)
    row("heapUsed left per connection after closing all (B)", (m) => (m.closed.heapUsed - m.baseline.heapUsed) / m.open.opened, 0)
    row("baseline RSS (MiB)", (m) => m.baseline.rss / 2 ** 20, 1)
    row("baseline heapUsed (MiB)", (m) => m.baseline.heapUsed / 2 ** 20, 1)
    row("baseline young generation (MiB)", (m) => m.baseline.newSpace / 2 ** 20, 1)
  })
}

await main()
