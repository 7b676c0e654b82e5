/**
 * The demo's `/echo` endpoint: every message goes back exactly as it arrived (text as text,
 * binary as binary) until the peer closes; the session answers Pings and the Close itself.
 */
import type { WebSocketSession } from "@effect-ws/core/DefaultWebSocketSession"
import { Stream } from "effect"

/** Echoes every message of `session` until it ends. Fails with the session's send errors. */
export const echo = (session: WebSocketSession) => Stream.runForEach(session.messages, (message) => session.sendFrame(message))
