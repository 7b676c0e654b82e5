/**
 * permessage-deflate negotiation (RFC 7692 §7), as pure functions over parsed
 * `Sec-WebSocket-Extensions` elements: the server picks the first acceptable offer and builds its
 * response; the client builds its offer and validates the server's response.
 *
 * The four parameters: `server_no_context_takeover` and `client_no_context_takeover` (no value),
 * `server_max_window_bits` (8..15, value required) and `client_max_window_bits` (value optional
 * in an offer, required in a response). Window values are decimal integers without leading
 * zeros. zlib cannot compress with an 8-bit window, but its output with a 9-bit window never
 * refers further back than 250 bytes (its largest match distance is the window minus 262 bytes
 * of lookahead), so it is a valid stream for a peer that keeps only 256 bytes: a side that agreed
 * to 8 compresses with 9. The server thus accepts `server_max_window_bits=8` (and answers 8), and
 * the client accepts a response that imposes `client_max_window_bits=8`.
 *
 * @module
 */
import { WebSocketExtensionHeader, type ExtensionParameter } from "./ExtensionHeader.ts"

/** The extension name, as it appears in `Sec-WebSocket-Extensions`. */
export const PERMESSAGE_DEFLATE = "permessage-deflate"

/** The smallest LZ77 window (in bits) our compressor (zlib) deflates with; it compresses with this when 8 was agreed. */
export const MIN_DEFLATE_WINDOW_BITS = 9

/** The largest (and default) LZ77 window in bits. */
export const MAX_DEFLATE_WINDOW_BITS = 15

/** The parameters both sides agreed on; window sizes are 8..15 bits, 15 when not negotiated. */
export interface DeflateParameters {
  /** The server resets its compression context after each message. */
  readonly serverNoContextTakeover: boolean
  /** The client resets its compression context after each message. */
  readonly clientNoContextTakeover: boolean
  /** The largest window the server compresses with. */
  readonly serverMaxWindowBits: number
  /** The largest window the client compresses with. */
  readonly clientMaxWindowBits: number
}

/** One parsed client offer. `clientMaxWindowBits` is `true` when the parameter came without a value. */
export interface DeflateOffer {
  readonly serverNoContextTakeover: boolean
  readonly clientNoContextTakeover: boolean
  readonly serverMaxWindowBits: number | undefined
  readonly clientMaxWindowBits: number | true | undefined
}

/** Why an offer or a response is unacceptable. */
export interface DeflateNegotiationError {
  readonly _tag: "DeflateNegotiationError"
  readonly message: string
}

/** Narrows any value to a `DeflateNegotiationError`. */
export const isDeflateNegotiationError = (u: unknown): u is DeflateNegotiationError =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "DeflateNegotiationError"

/**
 * The server's wishes and limits. Window values are clamped to 9..15 (non-integers truncated):
 * we compress with `serverMaxWindowBits`, and we never impose 8 on a client as most clients
 * compress with zlib too (a client that offers `client_max_window_bits=8` itself gets 8).
 */
export interface DeflateServerConfig {
  /** Always reset our compression context per message (and say so in the response). */
  readonly serverNoContextTakeover?: boolean
  /** Require the client to reset its compression context per message. */
  readonly clientNoContextTakeover?: boolean
  /** Compress with at most this window (announced in the response when below 15). */
  readonly serverMaxWindowBits?: number
  /** Limit the client's window; applied only when the offer has `client_max_window_bits` (§7.1.2.2). */
  readonly clientMaxWindowBits?: number
}

/**
 * What the client offers. `serverMaxWindowBits` is clamped to 8..15, `clientMaxWindowBits` to
 * 9..15 (we compress with it; zlib needs ≥ 9); non-integers are truncated.
 */
export interface DeflateClientConfig {
  /** Ask the server to reset its compression context per message (the server must agree). */
  readonly serverNoContextTakeover?: boolean
  /** Announce that we reset our compression context per message. */
  readonly clientNoContextTakeover?: boolean
  /** Ask the server to compress with at most this window (the server must agree). */
  readonly serverMaxWindowBits?: number
  /** Announce that we compress with at most this window; without it we offer the parameter with no value. */
  readonly clientMaxWindowBits?: number
}

/** The outcome of a successful server negotiation: the agreed parameters and the element to answer with. */
export interface DeflateServerAgreement {
  readonly params: DeflateParameters
  readonly response: WebSocketExtensionHeader
}

const SERVER_NO_CONTEXT_TAKEOVER = "server_no_context_takeover"
const CLIENT_NO_CONTEXT_TAKEOVER = "client_no_context_takeover"
const SERVER_MAX_WINDOW_BITS = "server_max_window_bits"
const CLIENT_MAX_WINDOW_BITS = "client_max_window_bits"

const failure = (message: string): DeflateNegotiationError => ({ _tag: "DeflateNegotiationError", message })

const WINDOW_BITS = /^(?:[89]|1[0-5])$/

const clampBits = (bits: number | undefined, min: number): number =>
  bits === undefined || Number.isNaN(bits)
    ? MAX_DEFLATE_WINDOW_BITS
    : Math.min(MAX_DEFLATE_WINDOW_BITS, Math.max(min, Math.trunc(bits)))

/** Parses the parameters of an offer (`client_max_window_bits` value optional) or a response (required). */
const parseParameters = (
  header: WebSocketExtensionHeader,
  kind: "offer" | "response"
): DeflateOffer | DeflateNegotiationError => {
  if (header.name !== PERMESSAGE_DEFLATE) return failure(`expected ${PERMESSAGE_DEFLATE}, got ${header.name}`)
  let serverNoContextTakeover = false
  let clientNoContextTakeover = false
  let serverMaxWindowBits: number | undefined
  let clientMaxWindowBits: number | true | undefined
  const seen = new Set<string>()
  const windowBits = (p: ExtensionParameter): number | DeflateNegotiationError =>
    p.value !== undefined && WINDOW_BITS.test(p.value)
      ? Number(p.value)
      : failure(
        `${p.name} ${p.value === undefined ? "needs a value" : `has invalid value ${JSON.stringify(p.value)}`}: expected an integer 8..15 without leading zeros`
      )
  for (const p of header.parameters) {
    if (seen.has(p.name)) return failure(`duplicate ${PERMESSAGE_DEFLATE} parameter ${p.name} in ${kind}`)
    seen.add(p.name)
    switch (p.name) {
      case SERVER_NO_CONTEXT_TAKEOVER:
      case CLIENT_NO_CONTEXT_TAKEOVER: {
        if (p.value !== undefined) return failure(`${p.name} must not have a value, got ${JSON.stringify(p.value)}`)
        if (p.name === SERVER_NO_CONTEXT_TAKEOVER) serverNoContextTakeover = true
        else clientNoContextTakeover = true
        break
      }
      case SERVER_MAX_WINDOW_BITS: {
        const bits = windowBits(p)
        if (typeof bits !== "number") return bits
        serverMaxWindowBits = bits
        break
      }
      case CLIENT_MAX_WINDOW_BITS: {
        if (p.value === undefined && kind === "offer") {
          clientMaxWindowBits = true
          break
        }
        const bits = windowBits(p)
        if (typeof bits !== "number") return bits
        clientMaxWindowBits = bits
        break
      }
      default:
        return failure(`unknown ${PERMESSAGE_DEFLATE} parameter ${p.name} in ${kind}`)
    }
  }
  return { serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits, clientMaxWindowBits }
}

/**
 * Parses one `permessage-deflate` offer. Fails with a `DeflateNegotiationError` when the element
 * is another extension, or has an unknown or duplicate parameter, a value on a
 * `*_no_context_takeover`, or a window value that is missing (`server_max_window_bits`) or not
 * an integer 8..15 without leading zeros. Such an offer is to be declined, not to fail the handshake.
 */
export const parseDeflateOffer = (header: WebSocketExtensionHeader): DeflateOffer | DeflateNegotiationError =>
  parseParameters(header, "offer")

const param = (name: string, value?: number): ExtensionParameter => ({
  name,
  value: value === undefined ? undefined : String(value)
})

/** Accepts one valid offer under `config`, or declines it (`undefined`). */
const acceptOffer = (offer: DeflateOffer, config: DeflateServerConfig): DeflateServerAgreement | undefined => {
  // §7.1.2.1: the answer must not exceed the requested value (8 included: we then deflate with 9,
  // whose matches reach back at most 250 bytes).
  const serverMaxWindowBits = Math.min(
    clampBits(config.serverMaxWindowBits, MIN_DEFLATE_WINDOW_BITS),
    offer.serverMaxWindowBits ?? MAX_DEFLATE_WINDOW_BITS
  )
  const serverNoContextTakeover = offer.serverNoContextTakeover || config.serverNoContextTakeover === true
  const clientNoContextTakeover = offer.clientNoContextTakeover || config.clientNoContextTakeover === true
  // §7.1.2.2: client_max_window_bits may only be answered when offered.
  const clientMaxWindowBits = offer.clientMaxWindowBits === undefined
    ? MAX_DEFLATE_WINDOW_BITS
    : Math.min(
      clampBits(config.clientMaxWindowBits, MIN_DEFLATE_WINDOW_BITS),
      offer.clientMaxWindowBits === true ? MAX_DEFLATE_WINDOW_BITS : offer.clientMaxWindowBits
    )
  const parameters: Array<ExtensionParameter> = []
  if (serverNoContextTakeover) parameters.push(param(SERVER_NO_CONTEXT_TAKEOVER))
  if (clientNoContextTakeover) parameters.push(param(CLIENT_NO_CONTEXT_TAKEOVER))
  if (offer.serverMaxWindowBits !== undefined || serverMaxWindowBits < MAX_DEFLATE_WINDOW_BITS) {
    parameters.push(param(SERVER_MAX_WINDOW_BITS, serverMaxWindowBits))
  }
  if (clientMaxWindowBits < MAX_DEFLATE_WINDOW_BITS) parameters.push(param(CLIENT_MAX_WINDOW_BITS, clientMaxWindowBits))
  return {
    params: { serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits, clientMaxWindowBits },
    response: new WebSocketExtensionHeader(PERMESSAGE_DEFLATE, parameters)
  }
}

/**
 * Server side of RFC 7692 §7: looks at the `permessage-deflate` elements of the client's header
 * in order (other extensions are skipped) and accepts the first valid one it can honour. An
 * invalid offer (see `parseDeflateOffer`) is declined and the next one tried; `undefined` when none is acceptable (no compression, never
 * a failed handshake). The response carries `server_no_context_takeover` when offered or
 * configured, `client_no_context_takeover` when offered or configured (binding the client),
 * `server_max_window_bits` when offered or below 15, and `client_max_window_bits` only when
 * offered and limited below 15.
 */
export const negotiateDeflateServer = (
  offers: ReadonlyArray<WebSocketExtensionHeader>,
  config: DeflateServerConfig
): DeflateServerAgreement | undefined => {
  for (const header of offers) {
    if (header.name !== PERMESSAGE_DEFLATE) continue
    const offer = parseDeflateOffer(header)
    if (isDeflateNegotiationError(offer)) continue
    const agreement = acceptOffer(offer, config)
    if (agreement !== undefined) return agreement
  }
  return undefined
}

const offeredServerBits = (config: DeflateClientConfig): number | undefined =>
  config.serverMaxWindowBits === undefined ? undefined : clampBits(config.serverMaxWindowBits, 8)

const offeredClientBits = (config: DeflateClientConfig): number | undefined =>
  config.clientMaxWindowBits === undefined ? undefined : clampBits(config.clientMaxWindowBits, MIN_DEFLATE_WINDOW_BITS)

/**
 * Client side: the `permessage-deflate` element to offer. Always includes
 * `client_max_window_bits` (with the clamped value, or none) so the server may limit our window;
 * the value is never below 9 because we compress with it. Never fails.
 */
export const makeDeflateOffer = (config: DeflateClientConfig): WebSocketExtensionHeader => {
  const parameters: Array<ExtensionParameter> = []
  if (config.serverNoContextTakeover === true) parameters.push(param(SERVER_NO_CONTEXT_TAKEOVER))
  if (config.clientNoContextTakeover === true) parameters.push(param(CLIENT_NO_CONTEXT_TAKEOVER))
  const serverBits = offeredServerBits(config)
  if (serverBits !== undefined) parameters.push(param(SERVER_MAX_WINDOW_BITS, serverBits))
  parameters.push(param(CLIENT_MAX_WINDOW_BITS, offeredClientBits(config)))
  return new WebSocketExtensionHeader(PERMESSAGE_DEFLATE, parameters)
}

/**
 * Client side: validates the server's `permessage-deflate` response against the offer
 * `makeDeflateOffer(config)` made and returns the agreed parameters. Fails with a
 * `DeflateNegotiationError` (the client must then fail the connection) on another extension
 * name, an unknown or duplicate parameter, a malformed value (including `client_max_window_bits`
 * without a value), a missing `server_no_context_takeover` or `server_max_window_bits` that we
 * asked for, or a `server_max_window_bits` or `client_max_window_bits` larger than offered. A
 * `client_max_window_bits=8` is accepted: we then compress with 9 bits (see the module comment).
 */
export const acceptDeflateResponse = (
  response: WebSocketExtensionHeader,
  config: DeflateClientConfig
): DeflateParameters | DeflateNegotiationError => {
  const parsed = parseParameters(response, "response")
  if (isDeflateNegotiationError(parsed)) return parsed
  if (config.serverNoContextTakeover === true && !parsed.serverNoContextTakeover) {
    return failure(`the server's response lacks ${SERVER_NO_CONTEXT_TAKEOVER}, which we offered`)
  }
  const askedServerBits = offeredServerBits(config)
  if (askedServerBits !== undefined) {
    if (parsed.serverMaxWindowBits === undefined) {
      return failure(`the server's response lacks ${SERVER_MAX_WINDOW_BITS}, which we offered as ${askedServerBits}`)
    }
    if (parsed.serverMaxWindowBits > askedServerBits) {
      return failure(
        `the server answered ${SERVER_MAX_WINDOW_BITS}=${parsed.serverMaxWindowBits}, larger than the ${askedServerBits} we offered`
      )
    }
  }
  // We always offer client_max_window_bits; without an answer we keep to the value we offered.
  const ourBits = offeredClientBits(config) ?? MAX_DEFLATE_WINDOW_BITS
  let clientMaxWindowBits = ourBits
  if (typeof parsed.clientMaxWindowBits === "number") {
    const imposed = parsed.clientMaxWindowBits
    if (imposed > ourBits) {
      return failure(`the server answered ${CLIENT_MAX_WINDOW_BITS}=${imposed}, larger than the ${ourBits} we offered`)
    }
    clientMaxWindowBits = imposed
  }
  return {
    serverNoContextTakeover: parsed.serverNoContextTakeover,
    clientNoContextTakeover: parsed.clientNoContextTakeover || config.clientNoContextTakeover === true,
    serverMaxWindowBits: parsed.serverMaxWindowBits ?? MAX_DEFLATE_WINDOW_BITS,
    clientMaxWindowBits
  }
}
