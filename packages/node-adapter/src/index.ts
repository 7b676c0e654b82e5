/**
 * `@effect-ws/node-adapter`: effect-ws on Node. `net`/`tls` sockets as transports, the server
 * handshake on node:http upgrades (standalone server, or routes on `NodeHttpServer`), and the
 * client (`ws://`, `wss://`).
 *
 * @module
 */
/** Sessions as Effect's `Socket` (`effect/socket`); a client `Socket` layer for `RpcClient.layerProtocolSocket`. */
export * as EffectSocket from "./EffectSocket.ts"
/** Effect's `SocketServer` on our `WebSocketServer`, for `RpcServer.layerProtocolSocketServer`. */
export * as EffectSocketServer from "./EffectSocketServer.ts"
export * as NodeTransport from "./NodeTransport.ts"
/** permessage-deflate (RFC 7692) on node:zlib, for `extensions` of servers, routes and clients. */
export * as PerMessageDeflate from "./PerMessageDeflate.ts"
export * as ServerHandshake from "./ServerHandshake.ts"
export * as SessionOptions from "./SessionOptions.ts"
export * as WebSocketClient from "./WebSocketClient.ts"
/** Effect's `Socket.WebSocketConstructor` on our client (a WHATWG-style `WebSocketLike`), for `Socket.makeWebSocket` users. */
export * as WebSocketConstructor from "./WebSocketConstructor.ts"
export * as WebSocketRoute from "./WebSocketRoute.ts"
export * as WebSocketServer from "./WebSocketServer.ts"
