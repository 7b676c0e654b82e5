/**
 * The consumer program of the package check (`scripts/test/consumer.test.ts`): copied into a
 * project outside the repo that installed the packed tarballs, compiled there with `tsc`, and run
 * on Node 22, Node 24 and Bun. It imports only the published names. A server with
 * permessage-deflate on port 0, then three clients: a text round trip, a compressed binary round
 * trip, and a codec frame through `sendFrame`; each ends with a clean close (1000 on both sides).
 * The compressed round trip goes through a `node:net` relay that records both directions: the
 * message must really be compressed on the wire (RSV1 on its first frame, a fraction of its
 * size). The zlib engine must be the native handle's fast path, or node:zlib's public API when
 * `EFFECT_WS_ZLIB_PUBLIC_API=1` (the check runs the program both ways on each runtime).
 * Prints one JSON line with what it saw and exits 1 when any check fails.
 */
import { CloseReason, Frame } from "@effect-ws/codec"
import { DefaultWebSocketSession } from "@effect-ws/core"
import { PerMessageDeflate, WebSocketClient, WebSocketServer } from "@effect-ws/node-adapter"
import { Effect } from "effect"
import * as Net from "node:net"

type Outcome = { readonly check: string; readonly ok: boolean; readonly detail: string }

const echo = (session: DefaultWebSocketSession.WebSocketSession) =>
  session.consumeEach((message) => session.sendFrame(message))

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i])

/** A TCP relay on 127.0.0.1 to `port` recording what goes up (client to server) and down; closed with the scope. */
const relay = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: Net.Server; readonly port: number; readonly up: Array<Buffer>; readonly down: Array<Buffer> }>(
      (resume) => {
        const up: Array<Buffer> = []
        const down: Array<Buffer> = []
        // Half-open on both legs, a FIN passed on as a FIN: the client half-closes right after its
        // Close, and the server's Close reply must still reach it (a relay that hung up on the
        // client's FIN would drop it, and the client would rightly report 1006).
        const server = Net.createServer({ allowHalfOpen: true }, (client) => {
          const upstream = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
          client.on("end", () => upstream.end())
          upstream.on("end", () => client.end())
          for (const socket of [client, upstream]) {
            socket.on("error", () => {})
            socket.on("close", () => {
              client.destroy()
              upstream.destroy()
            })
          }
          client.on("data", (chunk: Buffer) => {
            up.push(chunk)
            upstream.write(chunk)
          })
          upstream.on("data", (chunk: Buffer) => {
            down.push(chunk)
            client.write(chunk)
          })
        })
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(Effect.succeed({ server, port: typeof address === "object" && address !== null ? address.port : 0, up, down }))
        })
      }
    ),
    ({ server }) => Effect.sync(() => server.close())
  )

/** What one direction carried after the HTTP head: its size, and the first frame's first byte. */
const afterHead = (chunks: ReadonlyArray<Buffer>): { readonly bytes: number; readonly first: number } => {
  const all = Buffer.concat(chunks)
  const head = all.indexOf("\r\n\r\n")
  return head < 0 ? { bytes: 0, first: 0 } : { bytes: all.length - head - 4, first: all[head + 4] ?? 0 }
}

const program = Effect.gen(function*() {
  const server = yield* WebSocketServer.make(echo, {
    host: "127.0.0.1",
    port: 0,
    extensions: PerMessageDeflate.extensions({ compressIfBiggerThan: 64 })
  })
  const url = `ws://127.0.0.1:${server.port}/`
  const outcomes: Array<Outcome> = []

  // A text round trip without extensions, then a clean close.
  yield* Effect.scoped(Effect.gen(function*() {
    const { extensions, session } = yield* WebSocketClient.connect(url)
    yield* session.send("hello from a consumer")
    const reply = yield* session.receive
    const text = reply._tag === "Text" ? DefaultWebSocketSession.readText(reply) : "(binary)"
    yield* session.close()
    const reason = yield* session.awaitClose
    outcomes.push({ check: "text echo", ok: text === "hello from a consumer", detail: text })
    outcomes.push({ check: "no extension unless offered", ok: extensions.length === 0, detail: `${extensions.length}` })
    outcomes.push({ check: "clean close", ok: reason.code === CloseReason.CloseCode.Normal, detail: `${reason.code}` })
  }))

  // A compressible binary message through a negotiated permessage-deflate, via a recording relay.
  yield* Effect.scoped(Effect.gen(function*() {
    const wire = yield* relay(server.port)
    const { extensions, headers, session } = yield* WebSocketClient.connect(`ws://127.0.0.1:${wire.port}/`, {
      extensions: PerMessageDeflate.extensions()
    })
    const payload = new Uint8Array(256 * 1024).map((_, i) => i % 7)
    yield* session.send(payload)
    const reply = yield* session.receive
    // Before the close: the message and its echo only (a Binary frame with RSV1 is 0xc2 when
    // unfragmented, 0x42 when more frames follow).
    for (const [direction, chunks] of [["client to server", wire.up], ["server to client", wire.down]] as const) {
      const { bytes, first } = afterHead(chunks)
      outcomes.push({
        check: `compressed on the wire, ${direction}`,
        ok: (first & 0x40) !== 0 && (first & 0x0f) === 2 && bytes > 0 && bytes < payload.length / 16,
        detail: `${bytes} bytes for ${payload.length}, first byte 0x${first.toString(16)}`
      })
    }
    yield* session.close()
    const reason = yield* session.awaitClose
    const negotiated = String(headers["sec-websocket-extensions"] ?? "")
    outcomes.push({
      check: "permessage-deflate negotiated",
      ok: extensions.length === 1 && negotiated.startsWith("permessage-deflate"),
      detail: negotiated
    })
    outcomes.push({
      check: "compressed echo",
      ok: reply._tag === "Binary" && sameBytes(reply.payload, payload),
      detail: `${reply.payload.length} bytes`
    })
    outcomes.push({ check: "clean close after deflate", ok: reason.code === CloseReason.CloseCode.Normal, detail: `${reason.code}` })
  }))

  // A codec frame sent as it is.
  yield* Effect.scoped(Effect.gen(function*() {
    const { session } = yield* WebSocketClient.connect(url)
    yield* session.sendFrame(Frame.text("a codec frame"))
    const reply = yield* session.receive
    yield* session.close(CloseReason.CloseReason(CloseReason.CloseCode.GoingAway, "bye"))
    const reason = yield* session.awaitClose
    outcomes.push({
      check: "codec frame",
      ok: reply._tag === "Text" && DefaultWebSocketSession.readText(reply) === "a codec frame",
      detail: reply._tag
    })
    outcomes.push({ check: "close code chosen by the client", ok: reason.code === 1001, detail: `${reason.code}` })
  }))
  const expected = process.env["EFFECT_WS_ZLIB_PUBLIC_API"] === "1" ? "public" : "handle"
  const engine = PerMessageDeflate.zlibEngine()
  outcomes.push({ check: "zlib engine", ok: engine === expected, detail: `${engine} (expected ${expected})` })
  return outcomes
}).pipe(Effect.scoped, Effect.timeout("20 seconds"))

const runtime = typeof (globalThis as { Bun?: unknown }).Bun === "object" ? "bun" : "node"
Effect.runPromise(program).then(
  (outcomes) => {
    const failed = outcomes.filter((o) => !o.ok)
    console.log(JSON.stringify({ runtime, version: process.version, outcomes }))
    process.exitCode = failed.length === 0 ? 0 : 1
  },
  (error: unknown) => {
    console.log(JSON.stringify({ runtime, version: process.version, error: String(error) }))
    process.exitCode = 1
  }
)
