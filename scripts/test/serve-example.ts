/**
 * Starts a README server example (a `no-run` block serving under `NodeRuntime.runMain`) and checks
 * what a user would: it announces its `ws://` URL, answers a message there (and whatever `during`
 * runs against it), and exits cleanly on SIGINT. The example gets a free port through `PORT` (the README's server reads it, default
 * 8081), so tests running side by side never share a port. Used by `readme.test.ts` (sources) and
 * `consumer.test.ts` (installed tarballs).
 */
import { assert } from "@effect/vitest"
import { spawn } from "node:child_process"
import { createServer } from "node:net"
import { WebSocket } from "ws"

/** How long a server example may take to announce its URL, and to exit after SIGINT. */
export const SERVE_TIMEOUT_MS = 15_000

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

/** Whether a README block is a server example that `serveUntilSigint` can check. */
export const isServerExample = (block: { readonly run: boolean; readonly code: string }): boolean =>
  !block.run && block.code.includes("NodeRuntime.runMain(")

/** Runs `command args` (a server example) in `cwd` with `env`, and checks it serves then stops on SIGINT. */
export const serveUntilSigint = async (
  command: string,
  args: ReadonlyArray<string>,
  options: {
    readonly cwd?: string
    readonly env?: NodeJS.ProcessEnv
    /** Runs while the server serves (after the echo check), with its port: e.g. the README's client examples. */
    readonly during?: (port: number) => Promise<void> | void
  } = {}
): Promise<void> => {
  const port = await freePort()
  const child = spawn(command, [...args], {
    cwd: options.cwd,
    env: { ...(options.env ?? process.env), PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ws:// URL announced:\n${output}`)), SERVE_TIMEOUT_MS)
      const onData = (chunk: Buffer) => {
        output += chunk.toString("utf8")
        const announced = /wss?:\/\/[^\s"'`]+/.exec(output)
        if (announced !== null) {
          clearTimeout(timer)
          resolve(announced[0])
        }
      }
      child.stdout.on("data", onData)
      child.stderr.on("data", onData)
      void exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`exited with ${code} before serving:\n${output}`))
      })
    })
    assert.include(url, `:${port}/`, `the example does not listen on PORT:\n${output}`)
    // A client opens a connection, sends a message, expects an answer within 2 s, and closes.
    const closed = await new Promise<{ readonly code: number; readonly replied: boolean }>((resolve, reject) => {
      const ws = new WebSocket(url)
      let replied = false
      ws.on("open", () => {
        ws.send("hello")
        setTimeout(() => ws.close(1000), 2_000).unref()
      })
      ws.on("message", () => {
        replied = true
        ws.close(1000)
      })
      ws.on("close", (code) => resolve({ code, replied }))
      ws.on("error", reject)
    })
    assert.deepStrictEqual(closed, { code: 1000, replied: true }, output)
    await options.during?.(port)
    child.kill("SIGINT")
    const code = await Promise.race([
      exited,
      new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), SERVE_TIMEOUT_MS).unref())
    ])
    // NodeRuntime.runMain exits with 130 after an interrupt by SIGINT.
    assert.include([0, 130], code, `exit after SIGINT: ${code}\n${output}`)
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
}
