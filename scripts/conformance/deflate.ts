/**
 * The peer's side of permessage-deflate (RFC 7692), on `node:zlib` alone and independent of the
 * library's `PerMessageDeflate`: its own `Sec-WebSocket-Extensions` parsing, the rules that say
 * whether a response accepts an offer (§7.1), and a compressor/decompressor pair per connection.
 *
 * Each message is one raw deflate stream ended by a sync flush whose `00 00 FF FF` tail is
 * removed on send and appended again on receive (§7.2.1, §7.2.2). Context takeover on the
 * inflating side is done with zlib's preset dictionary: inflating a message with the last
 * 2^windowBits bytes of the previous messages as the dictionary is the same as continuing one
 * stream, so every call
 * is synchronous and stateless (our own compressor keeps one zlib stream instead, which is
 * cheaper per message). The checks this buys:
 * - `*_no_context_takeover` negotiated for the implementation's direction: its messages are
 *   inflated without a dictionary, so a reference into an earlier message fails to inflate;
 * - `*_max_window_bits` below 15: its messages are inflated with that window and the
 *   dictionary cut to it, in 64-byte output steps, so a match farther back than the window
 *   (plus at most 64 bytes) fails to inflate.
 * When we compress with an 8-bit window (zlib cannot), we deflate without LZ77 matches
 * (Huffman only), which is valid for any window.
 */
import * as zlib from "node:zlib"
import { concat } from "./wire.ts"

/** One element of a `Sec-WebSocket-Extensions` header: a name and its parameters in order. */
export interface ExtensionElement {
  readonly name: string
  readonly params: ReadonlyArray<readonly [string, string | undefined]>
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** Parses a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1 grammar, quoted values allowed); a string says why it is malformed. */
export const parseExtensions = (value: string): Array<ExtensionElement> | string => {
  const out: Array<ExtensionElement> = []
  for (const raw of splitOutsideQuotes(value, ",")) {
    if (raw.trim() === "") return `an empty element in ${JSON.stringify(value)}`
    const [head, ...rest] = splitOutsideQuotes(raw, ";").map((s) => s.trim())
    if (head === undefined || !TOKEN.test(head)) return `a bad extension name in ${JSON.stringify(raw)}`
    const params: Array<readonly [string, string | undefined]> = []
    for (const p of rest) {
      const eq = p.indexOf("=")
      const name = (eq === -1 ? p : p.slice(0, eq)).trim()
      if (!TOKEN.test(name)) return `a bad parameter name in ${JSON.stringify(raw)}`
      if (eq === -1) {
        params.push([name, undefined])
        continue
      }
      let v = p.slice(eq + 1).trim()
      if (v.startsWith("\"")) {
        if (v.length < 2 || !v.endsWith("\"")) return `an unterminated quoted value in ${JSON.stringify(raw)}`
        v = v.slice(1, -1).replace(/\\(.)/g, "$1")
      }
      if (!TOKEN.test(v)) return `a bad parameter value in ${JSON.stringify(raw)}`
      params.push([name, v])
    }
    out.push({ name: head.toLowerCase(), params })
  }
  return out
}

const splitOutsideQuotes = (s: string, sep: string): Array<string> => {
  const out: Array<string> = []
  let quoted = false
  let start = 0
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (c === "\\" && quoted) i++
    else if (c === "\"") quoted = !quoted
    else if (c === sep && !quoted) {
      out.push(s.slice(start, i))
      start = i + 1
    }
  }
  out.push(s.slice(start))
  return out
}

/** The four permessage-deflate parameters as they appear in an offer or a response. */
export interface DeflateTerms {
  readonly serverNoContextTakeover?: boolean
  readonly clientNoContextTakeover?: boolean
  readonly serverMaxWindowBits?: number
  /** `true`: the parameter without a value (only valid in an offer). */
  readonly clientMaxWindowBits?: number | true
}

/** What both ends agreed on (window sizes 8..15). */
export interface DeflateParams {
  readonly serverNoContextTakeover: boolean
  readonly clientNoContextTakeover: boolean
  readonly serverMaxWindowBits: number
  readonly clientMaxWindowBits: number
}

/** Formats one permessage-deflate element. */
export const formatDeflate = (t: DeflateTerms): string => {
  const parts = ["permessage-deflate"]
  if (t.serverNoContextTakeover) parts.push("server_no_context_takeover")
  if (t.clientNoContextTakeover) parts.push("client_no_context_takeover")
  if (t.serverMaxWindowBits !== undefined) parts.push(`server_max_window_bits=${t.serverMaxWindowBits}`)
  if (t.clientMaxWindowBits === true) parts.push("client_max_window_bits")
  else if (t.clientMaxWindowBits !== undefined) parts.push(`client_max_window_bits=${t.clientMaxWindowBits}`)
  return parts.join("; ")
}

const BITS = /^(?:[89]|1[0-5])$/

/** Reads a permessage-deflate element as an offer (`client_max_window_bits` may lack a value) or a response (it may not). */
export const readDeflate = (e: ExtensionElement, kind: "offer" | "response"): DeflateTerms | string => {
  if (e.name !== "permessage-deflate") return `${e.name} is not permessage-deflate`
  const seen = new Set<string>()
  const t: { -readonly [K in keyof DeflateTerms]: DeflateTerms[K] } = {}
  for (const [name, value] of e.params) {
    if (seen.has(name)) return `${name} appears twice`
    seen.add(name)
    switch (name) {
      case "server_no_context_takeover":
      case "client_no_context_takeover":
        if (value !== undefined) return `${name} has a value`
        if (name === "server_no_context_takeover") t.serverNoContextTakeover = true
        else t.clientNoContextTakeover = true
        break
      case "server_max_window_bits":
      case "client_max_window_bits":
        if (value === undefined) {
          if (name === "client_max_window_bits" && kind === "offer") {
            t.clientMaxWindowBits = true
            break
          }
          return `${name} without a value in a ${kind}`
        }
        if (!BITS.test(value)) return `${name}=${value} is not 8..15`
        if (name === "server_max_window_bits") t.serverMaxWindowBits = Number(value)
        else t.clientMaxWindowBits = Number(value)
        break
      default:
        return `unknown parameter ${name}`
    }
  }
  return t
}

/**
 * Whether `response` is a valid acceptance of `offer` (RFC 7692 §7.1): what it must echo
 * (`server_no_context_takeover`, `server_max_window_bits` no larger than offered) and what it
 * may only answer when offered (`client_max_window_bits`, no larger than offered). Returns the
 * agreed parameters (a client that offered `client_no_context_takeover` keeps to it), or why not.
 */
export const agree = (offer: DeflateTerms, response: DeflateTerms): DeflateParams | string => {
  if (offer.serverNoContextTakeover && !response.serverNoContextTakeover) return "server_no_context_takeover was offered but not answered"
  if (offer.serverMaxWindowBits !== undefined) {
    if (response.serverMaxWindowBits === undefined) return `server_max_window_bits=${offer.serverMaxWindowBits} was offered but not answered`
    if (response.serverMaxWindowBits > offer.serverMaxWindowBits) {
      return `server_max_window_bits=${response.serverMaxWindowBits} answers an offer of ${offer.serverMaxWindowBits}`
    }
  }
  if (response.clientMaxWindowBits !== undefined) {
    if (response.clientMaxWindowBits === true) return "client_max_window_bits without a value"
    if (offer.clientMaxWindowBits === undefined) return "client_max_window_bits answered but not offered"
    if (offer.clientMaxWindowBits !== true && response.clientMaxWindowBits > offer.clientMaxWindowBits) {
      return `client_max_window_bits=${response.clientMaxWindowBits} answers an offer of ${offer.clientMaxWindowBits}`
    }
  }
  return {
    serverNoContextTakeover: response.serverNoContextTakeover === true,
    clientNoContextTakeover: response.clientNoContextTakeover === true || offer.clientNoContextTakeover === true,
    serverMaxWindowBits: response.serverMaxWindowBits ?? 15,
    clientMaxWindowBits: typeof response.clientMaxWindowBits === "number"
      ? response.clientMaxWindowBits
      : typeof offer.clientMaxWindowBits === "number"
      ? offer.clientMaxWindowBits
      : 15
  }
}

const TAIL = Uint8Array.of(0x00, 0x00, 0xff, 0xff)

const lastBytes = (history: Uint8Array, data: Uint8Array, n: number): Uint8Array => {
  if (data.length >= n) return data.slice(data.length - n)
  const keep = Math.min(history.length, n - data.length)
  return concat([history.subarray(history.length - keep), data]).slice()
}

/**
 * One direction's compressor: our messages, with our window and context-takeover setting. It is
 * one zlib stream kept across messages (each message ends with a sync flush), reset after every
 * message when we do not take over context; level 1, as the level only changes how hard zlib
 * looks for matches, not what a valid stream is.
 */
export class Compressor {
  private readonly stream: zlib.DeflateRaw
  private readonly takeover: boolean

  constructor(bits: number, takeover: boolean) {
    this.takeover = takeover
    this.stream = zlib.createDeflateRaw({
      level: 1,
      windowBits: Math.max(9, bits),
      ...(bits < 9 ? { strategy: zlib.constants.Z_HUFFMAN_ONLY } : {})
    })
    this.stream.on("error", () => {})
  }

  /** The message's compressed payload, without the 00 00 FF FF tail. */
  compress(data: Uint8Array): Promise<Uint8Array> {
    const stream = this.stream
    return new Promise<Uint8Array>((resolve, reject) => {
      const chunks: Array<Buffer> = []
      const onData = (c: Buffer) => chunks.push(c)
      stream.on("data", onData)
      stream.write(data)
      stream.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        stream.off("data", onData)
        if (!this.takeover) stream.reset()
        const out = new Uint8Array(Buffer.concat(chunks))
        const n = out.length
        if (n >= 4 && out[n - 4] === 0 && out[n - 3] === 0 && out[n - 2] === 0xff && out[n - 1] === 0xff) resolve(out.subarray(0, n - 4))
        else reject(new Error("zlib's sync flush did not end with 00 00 FF FF"))
      })
    })
  }

  /** Frees the zlib stream. */
  close(): void {
    this.stream.close()
  }
}

/** One direction's decompressor: the implementation's messages, checked against its window and context-takeover setting. */
export class Decompressor {
  private history: Uint8Array = new Uint8Array()
  private readonly bits: number
  private readonly takeover: boolean
  private readonly maxOutput: number

  constructor(bits: number, takeover: boolean, maxOutput = 64 * 1024 * 1024) {
    this.bits = bits
    this.takeover = takeover
    this.maxOutput = maxOutput
  }

  /** The message's payload, or why it does not inflate under the negotiated terms. */
  decompress(data: Uint8Array): Uint8Array | { readonly error: string } {
    const options: zlib.ZlibOptions = {
      windowBits: this.bits,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
      maxOutputLength: this.maxOutput,
      // Small output steps make zlib check each match distance against the window (see above).
      ...(this.bits < 15 ? { chunkSize: 64 } : {}),
      ...(this.takeover && this.history.length > 0 ? { dictionary: this.history } : {})
    }
    let out: Uint8Array
    try {
      out = new Uint8Array(zlib.inflateRawSync(concat([data, TAIL]), options))
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e)
      return {
        error: `the compressed message does not inflate with a ${this.bits}-bit window${this.takeover ? "" : " and no context takeover"}: ${why}`
      }
    }
    if (this.takeover) this.history = lastBytes(this.history, out, 1 << this.bits)
    return out
  }
}
