/**
 * Pings and Pongs (RFC 6455 §5.5.2, §5.5.3): the optional pinger, and how the peer's Pings are
 * answered.
 *
 * The pinger (Ktor's `pinger`): with `pingInterval` set, `make` forks `pinger(interval)` into the
 * session's scope. Every interval it sends a Ping with a fresh 76-byte payload (Ktor's format)
 * through the writer and waits up to `pingTimeout` for the Pong with that payload (`onPong`,
 * called from `Session.onFrames` in the raw reader's fiber, completes `pongArrived`); if none
 * comes it closes with 1011 "Ping timeout". It stops once the session is closing.
 *
 * Pongs (Ktor's `ponger` coroutine and its channel): there is no ponger fiber. `onPing`, in the
 * raw reader's fiber, hands each Ping's payload to the writer's Pong mailbox
 * (`WebSocketWriter.pong`), and the writer fiber sends one Pong per Ping, in order, ahead of the
 * frames of its next batch (in the same write). Backpressure: past `maxPendingPongBytes` of Pongs
 * waiting to be written, `onPing` returns a wait (`WebSocketWriter.awaitPongRoom`) that holds the
 * reader's fiber, so reading stops until the writer handed enough of them over (see
 * `DEFAULT_MAX_PENDING_PONG_BYTES`).
 *
 * @internal
 * @module
 */
import { Frame, Utf8 } from "@effect-ws/codec"
import { Deferred, Duration, Effect, Exit, type Fiber } from "effect"
import { PingTimeout } from "../../Errors.ts"
import { CloseHandshake, PING_TIMEOUT } from "./close.ts"

/** The default `pingTimeout` (15 s). */
const DEFAULT_PING_TIMEOUT = Duration.seconds(15)

/** The default `maxPendingPongBytes` (64 KiB; documented at `DefaultWebSocketSession.DEFAULT_MAX_PENDING_PONG_BYTES`). */
export const DEFAULT_MAX_PENDING_PONG_BYTES = 64 * 1024

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

const hex = (bytes: Uint8Array): string => {
  let s = ""
  for (const b of bytes) s += b.toString(16).padStart(2, "0")
  return s
}

/** Ktor's ping payload: "[ping " + 64 random hex digits + " ping]" (76 bytes). */
const pingPayload = (): Uint8Array => {
  const random = new Uint8Array(32)
  globalThis.crypto.getRandomValues(random)
  return Utf8.encodeUtf8(`[ping ${hex(random)} ping]`)
}

/** The session's layer that answers Pings and runs the optional pinger (see the module notes). */
export abstract class Pinger extends CloseHandshake {
  private get maxPendingPongBytes(): number {
    return this.options.maxPendingPongBytes ?? DEFAULT_MAX_PENDING_PONG_BYTES
  }

  /**
   * Answers a Ping: one Pong per Ping, through the writer's Pong mailbox (the writer copies the
   * payload). Past `maxPendingPongBytes`, returns the wait after which the frames from `next` on
   * are processed: the rest of this chunk and the next chunks wait until the writer handed the
   * Pongs over.
   */
  protected onPing(frame: Frame.Ping, frames: ReadonlyArray<Frame.Frame>, next: number): Effect.Effect<void> | undefined {
    const writer = this.writer
    if (writer.pong(frame.payload) && writer.pendingPongBytes > this.maxPendingPongBytes) {
      return Effect.andThen(
        writer.awaitPongRoom(this.maxPendingPongBytes),
        Effect.suspend(() => this.continueFrom(frames, next))
      )
    }
    return undefined
  }

  protected onPong(payload: Uint8Array): void {
    const extra = this.extra
    const expected = extra?.awaitedPong
    if (expected !== undefined && extra!.pongArrived !== undefined && equalBytes(expected, payload)) {
      extra!.awaitedPong = undefined
      Deferred.doneUnsafe(extra!.pongArrived, Exit.void)
    }
  }

  pinger(interval: Duration.Duration): Effect.Effect<void> {
    const self = this
    const pingTimeout = Duration.fromInputUnsafe(this.options.pingTimeout ?? DEFAULT_PING_TIMEOUT)
    return Effect.gen(function*() {
      while (!self.finished && self.sentFirst === undefined) {
        yield* Effect.sleep(interval)
        if (self.finished || self.sentFirst !== undefined) return
        const payload = pingPayload()
        const arrived = Deferred.makeUnsafe<void>()
        const extra = self.more
        extra.awaitedPong = payload
        extra.pongArrived = arrived
        const answered = yield* Effect.timeoutOption(
          Effect.andThen(self.writer.enqueue(Frame.ping(payload), true), Deferred.await(arrived)),
          pingTimeout
        )
        if (answered._tag === "None") {
          self.fail(new PingTimeout({ timeoutMillis: Duration.toMillis(pingTimeout) }), PING_TIMEOUT)
          yield* self.beginClosing
          return
        }
      }
    }).pipe(Effect.catch(() => Effect.void))
  }

  startPinger(fiber: Fiber.Fiber<void>): void {
    this.more.pingerFiber = fiber
    this.addFiber(fiber)
  }

  /** Processes the frames from `start` on (`Session.onFrames`), as an effect. */
  protected abstract continueFrom(frames: ReadonlyArray<Frame.Frame>, start: number): Effect.Effect<void>
}
