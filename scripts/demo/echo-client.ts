/**
 * `npm run echo-client -- <ws://… | wss://…>`: connects with our client and sends every message
 * back exactly as received (text as text, binary as binary) until the peer closes. Exits 0 after
 * a clean close (the close handshake completed with 1000, 1001 or no status code), 1 otherwise
 * (a failed connection, a protocol error, an abnormal closure, any other close code), and 2 on a
 * usage error. One line on stderr says how it ended.
 */
import { NodeRuntime } from "@effect/platform-node"
import { PerMessageDeflate, WebSocketClient } from "@effect-ws/node-adapter"
import { Effect } from "effect"

/** Close codes that count as a clean end. */
const CLEAN = new Set([1000, 1001, 1005])

/** Echoes until the session ends (offering permessage-deflate); succeeds with the close reason, fails with how it went wrong. */
export const echoClient = (url: string) =>
  Effect.gen(function*() {
    const { session } = yield* WebSocketClient.connect(url, { extensions: PerMessageDeflate.extensions() })
    yield* session.consumeEach((message) => session.sendFrame(message))
    return yield* session.awaitClose
  }).pipe(Effect.scoped)

if (import.meta.main) {
  const url = process.argv[2]
  if (url === undefined || !/^wss?:\/\//.test(url)) {
    console.error("usage: npm run echo-client -- <ws://host:port/path | wss://…>")
    process.exit(2)
  }
  NodeRuntime.runMain(
    echoClient(url).pipe(
      Effect.matchEffect({
        onSuccess: (reason) =>
          Effect.sync(() => {
            console.error(`closed ${reason.code}${reason.message === "" ? "" : ` "${reason.message}"`}`)
            process.exitCode = CLEAN.has(reason.code) ? 0 : 1
          }),
        onFailure: (error) =>
          Effect.sync(() => {
            console.error(`failed: ${error._tag}: ${error.message}`)
            process.exitCode = 1
          })
      })
    ),
    { disableErrorReporting: true }
  )
}
