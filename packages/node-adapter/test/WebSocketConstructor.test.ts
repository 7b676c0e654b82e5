import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Layer, Schema, Scope } from "effect"
import { NetAddress } from "effect/net"
import { Rpc, RpcClient, RpcGroup, RpcSerialization, RpcServer } from "effect/rpc"
import { Socket, SocketServer } from "effect/socket"
import * as EffectSocketServer from "../src/EffectSocketServer.ts"
import * as WebSocketConstructor from "../src/WebSocketConstructor.ts"

const portOf = (server: SocketServer.SocketServer["Service"]): number => {
  assert.isTrue(NetAddress.isInetAddress(server.address))
  return (server.address as NetAddress.InetAddress).port
}

/** Greets, echoes the first two messages, then closes with 4001 "bye". */
const greetEchoClose = (socket: Socket.Socket): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const writer = yield* socket.writer
    yield* writer.write("welcome")
    const { pull } = yield* socket.reader
    let echoed = 0
    for (let i = 0; i < 10 && echoed < 2; i++) {
      const batch = yield* pull
      echoed += batch.length
      yield* writer.writeAll(batch)
    }
    yield* writer.write(new Socket.CloseEvent(4001, "bye"))
  }).pipe(Effect.ignore)

const serve = Effect.gen(function*() {
  const server = yield* EffectSocketServer.make({ host: "127.0.0.1", shutdownTimeout: "200 millis" })
  yield* Effect.forkScoped(server.run(greetEchoClose), { startImmediately: true })
  return portOf(server)
})

const Rpcs = RpcGroup.make(Rpc.make("Add", { payload: { a: Schema.Number, b: Schema.Number }, success: Schema.Number }))

describe("WebSocketConstructor", () => {
  it.live("Socket.makeWebSocket over our constructor: round trip, binary as bytes, close code mapped", () =>
    Effect.gen(function*() {
      const port = yield* serve
      const constructor = yield* Layer.build(WebSocketConstructor.layer())
      const socket = yield* Effect.provide(Socket.makeWebSocket(`ws://127.0.0.1:${port}/`), constructor)
      const writer = yield* socket.writer
      const { pull } = yield* socket.reader
      assert.deepStrictEqual(yield* pull, ["welcome"])
      yield* writer.writeAll(["hello", new Uint8Array([7, 8])])
      const received: Array<string | Uint8Array> = []
      for (let i = 0; i < 10 && received.length < 2; i++) received.push(...(yield* pull))
      assert.strictEqual(received[0], "hello")
      assert.instanceOf(received[1], Uint8Array)
      assert.deepStrictEqual(Array.from(received[1] as Uint8Array), [7, 8])
      const error = yield* Effect.flip(pull)
      assert.strictEqual(error.reason._tag, "SocketCloseError")
      assert.strictEqual((error.reason as Socket.SocketCloseError).code, 4001)
      assert.strictEqual((error.reason as Socket.SocketCloseError).closeReason, "bye")
    }).pipe(Effect.timeout("5 seconds")))

  it.live("WHATWG behaviour: send while connecting throws, invalid close codes throw, a refused connection fires error then close 1006", () =>
    Effect.gen(function*() {
      const free = yield* Effect.scoped(Effect.map(EffectSocketServer.make({ host: "127.0.0.1" }), portOf))
      const make = yield* WebSocketConstructor.make()
      const ws = make(`ws://127.0.0.1:${free}/`)
      assert.strictEqual(ws.readyState, 0)
      assert.throws(() => ws.send("too early"), /connecting/)
      assert.throws(() => ws.close(1006), /Invalid close code/)
      const events: Array<string> = []
      const closed = yield* Deferred.make<number>()
      ws.addEventListener("error", () => events.push("error"))
      ws.addEventListener("close", (event) => {
        events.push("close")
        Deferred.doneUnsafe(closed, Effect.succeed(event.code ?? -1))
      })
      assert.strictEqual(yield* Deferred.await(closed), 1006)
      assert.deepStrictEqual(events, ["error", "close"])
      assert.strictEqual(ws.readyState, 3)
    }).pipe(Effect.timeout("5 seconds")))

  it.live("Effect RPC through Socket.layerWebSocket + our constructor", () =>
    Effect.gen(function*() {
      const serverLayer = RpcServer.layer(Rpcs).pipe(
        Layer.provide(Rpcs.toLayer({ Add: ({ a, b }) => Effect.succeed(a + b) })),
        Layer.provide(RpcServer.layerProtocolSocketServer),
        Layer.provide(RpcSerialization.layerJson),
        Layer.provideMerge(EffectSocketServer.layer({ host: "127.0.0.1", shutdownTimeout: "200 millis" }))
      )
      const port = portOf(Context.get(yield* Layer.build(serverLayer), SocketServer.SocketServer))
      const protocol = yield* Layer.build(
        RpcClient.layerProtocolSocket().pipe(
          Layer.provide(Socket.layerWebSocket(`ws://127.0.0.1:${port}/`)),
          Layer.provide(WebSocketConstructor.layer()),
          Layer.provide(RpcSerialization.layerJson)
        )
      )
      const client = yield* Effect.provide(RpcClient.make(Rpcs), protocol)
      assert.strictEqual(yield* client.Add({ a: 20, b: 22 }), 42)
    }).pipe(Effect.timeout("5 seconds")))
})
