import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { DefaultWebSocketSession } from "@effect-ws/core"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { HttpRouter, HttpServer, HttpServerResponse } from "effect/http"
import * as WebSocketClient from "../src/WebSocketClient.ts"
import * as WebSocketRoute from "../src/WebSocketRoute.ts"
import type { ConnectionHandler } from "../src/WebSocketServer.ts"
import { rawExchange, statusOf, upgradeRequest } from "./helpers.ts"

const echo: ConnectionHandler<never, never> = (session) =>
  Effect.gen(function*() {
    while (true) {
      const message = yield* session.receive
      yield* session.send(message._tag === "Text" ? `echo:${DefaultWebSocketSession.readText(message)}` : DefaultWebSocketSession.readBytes(message))
    }
  }).pipe(Effect.catch(() => Effect.void))

const routes = Layer.mergeAll(
  HttpRouter.add("GET", "/ws", WebSocketRoute.handler(echo, { selectProtocol: (offered) => offered[0] })),
  HttpRouter.add("GET", "/hello", HttpServerResponse.text("hello"))
)

/** Serves the routes on an ephemeral port for the test's scope; returns the port. */
const serve = Effect.suspend(() => serveRoutes(routes))

const serveRoutes = <E>(routes: Layer.Layer<never, E, HttpRouter.HttpRouter>) => Effect.gen(function*() {
  const context = yield* Layer.build(
    HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true }).pipe(
      Layer.provideMerge(
        NodeHttpServer.layer(() => WebSocketRoute.createServer(), { port: 0, host: "127.0.0.1", gracefulShutdownTimeout: "300 millis" })
      )
    )
  )
  const address = Context.get(context, HttpServer.HttpServer).address
  if (address._tag === "UnixPathAddress") throw new Error("expected an IP address")
  return address.port
})

describe("WebSocketRoute (NodeHttpServer + HttpRouter)", () => {
  it.live("serves a WebSocket route and a plain route on one port", () =>
    Effect.gen(function*() {
      const port = yield* serve
      const hello = yield* rawExchange(port, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.strictEqual(statusOf(hello), 200)
      assert.include(hello, "hello")
      const { protocol, session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}/ws`, { protocols: ["chat"] })
      assert.strictEqual(protocol, "chat")
      yield* session.send("one")
      const reply = yield* session.receive
      assert.strictEqual(reply._tag === "Text" && DefaultWebSocketSession.readText(reply), "echo:one")
      yield* session.close()
      assert.strictEqual((yield* session.awaitClose).code, 1000)
    }))

  it.live("refusals are plain HTTP responses with the exact status", () =>
    Effect.gen(function*() {
      const port = yield* serve
      const old = yield* rawExchange(port, upgradeRequest("/ws", ["Connection: close"], { "Sec-WebSocket-Version": "8" }), (r) => r.includes("\r\n\r\n"))
      assert.strictEqual(statusOf(old), 426)
      assert.match(old, /sec-websocket-version: 13/i)
      const plain = yield* rawExchange(port, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", (r) => r.includes("\r\n\r\n"))
      assert.strictEqual(statusOf(plain), 426)
    }))

  it.live("bytes sent right after the request head (stashed from the upgrade event) reach the session", () =>
    Effect.gen(function*() {
      const port = yield* serve
      // A masked Text frame "hey" with a zero mask, in the same write as the request.
      const frame = Buffer.from([0x81, 0x83, 0, 0, 0, 0, ...Buffer.from("hey")])
      const request = Buffer.concat([Buffer.from(upgradeRequest("/ws"), "latin1"), frame])
      const response = yield* rawExchange(port, request, (r) => r.includes("echo:hey"))
      assert.strictEqual(statusOf(response), 101)
      assert.include(response, "\x81\x08echo:hey")
    }))

  it.live("the session ends as the handler did (1000 when it returns, 1011 when it fails), after the handler's own finalizers ran in the connection's scope", () =>
    Effect.gen(function*() {
      const finalized: Array<string> = []
      const port = yield* serveRoutes(Layer.mergeAll(
        HttpRouter.add("GET", "/done", WebSocketRoute.handler(() => Effect.addFinalizer(() => Effect.sync(() => finalized.push("done"))))),
        HttpRouter.add(
          "GET",
          "/fail",
          WebSocketRoute.handler(() => Effect.andThen(Effect.addFinalizer(() => Effect.sync(() => finalized.push("fail"))), Effect.fail("boom")))
        )
      ))
      const done = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}/done`)
      assert.strictEqual((yield* done.session.awaitClose).code, 1000)
      const failed = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}/fail`)
      assert.strictEqual((yield* failed.session.awaitClose).code, 1011)
      yield* Effect.sleep("50 millis")
      assert.deepStrictEqual(finalized.sort(), ["done", "fail"])
    }))

  it.live("closing the server's layer interrupts open sessions, which send Close 1001", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const port = yield* Scope.provide(serve, scope)
      const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}/ws`)
      yield* session.send("one")
      yield* session.receive
      yield* Effect.forkChild(Scope.close(scope, Exit.void))
      assert.strictEqual((yield* session.awaitClose).code, 1001)
    }))
})
