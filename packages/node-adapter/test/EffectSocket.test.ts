import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { NetAddress } from "effect/net"
import { Socket, type SocketServer } from "effect/socket"
import * as EffectSocket from "../src/EffectSocket.ts"
import * as EffectSocketServer from "../src/EffectSocketServer.ts"
import { clientText, connectRaw, readUntil, serverText, upgradeRequest } from "./helpers.ts"

const portOf = (server: SocketServer.SocketServer["Service"]): number => {
  assert.isTrue(NetAddress.isInetAddress(server.address))
  return (server.address as NetAddress.InetAddress).port
}

/** Starts a server on 127.0.0.1 whose `run` handler is `handler`; returns its port. */
const serve = <E>(handler: (socket: Socket.Socket) => Effect.Effect<void, E, Scope.Scope>, path?: string) =>
  Effect.gen(function*() {
    const server = yield* EffectSocketServer.make({ host: "127.0.0.1", shutdownTimeout: "200 millis", ...(path === undefined ? {} : { path }) })
    yield* Effect.forkScoped(server.run(handler), { startImmediately: true })
    return portOf(server)
  })

/** The reason of a `SocketError`, failing the test when the effect succeeds. */
const socketErrorOf = <A>(effect: Effect.Effect<A, Socket.SocketError>) =>
  Effect.map(Effect.flip(effect), (error) => error.reason)

const closeOf = (reason: Socket.SocketErrorReason) => {
  assert.strictEqual(reason._tag, "SocketCloseError")
  const close = reason as Socket.SocketCloseError
  return { code: close.code, reason: close.closeReason }
}

/** Pulls until `count` chunks arrived (at most 50 pulls). */
const pullN = (pull: Effect.Effect<ReadonlyArray<string | Uint8Array>, Socket.SocketError>, count: number) =>
  Effect.gen(function*() {
    const received: Array<string | Uint8Array> = []
    for (let i = 0; i < 50 && received.length < count; i++) received.push(...(yield* pull))
    return received
  })

/** Server handler: greets, then echoes every batch; records how its reader ended. */
const echo = (ended: Deferred.Deferred<Socket.SocketErrorReason>) => (socket: Socket.Socket) =>
  Effect.gen(function*() {
    const writer = yield* socket.writer
    yield* writer.write("welcome") // before acquiring the reader: the server socket is connected already
    const { pull } = yield* socket.reader
    for (let i = 0; i < 1000; i++) yield* writer.writeAll(yield* pull)
  }).pipe(Effect.catch((error) => Deferred.succeed(ended, error.reason)), Effect.asVoid)

const url = (port: number, path = "/") => `ws://127.0.0.1:${port}${path}`

describe("EffectSocket", () => {
  it.live("round trip both ways: text as string, binary as Uint8Array, server writes first", () =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<Socket.SocketErrorReason>()
      const port = yield* serve(echo(ended))
      const socket = EffectSocket.makeClient(url(port))
      const writer = yield* socket.writer
      const { pull } = yield* socket.reader
      yield* writer.write("hello")
      yield* writer.write(new Uint8Array([1, 2, 3]))
      yield* writer.writeAll(["a", new Uint8Array([])])
      const received = yield* pullN(pull, 5)
      assert.strictEqual(received.length, 5)
      assert.strictEqual(received[0], "welcome")
      assert.strictEqual(received[1], "hello")
      assert.instanceOf(received[2], Uint8Array)
      assert.deepStrictEqual(Array.from(received[2] as Uint8Array), [1, 2, 3])
      assert.strictEqual(received[3], "a")
      assert.instanceOf(received[4], Uint8Array)
      assert.strictEqual((received[4] as Uint8Array).length, 0)
    }).pipe(Effect.timeout("5 seconds")))

  it.live("a CloseEvent written by the server closes with its code and reason; both readers fail with SocketCloseError", () =>
    Effect.gen(function*() {
      const serverEnd = yield* Deferred.make<Socket.SocketErrorReason>()
      const port = yield* serve((socket) =>
        Effect.gen(function*() {
          const writer = yield* socket.writer
          const { pull } = yield* socket.reader
          yield* pull // wait for the client's first message
          yield* writer.write(new Socket.CloseEvent(4001, "bye"))
          return yield* pull
        }).pipe(Effect.catch((error) => Deferred.succeed(serverEnd, error.reason)), Effect.asVoid)
      )
      const socket = EffectSocket.makeClient(url(port))
      const writer = yield* socket.writer
      const { pull } = yield* socket.reader
      yield* writer.write("go")
      const client = closeOf(yield* socketErrorOf(pull))
      assert.deepStrictEqual(client, { code: 4001, reason: "bye" })
      assert.deepStrictEqual(closeOf(yield* Deferred.await(serverEnd)), { code: 4001, reason: "bye" })
      // The session has ended: a later pull fails the same way, writes are dropped like a closed WebSocket's.
      assert.deepStrictEqual(closeOf(yield* socketErrorOf(pull)), { code: 4001, reason: "bye" })
      yield* writer.write("late")
    }).pipe(Effect.timeout("5 seconds")))

  it.live("a CloseEvent written by the client reaches the server's reader; a code-only close has no reason", () =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<Socket.SocketErrorReason>()
      const port = yield* serve(echo(ended))
      const socket = EffectSocket.makeClient(url(port))
      const writer = yield* socket.writer
      const { pull } = yield* socket.reader
      assert.deepStrictEqual(yield* pull, ["welcome"])
      yield* writer.write(new Socket.CloseEvent(4002, "client done"))
      assert.deepStrictEqual(closeOf(yield* Deferred.await(ended)), { code: 4002, reason: "client done" })
      assert.deepStrictEqual(closeOf(yield* socketErrorOf(pull)), { code: 4002, reason: "client done" })

      const ended2 = yield* Deferred.make<Socket.SocketErrorReason>()
      const port2 = yield* serve(echo(ended2))
      const socket2 = EffectSocket.makeClient(url(port2))
      const writer2 = yield* socket2.writer
      yield* socket2.reader
      yield* writer2.write(new Socket.CloseEvent(1000))
      assert.deepStrictEqual(closeOf(yield* Deferred.await(ended2)), { code: 1000, reason: undefined })
    }).pipe(Effect.timeout("5 seconds")))

  it.live("a connection dropped without a Close is SocketCloseError 1006", () =>
    Effect.gen(function*() {
      const port = yield* serve((socket) =>
        Effect.gen(function*() {
          const connection = yield* Effect.serviceOption(EffectSocketServer.SocketConnection)
          assert.strictEqual(connection._tag, "Some")
          if (connection._tag === "Some") {
            assert.strictEqual(connection.value.session.role, "server")
            assert.strictEqual(connection.value.upgrade.info.url, "/drop")
            const { pull } = yield* socket.reader
            yield* pull
            yield* connection.value.session.terminate
          }
        }).pipe(Effect.ignore)
      )
      const socket = EffectSocket.makeClient(url(port, "/drop"))
      const writer = yield* socket.writer
      const { pull } = yield* socket.reader
      yield* writer.write("x")
      const reason = closeOf(yield* socketErrorOf(pull))
      assert.strictEqual(reason.code, 1006)
    }).pipe(Effect.timeout("5 seconds")))

  it.live("a protocol violation by the peer is SocketReadError carrying the session error", () =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<Socket.SocketErrorReason>()
      const port = yield* serve(echo(ended))
      const raw = yield* connectRaw(port)
      raw.write(upgradeRequest("/"))
      assert.match(yield* readUntil(raw, (r) => r.includes("\r\n\r\n")), /^HTTP\/1\.1 101 /)
      raw.write(Buffer.from([0x81, 0x01, 0x41])) // an unmasked client frame: 1002
      const reason = yield* Deferred.await(ended)
      assert.strictEqual(reason._tag, "SocketReadError")
      const cause = (reason as Socket.SocketReadError).cause as { readonly _tag: string; readonly code: number }
      assert.strictEqual(cause._tag, "ProtocolViolation")
      assert.strictEqual(cause.code, 1002)
    }).pipe(Effect.timeout("5 seconds")))

  it.live("client writes before the reader is acquired suspend until it is", () =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<Socket.SocketErrorReason>()
      const port = yield* serve(echo(ended))
      const socket = EffectSocket.makeClient(url(port))
      const writer = yield* socket.writer
      const early = yield* Effect.forkChild(writer.write("early"), { startImmediately: true })
      // Meanwhile another client dials the same server, upgrades and reads its welcome: a whole
      // connection's worth of I/O and scheduler turns, and the write is still waiting.
      const other = EffectSocket.makeClient(url(port))
      assert.deepStrictEqual(yield* Effect.scoped(Effect.flatMap(other.reader, ({ pull }) => pull)), ["welcome"])
      assert.isUndefined(early.pollUnsafe())
      const { pull } = yield* socket.reader
      yield* Fiber.join(early)
      assert.deepStrictEqual(yield* pullN(pull, 2), ["welcome", "early"])
    }).pipe(Effect.timeout("5 seconds")))

  it.live("releasing the reader fails a pull suspended in another fiber (1006) and closes the client session with 1000", () =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<Socket.SocketErrorReason>()
      const port = yield* serve(echo(ended))
      const socket = EffectSocket.makeClient(url(port))
      const scope = yield* Scope.make()
      const { pull } = yield* Scope.provide(socket.reader, scope)
      assert.deepStrictEqual(yield* pull, ["welcome"])
      // Started at once: it runs until the pull suspends, waiting for a message.
      const waiting = yield* Effect.forkChild(socketErrorOf(pull), { startImmediately: true })
      assert.isUndefined(waiting.pollUnsafe())
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(closeOf(yield* Fiber.join(waiting)).code, 1006)
      assert.deepStrictEqual(closeOf(yield* Deferred.await(ended)), { code: 1000, reason: undefined })
      // A new reader acquisition dials again.
      const { pull: pull2 } = yield* socket.reader
      assert.deepStrictEqual(yield* pull2, ["welcome"])
    }).pipe(Effect.timeout("5 seconds")))

  it.live("open failures are SocketOpenError: refused connection, rejected upgrade", () =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<Socket.SocketErrorReason>()
      const port = yield* serve(echo(ended), "/only")
      const rejected = yield* socketErrorOf(Effect.scoped(EffectSocket.makeClient(url(port, "/other")).reader))
      assert.strictEqual(rejected._tag, "SocketOpenError")
      const cause = (rejected as Socket.SocketOpenError).cause as { readonly _tag: string; readonly status: number }
      assert.strictEqual(cause._tag, "WebSocketUpgradeFailed")
      assert.strictEqual(cause.status, 404)

      const free = yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* EffectSocketServer.make({ host: "127.0.0.1" })
        return portOf(server)
      }))
      const refused = yield* socketErrorOf(Effect.scoped(EffectSocket.makeClient(url(free)).reader))
      assert.strictEqual(refused._tag, "SocketOpenError")
      assert.strictEqual((refused as Socket.SocketOpenError).kind, "Unknown")
    }).pipe(Effect.timeout("5 seconds")))

  it.live("a CloseEvent with a code an endpoint may not send is SocketWriteError; a long reason is truncated", () =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<Socket.SocketErrorReason>()
      const port = yield* serve(echo(ended))
      const socket = EffectSocket.makeClient(url(port))
      const writer = yield* socket.writer
      yield* socket.reader
      const invalid = yield* socketErrorOf(writer.write(new Socket.CloseEvent(1006, "no")))
      assert.strictEqual(invalid._tag, "SocketWriteError")
      yield* writer.write(new Socket.CloseEvent(1009, "x".repeat(500)))
      const closed = closeOf(yield* Deferred.await(ended))
      assert.strictEqual(closed.code, 1009)
      assert.strictEqual(closed.reason, "x".repeat(123))
    }).pipe(Effect.timeout("5 seconds")))

  it.live("connections accepted before run wait for it, their messages kept; interrupting run closes their sessions with 1000", () =>
    Effect.gen(function*() {
      const server = yield* EffectSocketServer.make({ host: "127.0.0.1", shutdownTimeout: "200 millis" })
      const raw = yield* connectRaw(portOf(server))
      // The upgrade, a Text "queued", then a Ping: the server's Pong proves its session has read
      // "queued" (it reads in order), all before `run`.
      raw.write(upgradeRequest("/"))
      raw.write(clientText("queued"))
      raw.write(Buffer.from([0x89, 0x81, 0, 0, 0, 0, 0x70])) // Ping "p", masked with a zero mask
      const beforeRun = yield* readUntil(raw, (r) => r.endsWith("\x8a\x01p"))
      assert.match(beforeRun, /^HTTP\/1\.1 101 /)
      assert.isTrue(beforeRun.endsWith("\r\n\r\n\x8a\x01p"), "nothing but the Pong after the 101 head")
      const ended = yield* Deferred.make<Socket.SocketErrorReason>()
      const running = yield* Effect.forkChild(server.run(echo(ended)), { startImmediately: true })
      const expected = serverText("welcome") + serverText("queued")
      assert.strictEqual(yield* readUntil(raw, (r) => r.length >= expected.length), expected)
      yield* Fiber.interrupt(running)
      assert.strictEqual(yield* readUntil(raw, (r) => r.length >= 4), "\x88\x02\x03\xe8") // Close 1000
    }).pipe(Effect.timeout("5 seconds")))
})
