/**
 * `SessionOptions`: how the adapter turns a connected transport into a core session, in one
 * place for the server and the client: a `RawWebSocket` (framing, masking by role, limits) under
 * a `DefaultWebSocketSession` (messages, ping/pong, close handshake).
 *
 * @module
 */
import {
  type ChannelsConfig,
  DefaultWebSocketSession,
  type Errors,
  type Extension,
  RawWebSocket,
  type Transport
} from "@effect-ws/core"
import { Effect, type Scope } from "effect"

/** Session settings shared by the server and the client (see core's `RawWebSocketOptions` and `DefaultWebSocketSessionOptions`). */
export interface SessionOptions extends DefaultWebSocketSession.DefaultWebSocketSessionOptions {
  /** Largest payload of one incoming frame (default 64 MiB, core's default). */
  readonly maxFrameSize?: number
  /** Queue capacities and overflow policies (default: core's `ChannelsConfig.DEFAULT`). */
  readonly channels?: ChannelsConfig.ChannelsConfig
}

/** The options of a session started without any (one shared object: a session keeps its options). */
const NO_OPTIONS: SessionOptions = Object.freeze({})

/**
 * The raw-session options of a session without extensions or settings, one shared object per
 * role. Every raw session here validates text from its first byte (`validateUtf8`): a first chunk
 * that came with the handshake is parsed before the session on top exists, and the session can
 * then leave UTF-8 to the parser (fail fast inside frames) for every message.
 */
const ROLE_ONLY: Record<RawWebSocket.Role, RawWebSocket.RawWebSocketOptions> = {
  server: Object.freeze({ role: "server", validateUtf8: true }),
  client: Object.freeze({ role: "client", validateUtf8: true })
}

/**
 * Starts a message-level session over a transport in the current scope, with the given role and
 * negotiated extensions. Closing the scope sends the session's scope-close reason (1001 for
 * servers, 1000 for clients) and destroys the transport. Fails with `ExtensionConflict` when two
 * negotiated extensions claim the same RSV bit.
 */
export const startSession = (
  transport: Transport.Transport,
  role: RawWebSocket.Role,
  extensions: ReadonlyArray<Extension.WebSocketExtension>,
  options: SessionOptions = NO_OPTIONS
): Effect.Effect<DefaultWebSocketSession.WebSocketSession, Errors.ExtensionConflict, Scope.Scope> =>
  Effect.flatMap(
    RawWebSocket.make(
      transport,
      options.maxFrameSize === undefined && options.channels === undefined
        ? (extensions.length === 0 ? ROLE_ONLY[role] : { role, extensions, validateUtf8: true })
        : {
          role,
          extensions,
          validateUtf8: true,
          ...(options.maxFrameSize === undefined ? {} : { maxFrameSize: options.maxFrameSize }),
          ...(options.channels === undefined ? {} : { channels: options.channels })
        }
    ),
    options === NO_OPTIONS ? makeDefaultSession : (raw) => DefaultWebSocketSession.make(raw, options)
  )

/** `DefaultWebSocketSession.make` without options, as one shared continuation (no closure per session). */
const makeDefaultSession = (
  raw: RawWebSocket.RawWebSocket
): Effect.Effect<DefaultWebSocketSession.WebSocketSession, never, Scope.Scope> => DefaultWebSocketSession.make(raw, NO_OPTIONS)
