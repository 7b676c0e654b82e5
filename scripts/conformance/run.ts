/**
 * `npm run conformance -- <ws://host:port/path> [id-prefix]`: runs the conformance cases
 * (`cases.ts`) against an echo endpoint and prints one line per case with its time, then a
 * summary. Exits 0 when every case passed, 1 otherwise.
 */
import { allCases, type Case, type Verdict } from "./cases.ts"

/** The outcome of one case. */
export interface Result {
  readonly id: string
  readonly section: string
  readonly description: string
  readonly verdict: Verdict
  readonly ms: number
}

/** Runs the cases whose id starts with `prefix` (all when empty), one at a time. */
export const runCases = async (url: URL, prefix = ""): Promise<Array<Result>> => {
  const results: Array<Result> = []
  const selected: ReadonlyArray<Case> = allCases.filter((c) => c.id.startsWith(prefix))
  for (const c of selected) {
    const t0 = performance.now()
    const verdict = await c.run(url)
    results.push({ id: c.id, section: c.section, description: c.description, verdict, ms: performance.now() - t0 })
  }
  return results
}

if (import.meta.main) {
  const [target, prefix = ""] = process.argv.slice(2)
  if (target === undefined) {
    console.error("usage: npm run conformance -- <ws://host:port/path> [id-prefix]")
    process.exit(2)
  }
  const results = await runCases(new URL(target), prefix)
  for (const r of results) {
    const mark = r.verdict.ok ? "pass" : "FAIL"
    console.log(`${mark}  ${r.id.padEnd(34)} ${r.ms.toFixed(1).padStart(9)} ms  ${r.description}${r.verdict.ok ? "" : `: ${r.verdict.why}`}`)
  }
  const failed = results.filter((r) => !r.verdict.ok).length
  console.log(`${results.length - failed} passed, ${failed} failed`)
  process.exit(failed === 0 ? 0 : 1)
}
