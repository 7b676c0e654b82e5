/**
 * Our own implementations under test, started in-process: the demo's `/echo` (the server the
 * demo ships), a second echo server configured to fragment its messages (§10), and the echo
 * client of `scripts/demo/echo-client.ts`, run once per case (a configured variant of the same
 * loop where a case asks for client settings).
 */
import { PerMessageDeflate, WebSocketClient, WebSocketServer } from "@effect-ws/node-adapter"
import { Cause, Context, Effect, Exit, Fiber, Layer, References, Scope } from "effect"
import { HttpServer } from "effect/http"
import { echo } from "../demo/Echo.ts"
import { echoClient } from "../demo/echo-client.ts"
import { demoLayer } from "../demo/server.ts"
import type { ClientConfig, ServerTarget } from "./cases.ts"
import type { ClientOutcome, ClientUnderTest } from "./run.ts"

/** The fragment size of our fragmenting echo server. */
export const FRAGMENT_SIZE = 1300

/** Starts the demo (its `/echo`) and a fragmenting echo server on 127.0.0.1, free ports, logs off; `close` stops both. */
export const startOurServers = async (): Promise<{ readonly target: ServerTarget; readonly close: () => Promise<void> }> => {
  const scope = await Effect.runPromise(Scope.make())
  try {
    const quietLogs = Layer.succeed(References.MinimumLogLevel, "Error")
    const context = await Effect.runPromise(Layer.buildWithScope(demoLayer({ host: "127.0.0.1", port: 0 }).pipe(Layer.provide(quietLogs)), scope))
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag === "UnixPathAddress") throw new Error("expected an IP address")
    const fragmenting = await Effect.runPromise(
      WebSocketServer.make(echo, {
        host: "127.0.0.1",
        port: 0,
        session: { outgoingFragmentSize: FRAGMENT_SIZE },
        extensions: PerMessageDeflate.extensions()
      }).pipe(Scope.provide(scope), Effect.provideService(References.MinimumLogLevel, "Error"))
    )
    return {
      target: {
        url: new URL(`ws://127.0.0.1:${address.port}/echo`),
        fragmenting: { url: new URL(`ws://127.0.0.1:${fragmenting.port}/echo`), size: FRAGMENT_SIZE }
      },
      close: () => Effect.runPromise(Scope.close(scope, Exit.void))
    }
  } catch (e) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw e
  }
}

/** The echo client's loop with settings (the demo's `echoClient` takes none): same connect, same echo, same result. */
const configuredEchoClient = (url: string, config: ClientConfig) =>
  Effect.gen(function*() {
    const { session } = yield* WebSocketClient.connect(url, {
      extensions: PerMessageDeflate.extensions(config.deflate ?? {}),
      ...(config.outgoingFragmentSize === undefined ? {} : { session: { outgoingFragmentSize: config.outgoingFragmentSize } })
    })
    yield* session.consumeEach((message) => session.sendFrame(message))
    return yield* session.awaitClose
  }).pipe(Effect.scoped)

/** Our client under test: one in-process run of the echo client per case. */
export const ourClient: ClientUnderTest = (url, config) => {
  const fiber = Effect.runFork(config === undefined ? echoClient(url) : configuredEchoClient(url, config))
  const outcome = Effect.runPromise(Fiber.await(fiber)).then((exit): ClientOutcome => {
    if (Exit.isSuccess(exit)) return { _tag: "Closed", code: exit.value.code, reason: exit.value.message }
    const error = Cause.squash(exit.cause) as { readonly _tag?: unknown; readonly message?: unknown }
    return {
      _tag: "Failed",
      error: typeof error?._tag === "string" ? error._tag : String(error),
      message: typeof error?.message === "string" ? error.message : ""
    }
  })
  return { outcome, stop: () => void Effect.runFork(Fiber.interrupt(fiber)) }
}
