/**
 * Schema-typed JSON over a session (Ktor's `sendSerialized` / `receiveDeserialized`, with Effect
 * `Schema`): values are encoded with their schema and sent as Text messages; received Text
 * messages are parsed as JSON and decoded. Bad input is a typed `DeserializeError`, never a crash.
 *
 * @module
 */
import { Effect, Schema } from "effect"
import type { SendError, WebSocketSession } from "./DefaultWebSocketSession.ts"
import { DeserializeError, SerializeError, type SessionError } from "./Errors.ts"

/** Sends and receives values of one schema as JSON Text messages. Build it once per schema and reuse it. */
export interface JsonCodec<S extends Schema.Constraint> {
  /** Encodes `value` as JSON and sends it as a Text message. Fails with `SerializeError` when the schema cannot encode it, or a `SendError`. */
  readonly send: (
    session: WebSocketSession,
    value: S["Type"]
  ) => Effect.Effect<void, SerializeError | SendError, S["EncodingServices"]>
  /**
   * Receives the next message and decodes it. Fails with `DeserializeError` for a Binary message,
   * text that is not JSON, or JSON the schema rejects (the session stays open), or with the
   * `SessionError` that ended the session.
   */
  readonly receive: (
    session: WebSocketSession
  ) => Effect.Effect<S["Type"], DeserializeError | SessionError, S["DecodingServices"]>
}

/** A JSON codec for `schema` (see `JsonCodec`). */
export const json = <S extends Schema.Constraint>(schema: S): JsonCodec<S> => {
  const codec = Schema.fromJsonString(schema)
  const encode = Schema.encodeEffect(codec)
  const decode = Schema.decodeUnknownEffect(codec)
  const textDecoder = new TextDecoder()
  return {
    send: (session, value) =>
      Effect.flatMap(
        Effect.mapError(encode(value), (cause) => new SerializeError({ message: cause.message, cause })),
        (text: string) => session.send(text)
      ),
    receive: (session) =>
      Effect.flatMap(session.receive, (message) => {
        if (message._tag !== "Text") {
          return Effect.fail(
            new DeserializeError({ message: "Expected a Text message, got Binary", frameType: message._tag })
          )
        }
        return Effect.mapError(
          decode(textDecoder.decode(message.payload)),
          (cause) => new DeserializeError({ message: cause.message, frameType: "Text", cause })
        )
      })
  }
}

/** Encodes `value` with `schema` and sends it as a JSON Text message (Ktor's `sendSerialized`); see `JsonCodec.send`. */
export const sendSerialized = <S extends Schema.Constraint>(
  session: WebSocketSession,
  schema: S,
  value: S["Type"]
): Effect.Effect<void, SerializeError | SendError, S["EncodingServices"]> => json(schema).send(session, value)

/** Receives the next message as a value of `schema` (Ktor's `receiveDeserialized`); see `JsonCodec.receive`. */
export const receiveDeserialized = <S extends Schema.Constraint>(
  session: WebSocketSession,
  schema: S
): Effect.Effect<S["Type"], DeserializeError | SessionError, S["DecodingServices"]> => json(schema).receive(session)
