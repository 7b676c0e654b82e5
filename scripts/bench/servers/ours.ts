/**
 * The effect-ws echo server of the benchmarks (a child of `echo.ts` / `conns.ts`): a standalone
 * `WebSocketServer` on 127.0.0.1 and an ephemeral port, whose handler echoes every message as it
 * came (text as text, binary as binary), default options. It reports `ready` with its port and
 * answers `stats` requests with its own CPU and memory (see `../ipc.ts`).
 */
import { NodeRuntime } from "@effect/platform-node"
import { WebSocketServer } from "@effect-ws/node-adapter"
import { Effect, Stream } from "effect"
import { emit, HOST, serve, serverHandlers } from "../ipc.ts"

const program = Effect.gen(function*() {
  const server = yield* WebSocketServer.make(
    (session) => Stream.runForEach(session.messages, (message) => session.sendFrame(message)),
    { host: HOST, port: 0 }
  )
  serve(serverHandlers(() => server.sessions()))
  emit({ type: "ready", port: server.port, server: "effect-ws" })
  return yield* Effect.never
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
