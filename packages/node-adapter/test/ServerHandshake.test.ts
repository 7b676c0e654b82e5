import { assert, describe, it } from "@effect/vitest"
import { Handshake } from "@effect-ws/codec"
import { ExtensionHeader } from "@effect-ws/codec"
import { Extension } from "@effect-ws/core"
import { Duration, Effect } from "effect"
import * as ServerHandshake from "../src/ServerHandshake.ts"
import * as WebSocketServer from "../src/WebSocketServer.ts"
import {
  clientText,
  connectRaw,
  echo,
  eventually,
  rawExchange,
  readUntil,
  readUntilClose,
  serverText,
  statusOf,
  upgradeRequest
} from "./helpers.ts"

const headEnd = (r: string) => r.includes("\r\n\r\n")

/** A server whose handler just waits for the session to end. */
const serve = (options: WebSocketServer.WebSocketServerOptions = {}) =>
  WebSocketServer.make((session) => Effect.asVoid(session.awaitClose), { host: "127.0.0.1", ...options })

/** Sends `request` on a fresh connection and returns the answer; fails unless the server closes the connection after it. */
const exchange = (port: number, request: string) => rawExchange(port, request)

/** The timers (`Timeout` resources) the process has armed right now. */
const armedTimers = (): number => process.getActiveResourcesInfo().filter((resource) => resource === "Timeout").length

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
        // Fails unless the server closes the connection after its answer.
        const response = yield* exchange(server.port, request).pipe(
          Effect.mapError((error) => new Error(`${name}: ${error.message}`))
        )
        assert.strictEqual(statusOf(response), status, `${name}: ${response}`)
        if (header !== undefined) assert.include(response, header, name)
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

  it.live("H3: a client that never sends, or stops mid-head, is dropped after the handshake timeout; an upgraded one is not", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", handshakeTimeout: "150 millis" })
      const silent = yield* connectRaw(server.port)
      const trickle = yield* connectRaw(server.port)
      trickle.write("GET / HTTP/1.1\r\nHost: x\r\n")
      const start = Date.now()
      // Dropped without an answer (readUntilClose fails if they are still open after 2 s).
      const [a, b] = yield* Effect.all([readUntilClose(silent), readUntilClose(trickle)], { concurrency: 2 })
      const elapsed = Date.now() - start
      assert.strictEqual(a, "")
      assert.strictEqual(b, "")
      assert.isAtLeast(elapsed, 100)
      assert.isBelow(elapsed, 1500)
      // An upgraded connection is not subject to the handshake timeout.
      const ok = yield* connectRaw(server.port)
      ok.write(upgradeRequest("/"))
      assert.strictEqual(statusOf(yield* readUntil(ok, headEnd)), 101)
      // A silent connection accepted after `ok` is dropped at its own deadline, which is later than
      // `ok`'s: once it is gone, the handshake sweep has run past the moment `ok` would have been due.
      assert.strictEqual(yield* readUntilClose(yield* connectRaw(server.port)), "")
      assert.isFalse(ok.destroyed || ok.readableEnded)
      assert.strictEqual(server.sessions(), 1)
      ok.write(clientText("still open"))
      assert.strictEqual(yield* readUntil(ok, (r) => r.length >= 12), serverText("still open"))
    }))

  it.live("H3: an infinite handshake timeout sets no timer (a waiting client costs nothing until it sends)", () =>
    Effect.gen(function*() {
      /** How many more timers the process has once a silent client was accepted, and the client. */
      const timersForASilentClient = (handshakeTimeout: Duration.Input) =>
        Effect.gen(function*() {
          const server = yield* serve({ handshakeTimeout })
          const before = armedTimers()
          const silent = yield* connectRaw(server.port)
          yield* eventually(() => server.connections() === 1) // the server has accepted it
          return { added: armedTimers() - before, silent }
        })
      // The control: with a finite timeout, accepting the client arms the handshake timer.
      const finite = yield* timersForASilentClient("10 seconds")
      assert.strictEqual(finite.added, 1)
      const infinite = yield* timersForASilentClient(Duration.infinity)
      assert.strictEqual(infinite.added, 0)
      infinite.silent.write(upgradeRequest("/"))
      assert.strictEqual(statusOf(yield* readUntil(infinite.silent, headEnd)), 101)
    }))

  it.live("H3: each connection gets the whole handshake timeout from its own accept, however they are staggered", () =>
    Effect.gen(function*() {
      const server = yield* serve({ handshakeTimeout: "300 millis" })
      // The stagger: a silent connection to another server, with a 200 ms handshake timeout, made
      // with `first`: its drop marks 200 ms after `first`'s accept.
      const pacer = yield* serve({ handshakeTimeout: "200 millis" })
      const first = yield* connectRaw(server.port)
      const firstAt = Date.now()
      assert.strictEqual(yield* readUntilClose(yield* connectRaw(pacer.port)), "")
      const second = yield* connectRaw(server.port)
      const secondAt = Date.now()
      assert.isAtLeast(secondAt - firstAt, 150)
      assert.strictEqual(yield* readUntilClose(first), "")
      assert.isAtLeast(Date.now() - firstAt, 250)
      assert.isFalse(second.destroyed || second.readableEnded) // accepted 200 ms later: not due yet
      assert.strictEqual(yield* readUntilClose(second), "")
      const waited = Date.now() - secondAt
      assert.isAtLeast(waited, 250)
      assert.isBelow(waited, 1500)
      yield* eventually(() => server.connections() === 0)
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
