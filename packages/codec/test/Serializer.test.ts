import { assert, describe, it } from "@effect/vitest"
import { CloseReason, Frame, Serializer } from "@effect-ws/codec"
import { countingRandom, hex, toHex } from "./helpers.ts"

const server = { mask: false } as const
const fixedKey = (key: Array<number>) => (bytes: Uint8Array) => {
  for (let i = 0; i < bytes.length; i++) bytes[i] = key[i % 4]!
}

describe("Serializer: RFC 6455 §5.7 examples", () => {
  it("writes the unmasked examples byte for byte", () => {
    assert.strictEqual(toHex(Serializer.serializeFrame(Frame.text("Hello"), server)), "81 05 48 65 6c 6c 6f")
    const enc = new TextEncoder()
    const parts = [
      Serializer.serializeFrame(Frame.text("Hel", { fin: false }), server),
      Serializer.serializeFrame(Frame.continuation(enc.encode("lo")), server)
    ]
    assert.deepStrictEqual(parts.map(toHex), ["01 03 48 65 6c", "80 02 6c 6f"])
    assert.strictEqual(toHex(Serializer.serializeFrame(Frame.ping(enc.encode("Hello")), server)), "89 05 48 65 6c 6c 6f")
    const b256 = Serializer.serializeFrame(Frame.binary(new Uint8Array(256)), server)
    assert.strictEqual(toHex(b256.subarray(0, 4)), "82 7e 01 00")
    assert.strictEqual(b256.length, 260)
    const b64k = Serializer.serializeFrame(Frame.binary(new Uint8Array(65536)), server)
    assert.strictEqual(toHex(b64k.subarray(0, 10)), "82 7f 00 00 00 00 00 01 00 00")
    assert.strictEqual(b64k.length, 65546)
  })

  it("writes the masked examples with the RFC's key", () => {
    const options = { mask: true, random: fixedKey([0x37, 0xfa, 0x21, 0x3d]) }
    const enc = new TextEncoder()
    assert.strictEqual(toHex(Serializer.serializeFrame(Frame.text("Hello"), options)), "81 85 37 fa 21 3d 7f 9f 4d 51 58")
    assert.strictEqual(toHex(Serializer.serializeFrame(Frame.pong(enc.encode("Hello")), options)), "8a 85 37 fa 21 3d 7f 9f 4d 51 58")
  })
})

describe("Serializer", () => {
  it("writes the header bits, Close reasons and every length boundary", () => {
    const f = Frame.binary(new Uint8Array([1]), { fin: false, rsv1: true, rsv2: true, rsv3: true })
    assert.strictEqual(toHex(Serializer.serializeFrame(f, server)), "72 01 01")
    assert.strictEqual(toHex(Serializer.serializeFrame(Frame.close(CloseReason.CloseReason(1000, "")), server)), "88 02 03 e8")
    assert.strictEqual(toHex(Serializer.serializeFrame(Frame.close(), server)), "88 00")
    for (const [n, size] of [[125, 2], [126, 4], [65535, 4], [65536, 10]] as const) {
      assert.strictEqual(Serializer.headerSize(n, false), size)
      assert.strictEqual(Serializer.headerSize(n, true), size + 4)
      assert.strictEqual(Serializer.serializeFrame(Frame.binary(new Uint8Array(n)), server).length, n + size)
    }
  })

  it("hands a large unmasked payload by reference after its header (writev without copying)", () => {
    const payload = new Uint8Array(Serializer.COPY_THRESHOLD + 1).fill(5)
    const out: Array<Uint8Array> = []
    new Serializer.Serializer(server).serialize(Frame.binary(payload), out)
    assert.strictEqual(out.length, 2)
    assert.strictEqual(out[1], payload)
    const n = payload.length
    assert.deepStrictEqual(Array.from(out[0]!), [0x82, 126, n >> 8, n & 0xff])
  })

  it("coalesces a batch of small frames into one buffer, large payloads by reference", () => {
    const big = new Uint8Array(Serializer.COPY_THRESHOLD + 10).fill(1)
    const frames = [Frame.text("a"), Frame.ping(), Frame.binary(big), Frame.text("b"), Frame.text("c")]
    const out: Array<Uint8Array> = []
    new Serializer.Serializer(server).serializeBatch(frames, out)
    assert.strictEqual(out.length, 3)
    const n = big.length
    assert.deepStrictEqual(Array.from(out[0]!), [0x81, 0x01, 0x61, 0x89, 0x00, 0x82, 126, n >> 8, n & 0xff])
    assert.strictEqual(out[1], big)
    assert.strictEqual(toHex(out[2]!), "81 01 62 81 01 63")
  })

  it("masks every frame with a fresh key and never modifies the caller's payload", () => {
    const payload = new Uint8Array(40_000).fill(0x55)
    const s = new Serializer.Serializer({ mask: true })
    const out: Array<Uint8Array> = []
    s.serializeBatch([Frame.text("x"), Frame.binary(payload), Frame.binary(payload)], out)
    assert.isTrue(payload.every((b) => b === 0x55))
    const keys = new Set<string>()
    assert.strictEqual(out.length, 3)
    const first = out[0]!
    assert.strictEqual(first[1]! & 0x80, 0x80)
    keys.add(toHex(first.subarray(2, 6)))
    for (const buf of out.slice(1)) {
      assert.strictEqual(toHex(buf.subarray(0, 4)), "82 fe 9c 40")
      assert.strictEqual(buf.length, 8 + 40_000)
      keys.add(toHex(buf.subarray(4, 8)))
    }
    assert.strictEqual(keys.size, 3)
  })

  it("draws masking keys in batches from the random source", () => {
    let calls = 0
    const random = (b: Uint8Array) => {
      calls++
      countingRandom()(b)
    }
    const s = new Serializer.Serializer({ mask: true, random })
    for (let i = 0; i < 256; i++) s.serialize(Frame.text("x"), [])
    assert.strictEqual(calls, 1)
    s.serialize(Frame.text("x"), [])
    assert.strictEqual(calls, 2)
  })

  it("emits exactly the caller's bytes and nothing else (H16)", () => {
    // A view into a larger buffer full of secrets: only the view's bytes may be written.
    const backing = new Uint8Array(300).fill(0xee)
    backing.set([1, 2, 3], 100)
    const view = backing.subarray(100, 103)
    const bytes = Serializer.serializeFrame(Frame.pong(view), server)
    assert.strictEqual(toHex(bytes), "8a 03 01 02 03")
    const close = Serializer.serializeFrame(Frame.close(CloseReason.CloseReason(4000, "é")), server)
    assert.strictEqual(toHex(close), "88 04 0f a0 c3 a9")
    const empty = Serializer.serializeFrame(Frame.binary(new Uint8Array(0)), server)
    assert.deepStrictEqual(Array.from(empty), Array.from(hex("82 00")))
  })
})
