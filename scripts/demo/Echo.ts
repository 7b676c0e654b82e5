/**
 * The demo's `/echo` endpoint: every message goes back exactly as it arrived (text as text,
 * binary as binary) until the peer closes; the session answers Pings and the Close itself.
 */
import type { WebSocketSession } from "@effect-ws/core/DefaultWebSocketSession"

/** Echoes every message of `session` until it ends. Fails with the session's send errors, or how it ended if not normally. */
export const echo = (session: WebSocketSession) => session.consumeEach((message) => session.sendFrame(message))
