/**
 * `npm run bench:deflate`: permessage-deflate (RFC 7692, issue #5). The same servers as
 * `bench:echo` (each in its own process on 127.0.0.1, started with BENCH_DEFLATE=1 and
 * --expose-gc; `ws` without bufferutil) and the same load generator (`load.ts`, raw sockets on
 * our codec):
 *
 * - ours: `PerMessageDeflate.extensions({ compressIfBiggerThan: 1023 })` (context takeover both
 *   ways, zlib's default level and memLevel, messages of 1,024 B and more compressed);
 * - ws: `perMessageDeflate: true` (the same: context takeover, zlib defaults, `threshold: 1024`).
 *
 * The generator offers `permessage-deflate; client_no_context_takeover; client_max_window_bits`
 * and fails unless the server accepts. Because it promised not to take its context over, each
 * message it sends is compressed on its own: it deflates the payload once per run (node:zlib,
 * default level, sync flush, tail removed) and writes the same RSV1 frame again and again. The
 * servers keep their compression context, so their replies differ from message to message: the
 * generator checks that every reply has RSV1 set (and counts it), and inflates every reply of one
 * connection per run, in order, checking the output byte for byte against what it sent.
 *
 * Scenarios, all 50 connections × 16 in flight with batched writes (the pipelined load of
 * `bench:echo` (p), which this benchmark was first measured with), JSON-ish text:
 * - (p) 32 B, no extension offered: the uncompressed baseline, same servers, same run;
 * - (n) 32 B, deflate negotiated, plain messages both ways (below the threshold on both sides);
 * - (s) 32 B, deflate negotiated, the client sends compressed messages, replies plain (below the threshold);
 * - (L) 16 KiB, compressed both ways.
 * Then memory: 1,000 connections (BENCH_DEFLATE_CONNS) that each exchanged one compressed 16 KiB
 * message (so each holds a deflate and an inflate context on the server): RSS, heapUsed and
 * external per connection after gc(), minus the baseline.
 *
 * Settings as `bench:echo`: BENCH_ROUNDS (default 3), BENCH_WARMUP_MS (1,000),
 * BENCH_DURATION_MS (4,000), BENCH_SCENARIOS (e.g. "pL"), BENCH_PROFILE=1 (both servers under
 * --cpu-prof, top functions by self time printed at the end; profiling slows them).
 */
import { mkdtempSync, readdirSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fmt, median } from "./format.ts"
import type { Child } from "./ipc.ts"
import { type EchoRates, GeneratorCheck, measureEcho } from "./measure.ts"
import type { EchoParams, OpenResult, ServerStats } from "./protocol.ts"
import { DURATION_MS, envNumber, ROUNDS, WARMUP_MS } from "./settings.ts"
import { alternate, awaitConnections, type Server, withBench } from "./targets.ts"
import { printTopFunctions } from "./profile.ts"

const MEMORY_CONNS = Math.trunc(envNumber("BENCH_DEFLATE_CONNS", 1_000, 1))
const PROFILE = process.env["BENCH_PROFILE"] === "1"
/** Both servers compress messages of at least this many bytes. */
const THRESHOLD = 1024
const LARGE = 16 * 1024

interface Scenario {
  readonly key: string
  readonly name: string
  readonly size: number
  readonly deflate: NonNullable<EchoParams["deflate"]>
}

const ALL: ReadonlyArray<Scenario> = [
  { key: "p", name: "(p) 32 B, no deflate offered (baseline)", size: 32, deflate: "off" },
  { key: "n", name: "(n) 32 B, deflate negotiated, plain both ways", size: 32, deflate: "negotiated" },
  { key: "s", name: "(s) 32 B, deflate negotiated, client sends RSV1, replies plain", size: 32, deflate: "compressed" },
  { key: "L", name: "(L) 16 KiB, compressed both ways", size: LARGE, deflate: "compressed" }
]
const CONNS = 50
/** The two servers this benchmark compares. */
type Pair = "ours" | "ws"
const IN_FLIGHT = 16
const selected = process.env["BENCH_SCENARIOS"] ?? "pnsLm"
const SCENARIOS = ALL.filter((s) => selected.includes(s.key))

interface Run extends EchoRates {
  readonly wireBytes: number
  readonly verified: number
  readonly compressedPercent: number
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const runOnce = async (generator: Child, server: Server, scenario: Scenario): Promise<Run> => {
  // ws applies its threshold only without server context takeover: with it, ws compresses every
  // message, so below the threshold the replies may be either.
  const replies = scenario.deflate === "off" ? "plain" : scenario.size >= THRESHOLD ? "compressed" : "either"
  const measured = await measureEcho(generator, server, {
    conns: CONNS,
    inFlight: IN_FLIGHT,
    size: scenario.size,
    binary: false,
    minSamples: 0,
    payload: "json",
    deflate: scenario.deflate,
    replies,
    verifyConns: 1,
    // The pipelined load this benchmark was first measured with, so that its figures stay comparable.
    writes: "batched"
  }, scenario.name)
  const { result, ...rates } = measured
  if (result.compressedReplies > 0 && (result.verified === null || result.verified.messages === 0)) {
    throw new Error(`${server.name}: compressed replies but none verified in ${scenario.name}`)
  }
  return {
    ...rates,
    wireBytes: result.wireBytes,
    verified: result.verified?.messages ?? 0,
    compressedPercent: (100 * result.compressedReplies) / result.replies
  }
}

interface Memory {
  readonly baseline: ServerStats
  readonly loaded: ServerStats
  readonly count: number
}

/** Opens `count` connections that each exchange one compressed 16 KiB message, and holds them. */
const openCompressing = async (generator: Child, server: Server, count: number): Promise<void> => {
  const result = await generator.request<OpenResult>(
    { type: "open", port: server.port, count, concurrency: 64, maxMs: 60_000, exchangeSize: LARGE, replies: "compressed" },
    120_000
  )
  if (result.failed > 0) throw new Error(`${server.name}: ${result.failed} of ${count} connections failed: ${result.firstError}`)
  if (result.exchanged !== count) throw new Error(`${server.name}: ${result.exchanged} of ${count} messages echoed`)
}

const closeAll = async (generator: Child, server: Server): Promise<void> => {
  await generator.request<number>({ type: "closeAll" }, 60_000)
  await awaitConnections(server, 0, 30_000)
}

const measureMemory = async (generator: Child, server: Server, count: number): Promise<Memory> => {
  const warmup = Math.min(100, count)
  await openCompressing(generator, server, warmup)
  await awaitConnections(server, warmup, 10_000)
  await closeAll(generator, server)
  await sleep(300)
  await server.child.stats(true)
  const baseline = await server.child.stats(true)
  await openCompressing(generator, server, count)
  await awaitConnections(server, count, 30_000)
  await sleep(500)
  await server.child.stats(true)
  const loaded = await server.child.stats(true)
  await closeAll(generator, server)
  return { baseline, loaded, count }
}

const main = async () => {
  const profileDir = PROFILE ? mkdtempSync(Path.join(Os.tmpdir(), "effect-ws-bench-prof-")) : undefined
  const flags = (name: string) =>
    profileDir === undefined ? ["--expose-gc"] : ["--expose-gc", "--cpu-prof", `--cpu-prof-dir=${Path.join(profileDir, name)}`]
  // The servers read it at start-up (fork copies this environment): permessage-deflate on.
  process.env["BENCH_DEFLATE"] = "1"
  // `ws` is ws without bufferutil, as before bufferutil became a devDependency (bench:echo has both).
  await withBench("permessage-deflate benchmark", ["ours", "ws"], flags, async ({ servers, generator }) => {
    const [ours, ws] = servers as [Server, Server]
    console.log(
      `${CONNS} conns × ${IN_FLIGHT} in flight, JSON-ish text; warm-up ${WARMUP_MS} ms, window ${DURATION_MS} ms, ${ROUNDS} run(s) per server alternating; medians. ` +
        `ours: PerMessageDeflate.extensions({ compressIfBiggerThan: 1023 }); ws: perMessageDeflate: true (threshold 1024). Both: context takeover, zlib default level.`
    )
    const rows: Array<string> = []
    const addRow = (scenario: string, metric: string, a: number, b: number, digits: number) =>
      rows.push(`| ${scenario} | ${metric} | ${fmt(a, digits)} | ${fmt(b, digits)} | ${fmt(a / b, 2)} |`)
    const generatorCheck = new GeneratorCheck()
    const messagesPerSecond: Record<string, Record<Pair, number>> = {}
    const cpuPerMessage: Record<string, Record<Pair, number>> = {}
    for (const scenario of SCENARIOS) {
      const runs = await alternate(ROUNDS, [ours, ws], async (server) => {
          const run = await runOnce(generator, server, scenario)
          generatorCheck.add(`${scenario.key}/${server.name}`, run)
          console.error(
            `  ${scenario.key} ${server.name.padEnd(4)} ${fmt(run.messagesPerSecond)} msg/s, server ${fmt(run.serverCpuPerMessage, 2)} µs/msg (${fmt(run.serverCpuPercent)} % CPU), generator ${fmt(run.generatorCpuPercent)} % CPU, ${run.wireBytes} B/message sent` +
              `, ${fmt(run.compressedPercent)} % of replies compressed` +
              (run.verified > 0 ? `, ${fmt(run.verified)} inflated and checked` : "")
          )
          return run
      })
      const m = (name: Pair, f: (r: Run) => number) => median(runs[name]!.map(f))
      const row = (metric: string, f: (r: Run) => number, digits: number) =>
        addRow(scenario.name, metric, m("ours", f), m("ws", f), digits)
      messagesPerSecond[scenario.key] = { ours: m("ours", (r) => r.messagesPerSecond), ws: m("ws", (r) => r.messagesPerSecond) }
      cpuPerMessage[scenario.key] = { ours: m("ours", (r) => r.serverCpuPerMessage), ws: m("ws", (r) => r.serverCpuPerMessage) }
      row("messages/s", (r) => r.messagesPerSecond, 0)
      row("server CPU µs/message", (r) => r.serverCpuPerMessage, 2)
      row("server CPU % (of one core)", (r) => r.serverCpuPercent, 0)
      row("generator CPU % (of one core)", (r) => r.generatorCpuPercent, 0)
      if (scenario.deflate === "compressed") row("bytes per message sent (frame)", (r) => r.wireBytes, 0)
      if (scenario.deflate !== "off") row("replies compressed (%)", (r) => r.compressedPercent, 0)
    }

    let memory: Record<Pair, Memory> | undefined = undefined
    if (selected.includes("m")) {
      const a = await measureMemory(generator, ours, MEMORY_CONNS)
      const b = await measureMemory(generator, ws, MEMORY_CONNS)
      memory = { ours: a, ws: b }
      const per = (x: Memory, f: (s: ServerStats) => number) => (f(x.loaded) - f(x.baseline)) / x.count
      const name = `(m) ${fmt(MEMORY_CONNS)} conns, each exchanged a compressed 16 KiB message`
      addRow(name, "RSS per connection (B)", per(a, (s) => s.rss), per(b, (s) => s.rss), 0)
      addRow(name, "heapUsed per connection (B)", per(a, (s) => s.heapUsed), per(b, (s) => s.heapUsed), 0)
      addRow(name, "external per connection (B)", per(a, (s) => s.external), per(b, (s) => s.external), 0)
    }

    console.log("")
    console.log("| scenario | metric | ours | ws | ours/ws |")
    console.log("|---|---|---:|---:|---:|")
    for (const row of rows) console.log(row)
    console.log("")
    const verdict = (ok: boolean) => (ok ? "met" : "NOT met")
    console.log("Targets:")
    const large = messagesPerSecond["L"]
    if (large !== undefined) {
      const ratio = large.ours / large.ws
      console.log(`- 16 KiB messages/s ≥ 1.5 × ws: ${fmt(ratio, 2)} × — ${verdict(ratio >= 1.5)}`)
    }
    const plain = cpuPerMessage["p"]
    for (const key of ["n", "s"]) {
      const small = cpuPerMessage[key]
      if (plain === undefined || small === undefined) continue
      const ratio = small.ours / plain.ours
      // 5 % of noise allowed: the runs are medians of a few seconds each.
      console.log(
        `- 32 B (${key}) below the threshold costs no more than uncompressed (p): ours ${fmt(small.ours, 2)} vs ${fmt(plain.ours, 2)} µs/message (${fmt(ratio, 2)} ×; ws ${fmt(small.ws / plain.ws, 2)} ×) — ${verdict(ratio <= 1.05)}` +
          (key === "s" ? " (the server inflates every RSV1 message: not expected to be free)" : "")
      )
    }
    if (memory !== undefined) {
      const a = (memory.ours.loaded.rss - memory.ours.baseline.rss) / memory.ours.count
      const b = (memory.ws.loaded.rss - memory.ws.baseline.rss) / memory.ws.count
      console.log(`- RSS per compressing connection ≤ ws: ${fmt(a)} B vs ${fmt(b)} B (${fmt(a / b, 2)} ×) — ${verdict(a <= b)}`)
    }
    console.log("")
    console.log(generatorCheck.verdict)
    console.log(
      "ours/ws: > 1 is better for messages/s; < 1 is better for CPU and memory. A message is one round trip. CPU % counts all threads (ws runs zlib on libuv's threadpool, ours on the event loop), so it can exceed 100."
    )
  })
  if (profileDir !== undefined) {
    for (const name of ["ours", "ws"]) {
      const dir = Path.join(profileDir, name)
      for (const file of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"))) printTopFunctions(Path.join(dir, file), 25)
    }
  }
}

await main()
