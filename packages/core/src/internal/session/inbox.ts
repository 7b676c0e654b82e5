/**
 * The inbox: the incoming messages of a session between the raw reader's fiber, which offers
 * them (`Session.deliver`), and the application, which takes them (`receive`, `messages`,
 * `consumeEach`, `incoming`). Not a `Queue` while it can avoid one: an array (absent when empty),
 * the first waiting taker in a field (its kind in `flags`), the rest in `Extra`, takers woken from
 * a scheduler task as `Queue` wakes them. The real `Queue` (`ChannelsConfig.makeQueue`, the raw
 * session's `channels.incoming` capacity and overflow policy) appears only when the application
 * first reads `incoming`: the buffered messages and the end move into it and every operation here
 * forwards to it from then on. Backpressure: a full inbox makes `Session.deliver` wait for room
 * (policy `"suspend"`), which holds the raw reader's fiber and so stops reading the transport; or
 * fails the session with 1008 (policy `"fail"`).
 *
 * Also tracks what a held-back failure waits for (the close handshake's "replies before the
 * Close", `CloseHandshake.failAfterDrain`): `DRAINING` while one waits, `BATCH_OUT` while a
 * `consumeEach`/`messages` batch is out.
 *
 * @internal
 * @module
 */
import type * as Arr from "effect/Array"
import { Cause, Context, Effect, Exit, Queue, Scheduler } from "effect"
import * as ChannelsConfig from "../../ChannelsConfig.ts"
import type { Message } from "../../DefaultWebSocketSession.ts"
import type { ConnectionClosed, SessionError } from "../../Errors.ts"
import { dispatchersBy } from "../dispatchers.ts"
import { defineFlags } from "../flags.ts"
import { SessionState } from "./state.ts"

/** One wake-up dispatcher per scheduler, shared by every session's inbox (like the writer's). */
const dispatcherOf = dispatchersBy()

/**
 * What a waiting taker wants: one message (`receive`), every buffered one for `consumeEach` (a
 * normal close is `undefined`), or every buffered one for a `messages` pull (a normal close is `Done`).
 */
export const TAKE_ONE = 0
export const TAKE_EACH = 1
export const TAKE_PULL = 2
export type TakeKind = typeof TAKE_ONE | typeof TAKE_EACH | typeof TAKE_PULL

/** Resumes a fiber waiting in `Inbox.takeEffect`. */
type Resume = (effect: Effect.Effect<any, any>) => void

/** A fiber waiting in `Inbox.takeEffect` behind the first one. */
export interface Taker {
  readonly kind: TakeKind
  readonly resume: Resume
}

/** Bits of `flags` owned by the inbox (see `state.ts` for the whole table). */
const TAKER_KIND = 3 // the two low bits: the `TakeKind` of `taker`
const WAKE_SCHEDULED = 1 << 2
const HAS_QUEUE = 1 << 3
const INBOX_ENDED = 1 << 4
const DRAINING = 1 << 11
const BATCH_OUT = 1 << 12
const ABANDONED = 1 << 15

/**
 * The session's incoming messages (the base class of `Session`, so they cost no object of their
 * own), kept small while idle: an array (absent when empty), the first waiting taker (its kind in
 * `flags`), and the rest in `Extra`: the error that ended the session and any further takers.
 * Takers are woken from a scheduler task (as `Queue` wakes its takers, so messages that arrive
 * together are taken together). `receive` and `messages` take from here. The first read of the
 * session's `incoming` creates the real `Queue` (same capacity), moves the buffered messages and
 * the end into it, and from then on every operation here forwards to that queue.
 */
export abstract class Inbox extends SessionState {
  /** Buffered messages from `head` on (taken slots are cleared); `undefined` when none. */
  private items: Array<Message | undefined> | undefined = undefined
  private head = 0
  /** The first waiting taker (its kind is `flags & TAKER_KIND`); any others are in `Extra.moreTakers`. */
  private taker: Resume | undefined = undefined

  private declare wakeScheduled: boolean
  /** `Extra.realQueue` is set: every operation forwards to it. */
  private declare hasQueue: boolean
  /** `Extra.end` is set. */
  private declare inboxEnded: boolean
  /** A failure is held back until the messages before it were taken (`CloseHandshake.failAfterDrain`). */
  protected declare draining: boolean
  /** Nobody will take messages any more (`abandonInbox`): new ones are dropped. */
  private declare abandoned: boolean
  /**
   * `consumeEach` or a `messages` pull took a batch and has not come back for more yet (`f` may
   * still be running on it, the stream may still be handling the chunk).
   */
  protected declare batchOut: boolean

  /** The capacity and overflow policy of the inbox (the raw session's `channels.incoming`). */
  protected get inboxConfig(): ChannelsConfig.ChannelConfig {
    return this.raw.channels.incoming
  }

  /** The messages as a `Queue` (created, and filled with the buffered messages and the end, on first use). */
  protected get queue(): Queue.Queue<Message, SessionError> {
    if (this.hasQueue) return this.extra!.realQueue!
    const queue = Effect.runSyncWith(this.services)(ChannelsConfig.makeQueue<Message, SessionError>(this.inboxConfig))
    const items = this.items
    if (items !== undefined) Queue.offerAllUnsafe(queue, items.slice(this.head) as Array<Message>)
    this.items = undefined
    this.head = 0
    const extra = this.more
    if (extra.end !== undefined) Queue.failCauseUnsafe(queue, Cause.fail(extra.end))
    extra.realQueue = queue
    this.hasQueue = true
    // Everyone waiting here retries on the queue.
    const taker = this.taker
    const kind = (this.flags & TAKER_KIND) as TakeKind
    const more = extra.moreTakers
    this.taker = undefined
    extra.moreTakers = undefined
    if (taker !== undefined) taker(this.takeEffect(kind))
    if (more !== undefined) for (const t of more) t.resume(this.takeEffect(t.kind))
    this.releaseRoom()
    this.wakeDrainWaiter() // a held-back failure now watches the queue
    return queue
  }

  protected get inboxSize(): number {
    if (this.hasQueue) return Queue.sizeUnsafe(this.extra!.realQueue!)
    return this.items === undefined ? 0 : this.items.length - this.head
  }

  /** Buffers a message if there is room (and the session has not ended); wakes a waiting taker. */
  protected offer(message: Message): boolean {
    if ((this.flags & (HAS_QUEUE | INBOX_ENDED | ABANDONED)) !== 0) {
      if (this.abandoned) return true // dropped: nobody takes
      return this.hasQueue ? Queue.offerUnsafe(this.extra!.realQueue!, message) : false
    }
    const items = this.items
    if (items === undefined) this.items = [message]
    else if (items.length - this.head >= this.inboxConfig.capacity) return false
    else items.push(message)
    if (this.taker !== undefined) this.scheduleWake()
    return true
  }

  /** Waits until a message could be buffered again (or the session ended); the caller then offers again. */
  protected get waitForRoom(): Effect.Effect<void> {
    if (this.hasQueue) return Effect.void
    return Effect.callback<void>((resume) => {
      const wake = (): void => resume(Effect.void)
      const extra = this.more
      ;(extra.roomWaiters ??= []).push(wake)
      return Effect.sync(() => {
        const waiters = extra.roomWaiters
        const i = waiters === undefined ? -1 : waiters.indexOf(wake)
        if (i !== -1) waiters!.splice(i, 1)
      })
    })
  }

  /** Offers a message, waiting for room (policy `"suspend"` on the real queue). */
  protected offerWaiting(message: Message): Effect.Effect<void> {
    return Effect.asVoid(Queue.offer(this.extra!.realQueue!, message))
  }

  /** Whether the real queue exists (`incoming` was read). */
  protected get inboxHasQueue(): boolean {
    return this.hasQueue
  }

  /** Ends the inbox: takers get the buffered messages, then `error`. */
  protected failInbox(error: SessionError): void {
    if (this.hasQueue) {
      Queue.failCauseUnsafe(this.extra!.realQueue!, Cause.fail(error))
      return
    }
    if (this.inboxEnded) return
    this.more.end = error
    this.inboxEnded = true
    if (this.inboxSize === 0) this.wakeTakers() // nothing left to take: fail them now (as `Queue` does)
    else if (this.taker !== undefined) this.scheduleWake()
    this.releaseRoom()
  }

  /** Takes one message (`TAKE_ONE`), or every buffered one, waiting for at least one. */
  protected takeEffect(kind: typeof TAKE_ONE): Effect.Effect<Message, SessionError>
  protected takeEffect(
    kind: typeof TAKE_EACH
  ): Effect.Effect<Arr.NonEmptyArray<Message> | undefined, Exclude<SessionError, ConnectionClosed>>
  protected takeEffect(
    kind: typeof TAKE_PULL
  ): Effect.Effect<Arr.NonEmptyArray<Message>, Exclude<SessionError, ConnectionClosed> | Cause.Done>
  protected takeEffect(kind: TakeKind): Effect.Effect<any, any>
  protected takeEffect(kind: TakeKind): Effect.Effect<any, any> {
    return Effect.suspend(() => {
      if ((this.flags & (BATCH_OUT | DRAINING)) !== 0) this.takerReturned(kind)
      if (this.hasQueue) {
        const queue = this.extra!.realQueue!
        if (kind === TAKE_ONE) {
          return Effect.map(Queue.take(queue), (message) => {
            if (this.draining) this.wakeDrainWaiter()
            return message
          })
        }
        const all = Effect.map(Queue.takeAll(queue), (batch) => {
          this.batchOut = true
          return batch
        })
        return Effect.catchTag(all, "ConnectionClosed", () => kind === TAKE_EACH ? Effect.undefined : Cause.done())
      }
      return this.poll(kind) ?? Effect.callback<unknown, unknown>((resume) => {
        if (this.taker === undefined) {
          this.taker = resume
          this.flags = (this.flags & ~TAKER_KIND) | kind
        } else {
          ;(this.more.moreTakers ??= []).push({ kind, resume })
        }
        return Effect.sync(() => this.removeTaker(resume))
      })
    })
  }

  /** What a take gets right now, or `undefined` when it must wait. */
  private poll(kind: TakeKind): Exit.Exit<unknown, unknown> | undefined {
    const items = this.items
    if (items !== undefined) {
      let taken: Message | Arr.NonEmptyArray<Message>
      if (kind === TAKE_ONE) {
        taken = items[this.head]!
        items[this.head++] = undefined
        if (this.head === items.length) {
          this.items = undefined
          this.head = 0
        } else if (this.head >= 64 && this.head * 2 >= items.length) {
          items.splice(0, this.head) // a taker that keeps up one at a time: drop the taken slots
          this.head = 0
        }
      } else {
        taken = (this.head === 0 ? items : items.slice(this.head)) as unknown as Arr.NonEmptyArray<Message>
        this.items = undefined
        this.head = 0
        this.flags |= BATCH_OUT
      }
      this.releaseRoom()
      // Resumes a held-back failure's wait, which yields before it acts: the taker gets this first.
      if ((this.flags & DRAINING) !== 0) this.wakeDrainWaiter()
      return Exit.succeed(taken)
    }
    if (!this.inboxEnded) return undefined
    const end = this.extra!.end!
    if (end._tag !== "ConnectionClosed" || kind === TAKE_ONE) return Exit.fail(end)
    return kind === TAKE_EACH ? Exit.void : Exit.fail(Cause.Done())
  }

  /**
   * A taker is back (`takeEffect` runs again): `consumeEach` completed `f` on every message of its
   * last batch, a `messages` consumer handled its last chunk, a `receive` caller its last message.
   */
  private takerReturned(kind: TakeKind): void {
    if (kind !== TAKE_ONE) this.flags &= ~BATCH_OUT
    if ((this.flags & DRAINING) !== 0) this.wakeDrainWaiter()
  }

  /** Resumes the wait of a held-back failure (it checks again whether the earlier messages were taken). */
  protected wakeDrainWaiter(): void {
    const extra = this.extra
    const waiter = extra?.drainWaiter
    if (waiter === undefined) return
    extra!.drainWaiter = undefined
    waiter()
  }

  /**
   * The application's handler (`run`) ended: nobody will take messages any more. The buffered
   * ones are dropped and later ones are not kept, so that a reader waiting for room in a full
   * inbox reads on, to the peer's Close or the end of the input, instead of holding the session
   * (and its messages) until the close timeout.
   */
  protected get abandonInbox(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.abandoned = true
      return Effect.andThen(this.dropBuffered, Effect.sync(() => this.wakeDrainWaiter()))
    })
  }

  /** Drops the buffered messages (a held-back failure waited `closeTimeout` for them in vain). */
  protected get dropBuffered(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.hasQueue) return Effect.ignore(Queue.clear(this.extra!.realQueue!))
      this.items = undefined
      this.head = 0
      this.releaseRoom()
      return Effect.void
    })
  }

  private removeTaker(resume: Resume): void {
    const more = this.extra?.moreTakers
    if (this.taker === resume) {
      const next = more === undefined ? undefined : more.shift()
      this.taker = next?.resume
      if (next !== undefined) this.flags = (this.flags & ~TAKER_KIND) | next.kind
      if (more !== undefined && more.length === 0) this.extra!.moreTakers = undefined
      return
    }
    const i = more === undefined ? -1 : more.findIndex((t) => t.resume === resume)
    if (i !== -1) more!.splice(i, 1)
  }

  private scheduleWake(): void {
    if (this.wakeScheduled) return
    this.wakeScheduled = true
    const bound = this.bound
    dispatcherOf(Context.get(this.services, Scheduler.Scheduler)).scheduleTask(bound.wakeTask ??= () => {
      this.wakeScheduled = false
      this.wakeTakers()
    }, 0)
  }

  /** Resumes waiting takers in order while there is something for them. */
  private wakeTakers(): void {
    while (this.taker !== undefined && !this.hasQueue) {
      const taker = this.taker
      const result = this.poll((this.flags & TAKER_KIND) as TakeKind)
      if (result === undefined) return
      this.removeTaker(taker)
      taker(result)
    }
  }

  private releaseRoom(): void {
    const waiters = this.extra?.roomWaiters
    if (waiters === undefined || waiters.length === 0) return
    this.extra!.roomWaiters = undefined
    for (const wake of waiters) wake()
  }
}

defineFlags(Inbox.prototype, {
  wakeScheduled: WAKE_SCHEDULED,
  hasQueue: HAS_QUEUE,
  inboxEnded: INBOX_ENDED,
  draining: DRAINING,
  batchOut: BATCH_OUT,
  abandoned: ABANDONED
})
