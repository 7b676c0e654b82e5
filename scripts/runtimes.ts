/**
 * Other JavaScript runtimes for the scripts that need them (the consumer test runs the packed
 * packages on Node 22 and Bun; the echo and connections benchmarks run a `Bun.serve` server):
 * each is an npm package (`node@22`, `bun@1.4`, whose install ships the binary) installed once
 * into its own folder under `node_modules/.cache/effect-ws-runtimes/`, and reinstalled only when
 * the requested spec changes. `npm` runs through the Node that runs the caller, with the
 * environment of a user's shell, so the result does not depend on the system Node or `npm run`.
 */
import { spawnSync, type SpawnSyncReturns } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"

/** The repository's root. */
export const root = resolve(import.meta.dirname, "..")

/** Where the runtimes are installed, one folder each. */
export const runtimesDir = join(root, "node_modules", ".cache", "effect-ws-runtimes")

/** The environment of a user's shell: none of `npm run`'s variables, no inherited Node flags. */
export const userEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("npm_") || k === "NODE_OPTIONS" || k === "INIT_CWD" || k.startsWith("VITEST")) continue
    env[k] = v
  }
  return { ...env, NODE_NO_WARNINGS: "1", NO_UPDATE_NOTIFIER: "1" }
}

/** Runs `cmd` to completion with the user's environment (plus `env`), output captured as text. */
export const sh = (
  cmd: string,
  args: ReadonlyArray<string>,
  cwd: string,
  timeout = 240_000,
  env: NodeJS.ProcessEnv = {}
): SpawnSyncReturns<string> =>
  spawnSync(cmd, args, { cwd, env: { ...userEnv(), ...env }, encoding: "utf8", timeout, maxBuffer: 64 * 1024 * 1024 })

/** `npm`'s CLI script, so that it runs on the Node running this process (undefined: `npm` on PATH). */
const npmCli = (() => {
  const r = spawnSync("npm", ["prefix", "-g"], { encoding: "utf8", env: userEnv() })
  const global = (r.stdout ?? "").trim()
  const candidates = [join(global, "lib/node_modules/npm/bin/npm-cli.js"), join(global, "node_modules/npm/bin/npm-cli.js")]
  return candidates.find((c) => existsSync(c))
})()

/** Runs `npm args` in `cwd` (see `npmCli`). */
export const npm = (args: ReadonlyArray<string>, cwd: string): SpawnSyncReturns<string> =>
  npmCli === undefined ? sh("npm", args, cwd) : sh(process.execPath, [npmCli, ...args], cwd)

/**
 * Installs `spec` (e.g. `node@22`, `bun@1.4`) into `runtimesDir/name` once and returns the path
 * of its `bin`; throws with npm's output when the install fails.
 */
export const installRuntime = (name: string, spec: string, bin: string): string => {
  const dir = join(runtimesDir, name)
  const path = join(dir, "node_modules", ".bin", bin)
  const marker = join(dir, ".spec")
  if (existsSync(path) && existsSync(marker) && readFileSync(marker, "utf8") === spec) return path
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const pkg = spec.slice(0, spec.lastIndexOf("@"))
  writeFileSync(join(dir, "package.json"), JSON.stringify({ private: true, allowScripts: { [pkg]: true } }))
  const r = npm(["install", "--no-audit", "--no-fund", spec], dir)
  if (r.status !== 0) throw new Error(`npm install ${spec} failed (status ${r.status}, signal ${r.signal}):\n${r.stdout}\n${r.stderr}`)
  writeFileSync(marker, spec)
  return path
}

/** The Bun the repository tests and benchmarks with. */
export const BUN_SPEC = "bun@1.4"

/** Installs Bun (`BUN_SPEC`) if needed and returns the path of its binary. */
export const bun = (): string => installRuntime("bun", BUN_SPEC, "bun")
