/**
 * `@effect-ws/core`: WebSocket sessions as Effect fibers and queues over an abstract byte
 * `Transport` (raw frames or whole messages, ping/pong, the close handshake, extensions), plus
 * an in-memory transport pair to test handlers without a network.
 *
 * @module
 */
/** Queue capacities and overflow policies (`suspend` or `fail`). */
export * as ChannelsConfig from "./ChannelsConfig.ts"
/** The message-level session: reassembly, UTF-8, ping/pong, close handshake, extensions. */
export * as DefaultWebSocketSession from "./DefaultWebSocketSession.ts"
/** Every tagged error of the package. */
export * as Errors from "./Errors.ts"
/** The extension API (factories, configs, per-message hooks, RSV-bit conflicts). */
export * as Extension from "./Extension.ts"
/** The frame-level session: frames as they are. */
export * as RawWebSocket from "./RawWebSocket.ts"
/** Schema-typed JSON send/receive. */
export * as Serialization from "./Serialization.ts"
/** The in-memory transport pair (test kit). */
export * as TestTransport from "./TestTransport.ts"
/** The byte channel interface a session runs over. */
export * as Transport from "./Transport.ts"
/** The reader fiber's state and loop. */
export * as WebSocketReader from "./WebSocketReader.ts"
/** The writer fiber's state and loop. */
export * as WebSocketWriter from "./WebSocketWriter.ts"
