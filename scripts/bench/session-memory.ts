/**
 * `npx node --expose-gc --conditions=@effect-ws/source scripts/bench/session-memory.ts [N]`: retained heap per idle server
 * session, ours next to `ws`, in one process.
 *
 * Method (heapUsed after a full GC at each step, so only what the connections retain counts):
 * - ours: N in-memory transport pairs (`TestTransport`), each with a client `RawWebSocket` on one
 *   end (step 0); then a server `RawWebSocket` on the other end of every pair (step 1); then a
 *   `DefaultWebSocketSession` on top of each server raw session (step 2). Per session:
 *   raw = (1 − 0) / N, default = (2 − 1) / N, total = (2 − 0) / N.
 * - ws: N `stream.duplexPair()`s (step 0), then a server-side `ws` `WebSocket` attached to one end
 *   of each (`setSocket`, as `WebSocketServer` does after the upgrade; step 1): (1 − 0) / N.
 * Both sides count what the library allocates per connection on top of a byte pipe it was given,
 * not the pipe itself (our TestTransport and Node's Duplex are not comparable).
 *
 * Every session is idle: nothing is sent, every fiber is suspended. N defaults to 5000.
 */
import { DefaultWebSocketSession, RawWebSocket, TestTransport } from "@effect-ws/core"
import { Effect, Exit, Scope } from "effect"
import { duplexPair } from "node:stream"
import * as wsModule from "ws"

const N = Number(process.argv[2] ?? 5000)

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) {
  console.error("run with: npx node --expose-gc --conditions=@effect-ws/source scripts/bench/session-memory.ts")
  process.exit(1)
}

/** heapUsed after repeated full GCs (bounded) and a macrotask turn, so pending fibers settle first. */
const settledHeap = async (): Promise<number> => {
  await new Promise((resolve) => setTimeout(resolve, 20))
  let last = Number.POSITIVE_INFINITY
  for (let i = 0; i < 6; i++) {
    gc()
    const used = process.memoryUsage().heapUsed
    if (Math.abs(last - used) < 1024) return used
    last = used
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return last
}

const kb = (bytes: number): string => `${(bytes / 1024).toFixed(2)} KB`

const measureOurs = async () => {
  const scope = Effect.runSync(Scope.make())
  const pairs = await Effect.runPromise(
    Effect.forEach(Array.from({ length: N }), () => TestTransport.makePair())
  )
  await Effect.runPromise(
    Effect.forEach(pairs, ([, client]) => RawWebSocket.make(client, { role: "client" }), { discard: true }).pipe(
      Scope.provide(scope)
    )
  )
  const h0 = await settledHeap()
  const raws = await Effect.runPromise(
    Effect.forEach(pairs, ([server]) => RawWebSocket.make(server, { role: "server" })).pipe(Scope.provide(scope))
  )
  const h1 = await settledHeap()
  const sessions = await Effect.runPromise(
    Effect.forEach(raws, (raw) => DefaultWebSocketSession.make(raw)).pipe(Scope.provide(scope))
  )
  const h2 = await settledHeap()
  const fibers = sessions[0]!.fibers().filter((f) => f.pollUnsafe() === undefined).length
  // Keep everything reachable until measured, then close.
  const kept = [pairs.length, raws.length, sessions.length]
  await Effect.runPromise(Scope.close(scope, Exit.void).pipe(Effect.timeout("5 seconds"), Effect.ignore))
  return { raw: (h1 - h0) / N, session: (h2 - h1) / N, total: (h2 - h0) / N, fibers, kept }
}

interface WsServerSide {
  setSocket(socket: unknown, head: Buffer, options: Record<string, unknown>): void
  terminate(): void
}
const WebSocket = wsModule.WebSocket as unknown as new(address: null, protocols: undefined, options: object) => WsServerSide

const measureWs = async () => {
  const pairs = Array.from({ length: N }, () => duplexPair())
  const h0 = await settledHeap()
  const sockets = pairs.map(([server]) => {
    const ws = new WebSocket(null, undefined, {})
    // The options `WebSocketServer` passes by default.
    ws.setSocket(server, Buffer.alloc(0), {
      allowSynchronousEvents: true,
      maxPayload: 100 * 1024 * 1024,
      skipUTF8Validation: false
    })
    return ws
  })
  const h1 = await settledHeap()
  for (const ws of sockets) ws.terminate()
  return { total: (h1 - h0) / N, kept: pairs.length }
}

const ws = await measureWs()
const ours = await measureOurs()
console.log(`idle server sessions: N = ${N} (node ${process.version})`)
console.log(`ws WebSocket (server side, over a Duplex): ${kb(ws.total)} per connection`)
console.log(`ours RawWebSocket (server):                 ${kb(ours.raw)} per connection`)
console.log(`ours DefaultWebSocketSession on top:        ${kb(ours.session)} per connection`)
console.log(`ours total (raw + default):                 ${kb(ours.total)} per connection, ${ours.fibers} live fibers`)
console.log(`ratio ours / ws: ${(ours.total / ws.total).toFixed(2)}`)
