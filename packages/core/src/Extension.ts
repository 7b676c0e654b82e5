/**
 * The extension API (Ktor's `WebSocketExtension`, `WebSocketExtensionFactory`,
 * `WebSocketExtensionsConfig`), open to third parties. An extension negotiates through
 * `Sec-WebSocket-Extensions` headers, may claim RSV bits, and transforms whole messages (not
 * fragments), so a compressor such as permessage-deflate sees one message at a time.
 *
 * @module
 */
import type { Frame } from "@effect-ws/codec"
import type { WebSocketExtensionHeader } from "@effect-ws/codec/ExtensionHeader"
import { Effect } from "effect"
import type { ExtensionError, FrameTooBig, ProtocolViolation } from "./Errors.ts"
import { ExtensionConflict, ExtensionNotFound } from "./Errors.ts"

/** A whole message: a Text or Binary frame with `fin` set, its payload the concatenated fragments. */
export type Message = Frame.Text | Frame.Binary

/** The RSV bits an extension claims on the frames it produces. */
export interface RsvBits {
  readonly rsv1: boolean
  readonly rsv2: boolean
  readonly rsv3: boolean
}

/**
 * One negotiated extension on one connection. Incoming messages pass through the installed
 * extensions in negotiated order, outgoing messages in the same order (Ktor's order, §5.7).
 * A hook fails with `ProtocolViolation`/`FrameTooBig` to close with that code, or with
 * `ExtensionError` to close with 1011.
 *
 * The session calls each hook exactly once per message, when it processes that message, in
 * message order, and runs the returned effect right away. A hook may therefore do its work
 * during the call and return the result as `Effect.succeed`/`Effect.fail` (an `Exit`), which
 * the session takes without scheduling anything; work that must wait (a lock, I/O, a long
 * computation in steps) is returned as an ordinary effect.
 *
 * An extension that passes many messages through untouched (a compressor below its threshold)
 * may say so up front with the optional `outgoingUnchanged`/`incomingUnchanged`: the session
 * then skips the hook for a message they accept, and a message every installed extension passes
 * through costs what it costs without extensions. Without them every message goes through both
 * hooks.
 */
export interface WebSocketExtension extends RsvBits {
  /** The factory key this extension was built from (used by `extension(factory)`). */
  readonly key: string
  /** Extension headers a client offers. */
  readonly protocols: ReadonlyArray<WebSocketExtensionHeader>
  /** Client side: given every extension of the server's response, whether this extension is in use. */
  readonly clientNegotiation: (negotiated: ReadonlyArray<WebSocketExtensionHeader>) => boolean
  /** Server side: given the client's offers, the response headers for this extension (empty: not used). */
  readonly serverNegotiation: (
    requested: ReadonlyArray<WebSocketExtensionHeader>
  ) => ReadonlyArray<WebSocketExtensionHeader>
  /** Transforms an outgoing message before it is fragmented and framed. */
  readonly processOutgoingMessage: (message: Message) => Effect.Effect<Message, ExtensionError>
  /** Transforms a reassembled incoming message before it is validated (UTF-8) and delivered. */
  readonly processIncomingMessage: (
    message: Message
  ) => Effect.Effect<Message, ProtocolViolation | FrameTooBig | ExtensionError>
  /**
   * Optional: whether `processOutgoingMessage` would return `message` as it is (for
   * permessage-deflate: a message it would not compress). The session asks at the point in
   * message order where it would call the hook; for `true` it does not call the hook and takes
   * the message unchanged (it still goes out after every message sent before it, and still gets
   * fragmented by `outgoingFragmentSize`). Synchronous, cheap and free of side effects the hook
   * relies on; it must not throw (a throw is a defect of the sender). Leave it out to have every
   * outgoing message go through the hook.
   */
  readonly outgoingUnchanged?: (message: Message) => boolean
  /**
   * Optional: whether `processIncomingMessage` would return `message` as it is (for
   * permessage-deflate: a message without RSV1). For `true` the session does not call the hook
   * and takes the message unchanged; its size and UTF-8 checks stay exactly as without the
   * extension (a message with an RSV bit is re-checked as after any extension). Synchronous,
   * cheap, must not throw (a throw is a defect of the reader). Leave it out to have every
   * incoming message go through the hook.
   */
  readonly incomingUnchanged?: (message: Message) => boolean
  /**
   * Optional: `true` when `processIncomingMessage` never returns a Text message that is not valid
   * UTF-8: it checks the text it produces (permessage-deflate: the inflated bytes, step by step,
   * stopping at the first invalid one) and fails with `ProtocolViolation` (`InvalidUtf8`, 1007)
   * instead. The session then does not check again a message whose last hook was this one's.
   * Leave it out to have the session check every text message an extension transformed.
   */
  readonly validatesIncomingUtf8?: boolean
  /**
   * Optional: called once by the default session, before any message, with its
   * `maxMessageSize`. An extension that expands incoming messages (permessage-deflate inflates
   * them) stops expanding as soon as the output passes that size, and fails with `FrameTooBig`
   * (1009), so the session's limit bounds the memory a small compressed message can claim even
   * when the extension's own limit is larger. Synchronous; must not throw.
   */
  readonly limitIncomingMessageSize?: (bytes: number) => void
}

/** Builds a fresh extension instance per connection from a configuration. `key` identifies the kind. */
export interface WebSocketExtensionFactory<Config, Ext extends WebSocketExtension> extends RsvBits {
  readonly key: string
  /** Creates one extension instance from `config` (called once per connection, through `ExtensionInstaller.build`). */
  readonly install: (config: Config) => Ext
}

/** An installer recorded by `install`: the factory's identity and bits, and how to build one instance. */
export interface ExtensionInstaller extends RsvBits {
  readonly key: string
  /** Creates a fresh extension instance from the factory and config given to `install`. */
  readonly build: () => WebSocketExtension
}

/** The extensions a server or client supports, in preference order; built once per connection. */
export interface WebSocketExtensionsConfig {
  readonly installers: ReadonlyArray<ExtensionInstaller>
}

/** No extensions. */
export const empty: WebSocketExtensionsConfig = Object.freeze({ installers: [] })

const BITS = ["rsv1", "rsv2", "rsv3"] as const

/** Fails with `ExtensionConflict` when two of the given extensions (or installers) claim the same RSV bit. */
export const checkConflicts = (
  items: ReadonlyArray<RsvBits & { readonly key: string }>
): Effect.Effect<void, ExtensionConflict> =>
  Effect.suspend(() => {
    for (const bit of BITS) {
      let owner: string | undefined = undefined
      for (const item of items) {
        if (!item[bit]) continue
        if (owner !== undefined) return Effect.fail(new ExtensionConflict({ bit, first: owner, second: item.key }))
        owner = item.key
      }
    }
    return Effect.void
  })

/**
 * Adds an extension to a config (the config itself is not changed). Fails with
 * `ExtensionConflict` when it claims an RSV bit an installed extension already claims.
 */
export const install = <Config, Ext extends WebSocketExtension>(
  self: WebSocketExtensionsConfig,
  factory: WebSocketExtensionFactory<Config, Ext>,
  config: Config
): Effect.Effect<WebSocketExtensionsConfig, ExtensionConflict> => {
  const installer: ExtensionInstaller = {
    key: factory.key,
    rsv1: factory.rsv1,
    rsv2: factory.rsv2,
    rsv3: factory.rsv3,
    build: () => factory.install(config)
  }
  const installers = [...self.installers, installer]
  return Effect.as(checkConflicts(installers), { installers })
}

/** Fresh extension instances for one connection, in install order. */
export const build = (self: WebSocketExtensionsConfig): Array<WebSocketExtension> =>
  self.installers.map((installer) => installer.build())

/** The RSV bits claimed by a list of extensions (what the frame parser must accept). */
export const claimedBits = (extensions: ReadonlyArray<WebSocketExtension>): RsvBits => ({
  rsv1: extensions.some((e) => e.rsv1),
  rsv2: extensions.some((e) => e.rsv2),
  rsv3: extensions.some((e) => e.rsv3)
})

/** The installed extension built by `factory`, or `undefined` (Ktor's `extensionOrNull`). */
export const findExtension = <Ext extends WebSocketExtension>(
  extensions: ReadonlyArray<WebSocketExtension>,
  factory: WebSocketExtensionFactory<never, Ext>
): Ext | undefined => extensions.find((e) => e.key === factory.key) as Ext | undefined

/** The installed extension built by `factory`; fails with `ExtensionNotFound` if there is none (Ktor's `extension`). */
export const getExtension = <Ext extends WebSocketExtension>(
  extensions: ReadonlyArray<WebSocketExtension>,
  factory: WebSocketExtensionFactory<never, Ext>
): Effect.Effect<Ext, ExtensionNotFound> => {
  const found = findExtension(extensions, factory)
  return found === undefined ? Effect.fail(new ExtensionNotFound({ name: factory.key })) : Effect.succeed(found)
}
