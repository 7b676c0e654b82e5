/**
 * One echo measurement as the orchestrators take it (`echo.ts`, `deflate.ts`): the generator runs
 * its load against a server and marks the start and the end of its window; the server's own CPU
 * (`process.cpuUsage()`, over IPC) is sampled at those marks, the generator reports its own.
 * Also the checks that a run was bounded by the server and not by the generator.
 */
import type { Child } from "./ipc.ts"
import type { EchoParams, EchoResult, ServerStats } from "./protocol.ts"
import { fmt } from "./format.ts"
import { DURATION_MS, WARMUP_MS } from "./settings.ts"
import type { Server } from "./targets.ts"

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

/**
 * Whether a run may have been bounded by the generator rather than the server: the generator
 * used more CPU than the server it measured, or more than 90 % of a core (it is one event loop).
 */
export const generatorBound = (run: EchoRates): boolean =>
  run.generatorCpuPercent > run.serverCpuPercent || run.generatorCpuPercent > 90
