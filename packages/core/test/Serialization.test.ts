import { assert, describe, it } from "@effect/vitest"
import { Frame } from "@effect-ws/codec"
import { Effect, Exit, Schema, Scope } from "effect"
import * as DefaultWebSocketSession from "../src/DefaultWebSocketSession.ts"
import * as RawWebSocket from "../src/RawWebSocket.ts"
import * as Serialization from "../src/Serialization.ts"
import * as TestTransport from "../src/TestTransport.ts"
import { TestPeer, text, utf8 } from "./helpers.ts"

const Point = Schema.Struct({ x: Schema.Number, y: Schema.Number })

const setup = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const [ours, theirs] = yield* TestTransport.makePair()
  const raw = yield* RawWebSocket.make(ours, { role: "server" }).pipe(Scope.provide(scope))
  const session = yield* DefaultWebSocketSession.make(raw).pipe(Scope.provide(scope))
  return { session, peer: new TestPeer(theirs, "client"), close: Scope.close(scope, Exit.void) }
})

describe("Serialization (Schema JSON)", () => {
  it.effect("sendSerialized writes JSON text; receiveDeserialized decodes it", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup
      yield* Serialization.sendSerialized(session, Point, { x: 1, y: 2 })
      assert.deepStrictEqual(JSON.parse(text(yield* peer.next)), { x: 1, y: 2 })
      yield* peer.send(Frame.text('{"x":3,"y":4}'))
      assert.deepStrictEqual(yield* Serialization.receiveDeserialized(session, Point), { x: 3, y: 4 })
      yield* close
    }))

  it.effect("bad JSON, a schema mismatch and a Binary message are DeserializeErrors; the session stays open", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup
      const point = Serialization.json(Point)
      yield* peer.send(Frame.text("{not json"), Frame.text('{"x":"a","y":1}'), Frame.binary(utf8("{}")), Frame.text('{"x":5,"y":6}'))
      for (const frameType of ["Text", "Text", "Binary"]) {
        const error = yield* Effect.flip(point.receive(session))
        assert.deepStrictEqual([error._tag, error._tag === "DeserializeError" && error.frameType], ["DeserializeError", frameType])
      }
      assert.deepStrictEqual(yield* point.receive(session), { x: 5, y: 6 })
      yield* close
    }))

  it.effect("a value the schema cannot encode is a SerializeError; nothing is sent", () =>
    Effect.gen(function*() {
      const { session, peer, close } = yield* setup
      const Positive = Schema.Number.check(Schema.isGreaterThan(0))
      const error = yield* Effect.flip(Serialization.sendSerialized(session, Positive, -1))
      assert.strictEqual(error._tag, "SerializeError")
      yield* session.send("next")
      assert.strictEqual(text(yield* peer.next), "next")
      yield* close
    }))
})
