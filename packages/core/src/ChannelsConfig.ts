/**
 * `ChannelsConfig`: the capacity and overflow policy of a session's `incoming` and `outgoing`
 * queues (Ktor's `WebSocketChannelsConfig`). A full queue either suspends the producer
 * (backpressure) or fails with `ChannelOverflow`; it never drops a frame.
 *
 * @module
 */
import { Effect, Queue } from "effect"
import { ChannelOverflow } from "./Errors.ts"

/** What a producer meets when a bounded queue is full: wait for room, or fail with `ChannelOverflow`. */
export type ChannelOverflowPolicy = "suspend" | "fail"

/** One queue's settings. `capacity` counts frames (or messages); `Infinity` means unbounded. */
export interface ChannelConfig {
  readonly capacity: number
  readonly overflow: ChannelOverflowPolicy
}

/** The settings of both queues of a session. */
export interface ChannelsConfig {
  readonly incoming: ChannelConfig
  readonly outgoing: ChannelConfig
}

/** An unbounded queue (Ktor's default; memory is then bounded only by the peer's and our own pace). */
export const unlimited: ChannelConfig = Object.freeze({ capacity: Number.POSITIVE_INFINITY, overflow: "suspend" })

/** A bounded queue of `capacity` items (an integer ≥ 1, else a `RangeError` is thrown); `overflow` defaults to `"suspend"`. */
export const bounded = (capacity: number, overflow: ChannelOverflowPolicy = "suspend"): ChannelConfig => {
  if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`Invalid queue capacity: ${capacity}`)
  return Object.freeze({ capacity, overflow })
}

/** Both queues unbounded. */
export const UNLIMITED: ChannelsConfig = Object.freeze({ incoming: unlimited, outgoing: unlimited })

/**
 * The default: both queues bounded to 256 items with `"suspend"`, so a fast peer or a slow
 * consumer is met with backpressure instead of unbounded memory (Ktor defaults to unlimited; see KTOR-6993).
 */
export const DEFAULT: ChannelsConfig = Object.freeze({ incoming: bounded(256), outgoing: bounded(256) })

/** Builds a `ChannelsConfig`; missing sides are unbounded. */
export const make = (config: { readonly incoming?: ChannelConfig; readonly outgoing?: ChannelConfig }): ChannelsConfig =>
  Object.freeze({ incoming: config.incoming ?? unlimited, outgoing: config.outgoing ?? unlimited })

/** Creates the queue a config describes. */
export const makeQueue = <A, E = never>(config: ChannelConfig): Effect.Effect<Queue.Queue<A, E>> =>
  Number.isFinite(config.capacity) ? Queue.bounded<A, E>(config.capacity) : Queue.unbounded<A, E>()

/**
 * Offers every item of a batch under the config's policy. Resolves `true` when all were accepted,
 * `false` when the queue is closed (nothing more is accepted). With `"fail"`, a batch that does
 * not fit fails with `ChannelOverflow` and only the items that fit are enqueued.
 */
export const offerAll = <A, E>(
  queue: Queue.Queue<A, E>,
  config: ChannelConfig,
  channel: "incoming" | "outgoing",
  items: ReadonlyArray<A>
): Effect.Effect<boolean, ChannelOverflow> => {
  if (config.overflow === "suspend" || !Number.isFinite(config.capacity)) {
    return Effect.map(Queue.offerAll(queue, items), (rest) => rest.length === 0)
  }
  return Effect.suspend(() => {
    if (queue.state._tag !== "Open") return Effect.succeed(false)
    const rest = Queue.offerAllUnsafe(queue, items)
    return rest.length === 0 ? Effect.succeed(true) : Effect.fail(new ChannelOverflow({ channel, capacity: config.capacity }))
  })
}
