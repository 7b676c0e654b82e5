/**
 * permessage-deflate validates the inflated bytes of a text message as each zlib call produces
 * them (`validatesIncomingUtf8`): inflation stops at the first invalid byte with 1007, and the
 * session does not check the message again.
 */
import { assert, describe, it } from "@effect/vitest"
import { ExtensionHeader, Frame } from "@effect-ws/codec"
import { Effect } from "effect"
import * as Zlib from "node:zlib"
import * as PerMessageDeflate from "../src/PerMessageDeflate.ts"

/** A server-side instance negotiated for plain `permessage-deflate`. */
const inflater = (config: PerMessageDeflate.PerMessageDeflateConfig = {}) => {
  const ext = PerMessageDeflate.PerMessageDeflate.install(config)
  const offers = ExtensionHeader.parseWebSocketExtensions("permessage-deflate")
  if (ExtensionHeader.isExtensionHeaderError(offers)) throw new Error(offers.message)
  assert.strictEqual(ext.serverNegotiation(offers).length, 1)
  return ext
}

/** A compressed message as a peer sends it: one raw deflate stream, sync-flushed, tail removed. */
const compress = (payload: Uint8Array): Uint8Array => {
  const out = Zlib.deflateRawSync(payload, { finishFlush: Zlib.constants.Z_SYNC_FLUSH })
  return out.subarray(0, out.length - 4)
}

/** Mixed 1- to 4-byte text of at least `size` bytes (characters cross every buffer boundary somewhere). */
const mixed = (size: number): Uint8Array => {
  const unit = Buffer.from("aé€😀 κόσμε \u07ff\u0800\uffff\u{10000}\u{10ffff} ", "utf8")
  const out = Buffer.alloc(Math.ceil(size / unit.length) * unit.length)
  for (let p = 0; p < out.length; p += unit.length) unit.copy(out, p)
  return out
}

const concat = (...parts: ReadonlyArray<Uint8Array>) => new Uint8Array(Buffer.concat(parts))

const inflate = (ext: PerMessageDeflate.PerMessageDeflateExtension, tag: "Text" | "Binary", payload: Uint8Array) =>
  Effect.result(ext.processIncomingMessage(Frame.make(tag, true, true, false, false, compress(payload))))

describe("PerMessageDeflate: UTF-8 of inflated text", () => {
  it.effect("says it validates, and passes valid text that spans scratch buffers and steps", () =>
    Effect.gen(function*() {
      const ext = inflater()
      assert.isTrue(ext.validatesIncomingUtf8)
      // Larger than the 64 KiB scratch and than one 128 KiB step: characters cross both boundaries.
      for (const size of [10, 70_000, 300_000]) {
        const text = mixed(size)
        const result = yield* inflate(ext, "Text", text)
        assert.strictEqual(result._tag, "Success", `${size}`)
        if (result._tag === "Success") assert.isTrue(Buffer.from(result.success.payload).equals(Buffer.from(text)))
      }
    }))

  it.effect("fails 1007 at an invalid byte early or late, and for text ending inside a character; binary is left alone", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<[string, Uint8Array]> = [
        ["early", concat(Uint8Array.of(0x61, 0xc0, 0xaf), mixed(1000))],
        ["late, after several steps", concat(mixed(200_000), Uint8Array.of(0xed, 0xa0, 0x80), mixed(1000))],
        ["truncated at the end", concat(mixed(1000), Uint8Array.of(0xf0, 0x9f, 0x98))]
      ]
      for (const [name, payload] of cases) {
        const ext = inflater()
        const result = yield* inflate(ext, "Text", payload)
        assert.strictEqual(result._tag, "Failure", name)
        if (result._tag === "Failure") {
          assert.deepStrictEqual([result.failure._tag, "code" in result.failure && result.failure.code], ["ProtocolViolation", 1007], name)
          assert.strictEqual(result.failure._tag === "ProtocolViolation" && result.failure.kind, "InvalidUtf8", name)
        }
        // The same bytes as a binary message inflate as they are; so does valid text afterwards.
        const binary = yield* inflate(ext, "Binary", payload)
        assert.strictEqual(binary._tag, "Success", name)
        assert.strictEqual((yield* inflate(ext, "Text", mixed(100)))._tag, "Success", name)
      }
    }))

  it.effect("stops inflating at the first invalid byte: a bad start of a message larger than maxMessageSize is 1007, not 1009", () =>
    Effect.gen(function*() {
      const ext = inflater({ maxMessageSize: 1024 * 1024 })
      const payload = new Uint8Array(8 * 1024 * 1024).fill(0x61)
      payload[3] = 0xff
      const result = yield* inflate(ext, "Text", payload)
      assert.strictEqual(result._tag === "Failure" && result.failure._tag === "ProtocolViolation" && result.failure.code, 1007)
      assert.strictEqual(ext.allocatedContexts, 0, "the inflater was dropped mid-message")
      // Valid text of that size is still too big (1009): the limit holds as before.
      const big = yield* inflate(ext, "Text", new Uint8Array(8 * 1024 * 1024).fill(0x61))
      assert.strictEqual(big._tag === "Failure" && big.failure._tag, "FrameTooBig")
    }))
})
