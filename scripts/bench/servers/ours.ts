/**
 * The effect-ws echo server of the benchmarks (a child of `echo.ts` / `conns.ts` / `deflate.ts`):
 * a standalone `WebSocketServer` on 127.0.0.1 and an ephemeral port, whose handler echoes every
 * message as it came (text as text, binary as binary), default options. With BENCH_DEFLATE=1 in
 * its environment (`deflate.ts`) it also offers permessage-deflate configured like `ws`'s
 * `perMessageDeflate: true`: context takeover both ways, zlib's default level and memLevel, and
 * messages under 1,024 B sent uncompressed (ws's `threshold: 1024`, i.e. compress ≥ 1,024 B).
 * It reports `ready` with its port and answers `stats` requests with its own CPU and memory (see
 * `../ipc.ts`).
 */
import { NodeRuntime } from "@effect/platform-node"
import { PerMessageDeflate, WebSocketServer } from "@effect-ws/node-adapter"
import { Effect } from "effect"
import { emit, serve, serverHandlers } from "../ipc.ts"
import { HOST } from "../protocol.ts"

const deflate = process.env["BENCH_DEFLATE"] === "1"

const program = Effect.gen(function*() {
  const server = yield* WebSocketServer.make(
    (session) => session.consumeEach((message) => session.sendFrame(message)),
    {
      host: HOST,
      port: 0,
      ...(deflate ? { extensions: PerMessageDeflate.extensions({ compressIfBiggerThan: 1023 }) } : {})
    }
  )
  serve(serverHandlers(() => server.sessions()))
  emit({ type: "ready", port: server.port, server: "effect-ws", deflate })
  return yield* Effect.never
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
