/**
 * README.md's TypeScript examples compile and run: every ```ts block is written to its own file
 * under `.tsbuild/readme/`, all of them are typechecked with the project's compiler settings, and
 * each block is run with Node unless its info string says `no-run` (servers that wait for SIGINT).
 */
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "../..")
const dir = join(root, ".tsbuild", "readme")

interface Block {
  readonly index: number
  readonly run: boolean
  readonly code: string
}

const blocks = (): Array<Block> => {
  const readme = readFileSync(join(root, "README.md"), "utf8")
  const out: Array<Block> = []
  const fence = /^```ts([^\n]*)\n([\s\S]*?)^```$/gm
  for (let m = fence.exec(readme); m !== null; m = fence.exec(readme)) {
    out.push({ index: out.length, run: !m[1]!.includes("no-run"), code: m[2]! })
  }
  return out
}

describe("README examples", () => {
  const examples = blocks()

  it("has TypeScript examples", () => {
    assert.isAtLeast(examples.length, 1)
  })

  it("typecheck under the project's strict settings", () => {
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    for (const b of examples) writeFileSync(join(dir, `example-${b.index}.ts`), b.code)
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        extends: "../../tsconfig.base.json",
        include: ["*.ts"],
        compilerOptions: {
          noEmit: true,
          composite: false,
          incremental: false,
          declaration: false,
          declarationMap: false,
          rootDir: ".",
          allowImportingTsExtensions: true,
          rewriteRelativeImportExtensions: false,
          noUnusedLocals: false
        }
      })
    )
    const r = spawnSync(process.execPath, [join(root, "node_modules/.bin/tsc"), "-p", join(dir, "tsconfig.json")], {
      encoding: "utf8"
    })
    assert.strictEqual(r.status, 0, r.stdout + r.stderr)
  }, 60_000)

  for (const b of examples.filter((x) => x.run)) {
    it(`example ${b.index} runs`, () => {
      const file = join(dir, `example-${b.index}.ts`)
      writeFileSync(file, b.code)
      const r = spawnSync(process.execPath, [file], { encoding: "utf8", timeout: 30_000 })
      assert.strictEqual(r.status, 0, r.stdout + r.stderr)
    }, 40_000)
  }
})
