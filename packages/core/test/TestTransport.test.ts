import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import * as TestTransport from "../src/TestTransport.ts"
import { bytes } from "./helpers.ts"

describe("TestTransport", () => {
  it.effect("delivers bytes in order, split into chunks of chunkSize, as copies", () =>
    Effect.gen(function*() {
      const [a, b] = yield* TestTransport.makePair({ chunkSize: 2 })
      const sent = bytes(1, 2, 3, 4, 5)
      yield* a.write([sent, bytes(6)])
      sent[0] = 99
      const chunks: Array<Array<number>> = []
      for (let i = 0; i < 4; i++) chunks.push(Array.from(yield* b.read))
      assert.deepStrictEqual(chunks, [[1, 2], [3, 4], [5], [6]])
      assert.strictEqual(a.bytesWritten(), 6)
    }))

  it.effect("half-close: the peer reads the remaining bytes, then Eof; the other direction stays open", () =>
    Effect.gen(function*() {
      const [a, b] = yield* TestTransport.makePair()
      yield* a.write([bytes(1)])
      yield* a.end
      assert.deepStrictEqual(Array.from(yield* b.read), [1])
      assert.strictEqual((yield* Effect.flip(b.read)).reason, "Eof")
      assert.strictEqual((yield* Effect.flip(a.write([bytes(2)]))).reason, "Ended")
      yield* b.write([bytes(3)])
      assert.deepStrictEqual(Array.from(yield* a.read), [3])
      yield* b.end
      assert.strictEqual((yield* a.ended).reason, "Eof")
      assert.strictEqual((yield* b.ended).reason, "Eof")
    }))

  it.effect("write suspends above the high-water mark until the peer reads (backpressure)", () =>
    Effect.gen(function*() {
      const [a, b] = yield* TestTransport.makePair({ highWaterMark: 4 })
      const writer = yield* Effect.forkChild(a.write([new Uint8Array(10)]))
      yield* Effect.yieldNow
      assert.isUndefined(writer.pollUnsafe())
      assert.strictEqual(a.bufferedOutput(), 10)
      yield* b.read
      yield* Fiber.join(writer)
      assert.strictEqual(a.bufferedOutput(), 0)
    }))

  it.effect("destroy fails a pending reader of the peer with Reset and our own with Destroyed", () =>
    Effect.gen(function*() {
      const [a, b] = yield* TestTransport.makePair()
      const peerRead = yield* Effect.forkChild(Effect.flip(b.read))
      const ownRead = yield* Effect.forkChild(Effect.flip(a.read))
      yield* Effect.yieldNow
      yield* a.destroy
      assert.strictEqual((yield* Fiber.join(peerRead)).reason, "Reset")
      assert.strictEqual((yield* Fiber.join(ownRead)).reason, "Destroyed")
      assert.strictEqual((yield* Effect.flip(b.write([bytes(1)]))).reason, "Reset")
      assert.strictEqual((yield* a.ended).reason, "Destroyed")
      assert.strictEqual((yield* b.ended).reason, "Reset")
    }))

  it.effect("reset discards buffered bytes: both ends fail with Reset", () =>
    Effect.gen(function*() {
      const [a, b] = yield* TestTransport.makePair()
      yield* a.write([bytes(1, 2)])
      yield* b.reset
      assert.strictEqual((yield* Effect.flip(b.read)).reason, "Reset")
      assert.strictEqual((yield* Effect.flip(a.read)).reason, "Reset")
    }))

  it.effect("delay uses the Clock: bytes arrive only after TestClock moves", () =>
    Effect.gen(function*() {
      const [a, b] = yield* TestTransport.makePair({ delay: "100 millis" })
      yield* Effect.forkChild(a.write([bytes(7)]))
      const reader = yield* Effect.forkChild(b.read)
      yield* TestClock.adjust("99 millis")
      assert.isUndefined(reader.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(Array.from(yield* Fiber.join(reader)), [7])
    }))
})
