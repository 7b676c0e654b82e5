/**
 * The `ws` echo server of the benchmarks (a child of `echo.ts` / `conns.ts` / `deflate.ts`):
 * `ws`'s own `WebSocketServer` on 127.0.0.1 and an ephemeral port, default options (no
 * permessage-deflate), echoing every message with its type. ws loads the `bufferutil` addon (a
 * devDependency) for masking by itself unless WS_NO_BUFFER_UTIL is set: the bench's `ws` target
 * sets it, `ws+bufferutil` does not (see `../targets.ts`); `ready` says which it is.
 * With BENCH_DEFLATE=1 in its environment (`deflate.ts`) it enables `perMessageDeflate: true`
 * (ws's defaults: context takeover, zlib's default level, `threshold: 1024`,
 * `concurrencyLimit: 10`). It reports `ready` with its port and answers `stats` requests with its
 * own CPU and memory (see `../ipc.ts`).
 */
import { createRequire } from "node:module"
import type { AddressInfo } from "node:net"
import { WebSocketServer } from "ws"
import { emit, serve, serverHandlers } from "../ipc.ts"
import { HOST } from "../protocol.ts"

/** Whether ws uses bufferutil: it does when the addon loads and WS_NO_BUFFER_UTIL is unset (ws's own test). */
const bufferutil = (() => {
  if (process.env["WS_NO_BUFFER_UTIL"]) return false
  try {
    createRequire(import.meta.url)("bufferutil")
    return true
  } catch {
    return false
  }
})()

const deflate = process.env["BENCH_DEFLATE"] === "1"

const wss = new WebSocketServer({ host: HOST, port: 0, perMessageDeflate: deflate })
wss.on("connection", (ws) => {
  ws.on("error", () => {})
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }))
})
wss.on("error", (error) => {
  console.error("ws server:", error)
  process.exit(1)
})
wss.on("listening", () => {
  serve(serverHandlers(() => wss.clients.size))
  emit({ type: "ready", port: (wss.address() as AddressInfo).port, server: "ws", bufferutil, deflate })
})
