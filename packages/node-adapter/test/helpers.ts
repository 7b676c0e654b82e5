import { Handshake } from "@effect-ws/codec"
import { DefaultWebSocketSession } from "@effect-ws/core"
import { Data, Duration, Effect, type Scope } from "effect"
import * as Net from "node:net"
import type { ConnectionHandler } from "../src/WebSocketServer.ts"

/** The `Sec-WebSocket-Accept` value for the key of a raw upgrade request head. */
export const acceptOf = (request: string): string => Handshake.computeAccept(/Sec-WebSocket-Key: (.*)\r\n/i.exec(request)![1]!)

/**
 * The 101 head a raw test peer answers an upgrade `request` with (`accept` replaces the computed
 * `Sec-WebSocket-Accept`; `extraHeaders` are whole `Name: value\r\n` lines).
 */
export const switchingProtocols = (request: string, options: { readonly accept?: string; readonly extraHeaders?: string } = {}): string =>
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
  `Sec-WebSocket-Accept: ${options.accept ?? acceptOf(request)}\r\n${options.extraHeaders ?? ""}\r\n`

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

/**
 * A raw read did not get what it waited for: `until` never held (timeout, or the peer closed
 * first), or the peer did not close in time. `received` is everything read so far.
 */
export class ReadFailed extends Data.TaggedError("ReadFailed")<{ readonly message: string; readonly received: string }> {}

/** What a failed read got, printable: bytes outside printable ASCII as `\xNN` (`\r`, `\n` as such), cut after 400. */
const shown = (received: string): string => {
  const text = (received.length > 400 ? received.slice(0, 400) : received).replace(/[^\x20-\x7e]/g, (c) =>
    c === "\r" ? "\\r" : c === "\n" ? "\\n" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)
  return `${received.length} bytes: "${text}"${received.length > 400 ? "…" : ""}`
}

/**
 * Reads a raw socket until `done(received)` says so (checked after every chunk) or the socket
 * closes (`closed` says whether that is the expected end); fails with `ReadFailed` after
 * `timeout` or on an unexpected close.
 */
const read = (
  socket: Net.Socket,
  until: ((received: string) => boolean) | undefined,
  timeout: Duration.Input,
  waitingFor: string
): Effect.Effect<string, ReadFailed> =>
  Effect.suspend(() => {
    let received = ""
    const failed = (why: string) =>
      new ReadFailed({ message: `${why} while waiting for ${waitingFor}; received ${shown(received)}`, received })
    return Effect.callback<string, ReadFailed>((resume) => {
      const stop = () => {
        socket.off("data", onData)
        socket.off("close", onClose)
      }
      const onData = (b: Buffer) => {
        received += b.toString("latin1")
        if (until?.(received) === true) {
          stop()
          resume(Effect.succeed(received))
        }
      }
      const onClose = () => {
        stop()
        resume(until === undefined ? Effect.succeed(received) : Effect.fail(failed("the socket closed")))
      }
      if (socket.closed) {
        onClose()
        return
      }
      socket.on("data", onData)
      socket.on("close", onClose)
      return Effect.sync(stop)
    }).pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () => Effect.fail(failed(`nothing more came within ${Duration.format(Duration.fromInputUnsafe(timeout))}`))
      })
    )
  })

/**
 * Everything a raw socket receives until `until(received)` holds (checked after every chunk).
 * Fails with `ReadFailed` (carrying what was received) if the socket closes first or `until`
 * still does not hold after `timeout`.
 */
export const readUntil = (
  socket: Net.Socket,
  until: (received: string) => boolean,
  timeout: Duration.Input = "2 seconds"
): Effect.Effect<string, ReadFailed> => read(socket, until, timeout, "the expected bytes")

/**
 * Everything a raw socket receives until it closes (at once, with nothing, if it has closed
 * already): for a peer expected to close the connection. Fails with `ReadFailed` (carrying what
 * was received) if it is still open after `timeout`.
 */
export const readUntilClose = (socket: Net.Socket, timeout: Duration.Input = "2 seconds"): Effect.Effect<string, ReadFailed> =>
  read(socket, undefined, timeout, "the peer to close the connection")

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

/** A client Text frame (masked, with a zero mask) of a latin1 text under 126 bytes. */
export const clientText = (text: string): Uint8Array => {
  if (text.length > 125) throw new RangeError("clientText: 125 bytes at most")
  return Buffer.concat([Buffer.from([0x81, 0x80 | text.length, 0, 0, 0, 0]), Buffer.from(text, "latin1")])
}

/** The unmasked Text frame a server sends for a latin1 text under 126 bytes, as `readUntil` shows it. */
export const serverText = (text: string): string => `\x81${String.fromCharCode(text.length)}${text}`

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

/**
 * Sends raw bytes on a fresh connection and returns what came back: until `until` holds (e.g. the
 * end of a 101 head) when given, else until the server closed the connection. Fails with
 * `ReadFailed` when that does not happen (see `readUntil`, `readUntilClose`).
 */
export const rawExchange = (port: number, request: string | Uint8Array, until?: (received: string) => boolean) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* connectRaw(port)
    socket.write(request)
    return yield* (until === undefined ? readUntilClose(socket) : readUntil(socket, until))
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
