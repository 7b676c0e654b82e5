import { DefaultWebSocketSession } from "@effect-ws/core"
import { type Duration, Effect, type Scope } from "effect"
import * as Net from "node:net"
import type { ConnectionHandler } from "../src/WebSocketServer.ts"

/** A listening TCP server on 127.0.0.1 with an ephemeral port, closed (and its sockets destroyed) with the scope. */
export const listen = (onConnection: (socket: Net.Socket) => void, options: Net.ServerOpts = {}) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: Net.Server; readonly port: number }>((resume) => {
      const sockets = new Set<Net.Socket>()
      const server = Net.createServer(options, (socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        onConnection(socket)
      })
      server.on("close", () => {
        for (const s of sockets) s.destroy()
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as Net.AddressInfo
        resume(Effect.succeed({ server, port: address.port }))
      })
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.emit("close")
      })
  )

/** Connects a raw TCP client; destroyed with the scope. */
export const connectRaw = (port: number, options: Partial<Net.NetConnectOpts> = {}): Effect.Effect<Net.Socket, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Net.Socket, Error>((resume) => {
      const socket = Net.connect({ port, host: "127.0.0.1", ...options } as Net.NetConnectOpts)
      const onError = (error: Error) => resume(Effect.fail(error))
      socket.once("error", onError)
      socket.once("connect", () => {
        socket.off("error", onError)
        socket.on("error", () => {})
        resume(Effect.succeed(socket))
      })
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )

/** A connected pair of TCP sockets over loopback (both `allowHalfOpen`). */
export const socketPair = Effect.gen(function*() {
  let accepted: ((socket: Net.Socket) => void) | undefined
  const pending: Array<Net.Socket> = []
  const { port } = yield* listen((socket) => {
    if (accepted) accepted(socket)
    else pending.push(socket)
  }, { allowHalfOpen: true })
  const client = yield* connectRaw(port, { allowHalfOpen: true })
  const server = yield* Effect.callback<Net.Socket>((resume) => {
    const first = pending.shift()
    if (first) return resume(Effect.succeed(first))
    accepted = (socket) => resume(Effect.succeed(socket))
  })
  return { client, server } as const
})

/** Everything a raw socket receives until it closes or `until(text)` holds; bounded by `timeout`. */
export const readUntil = (
  socket: Net.Socket,
  until: (received: string) => boolean = () => false,
  timeout: Duration.Input = "2 seconds"
): Effect.Effect<string> =>
  Effect.callback<string>((resume) => {
    let received = ""
    const done = () => {
      socket.off("data", onData)
      socket.off("close", done)
      resume(Effect.succeed(received))
    }
    const onData = (b: Buffer) => {
      received += b.toString("latin1")
      if (until(received)) done()
    }
    socket.on("data", onData)
    socket.on("close", done)
  }).pipe(Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.succeed("<timeout>") }))

/** Polls `check` every few ms, at most `times` times; fails the test if it never holds. */
export const eventually = (check: () => boolean, times = 200): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    for (let i = 0; i < times; i++) {
      if (check()) return
      yield* Effect.sleep("5 millis")
    }
    return yield* Effect.fail(new Error("condition never held"))
  })

/** Latin1 bytes of a string. */
export const latin1 = (text: string): Uint8Array => Buffer.from(text, "latin1")

/** A valid upgrade request head for `path`, with extra header lines. */
export const upgradeRequest = (path = "/", extra: ReadonlyArray<string> = [], overrides: Record<string, string | undefined> = {}) => {
  const base: Record<string, string | undefined> = {
    Host: "localhost",
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
    ...overrides
  }
  const lines = Object.entries(base).flatMap(([name, value]) => (value === undefined ? [] : [`${name}: ${value}`]))
  return `GET ${path} HTTP/1.1\r\n${[...lines, ...extra].join("\r\n")}\r\n\r\n`
}

/** Sends raw bytes on a fresh connection and returns what came back until the server closed (or until the head ended, for 101). */
export const rawExchange = (port: number, request: string | Uint8Array, until?: (received: string) => boolean) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* connectRaw(port)
    socket.write(request)
    return yield* readUntil(socket, until)
  }))

/** The status code of an HTTP response text. */
export const statusOf = (response: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? "0")

/** A connection handler that echoes every message (text as text, bytes as bytes) until the session ends. */
export const echo: ConnectionHandler<never, never> = (session) =>
  Effect.gen(function*() {
    while (true) {
      const message = yield* session.receive
      yield* session.send(message._tag === "Text" ? DefaultWebSocketSession.readText(message) : DefaultWebSocketSession.readBytes(message))
    }
  }).pipe(Effect.catch(() => Effect.void))
