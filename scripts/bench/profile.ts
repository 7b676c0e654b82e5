/**
 * Summarizes a V8 `.cpuprofile` (from `node --cpu-prof`): the functions with the most self
 * time (idle excluded), as a markdown table. Used by `echo.ts` with BENCH_PROFILE=1; also runnable on its own:
 * `node scripts/bench/profile.ts FILE.cpuprofile [N]`.
 */
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const shorten = (url: string): string => {
  const path = url.startsWith("file://") ? fileURLToPath(url) : url
  const modules = path.lastIndexOf("node_modules/")
  if (modules !== -1) return path.slice(modules + "node_modules/".length)
  const cwd = process.cwd() + "/"
  return path.startsWith(cwd) ? path.slice(cwd.length) : path
}

/** Prints the `top` functions of the profile at `file` by self time. */
export const printTopFunctions = (file: string, top: number): void => {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile
  const byNode = new Map<number, ProfileNode>()
  for (const node of profile.nodes) byNode.set(node.id, node)
  const self = new Map<string, number>()
  let total = 0
  let idle = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byNode.get(profile.samples[i]!)
    const delta = profile.timeDeltas[i] ?? 0
    if (node === undefined) continue
    const { functionName, lineNumber, url } = node.callFrame
    if (functionName === "(idle)") {
      idle += delta
      continue
    }
    const key = `${functionName || "(anonymous)"} ${url === "" ? "" : `${shorten(url)}:${lineNumber + 1}`}`
    self.set(key, (self.get(key) ?? 0) + delta)
    total += delta
  }
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)
  console.log(
    `\nCPU profile ${file}: ${(total / 1e6).toFixed(1)} s busy (+ ${(idle / 1e6).toFixed(1)} s idle, not counted); top ${rows.length} by self time`
  )
  console.log("| self % | self ms | function |")
  console.log("|---:|---:|---|")
  for (const [key, micros] of rows) console.log(`| ${((100 * micros) / total).toFixed(1)} | ${(micros / 1000).toFixed(0)} | ${key} |`)
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2]
  if (file === undefined) {
    console.error("usage: node scripts/bench/profile.ts FILE.cpuprofile [N]")
    process.exit(2)
  }
  printTopFunctions(file, Number(process.argv[3] ?? 30))
}
