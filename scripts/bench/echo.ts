/**
 * `npm run bench:echo`: CPU per echoed message of every server of `targets.ts` (floor, ws,
 * ws+bufferutil, effect-ws, effect-ws route, Bun; BENCH_SERVERS selects some), each in its own
 * process on 127.0.0.1, driven by one load generator process (`load.ts`, raw sockets on our
 * codec: the same client for every server), in the same run:
 *
 * - (a) latency: 1 connection, 1 message in flight, 32 B text: RTT p50/p99 (≥ 5,000 round trips);
 * - (b) 50 connections × 16 in flight × 32 B text;
 * - (c) 10 connections × 8 in flight × 64 KiB binary;
 * - (p) pipelined: (b) with batched writes (every message due on a connection in one write).
 *
 * (a) to (c) write one frame per socket write, as real clients do; (p) is the pipelined load the
 * earlier figures were taken with (many frames per chunk), kept to watch for regressions, never
 * the headline.
 *
 * Every scenario warms up (BENCH_WARMUP_MS, default 1,000), then measures for BENCH_DURATION_MS
 * (default 4,000), against each server in a rotating order (BENCH_ROUNDS runs per server, default
 * 3) and reports medians. Server CPU is each server's own `process.cpuUsage()`, sampled over IPC
 * when the generator marks the start and the end of its window. Printed per scenario and server:
 * CPU µs/message, its ratio to the floor, to the best Node server (the least of ws,
 * ws+bufferutil, effect-ws and effect-ws route) and to Bun, and the generator's own CPU; a row is
 * flagged generator-bound when the generator used more CPU than the server or over 90 % of a core.
 *
 * Other settings: BENCH_SCENARIOS (e.g. "bc"), BENCH_PROFILE=1 (runs the Node servers under
 * --cpu-prof and prints their top functions by self time at the end; profiling slows them).
 */
import { existsSync, mkdtempSync, readdirSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fmt, median, ratio, sig3, table } from "./format.ts"
import type { Child } from "./ipc.ts"
import { type EchoRates, generatorBound, measureEcho } from "./measure.ts"
import { printTopFunctions } from "./profile.ts"
import type { WriteMode } from "./protocol.ts"
import { DURATION_MS, ROUNDS, WARMUP_MS } from "./settings.ts"
import { alternate, NODE_SERVERS, selectTargets, type Server, type TargetName, TARGETS, withBench } from "./targets.ts"

const PROFILE = process.env["BENCH_PROFILE"] === "1"

interface Scenario {
  readonly key: string
  readonly name: string
  readonly conns: number
  readonly inFlight: number
  readonly size: number
  readonly binary: boolean
  readonly minSamples: number
  readonly writes: WriteMode
}

const ALL: ReadonlyArray<Scenario> = [
  { key: "a", name: "(a) 1 conn × 1 in flight, 32 B", conns: 1, inFlight: 1, size: 32, binary: false, minSamples: 5_000, writes: "per-message" },
  { key: "b", name: "(b) 50 conns × 16 in flight, 32 B", conns: 50, inFlight: 16, size: 32, binary: false, minSamples: 0, writes: "per-message" },
  { key: "c", name: "(c) 10 conns × 8 in flight, 64 KiB", conns: 10, inFlight: 8, size: 64 * 1024, binary: true, minSamples: 0, writes: "per-message" },
  { key: "p", name: "(p) pipelined: 50 conns × 16 in flight, 32 B, batched writes", conns: 50, inFlight: 16, size: 32, binary: false, minSamples: 0, writes: "batched" }
]
const selected = process.env["BENCH_SCENARIOS"] ?? "abcp"
const SCENARIOS = ALL.filter((s) => selected.includes(s.key))

interface Run extends EchoRates {
  readonly p50: number
  readonly p99: number
  readonly samples: number
}

/** The medians of one server's runs in one scenario. */
interface Summary extends Run {
  readonly bound: boolean
}

const runOnce = async (generator: Child, server: Server, scenario: Scenario): Promise<Run> => {
  const measured = await measureEcho(generator, server, {
    conns: scenario.conns,
    inFlight: scenario.inFlight,
    size: scenario.size,
    binary: scenario.binary,
    minSamples: scenario.minSamples,
    writes: scenario.writes
  }, scenario.name)
  const { result, ...rates } = measured
  const rtt = result.rtt
  return { ...rates, p50: rtt?.p50 ?? Number.NaN, p99: rtt?.p99 ?? Number.NaN, samples: rtt?.samples ?? 0 }
}

const summarize = (runs: ReadonlyArray<Run>): Summary => {
  const m = (f: (r: Run) => number) => median(runs.map(f))
  const rates: Run = {
    messagesPerSecond: m((r) => r.messagesPerSecond),
    serverCpuPerMessage: m((r) => r.serverCpuPerMessage),
    serverCpuPercent: m((r) => r.serverCpuPercent),
    generatorCpuPercent: m((r) => r.generatorCpuPercent),
    p50: m((r) => r.p50),
    p99: m((r) => r.p99),
    samples: m((r) => r.samples)
  }
  return { ...rates, bound: generatorBound(rates) }
}

/** The best (least CPU per message) Node server of a scenario, if any was measured. */
const bestNode = (summaries: Partial<Record<TargetName, Summary>>): TargetName | undefined =>
  NODE_SERVERS.filter((name) => summaries[name] !== undefined).sort(
    (a, b) => summaries[a]!.serverCpuPerMessage - summaries[b]!.serverCpuPerMessage
  )[0]

const main = async () => {
  const names = selectTargets()
  const profileDir = PROFILE ? mkdtempSync(Path.join(Os.tmpdir(), "effect-ws-bench-prof-")) : undefined
  const flags = (name: string) =>
    profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${Path.join(profileDir, name)}`]
  await withBench("echo benchmark", names, flags, async ({ servers, generator }) => {
    console.log(
      `warm-up ${WARMUP_MS} ms, window ${DURATION_MS} ms, ${ROUNDS} run(s) per server in rotating order; medians. Servers and generator are separate processes on 127.0.0.1.`
    )
    const results: Array<{ readonly scenario: Scenario; readonly summaries: Partial<Record<TargetName, Summary>> }> = []
    for (const scenario of SCENARIOS) {
      const runs = await alternate(ROUNDS, servers, async (server) => {
        const run = await runOnce(generator, server, scenario)
        console.error(
          `  ${scenario.key} ${server.label.padEnd(15)} ${fmt(run.messagesPerSecond)} msg/s, server ${fmt(run.serverCpuPerMessage, 2)} µs/msg (${fmt(run.serverCpuPercent)} % CPU), generator ${fmt(run.generatorCpuPercent)} % CPU` +
            (run.samples > 0 ? `, RTT p50 ${fmt(run.p50, 1)} µs p99 ${fmt(run.p99, 1)} µs over ${fmt(run.samples)}` : "")
        )
        return run
      })
      const summaries: Partial<Record<TargetName, Summary>> = {}
      for (const server of servers) summaries[server.name] = summarize(runs[server.name]!)
      results.push({ scenario, summaries })
    }

    // The headline: CPU per message, each with its ratio to the floor.
    console.log("")
    console.log(
      table(
        ["server CPU µs/msg (× floor)", ...names.map((name) => TARGETS[name].label)],
        results.map(({ scenario, summaries }) => {
          const floor = summaries.floor?.serverCpuPerMessage ?? Number.NaN
          return [
            scenario.name,
            ...names.map((name) => {
              const s = summaries[name]!
              const r = name === "floor" || !Number.isFinite(floor) ? "" : ` (${ratio(s.serverCpuPerMessage, floor)})`
              return `${sig3(s.serverCpuPerMessage)}${r}${s.bound ? " †" : ""}`
            })
          ]
        })
      )
    )

    // Every server's ratios and the generator's CPU, row by row.
    console.log("")
    const rows: Array<ReadonlyArray<string>> = []
    for (const { scenario, summaries } of results) {
      const best = bestNode(summaries)
      const of = (name: TargetName | undefined) => (name === undefined ? Number.NaN : summaries[name]?.serverCpuPerMessage ?? Number.NaN)
      for (const name of names) {
        const s = summaries[name]!
        rows.push([
          `${scenario.key} ${TARGETS[name].label}`,
          sig3(s.serverCpuPerMessage),
          ratio(s.serverCpuPerMessage, of("floor")),
          best === undefined ? "—" : `${ratio(s.serverCpuPerMessage, of(best))} ${TARGETS[best].label}`,
          ratio(s.serverCpuPerMessage, of("bun")),
          fmt(s.messagesPerSecond),
          fmt(s.serverCpuPercent),
          fmt(s.generatorCpuPercent),
          s.samples > 0 ? `${fmt(s.p50, 1)} / ${fmt(s.p99, 1)}` : "",
          s.bound ? "generator-bound" : ""
        ])
      }
    }
    console.log(
      table(
        ["scenario, server", "CPU µs/msg", "× floor", "× best Node", "× Bun", "msg/s", "server CPU %", "generator CPU %", "RTT p50 / p99 µs", ""],
        rows
      )
    )
    console.log("")
    console.log(
      "CPU µs/msg: the server's own CPU time (all threads) over the window / messages echoed (a message is one round trip). Best Node: the least of ws, ws+bufferutil, effect-ws, effect-ws route in that scenario."
    )
    console.log(
      "† / generator-bound: the generator used more CPU than the server, or over 90 % of a core: that run may measure the generator, not the server. CPU % is of one core and can exceed 100."
    )
  })
  if (profileDir !== undefined) {
    for (const name of names) {
      const dir = Path.join(profileDir, name)
      if (!existsSync(dir)) continue
      for (const file of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"))) printTopFunctions(Path.join(dir, file), 25)
    }
  }
}

await main()
