/**
 * `npm test`: typecheck every package (`tsc -b`), run every vitest project, and print one final
 * line `N passed, M failed, K skipped` for CI (each skipped test is listed above it). A failed
 * typecheck counts as one failed test. Extra arguments are passed to vitest (e.g. a file filter).
 */
import { spawnSync } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"

const report = ".vitest-report.json"
const bin = (name: string) => `node_modules/.bin/${name}`
const run = (cmd: string, args: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [cmd, ...args], { stdio: "inherit" }).status ?? 1

const typecheckFailed = run(bin("tsc"), ["-b"]) !== 0
if (typecheckFailed) console.error("typecheck (tsc -b) failed")

rmSync(report, { force: true })
const vitestStatus = run(bin("vitest"), [
  "run",
  "--reporter=default",
  "--reporter=json",
  `--outputFile.json=${report}`,
  ...process.argv.slice(2)
])

interface Report {
  readonly numPassedTests: number
  readonly numFailedTests: number
  readonly testResults: ReadonlyArray<{
    readonly name: string
    readonly assertionResults: ReadonlyArray<{ readonly fullName: string; readonly status: string }>
  }>
}

let passed = 0
let failed = typecheckFailed ? 1 : 0
const skipped: Array<string> = []
try {
  const r = JSON.parse(readFileSync(report, "utf8")) as Report
  passed += r.numPassedTests
  failed += r.numFailedTests
  for (const file of r.testResults) {
    for (const t of file.assertionResults) {
      if (t.status !== "passed" && t.status !== "failed") skipped.push(`${t.status}: ${t.fullName} (${file.name})`)
    }
  }
} catch {
  failed += 1
  console.error("vitest produced no report")
}
if (vitestStatus !== 0 && failed === 0) failed = 1
// Skipped tests say why in their names (e.g. "needs /usr/bin/chromium"); list them above the closing line.
for (const s of skipped) console.log(s)
console.log(`${passed} passed, ${failed} failed, ${skipped.length} skipped`)
process.exit(failed === 0 ? 0 : 1)
