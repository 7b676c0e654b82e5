/**
 * The TypeScript examples of the READMEs: every ```ts fenced block, in order. A block runs unless
 * its info string says `no-run` (servers that wait for SIGINT); every block is typechecked.
 *
 * Shared by `readme.test.ts` (the examples against the sources) and the package-consumer test
 * (the same examples against the installed tarballs): the examples import only published package
 * names (`@effect-ws/*`, `effect`, `@effect/platform-node`) and Node built-ins, never repo paths.
 * Node built-ins only here, so the module can be imported from anywhere.
 */
import { readFileSync } from "node:fs"
import { resolve } from "node:path"

/** The repository root. */
const root = resolve(import.meta.dirname, "../..")

/** One ```ts block: its position among the file's ts blocks (0-based), whether to run it, its code. */
export interface ReadmeBlock {
  readonly index: number
  readonly run: boolean
  readonly code: string
}

/** The READMEs whose examples are compiled and run, repo-relative: the root one, then one per package. */
export const readmeFiles: ReadonlyArray<string> = [
  "README.md",
  "packages/codec/README.md",
  "packages/core/README.md",
  "packages/node-adapter/README.md"
]

/** The ```ts blocks of a README (`file` repo-relative, as in `readmeFiles`, or absolute). */
export const readmeBlocks = (file: string): Array<ReadmeBlock> => {
  const text = readFileSync(resolve(root, file), "utf8")
  const out: Array<ReadmeBlock> = []
  const fence = /^```ts(?=[ \t\n])([^\n]*)\n([\s\S]*?)^```$/gm
  for (let m = fence.exec(text); m !== null; m = fence.exec(text)) {
    const info = m[1]!.trim().split(/\s+/)
    out.push({ index: out.length, run: !info.includes("no-run"), code: m[2]! })
  }
  return out
}
