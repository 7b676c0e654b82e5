/**
 * The server process of `hostile.test.ts` (forked by it, never run by hand): the demo
 * (`demoLayer`: `/`, `/chat`, `/echo`) on 127.0.0.1 and an ephemeral port, plus two standalone
 * `WebSocketServer`s with the short timeouts the timing rows need (the demo's are node:http's and
 * 30 s pings): `strict` (handshake and close timeouts 500 ms, 2 MiB heads, no pings; `/echo`
 * semantics, and a text message "close-me" makes the server start the close handshake) and
 * `pinging` (a Ping every 250 ms, 250 ms to answer it). All three run in this one process so its
 * memory is what the test samples. Talks to the test over IPC (`../../bench/ipc.ts`):
 * `ready` with the three ports; `stats` (memory after `gc()` on request, and `connections`: the
 * process's open sockets); `closes` (the close codes the strict and pinging sessions ended
 * with since the last call, from their `awaitClose`); `usage` (`process.memoryUsage()` and
 * V8's heap spaces); `snapshot` (a heap snapshot to a path).
 * Also the soak's and `scripts/soak/declared.ts`'s server.
 */
import { CloseReason } from "@effect-ws/codec"
import type { WebSocketSession } from "@effect-ws/core/DefaultWebSocketSession"
import { readText } from "@effect-ws/core/DefaultWebSocketSession"
import { WebSocketServer } from "@effect-ws/node-adapter"
import { Context, Effect, Layer, References } from "effect"
import * as Fs from "node:fs"
import * as V8 from "node:v8"
import { HttpServer } from "effect/http"
import { demoLayer } from "../../demo/server.ts"
import { emit, serve, serverHandlers } from "../../bench/ipc.ts"
import { HOST } from "../../bench/protocol.ts"

/**
 * Sockets this process holds open: its file descriptors that are sockets (listening ones and
 * the IPC channel included, a constant). Counted from /proc, since `getActiveResourcesInfo`
 * leaves out sockets that are not being read (a paused or half-closed one).
 */
const openSockets = (): number => {
  let count = 0
  for (const fd of Fs.readdirSync("/proc/self/fd")) {
    try {
      if (Fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith("socket:")) count++
    } catch {
      // closed meanwhile
    }
  }
  return count
}

/** Close codes of ended strict/pinging sessions, drained by each `closes` request. */
const closes: Array<{ readonly server: string; readonly code: number; readonly message: string }> = []

const BYE = CloseReason.CloseReason(1000, "bye")

/** Echo; "close-me" starts the close handshake from the server; records how the session ended. */
const handler = (server: string) => (session: WebSocketSession) =>
  Effect.andThen(
    Effect.forkDetach(
      Effect.flatMap(session.awaitClose, (reason) => Effect.sync(() => closes.push({ server, code: reason.code, message: reason.message }))),
      { startImmediately: true }
    ),
    session.consumeEach((message) =>
      message._tag === "Text" && readText(message) === "close-me" ? session.close(BYE) : session.sendFrame(message)
    )
  )

const program = Effect.gen(function*() {
  const demo = yield* Layer.build(demoLayer({ host: HOST, port: 0 }))
  const address = Context.get(demo, HttpServer.HttpServer).address
  if (address._tag === "UnixPathAddress") throw new Error("expected an IP address")
  const strict = yield* WebSocketServer.make(handler("strict"), {
    host: HOST,
    port: 0,
    handshakeTimeout: "500 millis",
    maxHeaderSize: 2 * 1024 * 1024,
    shutdownTimeout: "200 millis",
    session: { closeTimeout: "500 millis" }
  })
  const pinging = yield* WebSocketServer.make(handler("pinging"), {
    host: HOST,
    port: 0,
    shutdownTimeout: "200 millis",
    session: { pingInterval: "250 millis", pingTimeout: "250 millis", closeTimeout: "500 millis" }
  })
  serve({
    ...serverHandlers(openSockets),
    closes: () => closes.splice(0),
    // Everything node reports about this process's memory (after gc() on request): where RSS goes.
    usage: (message) => {
      if (message["gc"] === true) for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.()
      return {
        ...process.memoryUsage(),
        spaces: Object.fromEntries(V8.getHeapSpaceStatistics().map((s) => [s.space_name, s.physical_space_size]))
      }
    },
    // A heap snapshot of this process (after gc()) written to `path`, for retention questions.
    snapshot: (message) => V8.writeHeapSnapshot(String(message["path"]))
  })
  emit({ type: "ready", port: address.port, strict: strict.port, pinging: pinging.port })
  return yield* Effect.never
}).pipe(Effect.scoped, Effect.provideService(References.MinimumLogLevel, "Error"))

Effect.runFork(program)
