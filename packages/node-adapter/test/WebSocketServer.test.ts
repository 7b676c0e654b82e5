import { assert, describe, it } from "@effect/vitest"
import { ChannelsConfig, DefaultWebSocketSession } from "@effect-ws/core"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as Fs from "node:fs"
import * as DiagnosticsChannel from "node:diagnostics_channel"
import type * as Net from "node:net"
import * as Tls from "node:tls"
import { type ClientOptions as WsClientOptions, WebSocket as WsClient } from "ws"
import * as WebSocketClient from "../src/WebSocketClient.ts"
import * as WebSocketServer from "../src/WebSocketServer.ts"
import { connectRaw, echo, eventually, readUntil, readUntilClose, upgradeRequest } from "./helpers.ts"

/** Opens a `ws` client and collects what it receives; resolves once open. */
const wsClient = (url: string, protocols: ReadonlyArray<string> = [], options: WsClientOptions = {}) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly ws: WsClient; readonly received: Array<string>; readonly closed: Promise<readonly [number, string]> }, Error>((resume) => {
      const ws = new WsClient(url, [...protocols], options)
      const received: Array<string> = []
      const closed = new Promise<readonly [number, string]>((r) => ws.on("close", (code, reason) => r([code, reason.toString()])))
      ws.on("message", (data, isBinary) => received.push(isBinary ? `bin:${Buffer.from(data as Buffer).toString("hex")}` : data.toString()))
      ws.once("open", () => resume(Effect.succeed({ ws, received, closed })))
      ws.once("error", (e) => resume(Effect.fail(e)))
    }),
    ({ ws }) => Effect.sync(() => ws.terminate())
  )

/** A TLS connection to `localhost` on `port` trusting `ca`, once its TLS handshake completed (destroyed with the scope). */
const connectTls = (port: number, ca: string | Buffer) =>
  Effect.acquireRelease(
    Effect.callback<Tls.TLSSocket, Error>((resume) => {
      const socket = Tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca })
      socket.once("secureConnect", () => {
        socket.on("error", () => {})
        resume(Effect.succeed(socket))
      })
      socket.once("error", (error) => resume(Effect.fail(error)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
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

  it.live("H12: a peer that stops reading makes send suspend; what the server holds for it stays within the outgoing queue's capacity", () =>
    Effect.gen(function*() {
      const capacity = 4
      const payloadSize = 64 * 1024
      const frameSize = payloadSize + 10 // a server's Binary frame: 2 header bytes, a 64-bit length, no mask
      const wanted = 1000 // 64 MB, each message a fresh buffer
      // The server side of the connection, as node:net publishes every accepted socket.
      const accepted: Array<Net.Socket> = []
      const onAccepted = (message: unknown) => accepted.push((message as { readonly socket: Net.Socket }).socket)
      DiagnosticsChannel.subscribe("net.server.socket", onAccepted)
      yield* Effect.addFinalizer(() => Effect.sync(() => DiagnosticsChannel.unsubscribe("net.server.socket", onAccepted)))
      let client: Net.Socket | undefined = undefined
      let socket: Net.Socket | undefined = undefined
      let written = 0 // what the server's socket had been given before the first message (the 101 response)
      let sent = 0
      let maxHeld = 0
      /**
       * The bytes the server holds for the connection: every message `send` accepted, as frames,
       * minus what the socket has handed to the kernel (bytesWritten counts what it buffers too).
       * That is the frames in the session's outgoing queue plus the socket's buffer.
       */
      const held = () => written + sent * frameSize - (socket!.bytesWritten - socket!.writableLength)
      const server = yield* WebSocketServer.make(
        (session) =>
          Effect.gen(function*() {
            socket = accepted.find((s) => s.remotePort === client?.localPort)
            assert.isDefined(socket)
            written = socket!.bytesWritten
            for (let i = 0; i < wanted; i++) {
              yield* session.send(new Uint8Array(payloadSize))
              sent++
              maxHeld = Math.max(maxHeld, held())
            }
          }).pipe(Effect.ignore),
        { host: "127.0.0.1", session: { channels: ChannelsConfig.make({ outgoing: ChannelsConfig.bounded(capacity) }) } }
      )
      client = yield* connectRaw(server.port)
      client.write(upgradeRequest("/"))
      yield* Effect.promise(() => new Promise((r) => client!.once("data", r)))
      client.pause() // never reads again
      // Stalled: the kernel's buffers are full, the socket waits for a drain that never comes, and
      // the handler's send waits for room in the queue. Nothing observable announces it: it is the
      // state where `sent` and what the kernel took stop changing.
      let previous = ""
      let still = 0
      yield* eventually(() => {
        const now = `${sent} ${socket?.bytesWritten} ${socket?.writableLength}`
        still = socket !== undefined && socket.writableNeedDrain && now === previous ? still + 1 : 0
        previous = now
        return still >= 4
      }, 1000)
      // At every send and now: at most the queue's capacity in frames, plus what the socket may
      // buffer beyond them before it asks to wait (its high-water mark).
      const bound = capacity * frameSize + socket!.writableHighWaterMark
      assert.isAtMost(maxHeld, bound, `the server held ${maxHeld} bytes after a send`)
      assert.isAtMost(held(), bound)
      // The handler is waiting in `send` because the queue is full (not for anything else).
      assert.isBelow(sent, wanted, "send never suspended")
      assert.isAtLeast(held(), (capacity - 1) * frameSize)
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

const fixture = (name: string) => Fs.readFileSync(new URL(`./fixtures/${name}`, import.meta.url))
/** The fixture certificate (for `localhost`) and its key; clients trust it as their CA. */
const tls = { cert: fixture("localhost.crt"), key: fixture("localhost.key") }
const ca = tls.cert

/** Resolves when the socket has closed (at once if it already has). */
const closedPromise = (socket: Net.Socket) =>
  new Promise<void>((resolve) => (socket.closed ? resolve() : socket.once("close", () => resolve())))

/** Waits at most `timeout` for the socket to close: true if it did. */
const awaitClosed = (socket: Net.Socket, timeout: "2 seconds" | "5 seconds" = "2 seconds") =>
  Effect.promise(() => closedPromise(socket)).pipe(
    Effect.as(true),
    Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.succeed(false) })
  )

describe("WebSocketServer, wss:// (tls)", () => {
  it.live("our client and our TLS server: text and binary echoed, closes 1000, no socket left", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", path: "/echo", tls })
      const scope = yield* Scope.make()
      const { session } = yield* WebSocketClient.connect(`wss://localhost:${server.port}/echo`, { tls: { ca } }).pipe(
        Scope.provide(scope)
      )
      yield* session.send("secure hello")
      yield* session.send(new Uint8Array([0xca, 0xfe, 0x00, 0xff]))
      yield* session.send("z".repeat(100_000))
      const text = (message: DefaultWebSocketSession.Message) =>
        message._tag === "Text"
          ? DefaultWebSocketSession.readText(message)
          : `bin:${Buffer.from(DefaultWebSocketSession.readBytes(message)).toString("hex")}`
      assert.strictEqual(text(yield* session.receive), "secure hello")
      assert.strictEqual(text(yield* session.receive), "bin:cafe00ff")
      assert.strictEqual(text(yield* session.receive), "z".repeat(100_000))
      assert.strictEqual(server.sessions(), 1)
      assert.strictEqual(server.connections(), 1)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual((yield* session.awaitClose).code, 1000)
      yield* eventually(() => server.sessions() === 0 && server.connections() === 0)
    }))

  it.live("the `ws` client against our TLS server: text and binary echoed; a plain ws:// request gets no HTTP answer", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", tls })
      const { ws, received, closed } = yield* wsClient(`wss://localhost:${server.port}/`, [], { ca })
      ws.send("hello over tls")
      ws.send(Buffer.from([1, 2, 3]))
      yield* eventually(() => received.length === 2)
      assert.deepStrictEqual(received, ["hello over tls", "bin:010203"])
      ws.close(1000, "bye")
      assert.strictEqual((yield* Effect.promise(() => closed))[0], 1000)
      yield* eventually(() => server.sessions() === 0 && server.connections() === 0)
      // Plaintext on the TLS port fails the TLS handshake: the socket is destroyed, never answered in HTTP.
      const reply = yield* Effect.scoped(Effect.gen(function*() {
        const socket = yield* connectRaw(server.port)
        socket.write(upgradeRequest("/"))
        return yield* readUntilClose(socket)
      }))
      assert.notInclude(reply, "HTTP/1.1")
      yield* eventually(() => server.connections() === 0)
    }))

  it.live("a TCP client that never starts TLS, and one that completes TLS but never sends its request, are destroyed at handshakeTimeout", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", tls, handshakeTimeout: "250 millis" })
      // Never sends a byte: the server is waiting for its ClientHello.
      const start = Date.now()
      const silent = yield* connectRaw(server.port)
      yield* eventually(() => server.connections() === 1) // counted from the TCP accept, before any TLS
      assert.isTrue(yield* awaitClosed(silent))
      const silentAfter = Date.now() - start
      assert.isAtLeast(silentAfter, 200)
      assert.isBelow(silentAfter, 1500)
      yield* eventually(() => server.connections() === 0)
      // Completes TLS, then sends nothing: the same deadline, from the TCP accept, covers both phases.
      const securedStart = Date.now()
      const secured = yield* connectTls(server.port, ca)
      assert.strictEqual(server.connections(), 1)
      assert.isTrue(yield* awaitClosed(secured))
      const securedAfter = Date.now() - securedStart
      assert.isAtLeast(securedAfter, 200)
      assert.isBelow(securedAfter, 1500)
      yield* eventually(() => server.connections() === 0)
    }))

  it.live("closing the scope: Close 1001 to a session over TLS, a socket mid-TLS-handshake destroyed, no socket left", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* WebSocketServer.make(echo, { host: "127.0.0.1", tls, shutdownTimeout: "2 seconds" }).pipe(
        Scope.provide(scope)
      )
      const client = yield* wsClient(`wss://localhost:${server.port}/`, [], { ca })
      // Connected, never starts TLS; the 10 s handshakeTimeout is far away.
      const stuck = yield* connectRaw(server.port)
      yield* eventually(() => server.sessions() === 1 && server.connections() === 2)
      const start = Date.now()
      yield* Scope.close(scope, Exit.void)
      assert.isBelow(Date.now() - start, 1500)
      const [code, reason] = yield* Effect.promise(() => client.closed).pipe(Effect.timeout("2 seconds"))
      assert.strictEqual(code, 1001)
      assert.strictEqual(reason, "Server shutting down")
      assert.isTrue(yield* awaitClosed(stuck))
      assert.strictEqual(server.connections(), 0)
      assert.strictEqual(server.sessions(), 0)
    }))

  it.live("half-close over TLS as over TCP: a FIN without Close ends with 1006; a Close then FIN at once is still answered", () =>
    Effect.gen(function*() {
      const reasons: Array<number> = []
      const server = yield* WebSocketServer.make(
        (session) => Effect.andThen(session.awaitClose, (reason) => Effect.sync(() => reasons.push(reason.code))),
        { host: "127.0.0.1", tls }
      )
      const upgraded = Effect.gen(function*() {
        const socket = yield* connectTls(server.port, ca)
        socket.write(upgradeRequest("/"))
        const head = yield* readUntil(socket, (received) => received.includes("\r\n\r\n"))
        assert.include(head, "HTTP/1.1 101")
        yield* eventually(() => server.sessions() === 1)
        return socket
      })
      const fin = yield* upgraded
      fin.end()
      yield* eventually(() => reasons.length === 1 && server.sessions() === 0 && server.connections() === 0)
      assert.isTrue(yield* awaitClosed(fin))
      // Close 1000 (masked, zero mask) and the FIN in one go: the server's output stays open for its Close.
      const closing = yield* upgraded
      closing.end(Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]))
      const reply = yield* readUntilClose(closing)
      assert.strictEqual(reply, "\x88\x02\x03\xe8")
      yield* eventually(() => reasons.length === 2 && server.sessions() === 0 && server.connections() === 0)
      assert.deepStrictEqual(reasons, [1006, 1000])
    }))

  it.live("fails with WebSocketServerError on a bad certificate or key", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(WebSocketServer.make(echo, { host: "127.0.0.1", tls: { cert: "not a certificate", key: "not a key" } }))
      assert.strictEqual(error._tag, "WebSocketServerError")
    }))
})
