/**
 * `npm run soak` (not part of `npm test`): SOAK_CONNS clients (default 1,000) echo against the
 * demo's `/echo` for SOAK_MINUTES (default 10), the demo in one process (`../test/hostile/server.ts`,
 * which serves `demoLayer` and answers memory requests), the generator in another (`load.ts`:
 * `ws` clients, half with permessage-deflate, sizes 32 B–64 KiB, pings; each message carries a
 * sequence number and a CRC-32). Prints the server's RSS and heap every SOAK_SAMPLE_S seconds
 * (default 30), then the totals: lost, corrupted and misordered echoes, and the RSS range after
 * the warm-up (SOAK_WARMUP_S, default 120 s, or a quarter of shorter runs), which must stay
 * within ±10 % of its first sample. Exits 1 when anything was lost, corrupted or misordered,
 * a connection closed unexpectedly, or the RSS drifted more than 10 %. Other knobs:
 * SOAK_THINK_MS (mean pause between a client's echo and its next message, default 500).
 */
import { fmt } from "../bench/format.ts"
import { Child, guardChildren } from "../bench/ipc.ts"
import type { ServerStats } from "../bench/protocol.ts"
import { envNumber } from "../bench/settings.ts"
import type { SoakParams, SoakTotals } from "./load.ts"

const conns = envNumber("SOAK_CONNS", 1_000, 1)
const minutes = envNumber("SOAK_MINUTES", 10, 0.1)
const durationMs = minutes * 60_000
const sampleMs = envNumber("SOAK_SAMPLE_S", 30, 1) * 1000
const warmupMs = envNumber("SOAK_WARMUP_S", durationMs >= 8 * 60_000 ? 120 : durationMs / 4000, 0) * 1000
const thinkMs = envNumber("SOAK_THINK_MS", 500, 0)

guardChildren(durationMs + 5 * 60_000)
const server = new Child("server", "../test/hostile/server.ts", ["--expose-gc"])
const generator = new Child("generator", "../soak/load.ts", [])
const MB = (bytes: number) => fmt(bytes / 2 ** 20, 1)

const main = async (): Promise<number> => {
  const port = (await server.waitReady())["port"] as number
  await generator.waitReady()
  console.log(`soak: ${conns} connections × ${minutes} min on ws://127.0.0.1:${port}/echo (warm-up ${warmupMs / 1000} s, think ${thinkMs} ms, node ${process.version})`)
  const idle = await server.stats(true)
  console.log(`server idle: RSS ${MB(idle.rss)} MB, heap ${MB(idle.heapUsed)} MB`)
  let latest: Record<string, unknown> = {}
  generator.onEvent = (event) => {
    if (event.type !== "progress") return
    latest = event
    if (event["phase"] === "open") console.log(`opened ${String(event["opened"])} (${String(event["failures"])} failed)`)
  }
  const params: SoakParams = { url: `ws://127.0.0.1:${port}/echo`, conns, durationMs, thinkMs, pingMs: 10_000, openConcurrency: 50, drainMs: 10_000 }
  const result = generator.request<SoakTotals>({ type: "soak", params }, durationMs + 4 * 60_000)
  // Samples, from when the load starts (the generator's "run" progress follows its open phase).
  const samples: Array<{ readonly atMs: number; readonly stats: ServerStats }> = []
  const started = Date.now()
  let finished = false
  void result.finally(() => {
    finished = true
  })
  while (!finished) {
    await Promise.race([new Promise((resolve) => setTimeout(resolve, sampleMs)), result.catch(() => {})])
    if (finished) break
    const stats = await server.stats()
    const atMs = Date.now() - started
    samples.push({ atMs, stats })
    const sent = Number(latest["sent"] ?? 0)
    const echoed = Number(latest["echoed"] ?? 0)
    console.log(
      `${fmt(atMs / 1000)} s: server RSS ${MB(stats.rss)} MB, heap ${MB(stats.heapUsed)} MB, external ${MB(stats.external)} MB (arrayBuffers ${MB(stats.arrayBuffers)}), V8 new space ${MB(stats.newSpace)} MB, ` +
        `${stats.connections} sockets; sent ${fmt(sent)}, echoed ${fmt(echoed)}${atMs < warmupMs ? " (warm-up)" : ""}`
    )
  }
  const totals = await result
  const after = await server.stats(true)
  const steadySamples = samples.filter((s) => s.atMs >= warmupMs && s.atMs <= durationMs)
  /** How far the values stray from the first one, as a fraction of it, and their range. */
  const spread = (values: ReadonlyArray<number>) => {
    const first = values[0] ?? Number.NaN
    const low = Math.min(...values)
    const high = Math.max(...values)
    return { first, low, high, drift: Math.max(high / first - 1, 1 - low / first) }
  }
  const { first: reference, low, high, drift } = spread(steadySamples.map((s) => s.stats.rss))
  // V8's young generation grows in steps with the allocation rate and never shrinks (see ipc.ts):
  // RSS without it tells that apart from memory the server keeps.
  const withoutNew = spread(steadySamples.map((s) => s.stats.rss - s.stats.newSpace))
  const closes = Object.entries(totals.unexpectedCloses)
  console.log(
    `\nsoak done: ${fmt(totals.opened)} opened (${totals.openFailures} failed, ${totals.deflateConns} with permessage-deflate); ` +
      `${fmt(totals.sent)} sent (${MB(totals.bytesSent)} MB), ${fmt(totals.echoed)} echoed; ` +
      `lost ${totals.lost}, corrupted ${totals.corrupted}, misordered ${totals.misordered}; ` +
      `pings ${fmt(totals.pingsSent)}, pongs ${fmt(totals.pongs)}; unexpected closes ${closes.length === 0 ? "none" : JSON.stringify(totals.unexpectedCloses)}`
  )
  console.log(
    `server RSS after warm-up: ${MB(low)}–${MB(high)} MB over ${steadySamples.length} samples, ` +
      `first ${MB(reference)} MB: drift ${fmt(drift * 100, 1)} % (${drift <= 0.1 ? "within" : "OUTSIDE"} ±10 %); ` +
      `after all closed and gc(): RSS ${MB(after.rss)} MB, heap ${MB(after.heapUsed)} MB (idle before: ${MB(idle.rss)} / ${MB(idle.heapUsed)} MB)`
  )
  console.log(`RSS without V8's new space after warm-up: ${MB(withoutNew.low)}–${MB(withoutNew.high)} MB, drift ${fmt(withoutNew.drift * 100, 1)} %`)
  const failed = totals.lost > 0 || totals.corrupted > 0 || totals.misordered > 0 || closes.length > 0 || totals.openFailures > 0 ||
    !(drift <= 0.1)
  console.log(failed ? "soak FAILED" : "soak passed")
  return failed ? 1 : 0
}

main().then(
  async (code) => {
    await Promise.all([generator.stop(), server.stop()])
    process.exit(code)
  },
  async (error: unknown) => {
    console.error(error)
    await Promise.all([generator.stop(), server.stop()])
    process.exit(1)
  }
)
