/**
 * The READMEs' TypeScript examples compile and run (the root README.md and each package's, see
 * `readmeFiles`): every ```ts block is written to its own file under `.tsbuild/readme/`, all of
 * them are typechecked together with the project's compiler settings, and each block is run with
 * Node unless its info string says `no-run` (servers that wait for SIGINT). A `no-run` block
 * that serves under `NodeRuntime.runMain` is started too: it must announce its `ws://` URL,
 * accept a connection there, and exit cleanly on SIGINT. `@effect-ws/*` resolve to the sources
 * (`--conditions=@effect-ws/source`, the `customConditions` of tsconfig.base.json).
 */
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { type ReadmeBlock, readmeBlocks, readmeFiles } from "./readme-blocks.ts"
import { isServerExample, SERVE_TIMEOUT_MS, serveUntilSigint } from "./serve-example.ts"

const root = resolve(import.meta.dirname, "../..")
const dir = join(root, ".tsbuild", "readme")

/** How long one example may run (each should take well under a few seconds). */
const RUN_TIMEOUT_MS = 20_000

interface Example extends ReadmeBlock {
  /** The README it comes from, repo-relative. */
  readonly file: string
  /** Its file name under `dir`, e.g. `packages-core-README-0.ts`. */
  readonly name: string
}

const examples: ReadonlyArray<Example> = readmeFiles.flatMap((file) =>
  readmeBlocks(file).map((block) => ({
    ...block,
    file,
    name: `${file.replace(/\.md$/, "").replace(/[^A-Za-z0-9]+/g, "-")}-${block.index}.ts`
  }))
)

const write = (example: Example): string => {
  const path = join(dir, example.name)
  mkdirSync(dir, { recursive: true })
  writeFileSync(path, example.code)
  return path
}

describe("README examples", () => {
  for (const file of readmeFiles) {
    it(`${file} has TypeScript examples`, () => {
      assert.isAtLeast(examples.filter((e) => e.file === file).length, 1)
    })
  }

  it("typecheck under the project's strict settings", () => {
    rmSync(dir, { recursive: true, force: true })
    for (const example of examples) write(example)
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

  for (const example of examples.filter((e) => e.run)) {
    it(`${example.file} example ${example.index} runs`, () => {
      const r = spawnSync(process.execPath, ["--conditions=@effect-ws/source", write(example)], {
        encoding: "utf8",
        timeout: RUN_TIMEOUT_MS,
        killSignal: "SIGKILL"
      })
      const outcome = r.error !== undefined ? `${r.error.message}\n` : r.signal !== null ? `killed by ${r.signal}\n` : ""
      assert.strictEqual(r.status, 0, outcome + r.stdout + r.stderr)
    }, RUN_TIMEOUT_MS + 10_000)
  }

  for (const example of examples.filter(isServerExample)) {
    it(`${example.file} example ${example.index} serves until SIGINT`, () =>
      serveUntilSigint(process.execPath, ["--conditions=@effect-ws/source", write(example)]), 2 * SERVE_TIMEOUT_MS + 10_000)
  }
})
