/**
 * `npm start`: the demo server. One port (HOST, default 127.0.0.1; PORT, default 8080) serves
 * - `/`: a small chat page (HTML + the browser's native `WebSocket`),
 * - `/chat`: the chat room (every text message is broadcast to every member),
 * - `/echo`: an echo endpoint (every message sent back exactly as received).
 * Both WebSocket endpoints accept permessage-deflate (RFC 7692) when the client offers it.
 * The WebSocket endpoints are routes of an `effect/http` router on `@effect/platform-node`'s
 * `NodeHttpServer`, next to the page. One log line per connection when it ends; SIGINT/SIGTERM
 * shut down cleanly: open sessions get Close 1001 within a second, then the process exits.
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import type { WebSocketSession } from "@effect-ws/core/DefaultWebSocketSession"
import { PerMessageDeflate, WebSocketRoute } from "@effect-ws/node-adapter"
import type { AcceptedUpgrade } from "@effect-ws/node-adapter/ServerHandshake"
import { Config, Effect, Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { chat, ChatRoom, MAX_LINE } from "./ChatRoom.ts"
import { echo } from "./Echo.ts"
import { chatPage } from "./page.ts"

/**
 * Wraps a handler so that each connection logs one line when it ends: path, peer, close code,
 * duration. The line is written by a detached fiber that waits for `closeReason`, which completes
 * on every way a session ends (so the fiber cannot outlive the session); waiting for it inside the
 * handler instead would deadlock on shutdown, since the session only ends once its handler has.
 */
const logged = <E, R>(path: string, handler: (session: WebSocketSession) => Effect.Effect<void, E, R>) =>
(session: WebSocketSession, connection: AcceptedUpgrade) =>
  Effect.suspend(() => {
    const started = Date.now()
    const line = Effect.flatMap(session.awaitClose, (reason) =>
      Effect.log(
        `${path} ${connection.info.remoteAddress ?? "?"} closed ${reason.code}${reason.message === "" ? "" : ` "${reason.message}"`} after ${Date.now() - started} ms`
      ))
    return Effect.andThen(Effect.forkDetach(line, { startImmediately: true }), handler(session))
  })

/** The largest `/chat` message: one chat line of `MAX_LINE` characters, 4 UTF-8 bytes each at most. */
const CHAT_MESSAGE_BYTES = MAX_LINE * 4

/** Settings for demo sessions: ping every 30 s (dead peers are dropped after 15 s more). */
const session = { pingInterval: "30 seconds", pingTimeout: "15 seconds" } as const

const routes = Layer.mergeAll(
  HttpRouter.add("GET", "/", HttpServerResponse.html(chatPage)),
  // Every method reaches the WebSocket handlers, so a non-GET upgrade gets 405 rather than 404.
  // Both offer permessage-deflate (browsers ask for it). A chat message is one line of at most
  // MAX_LINE characters (4 bytes each at most in UTF-8): frames and messages are limited to that
  // (so a longer header gets 1009 at once), and so is inflation (the session's limit bounds it).
  HttpRouter.add(
    "*",
    "/chat",
    WebSocketRoute.handler(logged("/chat", chat), {
      session: { ...session, maxFrameSize: CHAT_MESSAGE_BYTES, maxMessageSize: CHAT_MESSAGE_BYTES },
      extensions: PerMessageDeflate.extensions()
    })
  ),
  HttpRouter.add("*", "/echo", WebSocketRoute.handler(logged("/echo", echo), { session, extensions: PerMessageDeflate.extensions() }))
)

/**
 * node:http's handshake deadline for the demo: a request head (the upgrade request included) must
 * be complete within 10 s of the connection (node's default is 60 s, checked every 30 s, so a
 * silent or trickling client held a socket for up to 90 s); connections are checked every second.
 * A silent connection is then dropped, a half-sent head gets 408 (hostile-inputs H3).
 */
const HANDSHAKE_LIMITS = { headersTimeout: 10_000, connectionsCheckingInterval: 1_000 } as const

/** The whole demo as a layer: the router served on `host:port` (0: an ephemeral port), with one chat room. */
export const demoLayer = (options: { readonly host: string; readonly port: number }) =>
  HttpRouter.serve(routes, { disableLogger: true }).pipe(
    Layer.provide(ChatRoom.layer),
    Layer.provideMerge(NodeHttpServer.layer(() => WebSocketRoute.createServer(HANDSHAKE_LIMITS), { ...options, gracefulShutdownTimeout: "1 second" }))
  )

/** The demo configured from the environment: HOST (default 127.0.0.1) and PORT (default 8080). */
export const DemoServer = Layer.unwrap(
  Effect.gen(function*() {
    const host = yield* Config.String("HOST").pipe(Config.withDefault("127.0.0.1"))
    const port = yield* Config.Port("PORT").pipe(Config.withDefault(8080))
    return demoLayer({ host, port })
  })
)

if (import.meta.main) NodeRuntime.runMain(Layer.launch(DemoServer))
