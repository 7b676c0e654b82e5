import { assert, describe, it } from "@effect/vitest"
import { ChannelsConfig, DefaultWebSocketSession } from "@effect-ws/core"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { WebSocket as WsClient } from "ws"
import * as WebSocketClient from "../src/WebSocketClient.ts"
import * as WebSocketServer from "../src/WebSocketServer.ts"
import { connectRaw, echo, eventually, readUntil, upgradeRequest } from "./helpers.ts"

/** Opens a `ws` client and collects what it receives; resolves once open. */
const wsClient = (url: string, protocols: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly ws: WsClient; readonly received: Array<string>; readonly closed: Promise<readonly [number, string]> }, Error>((resume) => {
      const ws = new WsClient(url, [...protocols])
      const received: Array<string> = []
      const closed = new Promise<readonly [number, string]>((r) => ws.on("close", (code, reason) => r([code, reason.toString()])))
      ws.on("message", (data, isBinary) => received.push(isBinary ? `bin:${Buffer.from(data as Buffer).toString("hex")}` : data.toString()))
      ws.once("open", () => resume(Effect.succeed({ ws, received, closed })))
      ws.once("error", (e) => resume(Effect.fail(e)))
    }),
    ({ ws }) => Effect.sync(() => ws.terminate())
  )

describe("WebSocketServer", () => {
  it.live("echoes text and binary to a `ws` client, fragmented or not, and closes 1000 when the client closes", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", path: "/echo" })
      const { ws, received, closed } = yield* wsClient(`ws://127.0.0.1:${server.port}/echo`)
      ws.send("hello")
      ws.send(Buffer.from([1, 2, 3]))
      ws.send("frag", { fin: false })
      ws.send("mented", { fin: true })
      ws.send("x".repeat(200_000))
      yield* eventually(() => received.length === 4)
      assert.deepStrictEqual(received.slice(0, 3), ["hello", "bin:010203", "fragmented"])
      assert.strictEqual(received[3], "x".repeat(200_000))
      ws.close(1000, "bye")
      const [code] = yield* Effect.promise(() => closed)
      assert.strictEqual(code, 1000)
      yield* eventually(() => server.sessions() === 0 && server.connections() === 0)
    }))

  it.live("an upgraded socket keeps one `close` and one `error` listener (the transport's), and an abrupt end is counted", () =>
    Effect.gen(function*() {
      const counts: Array<readonly [number, number]> = []
      const server = yield* WebSocketServer.make(
        (session) =>
          Effect.andThen(
            Effect.sync(() => {
              const socket = (session.raw.transport as unknown as { readonly socket: import("node:net").Socket }).socket
              counts.push([socket.listenerCount("close"), socket.listenerCount("error")])
            }),
            Effect.ignore(session.awaitClose)
          ),
        { host: "127.0.0.1" }
      )
      const { ws } = yield* wsClient(`ws://127.0.0.1:${server.port}/`)
      yield* eventually(() => counts.length === 1 && server.sessions() === 1)
      assert.deepStrictEqual(counts, [[1, 1]])
      ws.terminate()
      yield* eventually(() => server.sessions() === 0 && server.connections() === 0)
    }))

  it.live("Node's global WebSocket talks to the server, with a subprotocol chosen by the application", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(echo, {
        host: "127.0.0.1",
        selectProtocol: (offered) => offered.includes("v2") ? "v2" : undefined
      })
      const result = yield* Effect.promise(() =>
        new Promise<{ protocol: string; messages: Array<string>; code: number }>((resolve, reject) => {
          const ws = new globalThis.WebSocket(`ws://127.0.0.1:${server.port}/`, ["v1", "v2"])
          ws.binaryType = "arraybuffer"
          const messages: Array<string> = []
          ws.onopen = () => {
            ws.send("one")
            ws.send(new Uint8Array([9, 8]))
          }
          ws.onmessage = (event) => {
            messages.push(typeof event.data === "string" ? event.data : Buffer.from(event.data as ArrayBuffer).toString("hex"))
            if (messages.length === 2) ws.close(1000)
          }
          ws.onerror = () => reject(new Error("WebSocket error"))
          ws.onclose = (event) => resolve({ protocol: ws.protocol, messages, code: event.code })
        })
      ).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(result, { protocol: "v2", messages: ["one", "0908"], code: 1000 })
    }))

  it.live("a handler that returns closes with 1000; one that fails closes with 1011", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(
        (session, connection) =>
          connection.info.url === "/fail"
            ? Effect.andThen(session.send("about to fail"), Effect.fail("boom"))
            : session.send("done"),
        { host: "127.0.0.1" }
      )
      const ok = yield* wsClient(`ws://127.0.0.1:${server.port}/ok`)
      assert.deepStrictEqual((yield* Effect.promise(() => ok.closed))[0], 1000)
      assert.deepStrictEqual(ok.received, ["done"])
      const failing = yield* wsClient(`ws://127.0.0.1:${server.port}/fail`)
      assert.deepStrictEqual((yield* Effect.promise(() => failing.closed))[0], 1011)
      assert.deepStrictEqual(failing.received, ["about to fail"])
    }))

  it.live("closing the scope sends Close 1001 to every open session and leaves no socket behind", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", shutdownTimeout: "2 seconds" }).pipe(
        Scope.provide(scope)
      )
      const clients = yield* Effect.all([1, 2, 3].map(() => wsClient(`ws://127.0.0.1:${server.port}/`)))
      yield* eventually(() => server.sessions() === 3)
      const start = Date.now()
      yield* Scope.close(scope, Exit.void)
      assert.isBelow(Date.now() - start, 1500) // the clients answered the Close: no waiting for the timeout
      for (const client of clients) {
        const [code, reason] = yield* Effect.promise(() => client.closed)
        assert.strictEqual(code, 1001)
        assert.strictEqual(reason, "Server shutting down")
      }
      assert.strictEqual(server.connections(), 0)
      assert.strictEqual(server.sessions(), 0)
    }))

  it.live("shutdown is bounded when a peer never answers the Close", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", shutdownTimeout: "200 millis", session: { closeTimeout: "200 millis" } }).pipe(
        Scope.provide(scope)
      )
      const client = yield* wsClient(`ws://127.0.0.1:${server.port}/`)
      yield* eventually(() => server.sessions() === 1)
      client.ws.pause() // stops reading: our Close is never answered
      const start = Date.now()
      yield* Scope.close(scope, Exit.void)
      const elapsed = Date.now() - start
      assert.isAtLeast(elapsed, 150)
      assert.isBelow(elapsed, 2000)
      assert.strictEqual(server.connections(), 0)
    }))

  it.live("fails with WebSocketServerError when the port is taken", () =>
    Effect.gen(function*() {
      const first = yield* WebSocketServer.make(echo, { host: "127.0.0.1" })
      const exit = yield* Effect.exit(WebSocketServer.make(echo, { host: "127.0.0.1", port: first.port }))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(exit), "WebSocketServerError")
    }))
})

describe("WebSocketServer, hostile peers", () => {
  it.live("H14: a TCP reset mid-frame and a FIN without Close both end the session with 1006 and release the socket", () =>
    Effect.gen(function*() {
      const reasons: Array<number> = []
      const server = yield* WebSocketServer.make(
        (session) => Effect.andThen(session.awaitClose, (reason) => Effect.sync(() => reasons.push(reason.code))),
        { host: "127.0.0.1" }
      )
      // Half a masked frame header + payload, then a reset.
      const reset = yield* connectRaw(server.port)
      reset.write(upgradeRequest("/"))
      yield* Effect.promise(() => new Promise((r) => reset.once("data", r)))
      reset.write(Buffer.from([0x81, 0x85, 1, 2, 3, 4, 0x61]))
      yield* eventually(() => server.sessions() === 1)
      reset.resetAndDestroy()
      yield* eventually(() => reasons.length === 1 && server.connections() === 0)
      // FIN without a Close frame (the server socket is half-open: the session must still end it).
      const fin = yield* connectRaw(server.port, { allowHalfOpen: true })
      fin.write(upgradeRequest("/"))
      yield* Effect.promise(() => new Promise((r) => fin.once("data", r)))
      yield* eventually(() => server.sessions() === 1)
      fin.end()
      yield* eventually(() => reasons.length === 2 && server.connections() === 0)
      assert.deepStrictEqual(reasons, [1006, 1006])
      assert.strictEqual(server.sessions(), 0)
    }))
})

describe("WebSocketServer, backpressure and layer", () => {
  it.live("H6: a frame arriving one byte per TCP write is parsed and echoed", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1" })
      const client = yield* connectRaw(server.port, { noDelay: true })
      client.write(upgradeRequest("/"))
      yield* Effect.promise(() => new Promise((r) => client.once("data", r)))
      const payload = Buffer.alloc(1000, "a")
      const frame = Buffer.concat([Buffer.from([0x81, 0xfe, 0x03, 0xe8, 0, 0, 0, 0]), payload]) // masked, zero mask
      for (let i = 0; i < frame.length; i++) {
        client.write(frame.subarray(i, i + 1))
        if (i % 100 === 0) yield* Effect.yieldNow
      }
      const reply = yield* readUntil(client, (r) => r.length >= 1004)
      assert.strictEqual(reply, "\x81\x7e\x03\xe8" + "a".repeat(1000))
    }))

  it.live("H12: a peer that stops reading makes send suspend; memory stays bounded", () =>
    Effect.gen(function*() {
      let sent = 0
      const payload = new Uint8Array(64 * 1024)
      const server = yield* WebSocketServer.make(
        (session) =>
          Effect.gen(function*() {
            for (let i = 0; i < 10_000; i++) {
              yield* session.send(payload)
              sent++
            }
          }).pipe(Effect.ignore),
        { host: "127.0.0.1", session: { channels: ChannelsConfig.make({ outgoing: ChannelsConfig.bounded(4) }) } }
      )
      const client = yield* connectRaw(server.port)
      client.write(upgradeRequest("/"))
      yield* Effect.promise(() => new Promise((r) => client.once("data", r)))
      client.pause() // never reads again
      yield* eventually(() => sent > 0)
      // No way to observe "stopped making progress" but to look twice.
      let previous = -1
      yield* eventually(() => {
        const stalled = sent === previous
        previous = sent
        return stalled
      })
      assert.isBelow(sent * payload.length, 64 * 1024 * 1024) // far below the 640 MB the handler wanted to send
      client.destroy()
      yield* eventually(() => server.sessions() === 0)
    }))

  it.live("layer: provides the running server as a service", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(WebSocketServer.layer(echo, { host: "127.0.0.1" }))
      const server = Context.get(context, WebSocketServer.WebSocketServerService)
      const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${server.port}/`)
      yield* session.send("via layer")
      const reply = yield* session.receive
      assert.strictEqual(reply._tag === "Text" && DefaultWebSocketSession.readText(reply), "via layer")
    }))
})
