import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { Mask } from "@effect-ws/codec"

const naive = (data: Uint8Array, key: number, offset: number) => {
  const out = data.slice()
  for (let i = 0; i < out.length; i++) out[i] = out[i]! ^ ((key >>> (24 - (((offset + i) & 3) << 3))) & 0xff)
  return out
}

describe("masking", () => {
  it("matches the byte-wise definition for any alignment, offset, length and key", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 3 }),
        (bytes, shift, key, offset) => {
          // Place the data at an arbitrary byte offset of its buffer to exercise unaligned heads.
          const backing = new Uint8Array(bytes.length + 8)
          const data = backing.subarray(shift, shift + bytes.length)
          data.set(bytes)
          const next = Mask.mask(data, key, offset)
          assert.deepStrictEqual(Array.from(data), Array.from(naive(bytes, key, offset)))
          assert.strictEqual(next, (offset + bytes.length) & 3)
          assert.deepStrictEqual(Array.from(backing.subarray(0, shift)), new Array(shift).fill(0))
          assert.deepStrictEqual(Array.from(backing.subarray(shift + bytes.length)), new Array(8 - shift).fill(0))
        }
      ),
      { numRuns: 10_000 }
    )
  })

  it("continues the mask across chunk boundaries", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 500 }), fc.array(fc.integer({ min: 1, max: 70 }), { minLength: 1 }), fc.integer({ min: 0, max: 0xffffffff }), (bytes, sizes, key) => {
        const data = bytes.slice()
        let p = 0
        let k = 0
        let i = 0
        while (p < data.length) {
          const end = Math.min(data.length, p + sizes[i++ % sizes.length]!)
          k = Mask.mask(data, key, k, p, end)
          p = end
        }
        assert.deepStrictEqual(Array.from(data), Array.from(naive(bytes, key, 0)))
      }),
      { numRuns: 3_000 }
    )
  })

  it("is its own inverse and reads keys big-endian", () => {
    const key = Mask.readKey(Uint8Array.from([0x37, 0xfa, 0x21, 0x3d]), 0)
    assert.strictEqual(key, 0x37fa213d)
    const data = new TextEncoder().encode("Hello")
    Mask.mask(data, key)
    assert.deepStrictEqual(Array.from(data), [0x7f, 0x9f, 0x4d, 0x51, 0x58])
    Mask.mask(data, key)
    assert.strictEqual(new TextDecoder().decode(data), "Hello")
  })
})
