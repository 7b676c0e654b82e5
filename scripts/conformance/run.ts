/**
 * Runs the conformance cases (`cases.ts`) and prints, per side, a table per section (cases,
 * passed, failed, time), the §9 timings, and every failure with its reason. Exits 1 on any
 * failure.
 *
 * - `npm run conformance`: both sides against our own code, in-process: our server (the demo's
 *   `/echo`, plus an echo server set to fragment its messages for §10) under our fuzzing client,
 *   and our client (the echo client, one connection per case) under our fuzzing server.
 * - `npm run conformance -- ws://host:port/path [id-prefix]`: the server side against any echo
 *   endpoint (the §10 cases that need our fragmenting server are left out).
 * - Options: `--side=server|client`, `--only=<id-prefix>`, `--subset` (the cases `npm test` runs,
 *   with its shorter pauses), `--verbose` (one line per case).
 */
import { type Case, type ClientConfig, type ServerTarget, type Side, buildCases } from "./cases.ts"
import { connect, type Conn, FuzzServer, type Incoming, respond } from "./conn.ts"
import { type ClientEnd, type Ctx, fail, FULL, pass, type Profile, STEP_MS, SUBSET, type Verdict } from "./script.ts"

/** How a client under test ended: its close reason, or the typed error it failed with. */
export type ClientOutcome =
  | { readonly _tag: "Closed"; readonly code: number; readonly reason: string }
  | { readonly _tag: "Failed"; readonly error: string; readonly message: string }

/** One run of a client under test, connecting to `url`. */
export interface RunningClient {
  readonly outcome: Promise<ClientOutcome>
  /** Stops it (when it does not end on its own). */
  readonly stop: () => void
}

/** Starts the client under test against `url` (with `config` when the case asks for settings). */
export type ClientUnderTest = (url: string, config: ClientConfig | undefined) => RunningClient

/** The outcome of one case. */
export interface Result {
  readonly side: Side
  readonly id: string
  readonly section: string
  readonly title: string
  readonly verdict: Verdict
  readonly ms: number
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e))

const within = <A>(p: Promise<A>, ms: number): Promise<A | undefined> =>
  new Promise<A | undefined>((resolve) => {
    const t = setTimeout(() => resolve(undefined), ms)
    p.then((v) => {
      clearTimeout(t)
      resolve(v)
    }, () => {
      clearTimeout(t)
      resolve(undefined)
    })
  })

/** The cases of a side that can run against `target` (the fragmenting ones need our own server). */
export const casesFor = (cases: ReadonlyArray<Case>, side: Side, target?: ServerTarget): Array<Case> =>
  cases.filter((c) => c.sides.includes(side) && (side === "client" || !c.fragmenting || target?.fragmenting !== undefined))

/** Runs one case against a server: connects (with the case's offer), checks what was agreed, runs the script. */
export const runServerCase = async (c: Case, target: ServerTarget, profile: Profile): Promise<Verdict> => {
  if (c.serverRun !== undefined) return c.serverRun(target, profile).catch((e: unknown) => fail(`error: ${message(e)}`))
  const fragmenting = c.fragmenting === true ? target.fragmenting : undefined
  if (c.fragmenting === true && fragmenting === undefined) return fail("needs a fragmenting echo endpoint")
  let conn: Conn | undefined
  try {
    conn = (await connect(fragmenting?.url ?? target.url, c.offer)).conn
    const compression = c.offer === undefined ? "none" : c.compression ?? "required"
    if (compression === "required" && conn.deflate === undefined) return fail(`the server did not accept the offer ${JSON.stringify(c.offer)}`)
    if (compression === "none" && conn.deflate !== undefined) return fail(`the server accepted permessage-deflate from ${JSON.stringify(c.offer ?? "no offer")}, which it must decline`)
    const ctx: Ctx = { conn, profile, end: undefined, ...(fragmenting === undefined ? {} : { fragmentSize: fragmenting.size }) }
    return await c.script!(ctx)
  } catch (e) {
    return fail(`error: ${message(e)}`)
  } finally {
    conn?.destroy()
  }
}

const describeOutcome = (o: ClientOutcome) => (o._tag === "Closed" ? `closed ${o.code}` : `failed with ${o.error}${o.message === "" ? "" : ` (${o.message})`}`)

/** Whether the client's own account of how it ended matches the case. */
const checkOutcome = (end: ClientEnd, o: ClientOutcome): Verdict => {
  switch (end._tag) {
    case "Clean":
      return o._tag === "Closed" && o.code === 1000 ? pass : fail(`the close handshake completed on the wire, but the client ${describeOutcome(o)} (expected closed 1000)`)
    case "Closed":
      // A Close without a code is reported as 1005 by the endpoint that received it.
      return o._tag === "Failed" || end.codes.includes(o.code) || (o.code === 1005 && end.codes.includes(undefined)) ? pass : fail(`the client ${describeOutcome(o)}, expected ${end.codes.join("/")}`)
    case "UpgradeFailed":
      return o._tag === "Failed" && o.error === "WebSocketUpgradeFailed" ? pass : fail(`the client ${describeOutcome(o)}, expected its connect to fail with WebSocketUpgradeFailed`)
  }
}

/**
 * Runs one case against a client: starts the client (connecting to this case's path on the
 * fuzzing server), checks its request, answers (with the case's permessage-deflate terms), runs
 * the script, closes the connection, then checks how the client says it ended (bounded).
 */
export const runClientCase = async (c: Case, fuzz: FuzzServer, client: ClientUnderTest, profile: Profile): Promise<Verdict> => {
  const path = `/${encodeURIComponent(c.id)}`
  const running = client(`ws://127.0.0.1:${fuzz.port}${path}`, c.client)
  let incoming: Incoming | undefined
  let conn: Conn | undefined
  let verdict: Verdict
  let end: ClientEnd | undefined
  try {
    incoming = await fuzz.accept(path)
    if (incoming.invalid !== undefined) {
      verdict = fail(`the client's upgrade request is invalid: ${incoming.invalid}`)
    } else if (c.clientRun !== undefined) {
      ;({ verdict, end } = await c.clientRun(incoming, profile))
    } else {
      const terms = typeof c.answer === "function" ? c.answer(incoming) : c.answer
      if (typeof terms === "string") {
        verdict = fail(terms)
      } else {
        conn = respond(incoming, terms === undefined ? {} : { deflate: terms })
        const ctx: Ctx = { conn, profile, end: undefined, ...(c.client?.outgoingFragmentSize === undefined ? {} : { fragmentSize: c.client.outgoingFragmentSize }) }
        verdict = await c.script!(ctx)
        end = ctx.end
      }
    }
  } catch (e) {
    verdict = fail(`error: ${message(e)}`)
  } finally {
    conn?.destroy()
    incoming?.socket.destroy()
  }
  const outcome = await within(running.outcome, STEP_MS)
  if (outcome === undefined) {
    running.stop()
    await within(running.outcome, 1000)
    return verdict.ok ? fail(`the client did not finish within ${STEP_MS} ms of the connection closing`) : verdict
  }
  if (verdict.ok && end !== undefined) return checkOutcome(end, outcome)
  // The client's own account helps explain a failure on the wire (an abnormal closure is just
  // our dropping the connection after the failure).
  if (!verdict.ok && outcome._tag === "Failed" && outcome.error !== "AbnormalClosure") return fail(`${verdict.why} (the client ${describeOutcome(outcome)})`)
  return verdict
}

const timed = async (side: Side, c: Case, run: () => Promise<Verdict>): Promise<Result> => {
  const t0 = performance.now()
  const verdict = await run()
  return { side, id: c.id, section: c.section, title: c.title, verdict, ms: performance.now() - t0 }
}

/** Runs cases against a server, one at a time. */
export const runServerSide = async (cases: ReadonlyArray<Case>, target: ServerTarget, profile: Profile, onResult?: (r: Result) => void): Promise<Array<Result>> => {
  const results: Array<Result> = []
  for (const c of cases) {
    const r = await timed("server", c, () => runServerCase(c, target, profile))
    results.push(r)
    onResult?.(r)
  }
  return results
}

/** Runs cases against a client, one connection per case, on a fuzzing server of its own. */
export const runClientSide = async (cases: ReadonlyArray<Case>, client: ClientUnderTest, profile: Profile, onResult?: (r: Result) => void): Promise<Array<Result>> => {
  const fuzz = await FuzzServer.start()
  try {
    const results: Array<Result> = []
    for (const c of cases) {
      const r = await timed("client", c, () => runClientCase(c, fuzz, client, profile))
      results.push(r)
      onResult?.(r)
    }
    return results
  } finally {
    await fuzz.close()
  }
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** The per-section table of one side's results. */
export const table = (results: ReadonlyArray<Result>): string => {
  const sections = [...new Set(results.map((r) => r.section))]
  const rows = sections.map((s) => {
    const rs = results.filter((r) => r.section === s)
    const failed = rs.filter((r) => !r.verdict.ok).length
    return [s, rs.length, rs.length - failed, failed, rs.reduce((t, r) => t + r.ms, 0)] as const
  })
  const failed = results.filter((r) => !r.verdict.ok).length
  rows.push(["total", results.length, results.length - failed, failed, results.reduce((t, r) => t + r.ms, 0)])
  const lines = [`${"section".padEnd(22)} ${"cases".padStart(6)} ${"passed".padStart(7)} ${"failed".padStart(7)} ${"time".padStart(9)}`]
  for (const [s, n, p, f, ms] of rows) lines.push(`${s.padEnd(22)} ${String(n).padStart(6)} ${String(p).padStart(7)} ${String(f).padStart(7)} ${seconds(ms).padStart(9)}`)
  return lines.join("\n")
}

/** The §9 timings (conformance.md's performance figure), one line per group of cases. */
export const limitsTimes = (cases: ReadonlyArray<Case>, results: ReadonlyArray<Result>): string => {
  const timing = new Map(cases.map((c) => [c.id, c.timing]))
  const groups = new Map<string, Array<string>>()
  for (const r of results) {
    const t = timing.get(r.id)
    if (t === undefined) continue
    groups.set(t.group, [...(groups.get(t.group) ?? []), `${t.label} ${r.ms.toFixed(0)}`])
  }
  return [...groups].map(([g, xs]) => `  ${g.padEnd(34)} ${xs.join(" | ")}`).join("\n")
}

const line = (r: Result) =>
  `${r.verdict.ok ? "pass" : "FAIL"}  ${r.side.padEnd(6)} ${r.id.padEnd(24)} ${r.ms.toFixed(1).padStart(9)} ms  ${r.title}${r.verdict.ok ? "" : `: ${r.verdict.why}`}`

if (import.meta.main) {
  const args = process.argv.slice(2)
  const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  const positional = args.filter((a) => !a.startsWith("--"))
  const verbose = args.includes("--verbose")
  const profile = args.includes("--subset") ? SUBSET : FULL
  const [url, prefixArg] = positional
  const prefix = flag("only") ?? prefixArg ?? ""
  if (url !== undefined && !/^wss?:\/\//.test(url)) {
    console.error("usage: npm run conformance [-- <ws://host:port/path> [id-prefix]] [--side=server|client] [--only=<id-prefix>] [--subset] [--verbose]")
    process.exit(2)
  }
  const sides: ReadonlyArray<Side> = flag("side") === "server" || url !== undefined ? ["server"] : flag("side") === "client" ? ["client"] : ["server", "client"]
  const all = buildCases(profile).filter((c) => c.id.startsWith(prefix) && (profile.full || c.subset))
  // Progress on stderr (one line per finished section) unless every case is printed anyway.
  let current = ""
  let count = 0
  let sectionStart = performance.now()
  const onResult = verbose
    ? (r: Result) => console.log(line(r))
    : (r: Result) => {
      if (r.section !== current) {
        current = r.section
        count = 0
        sectionStart = performance.now() - r.ms
      }
      count++
      process.stderr.write(`\r  ${r.side} ${current}: ${count} cases, ${seconds(performance.now() - sectionStart)}   `)
    }
  const results: Array<Result> = []
  const started = performance.now()
  for (const side of sides) {
    if (side === "server") {
      const own = url === undefined ? await (await import("./ours.ts")).startOurServers() : undefined
      const target: ServerTarget = own?.target ?? { url: new URL(url!) }
      try {
        const cases = casesFor(all, "server", target)
        const left = all.filter((c) => c.sides.includes("server")).length - cases.length
        console.log(`\nServer under test: ${url ?? `our demo's /echo (${target.url.href}) and our fragmenting echo server`}${left > 0 ? ` (${left} cases that need our fragmenting server left out)` : ""}`)
        const rs = await runServerSide(cases, target, profile, onResult)
        if (!verbose) process.stderr.write("\n")
        results.push(...rs)
        console.log(table(rs))
        if (rs.some((r) => r.id.startsWith("9."))) console.log(`§9 times (ms):\n${limitsTimes(cases, rs)}`)
      } finally {
        await own?.close()
      }
    } else {
      const { ourClient } = await import("./ours.ts")
      console.log("\nClient under test: our echo client (scripts/demo/echo-client.ts), one connection per case")
      const cases = casesFor(all, "client")
      const rs = await runClientSide(cases, ourClient, profile, onResult)
      if (!verbose) process.stderr.write("\n")
      results.push(...rs)
      console.log(table(rs))
      if (rs.some((r) => r.id.startsWith("9."))) console.log(`§9 times (ms):\n${limitsTimes(cases, rs)}`)
    }
  }
  const failures = results.filter((r) => !r.verdict.ok)
  if (failures.length > 0) console.log(`\nFailures:\n${failures.map((r) => `  ${r.side} ${r.id}: ${r.verdict.ok ? "" : r.verdict.why}`).join("\n")}`)
  console.log(`\n${results.length - failures.length} passed, ${failures.length} failed (${seconds(performance.now() - started)})`)
  process.exit(failures.length === 0 ? 0 : 1)
}
