/**
 * `@effect-ws/codec`: the RFC 6455 / RFC 7692 wire layer, sans-IO. Bytes in, frames out; frames
 * in, bytes out. No sockets, no timers, no Node `Buffer` in the public types.
 *
 * @module
 */
export * as CloseReason from "./CloseReason.ts"
export * as ExtensionHeader from "./ExtensionHeader.ts"
export * as Frame from "./Frame.ts"
export * as FrameParser from "./FrameParser.ts"
export * as FrameType from "./FrameType.ts"
export * as Handshake from "./Handshake.ts"
export * as Mask from "./Mask.ts"
export * as PerMessageDeflateNegotiation from "./PerMessageDeflateNegotiation.ts"
export * as Serializer from "./Serializer.ts"
export * as Utf8 from "./Utf8.ts"
export * as Violation from "./Violation.ts"
