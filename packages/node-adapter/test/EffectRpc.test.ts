import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Schema, Stream } from "effect"
import { NetAddress } from "effect/net"
import { Rpc, RpcClient, RpcGroup, RpcSerialization, RpcServer } from "effect/rpc"
import { SocketServer } from "effect/socket"
import * as EffectSocket from "../src/EffectSocket.ts"
import * as EffectSocketServer from "../src/EffectSocketServer.ts"

class Overflow extends Schema.TaggedError<Overflow>()("Overflow", { limit: Schema.Number }) {}

const Rpcs = RpcGroup.make(
  Rpc.make("Add", {
    payload: { a: Schema.Number, b: Schema.Number },
    success: Schema.Number,
    error: Overflow
  }),
  Rpc.make("Count", { payload: { to: Schema.Number }, success: Schema.Number, stream: true })
)

const Handlers = Rpcs.toLayer({
  Add: ({ a, b }) => a + b > 1000 ? Effect.fail(new Overflow({ limit: 1000 })) : Effect.succeed(a + b),
  Count: ({ to }) => Stream.range(1, to)
})

/** The RPC server on our SocketServer (JSON over Text messages), exposing the SocketServer to read its port. */
const ServerLive = (serialization: Layer.Layer<RpcSerialization.RpcSerialization>) =>
  RpcServer.layer(Rpcs).pipe(
    Layer.provide(Handlers),
    Layer.provide(RpcServer.layerProtocolSocketServer),
    Layer.provide(serialization),
    Layer.provideMerge(EffectSocketServer.layer({ host: "127.0.0.1", path: "/rpc", shutdownTimeout: "200 millis" }))
  )

const ClientProtocol = (port: number, serialization: Layer.Layer<RpcSerialization.RpcSerialization>) =>
  RpcClient.layerProtocolSocket({ retryTransientErrors: false }).pipe(
    Layer.provide(EffectSocket.layerWebSocket(`ws://127.0.0.1:${port}/rpc`)),
    Layer.provide(serialization)
  )

const roundTrip = (serialization: Layer.Layer<RpcSerialization.RpcSerialization>) =>
  Effect.gen(function*() {
    const server = Context.get(yield* Layer.build(ServerLive(serialization)), SocketServer.SocketServer)
    assert.isTrue(NetAddress.isInetAddress(server.address))
    const port = (server.address as NetAddress.InetAddress).port
    const protocol = yield* Layer.build(ClientProtocol(port, serialization))
    const client = yield* Effect.provide(RpcClient.make(Rpcs), protocol)

    assert.strictEqual(yield* client.Add({ a: 1, b: 2 }), 3)
    const results = yield* Effect.all([client.Add({ a: 10, b: 20 }), client.Add({ a: 100, b: 200 })], {
      concurrency: "unbounded"
    })
    assert.deepStrictEqual(results, [30, 300])
    const failure = yield* Effect.flip(client.Add({ a: 1000, b: 1 }))
    assert.strictEqual(failure._tag, "Overflow")
    assert.deepStrictEqual(yield* Stream.runCollect(client.Count({ to: 5 })), [1, 2, 3, 4, 5])
  }).pipe(Effect.timeout("10 seconds"))

describe("Effect RPC over effect-ws", () => {
  it.live("RpcClient.layerProtocolSocket ↔ RpcServer.layerProtocolSocketServer, JSON: calls, typed errors, a stream", () =>
    roundTrip(RpcSerialization.layerJson))

  it.live("the same with NDJSON framing", () => roundTrip(RpcSerialization.layerNdjson))
})
