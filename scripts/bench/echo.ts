/**
 * `npm run bench:echo`: our echo server and a `ws` echo server, each in its own process on
 * 127.0.0.1, driven by one load generator process (`load.ts`, raw sockets on our codec: the same
 * client for both), in the same run:
 *
 * - (a) latency: 1 connection, 1 message in flight, 32 B text: RTT p50/p99 (≥ 5,000 round trips);
 * - (b) 50 connections × 16 in flight × 32 B text;
 * - (c) 10 connections × 8 in flight × 64 KiB binary.
 *
 * Every scenario warms up (BENCH_WARMUP_MS, default 1,000), then measures for BENCH_DURATION_MS
 * (default 4,000), against each server alternately (ours, ws, ws, ours, …; BENCH_ROUNDS runs per
 * server, default 3) and reports medians. Server CPU is each server's own `process.cpuUsage()`,
 * sampled over IPC when the generator marks the start and the end of its window; the generator
 * reports its own CPU, so one can check it is not the bottleneck (well under one core while the
 * server uses about one). Ratios are ours / ws.
 *
 * Other settings: BENCH_SCENARIOS (e.g. "bc"), BENCH_PROFILE=1 (runs both servers under
 * --cpu-prof and prints their top functions by self time at the end; profiling slows them).
 */
import { mkdtempSync, readdirSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { alternate, type Child, DURATION_MS, type EchoRates, fmt, GeneratorCheck, measureEcho, median, ROUNDS, type Server, WARMUP_MS, withBench } from "./ipc.ts"
import { printTopFunctions } from "./profile.ts"

const PROFILE = process.env["BENCH_PROFILE"] === "1"

interface Scenario {
  readonly key: string
  readonly name: string
  readonly conns: number
  readonly inFlight: number
  readonly size: number
  readonly binary: boolean
  readonly minSamples: number
}

const ALL: ReadonlyArray<Scenario> = [
  { key: "a", name: "(a) latency: 1 conn × 1 in flight, 32 B text", conns: 1, inFlight: 1, size: 32, binary: false, minSamples: 5_000 },
  { key: "b", name: "(b) 50 conns × 16 in flight, 32 B text", conns: 50, inFlight: 16, size: 32, binary: false, minSamples: 0 },
  { key: "c", name: "(c) 10 conns × 8 in flight, 64 KiB binary", conns: 10, inFlight: 8, size: 64 * 1024, binary: true, minSamples: 0 }
]
const selected = process.env["BENCH_SCENARIOS"] ?? "abc"
const SCENARIOS = ALL.filter((s) => selected.includes(s.key))

interface Run extends EchoRates {
  readonly p50: number
  readonly p99: number
  readonly samples: number
}

const runOnce = async (generator: Child, server: Server, scenario: Scenario): Promise<Run> => {
  const measured = await measureEcho(generator, server, {
    conns: scenario.conns,
    inFlight: scenario.inFlight,
    size: scenario.size,
    binary: scenario.binary,
    minSamples: scenario.minSamples
  }, scenario.name)
  const { result, ...rates } = measured
  const rtt = result.rtt
  return {
    ...rates,
    p50: rtt?.p50 ?? Number.NaN,
    p99: rtt?.p99 ?? Number.NaN,
    samples: rtt?.samples ?? 0
  }
}

const main = async () => {
  const profileDir = PROFILE ? mkdtempSync(Path.join(Os.tmpdir(), "effect-ws-bench-prof-")) : undefined
  const flags = (name: string) =>
    profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${Path.join(profileDir, name)}`]
  await withBench("echo benchmark", flags, async ({ ours, ws, generator }) => {
    console.log(
      `warm-up ${WARMUP_MS} ms, window ${DURATION_MS} ms, ${ROUNDS} run(s) per server alternating; medians. Servers and generator are separate processes on 127.0.0.1.`
    )

    const rows: Array<string> = []
    const generatorCheck = new GeneratorCheck()
    for (const scenario of SCENARIOS) {
      const runs = await alternate(ROUNDS, [ours, ws], async (server) => {
          const run = await runOnce(generator, server, scenario)
          generatorCheck.add(`${scenario.key}/${server.name}`, run)
          console.error(
            `  ${scenario.key} ${server.name.padEnd(4)} ${fmt(run.messagesPerSecond)} msg/s, server ${fmt(run.serverCpuPerMessage, 2)} µs/msg (${fmt(run.serverCpuPercent)} % CPU), generator ${fmt(run.generatorCpuPercent)} % CPU` +
              (run.samples > 0 ? `, RTT p50 ${fmt(run.p50, 1)} µs p99 ${fmt(run.p99, 1)} µs over ${fmt(run.samples)}` : "")
          )
          return run
      })
      const m = (name: Server["name"], f: (r: Run) => number) => median(runs[name].map(f))
      const row = (metric: string, f: (r: Run) => number, digits: number) => {
        const a = m("ours", f)
        const b = m("ws", f)
        rows.push(`| ${scenario.name} | ${metric} | ${fmt(a, digits)} | ${fmt(b, digits)} | ${fmt(a / b, 2)} |`)
      }
      if (scenario.minSamples > 0) {
        row("RTT p50 (µs)", (r) => r.p50, 1)
        row("RTT p99 (µs)", (r) => r.p99, 1)
        row("round trips timed", (r) => r.samples, 0)
      }
      row("messages/s", (r) => r.messagesPerSecond, 0)
      row("server CPU µs/message", (r) => r.serverCpuPerMessage, 2)
      row("server CPU % (of one core)", (r) => r.serverCpuPercent, 0)
      row("generator CPU % (of one core)", (r) => r.generatorCpuPercent, 0)
    }
    console.log("")
    console.log("| scenario | metric | ours | ws | ours/ws |")
    console.log("|---|---|---:|---:|---:|")
    for (const row of rows) console.log(row)
    console.log("")
    console.log(generatorCheck.verdict)
    console.log(
      "ours/ws: > 1 is better for messages/s; < 1 is better for RTT and CPU µs/message. A message is one round trip (client → server → client)."
    )
    console.log("CPU % is process CPU time (all threads: GC helpers too) over wall time, so it can exceed 100.")
  })
  if (profileDir !== undefined) {
    for (const name of ["ours", "ws"]) {
      const dir = Path.join(profileDir, name)
      for (const file of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"))) printTopFunctions(Path.join(dir, file), 25)
    }
  }
}

await main()
