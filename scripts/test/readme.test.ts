/**
 * The READMEs' TypeScript examples compile, run, and print what they document (the root README.md
 * and each package's, see `readmeFiles`): every ```ts block is written to its own file under
 * `.tsbuild/readme/` and all of them are typechecked together with the project's settings. Each
 * block that runs on its own is run with Node, and every `console.log` call's prints must match
 * the comment that documents them (`documentedOutputs`). A `no-run` server example under
 * `NodeRuntime.runMain` is started on a free `PORT`: it must announce its `ws://` URL, echo, run
 * the README's `needs-server` client examples against it (checked the same way), and exit cleanly
 * on SIGINT. `@effect-ws/*` resolve to the sources (`--conditions=@effect-ws/source`). Each test
 * writes the files it needs, so any one of them runs on its own.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { documentedOutputs, matchesDocumented, type ReadmeBlock, readmeBlocks, readmeFiles } from "./readme-blocks.ts"
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

  /** Runs `example` (with `PORT` when given), and checks it exits 0 and prints what its comments document. */
  const runAndCheck = (example: Example, port?: number): void => {
    const out = join(dir, `${example.name}.console.jsonl`)
    rmSync(out, { force: true })
    const r = spawnSync(
      process.execPath,
      ["--conditions=@effect-ws/source", "--import", join(import.meta.dirname, "readme-console.ts"), write(example)],
      {
        encoding: "utf8",
        timeout: RUN_TIMEOUT_MS,
        killSignal: "SIGKILL",
        env: { ...process.env, README_CONSOLE_OUT: out, ...(port === undefined ? {} : { PORT: String(port) }) }
      }
    )
    const outcome = r.error !== undefined ? `${r.error.message}\n` : r.signal !== null ? `killed by ${r.signal}\n` : ""
    assert.strictEqual(r.status, 0, outcome + r.stdout + r.stderr)
    const prints = existsSync(out)
      ? readFileSync(out, "utf8").trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as { line: number; text: string })
      : []
    for (const documented of documentedOutputs(example.code)) {
      const where = `${example.file} example ${example.index}, line ${documented.line}`
      assert.isDefined(documented.expected, `${where}: console.log without a comment documenting its output`)
      const printed = prints.filter((p) => p.line === documented.line).map((p) => p.text)
      assert.isTrue(
        matchesDocumented(documented.expected!, printed),
        `${where}: documented ${JSON.stringify(documented.expected)}, printed ${JSON.stringify(printed)}`
      )
    }
  }

  for (const example of examples.filter((e) => e.run)) {
    it(`${example.file} example ${example.index} runs and prints what it documents`, () => runAndCheck(example), RUN_TIMEOUT_MS + 10_000)
  }

  for (const example of examples.filter(isServerExample)) {
    const clients = examples.filter((e) => e.needsServer && e.file === example.file)
    it(`${example.file} example ${example.index} serves until SIGINT (clients: ${clients.map((c) => c.index).join(", ") || "none"})`, () =>
      serveUntilSigint(process.execPath, ["--conditions=@effect-ws/source", write(example)], {
        during: (port) => {
          for (const client of clients) runAndCheck(client, port)
        }
      }), 2 * SERVE_TIMEOUT_MS + RUN_TIMEOUT_MS + 10_000)
  }

  it("every client example has a server example in its README", () => {
    for (const client of examples.filter((e) => e.needsServer)) {
      assert.isTrue(examples.some((e) => e.file === client.file && isServerExample(e)), `${client.file} example ${client.index}`)
    }
  })
})
