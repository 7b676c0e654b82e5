/**
 * `npm run docs` works: scripts/docs/run.ts (TypeDoc, installed into scripts/docs on first use)
 * exits 0, which means every exported symbol of the three packages has a doc comment, and writes
 * the API reference to `docs/api/`: an index page and one page per package.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "../..")
const out = join(root, "docs", "api")
const packages = ["codec", "core", "node-adapter"]

describe("API reference (npm run docs)", () => {
  it("documents every export and writes docs/api", { timeout: 180_000 }, () => {
    const r = spawnSync(process.execPath, [join(root, "scripts", "docs", "run.ts")], { cwd: root, encoding: "utf8" })
    assert.strictEqual(r.status, 0, `${r.stdout}\n${r.stderr}`)
    assert.isTrue(existsSync(join(out, "index.html")), "docs/api/index.html")
    for (const p of packages) {
      const { name } = JSON.parse(readFileSync(join(root, "packages", p, "package.json"), "utf8")) as { name: string }
      // TypeDoc's file name for the package's module page: `@effect-ws/core` -> `_effect-ws_core.html`.
      const page = join(out, "modules", `${name.replace(/[@/]/g, "_")}.html`)
      assert.isTrue(existsSync(page), `${name}: ${page}`)
      assert.include(readFileSync(page, "utf8"), `<title>${name} | effect-ws</title>`)
    }
  })
})
