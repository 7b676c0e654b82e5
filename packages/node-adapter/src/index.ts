/**
 * `@effect-ws/node-adapter`: effect-ws on Node. `net`/`tls` sockets as transports, the server
 * handshake on node:http upgrades (standalone server, or routes on `NodeHttpServer`), and the
 * client (`ws://`, `wss://`).
 *
 * @module
 */
export * as NodeTransport from "./NodeTransport.ts"
export * as ServerHandshake from "./ServerHandshake.ts"
export * as SessionOptions from "./SessionOptions.ts"
export * as WebSocketClient from "./WebSocketClient.ts"
export * as WebSocketRoute from "./WebSocketRoute.ts"
export * as WebSocketServer from "./WebSocketServer.ts"
