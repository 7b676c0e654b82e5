/**
 * effect-ws as a route, the way the demo (`scripts/demo/server.ts`) and Effect applications deploy
 * it (a child of `echo.ts` / `conns.ts`): `WebSocketRoute.handler` added to an `HttpRouter` at
 * `/` (every method), served by `@effect/platform-node`'s `NodeHttpServer` on an `http.Server`
 * prepared by `WebSocketRoute.createServer`, on 127.0.0.1 and an ephemeral port. The handler is
 * the standalone server's (`ours.ts`): every message echoed as it came, default session options,
 * no extension (the generator offers none). Open connections are counted around the handler.
 * It reports `ready` with its port and answers `stats` requests with its own CPU and memory (see
 * `../ipc.ts`).
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { WebSocketRoute } from "@effect-ws/node-adapter"
import { Effect, Layer } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import { emit, serve, serverHandlers } from "../ipc.ts"
import { HOST } from "../protocol.ts"

let connections = 0

const echo = WebSocketRoute.handler((session) =>
  Effect.suspend(() => {
    connections++
    return session.consumeEach((message) => session.sendFrame(message)).pipe(Effect.ensuring(Effect.sync(() => connections--)))
  })
)

const routes = HttpRouter.add("*", "/", echo)

/** Reports the bound port to the parent once the server listens. */
const ready = Layer.effectDiscard(
  Effect.gen(function*() {
    const address = (yield* HttpServer.HttpServer).address
    if (address._tag === "UnixPathAddress") return yield* Effect.die(new Error("expected an IP address"))
    serve(serverHandlers(() => connections))
    emit({ type: "ready", port: address.port, server: "effect-ws route" })
  })
)

const app = Layer.mergeAll(HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true }), ready).pipe(
  Layer.provide(NodeHttpServer.layer(() => WebSocketRoute.createServer(), { host: HOST, port: 0 }))
)

NodeRuntime.runMain(Layer.launch(app))
