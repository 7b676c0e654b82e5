/**
 * Bun's WebSocket echo for the benchmarks (a child of `echo.ts` / `conns.ts`, run by Bun's binary
 * from the npm `bun` package, see `../targets.ts`): `Bun.serve` on 127.0.0.1 and an ephemeral
 * port, upgrading every request and echoing every message with its type (a string as text, bytes
 * as binary). Options are Bun's defaults except `idleTimeout: 0`: Bun closes a connection idle for
 * 120 s by default, which `ws` and effect-ws do not, and the connections benchmark holds idle
 * connections. It talks to the parent over Node's IPC channel, which Bun implements
 * (`process.send`), and samples its CPU with `process.cpuUsage()` and its memory with
 * `process.memoryUsage()` after `Bun.gc(true)` (see `../ipc.ts`).
 *
 * Bun's types are not installed (Bun is not a dependency): the few members used here are declared.
 */
import { emit, serve, serverHandlers } from "../ipc.ts"
import { HOST } from "../protocol.ts"

interface BunWebSocket {
  send(data: string | Uint8Array): number
}

declare const Bun: {
  serve(options: {
    readonly hostname: string
    readonly port: number
    readonly fetch: (request: Request, server: { upgrade(request: Request): boolean }) => Response | undefined
    readonly websocket: {
      readonly idleTimeout: number
      readonly open: (ws: BunWebSocket) => void
      readonly message: (ws: BunWebSocket, message: string | Uint8Array) => void
      readonly close: (ws: BunWebSocket) => void
    }
  }): { readonly port: number }
}

let connections = 0

const server = Bun.serve({
  hostname: HOST,
  port: 0,
  fetch: (request, server) =>
    server.upgrade(request) ? undefined : new Response("Upgrade Required", { status: 426, headers: { upgrade: "websocket" } }),
  websocket: {
    idleTimeout: 0,
    open: () => {
      connections++
    },
    message: (ws, message) => {
      ws.send(message)
    },
    close: () => {
      connections--
    }
  }
})

serve(serverHandlers(() => connections))
emit({ type: "ready", port: server.port, server: "Bun.serve", bun: (process.versions as Record<string, string | undefined>)["bun"] ?? "?" })
