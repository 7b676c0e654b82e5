/**
 * `EffectSocketServer`: Effect's `SocketServer` service (`effect/socket`) backed by our
 * standalone `WebSocketServer`, so `RpcServer.layerProtocolSocketServer` (and anything else
 * written against `SocketServer`) serves WebSocket clients on effect-ws, with no `ws` package.
 *
 * Every accepted connection is handed, as a `Socket` (see `EffectSocket.fromSession`), to the
 * handler of the current `run`. Connections accepted before `run` is called wait for it (while
 * their session is open). The handler runs in `run`'s fiber set, with `run`'s services plus
 * `SocketConnection` and a fresh per-connection `Scope`; when it returns the session closes with
 * 1000, when it fails with 1011 (logged at debug level by the server), and when `run` is
 * interrupted every handler is interrupted and its session closed. Releasing the layer shuts the
 * server down gracefully (Close 1001, bounded by `shutdownTimeout`, see `WebSocketServer`).
 *
 * @module
 */
import type { DefaultWebSocketSession } from "@effect-ws/core"
import { Cause, Context, Effect, Exit, Fiber, FiberSet, Latch, Layer, Result, Scope } from "effect"
import { NetAddress } from "effect/net"
import { type Socket, SocketServer } from "effect/socket"
import * as EffectSocket from "./EffectSocket.ts"
import type * as ServerHandshake from "./ServerHandshake.ts"
import * as WebSocketServer from "./WebSocketServer.ts"

/**
 * The effect-ws connection behind the `Socket` a `run` handler receives (its session and accepted
 * upgrade), provided to every handler. `SocketServer.run`'s type cannot say so, so read it with
 * `Effect.serviceOption(SocketConnection)` (always `Some` inside a handler).
 */
export class SocketConnection extends Context.Service<SocketConnection, {
  /** The server-role session the socket reads from and writes to. */
  readonly session: DefaultWebSocketSession.WebSocketSession
  /** The accepted upgrade: request info, chosen subprotocol, extensions. */
  readonly upgrade: ServerHandshake.AcceptedUpgrade
}>()("@effect-ws/node-adapter/EffectSocketServer/SocketConnection") {}

/** Options of `make` / `layer`: those of `WebSocketServer` (host, port, path, limits, timeouts, `verify`, ...). */
export type EffectSocketServerOptions<R = never> = WebSocketServer.WebSocketServerOptions<R>

type Dispatch = (
  session: DefaultWebSocketSession.WebSocketSession,
  upgrade: ServerHandshake.AcceptedUpgrade
) => Fiber.Fiber<unknown, unknown>

const openError = (cause: unknown): SocketServer.SocketServerError =>
  new SocketServer.SocketServerError({ reason: new SocketServer.SocketServerOpenError({ cause }) })

/**
 * Starts a `WebSocketServer` in the current scope and returns it as a `SocketServer` service
 * (`address` is the bound address, with the actual port when `port` was 0). Fails with
 * `SocketServerError` (reason `SocketServerOpenError`, `cause` the `WebSocketServerError` or
 * address parsing error) when it cannot listen.
 */
export const make = Effect.fnUntraced(function*<RV = never>(
  options: EffectSocketServerOptions<RV> = {}
): Effect.fn.Return<SocketServer.SocketServer["Service"], SocketServer.SocketServerError, RV | Scope.Scope> {
  let dispatch: Dispatch | undefined = undefined
  const registered = Latch.makeUnsafe(false)

  const onConnection: WebSocketServer.ConnectionHandler<unknown, never> = (session, upgrade) =>
    Effect.gen(function*() {
      // Wait for a handler (or for the session to end first).
      yield* Effect.raceFirst(registered.await, session.awaitClose)
      const current = dispatch
      if (current === undefined) return
      const fiber = current(session, upgrade)
      const exit = yield* Effect.onInterrupt(Fiber.await(fiber), () => Fiber.interrupt(fiber))
      if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.failCause(exit.cause)
    })

  const server = yield* Effect.mapError(WebSocketServer.make(onConnection, options), openError)
  const address = NetAddress.inetAddressFromIpString(server.address.address, server.port)
  if (Result.isFailure(address)) return yield* openError(address.failure)

  const run = <R, E, _>(
    handler: (socket: Socket.Socket) => Effect.Effect<_, E, R>
  ): Effect.Effect<never, SocketServer.SocketServerError, R> =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const fibers = yield* Scope.provide(FiberSet.make<unknown, unknown>(), scope)
      const runFork = yield* FiberSet.runtime(fibers)<R>()
      const mine: Dispatch = (session, upgrade) =>
        runFork(
          handler(EffectSocket.fromSession(session)).pipe(
            Effect.scoped,
            Effect.provideService(SocketConnection, { session, upgrade })
          ) as Effect.Effect<unknown, unknown, R>
        )
      dispatch = mine
      registered.openUnsafe()
      return yield* Effect.never.pipe(
        Effect.ensuring(Effect.suspend(() => {
          if (dispatch === mine) {
            dispatch = undefined
            registered.closeUnsafe()
          }
          return Scope.close(scope, Exit.void)
        }))
      )
    })

  return SocketServer.SocketServer.of({ address: address.success, run })
})

/**
 * `SocketServer` as a layer (see `make`): listens when built, shuts down gracefully when
 * released. Fails with `SocketServerError` when it cannot listen.
 */
export const layer = <RV = never>(
  options: EffectSocketServerOptions<RV> = {}
): Layer.Layer<SocketServer.SocketServer, SocketServer.SocketServerError, RV> =>
  Layer.effect(SocketServer.SocketServer, make(options))
