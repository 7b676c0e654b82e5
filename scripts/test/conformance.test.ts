/**
 * The conformance peer itself is checked against `ws` (the reference implementation most users
 * compare us with): every case must pass except the three places where `ws` is known to be less
 * strict than conformance.md asks. That both proves the peer passes a real server and that it
 * detects real deviations. Our own server (the demo's `/echo`) must pass every case.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { HttpServer } from "effect/http"
import type { AddressInfo } from "node:net"
import { WebSocketServer } from "ws"
import { runCases } from "../conformance/run.ts"
import { demoLayer } from "../demo/server.ts"

/**
 * Where `ws` 8 deviates: UTF-8 is validated at the end of a message (so neither an invalid early
 * fragment nor an invalid early part of a frame closes the connection), and version 8 is accepted.
 */
const wsDeviations = ["6.fail-fast", "6.fail-fast.in-frame", "hs.version"]

describe("conformance peer", () => {
  it("passes ws on every case except its three known deviations", async () => {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0, maxPayload: 64 * 1024 * 1024 })
    server.on("connection", (ws) => {
      ws.on("error", () => {})
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }))
    })
    await new Promise<void>((resolve) => server.once("listening", () => resolve()))
    try {
      const { port } = server.address() as AddressInfo
      const results = await runCases(new URL(`ws://127.0.0.1:${port}/`))
      assert.isAtLeast(results.length, 130)
      const failed = results.filter((r) => !r.verdict.ok).map((r) => r.id)
      assert.deepStrictEqual(failed, wsDeviations, JSON.stringify(results.filter((r) => !r.verdict.ok)))
    } finally {
      for (const client of server.clients) client.terminate()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }, 60_000)

  it("our server (the demo's /echo) passes every case", async () => {
    const scope = await Effect.runPromise(Scope.make())
    try {
      const context = await Effect.runPromise(Layer.buildWithScope(demoLayer({ host: "127.0.0.1", port: 0 }), scope))
      const address = Context.get(context, HttpServer.HttpServer).address
      if (address._tag === "UnixPathAddress") throw new Error("expected an IP address")
      const results = await runCases(new URL(`ws://127.0.0.1:${address.port}/echo`))
      assert.isAtLeast(results.length, 130)
      const failed = results.filter((r) => !r.verdict.ok)
      assert.deepStrictEqual(failed, [])
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 120_000)
})
