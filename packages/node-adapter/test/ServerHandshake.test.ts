import { assert, describe, it } from "@effect/vitest"
import { Handshake } from "@effect-ws/codec"
import { ExtensionHeader } from "@effect-ws/codec"
import { Extension } from "@effect-ws/core"
import { Duration, Effect } from "effect"
import * as ServerHandshake from "../src/ServerHandshake.ts"
import * as WebSocketServer from "../src/WebSocketServer.ts"
import { connectRaw, rawExchange, readUntil, statusOf, upgradeRequest } from "./helpers.ts"

const headEnd = (r: string) => r.includes("\r\n\r\n")

/** A server whose handler just waits for the session to end. */
const serve = (options: WebSocketServer.WebSocketServerOptions = {}) =>
  WebSocketServer.make((session) => Effect.asVoid(session.awaitClose), { host: "127.0.0.1", ...options })

const exchange = (port: number, request: string) => rawExchange(port, request)

describe("ServerHandshake (through WebSocketServer)", () => {
  it.live("accepts a valid request with 101 and the RFC 6455 sample accept", () =>
    Effect.gen(function*() {
      const server = yield* serve()
      const response = yield* rawExchange(server.port, upgradeRequest("/any"), headEnd)
      assert.strictEqual(statusOf(response), 101)
      assert.include(response, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")
      assert.include(response.toLowerCase(), "upgrade: websocket\r\n")
    }))

  it.live("answers every malformed upgrade with its exact status", () =>
    Effect.gen(function*() {
      const server = yield* serve({ path: "/ws" })
      const cases: ReadonlyArray<readonly [string, string, number, string?]> = [
        ["wrong path", upgradeRequest("/other"), 404],
        ["POST", upgradeRequest("/ws").replace(/^GET/, "POST"), 405, "Allow: GET"],
        ["HTTP/1.0", upgradeRequest("/ws").replace("HTTP/1.1", "HTTP/1.0"), 400],
        ["version 8", upgradeRequest("/ws", [], { "Sec-WebSocket-Version": "8" }), 426, "Sec-WebSocket-Version: 13"],
        ["no version", upgradeRequest("/ws", [], { "Sec-WebSocket-Version": undefined }), 426, "Sec-WebSocket-Version: 13"],
        ["no key", upgradeRequest("/ws", [], { "Sec-WebSocket-Key": undefined }), 400],
        ["short key", upgradeRequest("/ws", [], { "Sec-WebSocket-Key": "abc=" }), 400],
        ["bad protocol list", upgradeRequest("/ws", ["Sec-WebSocket-Protocol: a b"]), 400],
        ["bad extensions", upgradeRequest("/ws", ["Sec-WebSocket-Extensions: ;;"]), 400],
        ["not an upgrade", "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 426, "Upgrade: websocket"],
        ["upgrade without Connection", upgradeRequest("/ws", [], { Connection: undefined }), 400],
        ["wrong Upgrade token", upgradeRequest("/ws", [], { Upgrade: "h2c" }), 426],
        ["garbage", "\x01\x02 nonsense\r\n\r\n", 400],
        ["150 header fields", upgradeRequest("/ws", Array.from({ length: 150 }, (_, i) => `X-H${i}: v`)), 431]
      ]
      for (const [name, request, status, header] of cases) {
        const response = yield* exchange(server.port, request)
        assert.strictEqual(statusOf(response), status, `${name}: ${response}`)
        if (header !== undefined) assert.include(response, header, name)
        assert.notInclude(response, "<timeout>", `${name}: the server must close the connection`)
      }
    }))

  it.live("H1: a head over maxHeaderSize or thousands of header lines get 431 and the connection is closed", () =>
    Effect.gen(function*() {
      const server = yield* serve({ maxHeaderSize: 4096 })
      const big = yield* exchange(server.port, upgradeRequest("/", [`X-Big: ${"a".repeat(8000)}`]))
      assert.strictEqual(statusOf(big), 431)
      const many = yield* exchange(server.port, upgradeRequest("/", Array.from({ length: 3000 }, (_, i) => `X${i}: 1`)))
      assert.strictEqual(statusOf(many), 431)
      // Still serving.
      assert.strictEqual(statusOf(yield* rawExchange(server.port, upgradeRequest("/"), headEnd)), 101)
    }))

  it.live("H3: a client that never sends, or stops mid-head, is dropped after the handshake timeout", () =>
    Effect.gen(function*() {
      const server = yield* serve({ handshakeTimeout: "150 millis" })
      const silent = yield* connectRaw(server.port)
      const trickle = yield* connectRaw(server.port)
      trickle.write("GET / HTTP/1.1\r\nHost: x\r\n")
      const start = Date.now()
      const [a, b] = yield* Effect.all([readUntil(silent), readUntil(trickle)], { concurrency: 2 })
      const elapsed = Date.now() - start
      assert.notInclude(a, "<timeout>")
      assert.notInclude(b, "<timeout>")
      assert.isAtLeast(elapsed, 100)
      assert.isBelow(elapsed, 1500)
      assert.isTrue(silent.destroyed || silent.readableEnded)
      // An accepted connection is not subject to the handshake timeout.
      const ok = yield* connectRaw(server.port)
      ok.write(upgradeRequest("/"))
      assert.strictEqual(statusOf(yield* readUntil(ok, headEnd)), 101)
      yield* Effect.sleep("300 millis") // longer than the handshake timeout: the open session must survive it
      assert.isFalse(ok.destroyed)
      assert.strictEqual(server.sessions(), 1)
    }))

  it.live("H3: an infinite handshake timeout sets no timer (a waiting client costs nothing until it sends)", () =>
    Effect.gen(function*() {
      const server = yield* serve({ handshakeTimeout: Duration.infinity })
      const armed: Array<unknown> = []
      const original = globalThis.setTimeout
      // Counts the timers armed while a client waits: none may be the server's handshake sweep.
      globalThis.setTimeout = ((handler: (...args: Array<unknown>) => void, ms?: number, ...rest: Array<unknown>) => {
        if (typeof handler === "function" && handler.name === "sweepHandshakes") armed.push(ms)
        return original(handler, ms, ...rest)
      }) as typeof setTimeout
      yield* Effect.addFinalizer(() => Effect.sync(() => { globalThis.setTimeout = original }))
      const silent = yield* connectRaw(server.port)
      yield* Effect.sleep("100 millis")
      assert.isFalse(silent.destroyed)
      assert.deepStrictEqual(armed, [])
      silent.write(upgradeRequest("/"))
      assert.strictEqual(statusOf(yield* readUntil(silent, headEnd)), 101)
    }))

  it.live("H3: each connection gets the whole handshake timeout from its own accept, however they are staggered", () =>
    Effect.gen(function*() {
      const server = yield* serve({ handshakeTimeout: "300 millis" })
      const first = yield* connectRaw(server.port)
      const firstAt = Date.now()
      yield* Effect.sleep("200 millis")
      const second = yield* connectRaw(server.port)
      const secondAt = Date.now()
      yield* readUntil(first)
      assert.isAtLeast(Date.now() - firstAt, 250)
      assert.isFalse(second.destroyed || second.readableEnded) // accepted 200 ms later: not due yet
      yield* readUntil(second)
      const waited = Date.now() - secondAt
      assert.isAtLeast(waited, 250)
      assert.isBelow(waited, 1500)
      yield* Effect.sleep("50 millis")
      assert.strictEqual(server.connections(), 0)
    }))

  it.live("verify can refuse by origin with any status and headers; a defect is a 500", () =>
    Effect.gen(function*() {
      const server = yield* serve({
        verify: (info) => {
          if (info.origin === "https://evil.example") {
            return Effect.fail(new ServerHandshake.UpgradeRejected({ status: 403, reason: "Origin not allowed" }))
          }
          if (info.headers["authorization"] === undefined) {
            return Effect.fail(
              new ServerHandshake.UpgradeRejected({ status: 401, reason: "Login", headers: { "WWW-Authenticate": "Bearer" } })
            )
          }
          if (info.headers["authorization"] === "boom") return Effect.die(new Error("bug"))
          return Effect.void
        }
      })
      const evil = yield* exchange(server.port, upgradeRequest("/", ["Origin: https://evil.example", "Authorization: x"]))
      assert.strictEqual(statusOf(evil), 403)
      assert.include(evil, "Origin not allowed")
      const anonymous = yield* exchange(server.port, upgradeRequest("/"))
      assert.strictEqual(statusOf(anonymous), 401)
      assert.include(anonymous, "WWW-Authenticate: Bearer")
      assert.strictEqual(statusOf(yield* exchange(server.port, upgradeRequest("/", ["Authorization: boom"]))), 500)
      const ok = yield* rawExchange(server.port, upgradeRequest("/", ["Authorization: ok"]), headEnd)
      assert.strictEqual(statusOf(ok), 101)
    }))

  it.live("the application picks the subprotocol; an unoffered pick is a 500", () =>
    Effect.gen(function*() {
      const server = yield* serve({ selectProtocol: (offered) => offered.find((p) => p.startsWith("chat.")) })
      const response = yield* rawExchange(server.port, upgradeRequest("/", ["Sec-WebSocket-Protocol: x, chat.v2, chat.v1"]), headEnd)
      assert.strictEqual(statusOf(response), 101)
      assert.include(response, "Sec-WebSocket-Protocol: chat.v2\r\n")
      const none = yield* rawExchange(server.port, upgradeRequest("/", ["Sec-WebSocket-Protocol: x"]), headEnd)
      assert.strictEqual(statusOf(none), 101)
      assert.notInclude(none, "Sec-WebSocket-Protocol")
      const bad = yield* serve({ selectProtocol: () => "never-offered" })
      assert.strictEqual(statusOf(yield* exchange(bad.port, upgradeRequest("/", ["Sec-WebSocket-Protocol: x"]))), 500)
    }))

  it.live("negotiates extensions through core's extension API", () =>
    Effect.gen(function*() {
      const factory: Extension.WebSocketExtensionFactory<string, Extension.WebSocketExtension> = {
        key: "x-test",
        rsv1: false,
        rsv2: false,
        rsv3: false,
        install: (answer) => ({
          key: "x-test",
          rsv1: false,
          rsv2: false,
          rsv3: false,
          protocols: [new ExtensionHeader.WebSocketExtensionHeader("x-test")],
          clientNegotiation: (negotiated) => negotiated.some((h) => h.name === "x-test"),
          serverNegotiation: (requested) =>
            requested.some((h) => h.name === "x-test")
              ? [new ExtensionHeader.WebSocketExtensionHeader("x-test", [{ name: "answer", value: answer }])]
              : [],
          processOutgoingMessage: Effect.succeed,
          processIncomingMessage: Effect.succeed
        })
      }
      const extensions = yield* Extension.install(Extension.empty, factory, "42")
      let negotiated: ReadonlyArray<string> = []
      const server = yield* WebSocketServer.make(
        (session, connection) =>
          Effect.andThen(Effect.sync(() => (negotiated = connection.extensions.map((e) => e.key))), session.awaitClose),
        { host: "127.0.0.1", extensions }
      )
      const response = yield* rawExchange(server.port, upgradeRequest("/", ["Sec-WebSocket-Extensions: foo, x-test"]), headEnd)
      assert.strictEqual(statusOf(response), 101)
      assert.include(response, "Sec-WebSocket-Extensions: x-test; answer=42\r\n")
      assert.deepStrictEqual(negotiated, ["x-test"])
      const without = yield* rawExchange(server.port, upgradeRequest("/", ["Sec-WebSocket-Extensions: foo"]), headEnd)
      assert.notInclude(without, "Sec-WebSocket-Extensions")
    }))

  it("validate: the header-count limit comes before RFC checks", () => {
    const request = {
      rawHeaders: Array.from({ length: 10 }, () => ["A", "b"]).flat(),
      method: "GET",
      httpVersion: "1.1",
      headers: {},
      url: "/",
      socket: { remoteAddress: undefined }
    } as unknown as Parameters<typeof ServerHandshake.validate>[0]
    const result = ServerHandshake.validate(request, 4)
    assert.isTrue(Handshake.isHandshakeRejection(result) && result.status === 431)
    const rfc = ServerHandshake.validate(request, 100)
    assert.isTrue(Handshake.isHandshakeRejection(rfc) && rfc.status === 400)
  })
})
