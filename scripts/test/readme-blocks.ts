/**
 * The TypeScript examples of the READMEs: every ```ts fenced block, in order. Every block is
 * typechecked. A block runs on its own unless its info string says `no-run` (a server that waits
 * for SIGINT) or `needs-server` (a client of the README's server example, run while that serves
 * on `PORT`). What a block prints is documented next to each `console.log` (see
 * `documentedOutputs`) and checked by `readme.test.ts`.
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

/** One ```ts block: its position among the file's ts blocks (0-based), how to run it, its code. */
export interface ReadmeBlock {
  readonly index: number
  /** Runs on its own (no `no-run` or `needs-server` in its info string). */
  readonly run: boolean
  /** A client of the README's server example: runs while that serves on `PORT`. */
  readonly needsServer: boolean
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
    const needsServer = info.includes("needs-server")
    out.push({ index: out.length, run: !info.includes("no-run") && !needsServer, needsServer, code: m[2]! })
  }
  return out
}

/** A `console.log` call of an example and the output documented for it. */
export interface DocumentedOutput {
  /** The 1-based line of the call in the block. */
  readonly line: number
  /**
   * What the call prints, from the comment that ends its line, or else the comment lines right
   * below it; several prints of one call are separated by ` / `, and `...` stands for any text.
   * `undefined` when the call has no such comment.
   */
  readonly expected: string | undefined
}

/** Every single-line `console.log(` call of a block with its documented output. */
export const documentedOutputs = (code: string): Array<DocumentedOutput> => {
  const lines = code.split("\n")
  const out: Array<DocumentedOutput> = []
  lines.forEach((text, i) => {
    if (!text.includes("console.log(")) return
    const trailing = text.lastIndexOf(" // ")
    if (trailing !== -1) {
      out.push({ line: i + 1, expected: text.slice(trailing + 4).trim() })
      return
    }
    const below: Array<string> = []
    for (let j = i + 1; j < lines.length && /^\s*\/\/ /.test(lines[j]!); j++) below.push(lines[j]!.trim().slice(3))
    out.push({ line: i + 1, expected: below.length === 0 ? undefined : below.join(" ") })
  })
  return out
}

const squash = (s: string): string => s.replace(/\s+/g, " ").trim()

/** Whether the prints of one call (in order) are what `expected` documents (whitespace-insensitive). */
export const matchesDocumented = (expected: string, printed: ReadonlyArray<string>): boolean => {
  const pattern = squash(expected).split("...").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*?")
  return new RegExp(`^${pattern}$`, "s").test(printed.map(squash).join(" / "))
}
