/**
 * `npm test`: typecheck every package (`tsc -b`), run every vitest project, and print one final
 * line `N passed, M failed` for CI. A failed typecheck counts as one failed test. Extra arguments
 * are passed to vitest (for example a file filter).
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

let passed = 0
let failed = typecheckFailed ? 1 : 0
try {
  const r = JSON.parse(readFileSync(report, "utf8")) as { numPassedTests: number; numFailedTests: number }
  passed += r.numPassedTests
  failed += r.numFailedTests
} catch {
  failed += 1
  console.error("vitest produced no report")
}
if (vitestStatus !== 0 && failed === 0) failed = 1
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
