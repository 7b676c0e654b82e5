/**
 * `npm run docs`: the API reference of the three packages, generated from their doc comments into
 * `docs/api/` (HTML, gitignored), and a check that fails (non-zero exit) when an exported symbol
 * has no doc comment.
 *
 * Tool: TypeDoc 0.28. Its `validation.notDocumented` with `treatValidationWarningsAsErrors` is
 * exactly the "fail on an undocumented export" check, and its `packages` entry point strategy
 * gives one reference per package from each package's package.json and tsconfig.json. (Effect's
 * `@effect/docgen` would also demand a `@since` tag on every export and needs tsx.)
 *
 * Why a project of its own: TypeDoc drives the TypeScript compiler's JS API, which TypeScript 7
 * (the repo's compiler, a native binary) no longer ships, and TypeDoc's peer range stops at
 * TypeScript 6.0, so it cannot be a dev dependency of the root workspace (ERESOLVE). It lives in
 * `scripts/docs/` with its own package.json, package-lock.json and node_modules (TypeDoc plus
 * TypeScript 6.0, which reads the repo's tsconfigs: `${configDir}`, `customConditions`,
 * `rewriteRelativeImportExtensions`). `scripts/docs/` is not a workspace (`workspaces` is
 * `packages/*`), so installing it never touches the root lockfile. This script runs `npm ci`
 * there whenever `node_modules` is missing or does not match the lockfile.
 *
 * What must be documented (`scripts/docs/typedoc.json`): every exported module, namespace,
 * variable, function, class, interface, type alias, enum and enum member, and every method or
 * function-valued property of an exported class or interface. Plain properties, accessors and
 * constructors are not required. The public surface is each package's `src/index.ts` (the
 * modules its package.json exports); `src/internal/*` is `@internal` and not documented.
 *
 * Source type checking is left to `tsc -b` (TypeScript 7): TypeDoc runs with
 * `skipErrorChecking`, so a difference between TypeScript 6 and 7 cannot fail the docs.
 */
import { spawn, spawnSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join, relative, resolve } from "node:path"

const root = resolve(import.meta.dirname, "../..")
const dir = import.meta.dirname
const packages = ["codec", "core", "node-adapter"]
const typedocBin = join(dir, "node_modules", "typedoc", "bin", "typedoc")
const index = join(root, "docs", "api", "index.html")

const log = (line: string): void => {
  process.stdout.write(`docs: ${line}\n`)
}

const fail = (line: string): never => {
  process.stderr.write(`docs: FAILED: ${line}\n`)
  process.exit(1)
}

interface LockEntry {
  readonly version?: string
}

const lockPackages = (file: string): Record<string, LockEntry> | undefined => {
  if (!existsSync(file)) return undefined
  const lock = JSON.parse(readFileSync(file, "utf8")) as { readonly packages?: Record<string, LockEntry> }
  return lock.packages ?? {}
}

/**
 * Why `scripts/docs/node_modules` needs `npm ci`, or `undefined` when it matches the lockfile:
 * npm's hidden lockfile (`node_modules/.package-lock.json`, what the last install put there) must
 * list the same packages at the same versions as `package-lock.json`.
 */
const staleReason = (): string | undefined => {
  if (!existsSync(typedocBin)) return "typedoc is not installed"
  const wanted = lockPackages(join(dir, "package-lock.json"))
  if (wanted === undefined) return fail("scripts/docs/package-lock.json is missing")
  const installed = lockPackages(join(dir, "node_modules", ".package-lock.json"))
  if (installed === undefined) return "node_modules has no .package-lock.json"
  for (const [path, entry] of Object.entries(wanted)) {
    if (path === "") continue
    const have = installed[path]
    if (have?.version !== entry.version) {
      return `${path} is ${have?.version ?? "missing"}, the lockfile wants ${entry.version ?? "?"}`
    }
  }
  for (const path of Object.keys(installed)) {
    if (!(path in wanted)) return `${path} is installed but not in the lockfile`
  }
  return undefined
}

const install = (): void => {
  const reason = staleReason()
  if (reason === undefined) return
  log(`${reason}: running \`npm ci\` in scripts/docs`)
  // `npm run` exports npm_config_local_prefix=<repo root>; keep the child npm on scripts/docs.
  const env = { ...process.env }
  delete env.npm_config_local_prefix
  const r = spawnSync("npm", ["ci", "--prefix", dir, "--no-audit", "--no-fund"], { cwd: dir, env, stdio: "inherit" })
  if (r.error !== undefined) fail(`could not run npm: ${r.error.message}`)
  if (r.status !== 0) fail(`\`npm ci\` in scripts/docs exited with ${r.status ?? r.signal}`)
  const still = staleReason()
  if (still !== undefined) fail(`scripts/docs/node_modules still does not match its lockfile: ${still}`)
}

// TypeDoc names files by package (`@effect-ws/core/src/Errors.ts`); show repo paths instead.
const packageDirs = new Map(
  packages.map((p) => {
    const pkg = JSON.parse(readFileSync(join(root, "packages", p, "package.json"), "utf8")) as { readonly name: string }
    return [pkg.name, `packages/${p}`] as const
  })
)

const repoPath = (file: string): string => {
  for (const [name, path] of packageDirs) {
    if (file.startsWith(`${name}/`)) return `${path}/${file.slice(name.length + 1)}`
  }
  return file
}

const ansi = /\u001b\[[0-9;]*m/g
const undocumented = /^\[warning\] (.+) \((\w+)\), defined in (\S+), does not have any documentation$/

/** Runs TypeDoc, passing its output through; resolves to its exit status and the output's lines. */
const typedoc = (): Promise<{ readonly status: number; readonly lines: Array<string> }> =>
  new Promise((done) => {
    const child = spawn(process.execPath, [typedocBin, "--options", join(dir, "typedoc.json")], {
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      process.stdout.write(chunk)
    })
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      process.stderr.write(chunk)
    })
    child.on("error", (error) => fail(`could not run TypeDoc: ${error.message}`))
    child.on("close", (code, signal) => {
      done({ status: code ?? (signal === null ? 1 : 128), lines: output.replace(ansi, "").split("\n") })
    })
  })

const start = performance.now()
install()
log(`TypeDoc over ${packages.map((p) => `packages/${p}/src/index.ts`).join(", ")}`)
const { lines, status } = await typedoc()
const missing = lines.flatMap((line) => {
  const m = undocumented.exec(line.trim())
  return m === null ? [] : [`  ${repoPath(m[3]!)}: ${m[1]} (${m[2]})`]
})
if (missing.length > 0) {
  process.stderr.write(
    `docs: FAILED: ${missing.length} exported symbol(s) without a doc comment:\n${missing.join("\n")}\n` +
      "docs: add a /** ... */ comment to each (what it does; for an effect, what it fails with).\n"
  )
  process.exit(1)
}
if (status !== 0) fail(`TypeDoc exited with ${status} (errors or warnings above)`)
if (!existsSync(index)) fail(`TypeDoc succeeded but wrote no ${relative(root, index)}`)
log(`API reference in ${relative(root, index)} (${((performance.now() - start) / 1000).toFixed(1)} s)`)
