/**
 * The demo's chat room (`/chat`): every text message a member sends is broadcast to all members
 * as a JSON event, with join/leave notices. The room is a sliding `PubSub`: a member that reads
 * too slowly loses the oldest events instead of stalling everyone else. Binary messages are not
 * part of the protocol and close the connection with 1003 (cannot accept).
 */
import { CloseReason } from "@effect-ws/codec"
import * as DefaultWebSocketSession from "@effect-ws/core/DefaultWebSocketSession"
import { Context, Effect, Layer, PubSub, Ref, Stream } from "effect"

/** What the room broadcasts (sent to browsers as JSON text). */
export type ChatEvent =
  | { readonly type: "join" | "leave"; readonly name: string; readonly members: number }
  | { readonly type: "message"; readonly name: string; readonly text: string }

/** Longest chat line accepted, in characters; longer lines are cut. */
export const MAX_LINE = 2000

/** The shared room: its event hub, member count and name counter. */
export class ChatRoom extends Context.Service<ChatRoom, {
  readonly events: PubSub.PubSub<ChatEvent>
  readonly members: Ref.Ref<number>
  readonly ids: Ref.Ref<number>
}>()("effect-ws/demo/ChatRoom") {
  /** One room per layer, keeping the last 256 events per slow member. */
  static readonly layer = Layer.effect(
    ChatRoom,
    Effect.gen(function*() {
      return ChatRoom.of({
        events: yield* PubSub.sliding<ChatEvent>(256),
        members: yield* Ref.make(0),
        ids: yield* Ref.make(0)
      })
    })
  )
}

const CANNOT_ACCEPT = CloseReason.CloseReason(1003, "This room only accepts text")

/**
 * One member's connection: subscribe, announce, forward every room event to the member, and
 * publish every text message the member sends, until the session ends; then announce the leave.
 */
export const chat = (session: DefaultWebSocketSession.WebSocketSession) =>
  Effect.gen(function*() {
    const room = yield* ChatRoom
    const name = `guest-${yield* Ref.updateAndGet(room.ids, (n) => n + 1)}`
    const subscription = yield* PubSub.subscribe(room.events)
    yield* Stream.fromSubscription(subscription).pipe(
      Stream.runForEach((event) => session.send(JSON.stringify(event))),
      Effect.forkScoped
    )
    const members = yield* Ref.updateAndGet(room.members, (n) => n + 1)
    yield* PubSub.publish(room.events, { type: "join", name, members })
    yield* Stream.runForEach(session.messages, (message) =>
      message._tag === "Binary"
        ? session.close(CANNOT_ACCEPT)
        : PubSub.publish(room.events, {
          type: "message",
          name,
          text: DefaultWebSocketSession.readText(message).slice(0, MAX_LINE)
        })).pipe(
        Effect.ensuring(
          Effect.flatMap(Ref.updateAndGet(room.members, (n) => n - 1), (left) =>
            PubSub.publish(room.events, { type: "leave", name, members: left }))
        )
      )
  }).pipe(Effect.scoped)
