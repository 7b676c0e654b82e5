import { assert, describe, it } from "@effect/vitest"
import { CloseReason, Frame, FrameParser } from "@effect-ws/codec"
import { Context, Effect, Exit, Fiber, Queue, Scheduler, Scope } from "effect"
import * as ChannelsConfig from "../src/ChannelsConfig.ts"
import * as TestTransport from "../src/TestTransport.ts"
import { WebSocketReader } from "../src/WebSocketReader.ts"
import { WebSocketWriter } from "../src/WebSocketWriter.ts"
import { TestPeer, text, utf8 } from "./helpers.ts"

const noClose = { sendClose: (_: CloseReason.CloseReason) => true }

/** A server-side reader over one end of a pair (polling or not), not started yet. */
const setupReader = (poll: boolean) =>
  Effect.gen(function*() {
    const [ours, theirs] = yield* TestTransport.makePair({ poll })
    const services = yield* Effect.context<never>()
    const reader = new WebSocketReader(
      ours,
      new FrameParser.FrameParser({ role: "server" }),
      ChannelsConfig.unlimited,
      noClose,
      services
    )
    return { reader, ours, peer: new TestPeer(theirs, "client") }
  })

describe("WebSocketReader", () => {
  it.effect("over a polling transport, starts no fiber until input arrives, then delivers it in order", () =>
    Effect.gen(function*() {
      const { reader, peer } = yield* setupReader(true)
      yield* reader.start
      assert.isUndefined(reader.currentFiber) // idle: nothing polled, no fiber
      yield* peer.send(Frame.text("a"), Frame.text("b"))
      yield* peer.send(Frame.text("c"))
      const frames = yield* Queue.takeN(reader.incoming, 3)
      assert.deepStrictEqual(frames.map(text), ["a", "b", "c"])
      assert.isUndefined(reader.currentFiber) // back to idle
    }).pipe(Effect.scoped))

  it.effect("handles input that is already there when it starts (with and without poll)", () =>
    Effect.gen(function*() {
      for (const poll of [true, false]) {
        const { reader, peer } = yield* setupReader(poll)
        yield* peer.send(Frame.text("early"), Frame.close(CloseReason.CloseReason(1000)))
        yield* reader.start
        const frames = yield* Queue.collect(reader.incoming)
        assert.deepStrictEqual(frames.map((f) => f._tag), ["Text", "Close"], `poll ${poll}`)
        assert.isTrue(reader.closeReceived)
      }
    }).pipe(Effect.scoped))

  it.effect("ends the queue with AbnormalClosure when input ends at start, and completes done", () =>
    Effect.gen(function*() {
      const { reader, peer } = yield* setupReader(true)
      yield* peer.transport.end
      yield* reader.start
      const exit = yield* Effect.exit(Queue.take(reader.incoming))
      assert.isTrue(Exit.isFailure(exit))
      yield* reader.done
      assert.strictEqual(reader.inputEnd?.reason, "Eof")
    }).pipe(Effect.scoped))

  it.effect("done completes on shutdown, whether awaited before or after", () =>
    Effect.gen(function*() {
      const { reader } = yield* setupReader(true)
      const scope = yield* Scope.make()
      yield* reader.start.pipe(Scope.provide(scope))
      const before = yield* Effect.forkChild(reader.done, { startImmediately: true })
      yield* Effect.yieldNow
      assert.isUndefined(before.pollUnsafe(), "done while the reader still runs")
      yield* Scope.close(scope, Exit.void)
      yield* Effect.yieldNow // the waiting fiber resumes
      assert.deepStrictEqual(before.pollUnsafe(), Exit.void, "awaited before the shutdown")
      const after = yield* Effect.forkChild(reader.done, { startImmediately: true })
      assert.deepStrictEqual(after.pollUnsafe(), Exit.void, "awaited after the shutdown: at once")
    }).pipe(Effect.scoped))
})

describe("WebSocketWriter", () => {
  it.effect("writes frames sent before start once started, in order; done completes after shutdown", () =>
    Effect.gen(function*() {
      const [ours, theirs] = yield* TestTransport.makePair()
      const peer = new TestPeer(theirs, "client")
      const writer = new WebSocketWriter(ours, false, ChannelsConfig.unlimited)
      yield* writer.enqueue(Frame.text("1"))
      yield* writer.enqueue(Frame.text("2"))
      const scope = yield* Scope.make()
      yield* writer.start.pipe(Scope.provide(scope))
      yield* writer.flush
      assert.strictEqual(text(yield* peer.next), "1")
      assert.strictEqual(text(yield* peer.next), "2")
      assert.isUndefined(writer.currentFiber) // idle again
      const waiting = yield* Effect.forkChild(writer.done)
      yield* Effect.yieldNow
      yield* Scope.close(scope, Exit.void)
      yield* Fiber.join(waiting)
      yield* writer.done
      const exit = yield* Effect.exit(writer.enqueue(Frame.text("late")))
      assert.isTrue(Exit.isFailure(exit))
    }))

  it.effect("schedules nothing while the mailbox is empty", () =>
    Effect.gen(function*() {
      const [ours] = yield* TestTransport.makePair()
      const writer = new WebSocketWriter(ours, false, ChannelsConfig.unlimited)
      // A scheduler of its own, whose dispatcher counts the tasks the writer schedules.
      const base = yield* Effect.service(Scheduler.Scheduler)
      const inner = base.makeDispatcher()
      let tasks = 0
      const counting: Scheduler.Scheduler = {
        executionMode: base.executionMode,
        shouldYield: (fiber) => base.shouldYield(fiber),
        makeDispatcher: () => ({
          scheduleTask: (task, priority) => {
            tasks++
            inner.scheduleTask(task, priority)
          },
          flush: () => inner.flush()
        })
      }
      const services = Context.add(yield* Effect.context<never>(), Scheduler.Scheduler, counting)
      writer.startWith(services)
      yield* Effect.sleep(0)
      assert.strictEqual(tasks, 0)
      assert.isUndefined(writer.currentFiber)
      assert.strictEqual(ours.bytesWritten(), 0)
      assert.isTrue(writer.tryEnqueue(Frame.ping(utf8("p"))))
      assert.isTrue(writer.tryEnqueue(Frame.ping(utf8("q"))))
      assert.strictEqual(tasks, 1) // one writer start for both frames
      yield* writer.flush
      assert.isTrue(ours.bytesWritten() > 0)
      const after = tasks
      yield* Effect.sleep(0)
      assert.strictEqual(tasks, after) // nothing scheduled once the mailbox is empty again
      yield* writer.shutdown()
    }))
})
