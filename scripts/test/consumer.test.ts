/**
 * The packages as users get them: each package is built and packed with `npm pack`, and the three
 * tarballs are installed with `effect` and `@effect/platform-node` from the registry into a new
 * project outside the repo (its own package.json, no workspace links, no path mapping, no
 * `@effect-ws/source` condition). There a consumer program and the READMEs' examples are
 * typechecked with `tsc` (`module: nodenext` and `moduleResolution: bundler`, strict,
 * `exactOptionalPropertyTypes`), and run on Node 22, Node 24 and Bun, the consumer program twice
 * on each: with permessage-deflate on node:zlib's native handle (chosen by its self-test), and
 * with `EFFECT_WS_ZLIB_PUBLIC_API=1` (node:zlib's public API). `publint` and `attw`
 * (ESM-only profile) lint each package. Tarball sizes and the install time are printed.
 *
 * Node 22 and Bun come from the npm registry (`node@22`, `bun@1.4`), installed once into
 * `node_modules/.cache/effect-ws-runtimes/` (`../runtimes.ts`, shared with the benchmarks).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { spawnSync, type SpawnSyncReturns } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { bun, installRuntime, npm, root, sh, userEnv } from "../runtimes.ts"
import { readmeBlocks, readmeFiles } from "./readme-blocks.ts"
import { isServerExample, SERVE_TIMEOUT_MS, serveUntilSigint } from "./serve-example.ts"

const packages = ["codec", "core", "node-adapter"] as const
const STEP_TIMEOUT = 240_000

const ok = (r: SpawnSyncReturns<string>, what: string): string => {
  assert.strictEqual(r.status, 0, `${what} failed (status ${r.status}, signal ${r.signal}):\n${r.stdout}\n${r.stderr}`)
  return r.stdout
}

interface Packed {
  readonly name: string
  readonly file: string
  readonly size: number
  readonly unpackedSize: number
  readonly entryCount: number
}

const consumerTsconfig = (compilerOptions: Record<string, unknown>) =>
  JSON.stringify({
    compilerOptions: {
      target: "ES2022",
      lib: ["ES2023"],
      strict: true,
      exactOptionalPropertyTypes: true,
      noUncheckedIndexedAccess: true,
      types: ["node"],
      ...compilerOptions
    },
    include: ["src/**/*.ts"]
  }, null, 2)

describe("packed packages in a project outside the repo", () => {
  let project = ""
  let packed: ReadonlyArray<Packed> = []
  const bins: Record<string, ReadonlyArray<string>> = {}

  beforeAll(() => {
    ok(sh(process.execPath, [join(root, "node_modules/.bin/tsc"), "-b", ...packages.map((p) => `packages/${p}`)], root), "build")
    project = mkdtempSync(join(tmpdir(), "effect-ws-consumer-"))
    const tarballs = join(project, "tarballs")
    mkdirSync(tarballs)
    const pack = npm(["pack", "--json", "--pack-destination", tarballs, ...packages.map((p) => `./packages/${p}`)], root)
    packed = (JSON.parse(ok(pack, "npm pack")) as ReadonlyArray<Packed & { filename: string }>).map((p) => ({
      name: p.name,
      file: join(tarballs, p.filename),
      size: p.size,
      unpackedSize: p.unpackedSize,
      entryCount: p.entryCount
    }))
    assert.strictEqual(packed.length, packages.length)

    const peers = JSON.parse(readFileSync(join(root, "packages/node-adapter/package.json"), "utf8")) as {
      peerDependencies: Record<string, string>
    }
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({
        name: "effect-ws-consumer",
        private: true,
        type: "module",
        dependencies: {
          ...Object.fromEntries(packed.map((p) => [p.name, `file:${p.file}`])),
          ...peers.peerDependencies
        },
        devDependencies: { "@types/node": "^24.0.0" }
      }, null, 2)
    )
    const started = performance.now()
    ok(npm(["install", "--no-audit", "--no-fund"], project), "npm install in the consumer")
    const installSeconds = (performance.now() - started) / 1000

    bins["node 24"] = [process.execPath]
    bins["node 22"] = [installRuntime("node22", "node@22", "node")]
    bins["bun 1.4"] = [bun()]

    mkdirSync(join(project, "src"))
    writeFileSync(join(project, "src", "app.ts"), readFileSync(join(root, "scripts/consumer/app.ts")))
    for (const file of readmeFiles) {
      for (const block of readmeBlocks(join(root, file))) {
        const kind = block.run ? "" : isServerExample(block) ? ".serve" : block.needsServer ? ".client" : ".norun"
        const name = `${file.replace(/[/.]/g, "_")}-${block.index}${kind}.ts`
        mkdirSync(join(project, "src", "readme"), { recursive: true })
        writeFileSync(join(project, "src", "readme", name), block.code)
      }
    }
    // nodenext checks every declaration file too (`skipLibCheck: false`, so ours are checked);
    // effect 4.1.0's own `rpc/RpcClient.d.ts` names the DOM's `Transferable`, hence the DOM lib.
    writeFileSync(
      join(project, "tsconfig.json"),
      consumerTsconfig({
        module: "nodenext",
        moduleResolution: "nodenext",
        lib: ["ES2023", "DOM"],
        skipLibCheck: false,
        outDir: "out",
        rootDir: "src"
      })
    )
    // bundler resolution with the settings most applications have (`skipLibCheck`, no DOM).
    writeFileSync(
      join(project, "tsconfig.bundler.json"),
      consumerTsconfig({ module: "preserve", moduleResolution: "bundler", skipLibCheck: true, noEmit: true })
    )
    console.log(
      [
        "packed tarballs (npm pack):",
        ...packed.map((p) =>
          `  ${p.name}: ${(p.size / 1024).toFixed(1)} kB packed, ${(p.unpackedSize / 1024).toFixed(1)} kB unpacked, ${p.entryCount} files`
        ),
        `install into the empty consumer (3 tarballs + peers from the registry): ${installSeconds.toFixed(1)} s`
      ].join("\n")
    )
  }, STEP_TIMEOUT * 2)

  // Deleting the consumer's node_modules can take longer than vitest's 10 s hook default on a busy machine.
  afterAll(() => {
    if (project !== "") rmSync(project, { recursive: true, force: true })
  }, STEP_TIMEOUT)

  const tsc = (config: string) => sh(process.execPath, [join(root, "node_modules/.bin/tsc"), "-p", config], project)

  it("typechecks and compiles under module nodenext", () => {
    ok(tsc("tsconfig.json"), "tsc (nodenext)")
    assert.isTrue(existsSync(join(project, "out", "app.js")))
  }, STEP_TIMEOUT)

  it("typechecks under moduleResolution bundler", () => {
    ok(tsc("tsconfig.bundler.json"), "tsc (bundler)")
  }, STEP_TIMEOUT)

  const engines = [["", {}], [" with node:zlib's public API", { EFFECT_WS_ZLIB_PUBLIC_API: "1" }]] as const
  for (const name of ["node 24", "node 22", "bun 1.4"]) {
    for (const [how, env] of engines) {
      it(`runs a server, clients, permessage-deflate (compressed on the wire) and clean closes on ${name}${how}`, () => {
        const [cmd, ...args] = bins[name]!
        const r = sh(cmd!, [...args, join(project, "out", "app.js")], project, 60_000, env)
        const line = r.stdout.trim().split("\n").at(-1) ?? ""
        const report = JSON.parse(line === "" ? "{}" : line) as {
          outcomes?: ReadonlyArray<{ check: string; ok: boolean; detail: string }>
          error?: string
        }
        assert.isUndefined(report.error, `${name}${how}: ${report.error}\n${r.stderr}`)
        assert.strictEqual(report.outcomes?.length, 11, r.stdout + r.stderr)
        for (const o of report.outcomes!) assert.isTrue(o.ok, `${name}${how}: ${o.check} (${o.detail})`)
        assert.strictEqual(r.status, 0, r.stderr)
      }, 90_000)
    }
  }

  it("runs the READMEs' runnable examples on Node 24", () => {
    const dir = join(project, "out", "readme")
    const runnable = readdirSync(dir).filter((f) => /-\d+\.js$/.test(f))
    assert.isAtLeast(runnable.length, 1)
    for (const file of runnable) {
      const r = sh(process.execPath, [join(dir, file)], project, 30_000)
      assert.strictEqual(r.status, 0, `${file}:\n${r.stdout}\n${r.stderr}`)
    }
  }, STEP_TIMEOUT)

  it("the root README's server example serves from the consumer project, answers its client example, stops on SIGINT", async () => {
    const dir = join(project, "out", "readme")
    const servers = readdirSync(dir).filter((f) => f.startsWith("README_md-") && f.endsWith(".serve.js"))
    const clients = readdirSync(dir).filter((f) => f.startsWith("README_md-") && f.endsWith(".client.js"))
    assert.isAtLeast(servers.length, 1)
    assert.isAtLeast(clients.length, 1)
    for (const file of servers) {
      await serveUntilSigint(process.execPath, [join(dir, file)], {
        cwd: project,
        env: userEnv(),
        during: (port) => {
          for (const client of clients) {
            const r = spawnSync(process.execPath, [join(dir, client)], {
              cwd: project,
              env: { ...userEnv(), PORT: String(port) },
              encoding: "utf8",
              timeout: 30_000
            })
            assert.strictEqual(r.status, 0, `${client}:\n${r.stdout}\n${r.stderr}`)
          }
        }
      })
    }
  }, 2 * SERVE_TIMEOUT_MS + 40_000)

  it("hides internal modules and resolves every public module", () => {
    const script = `
      const results = []
      for (const spec of ${JSON.stringify(["@effect-ws/codec/internal/token", "@effect-ws/core/internal/flags", "@effect-ws/codec/src/Frame.ts"])}) {
        try { await import(spec); results.push(spec + ": resolved") } catch (e) { results.push(spec + ": " + e.code) }
      }
      console.log(JSON.stringify(results))`
    const r = ok(sh(process.execPath, ["--input-type=module", "-e", script], project), "import internals")
    for (const line of JSON.parse(r) as ReadonlyArray<string>) {
      assert.match(line, /ERR_PACKAGE_PATH_NOT_EXPORTED$/, line)
    }
    for (const p of packages) {
      const pkg = JSON.parse(readFileSync(join(project, "node_modules/@effect-ws", p, "package.json"), "utf8")) as {
        exports: Record<string, unknown>
      }
      const subpaths = Object.keys(pkg.exports).filter((k) => k !== "./package.json" && k !== "./internal/*")
      const imports = subpaths.map((s) => `await import(${JSON.stringify(`@effect-ws/${p}${s.slice(1)}`)})`).join(";")
      ok(sh(process.execPath, ["--input-type=module", "-e", imports], project), `import every public module of ${p}`)
    }
  }, STEP_TIMEOUT)

  it("installs one effect, and the codec has no dependencies", () => {
    const tree = JSON.parse(ok(npm(["ls", "effect", "--all", "--json"], project), "npm ls effect")) as unknown
    const versions = new Set<string>()
    const walk = (node: unknown): void => {
      if (typeof node !== "object" || node === null) return
      const deps = (node as { dependencies?: Record<string, { version?: string }> }).dependencies ?? {}
      for (const [name, child] of Object.entries(deps)) {
        if (name === "effect" && child.version !== undefined) versions.add(child.version)
        walk(child)
      }
    }
    walk(tree)
    assert.strictEqual(versions.size, 1, `effect versions: ${[...versions].join(", ")}`)
    const nested = readdirSync(join(project, "node_modules/@effect-ws")).filter((p) =>
      existsSync(join(project, "node_modules/@effect-ws", p, "node_modules", "effect"))
    )
    assert.deepStrictEqual(nested, [])
    const codec = JSON.parse(readFileSync(join(project, "node_modules/@effect-ws/codec/package.json"), "utf8")) as {
      dependencies?: unknown
      peerDependencies?: unknown
    }
    assert.isUndefined(codec.dependencies)
    assert.isUndefined(codec.peerDependencies)
  }, STEP_TIMEOUT)

  it("public types mention no source path and no internal module", () => {
    for (const p of packages) {
      const dist = join(project, "node_modules/@effect-ws", p, "dist")
      for (const file of readdirSync(dist).filter((f) => f.endsWith(".d.ts"))) {
        const text = readFileSync(join(dist, file), "utf8")
        assert.notMatch(text, /from "[^"]*\/src\/|import\("[^"]*\/src\//, `${p}/dist/${file} names a path under src/`)
        assert.notMatch(text, /["']\.{1,2}\/(?:[\w-]+\/)*internal\//, `${p}/dist/${file} names an internal module`)
      }
    }
  }, STEP_TIMEOUT)

  it("publint and attw (ESM-only) report no problems", () => {
    for (const p of packed) {
      ok(sh(process.execPath, [join(root, "node_modules/.bin/attw"), p.file, "--profile", "esm-only", "--format", "ascii"], project), `attw ${p.name}`)
    }
    for (const p of packages) {
      const r = ok(sh(process.execPath, [join(root, "node_modules/.bin/publint"), "--strict", join(root, "packages", p)], root), `publint ${p}`)
      assert.match(r, /All good!/, r)
    }
  }, STEP_TIMEOUT)
})
