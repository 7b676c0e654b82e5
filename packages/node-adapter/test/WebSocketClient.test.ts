import { assert, describe, it } from "@effect/vitest"
import { type Frame, FrameParser } from "@effect-ws/codec"
import { DefaultWebSocketSession, Errors } from "@effect-ws/core"
import { Cause, Deferred, Effect, Exit, Scope } from "effect"
import * as Fs from "node:fs"
import * as Https from "node:https"
import type * as Net from "node:net"
import { WebSocketServer as WsServer } from "ws"
import * as WebSocketClient from "../src/WebSocketClient.ts"
import * as WebSocketServer from "../src/WebSocketServer.ts"
import { listen, switchingProtocols } from "./helpers.ts"

const fixture = (name: string) => Fs.readFileSync(new URL(`./fixtures/${name}`, import.meta.url))

/** A `ws` echo server (optionally over TLS), closed with the scope; records request headers. */
const wsEchoServer = (secure = false) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly port: number; readonly server: WsServer; readonly requests: Array<Record<string, unknown>>; readonly close: () => void }>((resume) => {
      const requests: Array<Record<string, unknown>> = []
      const https = secure ? Https.createServer({ key: fixture("localhost.key"), cert: fixture("localhost.crt") }) : undefined
      const server = new WsServer({
        ...(https === undefined ? { port: 0, host: "127.0.0.1" } : { server: https }),
        handleProtocols: (protocols) => (protocols.has("b") ? "b" : false)
      })
      server.on("connection", (ws, request) => {
        requests.push({ ...request.headers })
        ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }))
      })
      const close = () => {
        for (const client of server.clients) client.terminate()
        server.close()
        https?.close()
      }
      if (https === undefined) {
        server.on("listening", () => resume(Effect.succeed({ port: (server.address() as Net.AddressInfo).port, server, requests, close })))
      } else {
        https.listen(0, "127.0.0.1", () => resume(Effect.succeed({ port: (https.address() as Net.AddressInfo).port, server, requests, close })))
      }
    }),
    ({ close }) => Effect.sync(close)
  )

const text = (message: DefaultWebSocketSession.Message) =>
  message._tag === "Text" ? DefaultWebSocketSession.readText(message) : `bin:${Buffer.from(message.payload).toString("hex")}`

describe("WebSocketClient", () => {
  it.live("talks to a `ws` server: text, binary, subprotocol, extra headers; closes 1000 with the scope", () =>
    Effect.gen(function*() {
      const ws = yield* wsEchoServer()
      const scope = yield* Scope.make()
      const connection = yield* WebSocketClient.connect(`ws://127.0.0.1:${ws.port}/path?q=1`, {
        protocols: ["a", "b"],
        headers: { Authorization: "Bearer t" },
        origin: "http://example.test"
      }).pipe(Scope.provide(scope))
      assert.strictEqual(connection.protocol, "b")
      const { session } = connection
      yield* session.send("hi")
      yield* session.send(new Uint8Array([0xca, 0xfe]))
      yield* session.send("y".repeat(100_000))
      assert.strictEqual(text(yield* session.receive), "hi")
      assert.strictEqual(text(yield* session.receive), "bin:cafe")
      assert.strictEqual(text(yield* session.receive), "y".repeat(100_000))
      assert.strictEqual(ws.requests[0]?.["authorization"], "Bearer t")
      assert.strictEqual(ws.requests[0]?.["origin"], "http://example.test")
      const closedOnServer = new Promise<number>((resolve) => {
        for (const client of ws.server.clients) client.once("close", (code) => resolve(code))
      })
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* Effect.promise(() => closedOnServer), 1000)
    }))

  it.live("wss:// with a CA and without (certificate rejected → Connect error)", () =>
    Effect.gen(function*() {
      const ws = yield* wsEchoServer(true)
      const { session } = yield* WebSocketClient.connect(`wss://localhost:${ws.port}/`, { tls: { ca: fixture("localhost.crt") } })
      yield* session.send("secure")
      assert.strictEqual(text(yield* session.receive), "secure")
      const untrusted = yield* Effect.flip(WebSocketClient.connect(`wss://localhost:${ws.port}/`))
      assert.strictEqual(untrusted._tag, "WebSocketConnectError")
      assert.strictEqual(untrusted._tag === "WebSocketConnectError" && untrusted.reason, "Connect")
    }))

  it.live("our client against our server: messages both ways and the server's close reason", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(
        (session) =>
          Effect.gen(function*() {
            const message = yield* session.receive
            yield* session.send(`echo:${text(message)}`)
            yield* session.close()
          }).pipe(Effect.orDie),
        { host: "127.0.0.1", selectProtocol: (offered) => offered[0] }
      )
      const { protocol, session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${server.port}/`, { protocols: ["p1"] })
      assert.strictEqual(protocol, "p1")
      yield* session.send("ping")
      assert.strictEqual(text(yield* session.receive), "echo:ping")
      const reason = yield* session.awaitClose
      assert.strictEqual(reason.code, 1000)
    }))

  /** A raw TCP server that answers every connection with `respond(request)`. */
  const rawServer = (respond: (request: string, socket: Net.Socket) => void) =>
    listen((socket) => {
      let received = ""
      socket.on("error", () => {})
      socket.on("data", (chunk) => {
        received += chunk.toString("latin1")
        if (received.includes("\r\n\r\n")) respond(received, socket)
      })
    })


  it.live("bytes right after the 101 head are the session's first bytes", () =>
    Effect.gen(function*() {
      const { port } = yield* rawServer((request, socket) => {
        const frame = Buffer.from([0x81, 0x05, ...Buffer.from("early")])
        socket.write(Buffer.concat([
          Buffer.from(switchingProtocols(request), "latin1"),
          frame
        ]))
      })
      const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}/`)
      assert.strictEqual(text(yield* session.receive), "early")
    }))

  it.live("a message right before a frame with RSV1 is echoed before our Close 1002 (Autobahn 3.x as a client)", () =>
    Effect.gen(function*() {
      // A raw peer: the 101, "Hello, world!" and a frame with RSV1 in one write (as Autobahn's
      // fuzzing server does); then it records the client's frames until its Close, and answers it.
      const received = yield* Deferred.make<ReadonlyArray<Frame.Frame>>()
      const { port } = yield* listen((socket) => {
        let head = ""
        const parser = new FrameParser.FrameParser({ role: "server" })
        const frames: Array<Frame.Frame> = []
        socket.on("error", () => {})
        socket.on("data", (chunk: Buffer) => {
          if (!head.includes("\r\n\r\n")) {
            head += chunk.toString("latin1")
            if (!head.includes("\r\n\r\n")) return
            const hello = Buffer.from("Hello, world!")
            socket.write(Buffer.concat([
              Buffer.from(switchingProtocols(head), "latin1"),
              Buffer.from([0x81, hello.length]), hello, // "Hello, world!"
              Buffer.from([0xc1, hello.length]), hello // the same with RSV1, no extension negotiated
            ]))
            return
          }
          parser.push(chunk, frames)
          if (frames.some((f) => f._tag === "Close")) {
            Deferred.doneUnsafe(received, Exit.succeed(frames.map((f) => ({ ...f, payload: f.payload.slice() }))))
            socket.end(Buffer.from([0x88, 0x02, 0x03, 0xea])) // Close 1002, then EOF
          }
        })
      })
      const { session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}/`)
      const exit = yield* Effect.exit(session.consumeEach((message) => session.sendFrame(message)))
      const frames = yield* Deferred.await(received).pipe(Effect.timeout("2 seconds"))
      assert.deepStrictEqual(
        frames.map((f) => [f._tag, f._tag === "Close" ? (f.payload[0]! << 8) | f.payload[1]! : Buffer.from(f.payload).toString()]),
        [["Text", "Hello, world!"], ["Close", 1002]]
      )
      assert.isTrue(Exit.isFailure(exit) && Cause.squash(exit.cause) instanceof Errors.ProtocolViolation)
      assert.strictEqual((yield* session.awaitClose).code, 1002)
    }))

  it.live("fails with typed errors: HTTP status with headers, wrong accept, unoffered protocol", () =>
    Effect.gen(function*() {
      const { port } = yield* rawServer((request, socket) => {
        const path = /^GET (\S+)/.exec(request)![1]
        if (path === "/forbidden") {
          socket.end("HTTP/1.1 403 Forbidden\r\nX-Why: origin\r\nContent-Length: 0\r\n\r\n")
        } else {
          socket.write(switchingProtocols(request, {
            ...(path === "/wrong-accept" ? { accept: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=" } : {}),
            ...(path === "/protocol" ? { extraHeaders: "Sec-WebSocket-Protocol: other\r\n" } : {})
          }))
        }
      })
      const forbidden = yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${port}/forbidden`))
      assert.strictEqual(forbidden._tag, "WebSocketUpgradeFailed")
      if (forbidden._tag === "WebSocketUpgradeFailed") {
        assert.strictEqual(forbidden.kind, "UnexpectedStatus")
        assert.strictEqual(forbidden.status, 403)
        assert.strictEqual(forbidden.headers["x-why"], "origin")
      }
      const wrong = yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${port}/wrong-accept`))
      assert.strictEqual(wrong._tag === "WebSocketUpgradeFailed" && wrong.kind, "InvalidAccept")
      const protocol = yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${port}/protocol`, { protocols: ["mine"] }))
      assert.strictEqual(protocol._tag === "WebSocketUpgradeFailed" && protocol.kind, "UnofferedProtocol")
    }))

  it.live("fails with WebSocketConnectError for bad URLs, refused connections, silent servers and non-HTTP answers", () =>
    Effect.gen(function*() {
      const reasonOf = (e: { readonly _tag: string }) => (e._tag === "WebSocketConnectError" ? (e as WebSocketClient.WebSocketConnectError).reason : e._tag)
      assert.strictEqual(reasonOf(yield* Effect.flip(WebSocketClient.connect("http://127.0.0.1/"))), "InvalidUrl")
      assert.strictEqual(reasonOf(yield* Effect.flip(WebSocketClient.connect("not a url"))), "InvalidUrl")
      assert.strictEqual(
        reasonOf(yield* Effect.flip(WebSocketClient.connect("ws://127.0.0.1:1/", { headers: { "X-Bad": "a\r\nInjected: 1" } }))),
        "InvalidRequest"
      )
      // A port nobody listens on: take one, then free it.
      const freePort = yield* Effect.scoped(Effect.map(listen(() => {}), ({ port }) => port))
      assert.strictEqual(reasonOf(yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${freePort}/`))), "Connect")
      const silent = yield* rawServer(() => {})
      const start = Date.now()
      assert.strictEqual(
        reasonOf(yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${silent.port}/`, { handshakeTimeout: "100 millis" }))),
        "HandshakeTimeout"
      )
      assert.isBelow(Date.now() - start, 1000)
      const garbage = yield* rawServer((_, socket) => socket.write("SSH-2.0-OpenSSH\r\n\r\n"))
      assert.strictEqual(reasonOf(yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${garbage.port}/`))), "MalformedResponse")
      const hangup = yield* rawServer((_, socket) => socket.destroy())
      assert.strictEqual(reasonOf(yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${hangup.port}/`))), "ConnectionClosed")
    }))
})
