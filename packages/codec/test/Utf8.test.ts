import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { Utf8 } from "@effect-ws/codec"

const strict = new TextDecoder("utf-8", { fatal: true })
const isValidReference = (b: Uint8Array) => {
  try {
    strict.decode(b)
    return true
  } catch {
    return false
  }
}

/** The index at which the validator fails when fed `bytes` split at `cut`, or -1 / "incomplete". */
const firstInvalid = (bytes: Uint8Array, cut: number): number | "incomplete" => {
  const v = new Utf8.Utf8Validator()
  const a = v.update(bytes, 0, cut)
  if (a !== -1) return a
  const b = v.update(bytes, cut, bytes.length)
  if (b !== -1) return b
  return v.finish() ? -1 : "incomplete"
}

describe("UTF-8 validation", () => {
  it("accepts the edge code points, split at every byte position", () => {
    const text = "a\u007f\u0080\u07ff\u0800\uffff\u{10000}\u{10ffff}κόσμε"
    const bytes = Utf8.encodeUtf8(text)
    assert.isTrue(Utf8.isValidUtf8(bytes))
    for (let cut = 0; cut <= bytes.length; cut++) assert.strictEqual(firstInvalid(bytes, cut), -1)
    assert.strictEqual(Utf8.decodeUtf8(bytes), text)
  })

  it("fails at the first byte that cannot continue a valid sequence (fail fast)", () => {
    const cases: Array<[string, Array<number>, number]> = [
      ["overlong 2-byte", [0x61, 0xc0, 0x80], 1],
      ["overlong 3-byte", [0xe0, 0x80, 0x80], 1],
      ["overlong 4-byte", [0xf0, 0x80, 0x80, 0x80], 1],
      ["surrogate U+D800", [0xed, 0xa0, 0x80], 1],
      ["surrogate U+DFFF", [0xed, 0xbf, 0xbf], 1],
      ["above U+10FFFF", [0xf4, 0x90, 0x80, 0x80], 1],
      ["F5 lead", [0xf5, 0x80], 0],
      ["lone continuation", [0x61, 0x80], 1],
      ["FE", [0xfe], 0],
      ["FF", [0x61, 0x62, 0xff], 2],
      ["truncated then ASCII", [0xe2, 0x82, 0x41], 2],
      ["Autobahn 6.3.1", [0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64], 12]
    ]
    for (const [name, bytes, at] of cases) {
      const b = Uint8Array.from(bytes)
      assert.isFalse(Utf8.isValidUtf8(b), name)
      for (let cut = 0; cut <= b.length; cut++) assert.strictEqual(firstInvalid(b, cut), at, `${name} cut ${cut}`)
    }
  })

  it("reports a truncated sequence only at the end of the message", () => {
    const v = new Utf8.Utf8Validator()
    assert.strictEqual(v.update(Uint8Array.from([0x61, 0xf0, 0x9f])), -1)
    assert.isFalse(v.complete)
    assert.isFalse(v.finish())
    assert.isTrue(v.complete)
  })

  it("agrees with a strict TextDecoder on arbitrary bytes, under any split", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc.string({ unit: "binary", maxLength: 32 }).map((s) => Utf8.encodeUtf8(s)),
          fc.array(fc.constantFrom(0x80, 0xbf, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0x41, 0xa0, 0x9f, 0x8f, 0x90), { maxLength: 12 }).map((a) => Uint8Array.from(a))
        ),
        fc.nat(),
        (bytes, n) => {
          const cut = bytes.length === 0 ? 0 : n % (bytes.length + 1)
          const expected = isValidReference(bytes)
          assert.strictEqual(Utf8.isValidUtf8(bytes), expected)
          assert.strictEqual(firstInvalid(bytes, cut) === -1, expected)
        }
      ),
      { numRuns: 20_000 }
    )
  })

  it("agrees with a strict TextDecoder on long ASCII runs at any offset and alignment (word-wise path)", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 7 }),
        fc.array(
          fc.oneof(
            fc.integer({ min: 0, max: 300 }).map((n) => new Uint8Array(n).fill(0x61)),
            fc.uint8Array({ minLength: 1, maxLength: 4 }),
            fc.string({ unit: "binary", maxLength: 8 }).map((s) => Utf8.encodeUtf8(s))
          ),
          { maxLength: 6 }
        ),
        fc.nat(),
        (offset, parts, n) => {
          const size = parts.reduce((sum, p) => sum + p.length, 0)
          const backing = new Uint8Array(offset + size)
          let at = offset
          for (const p of parts) {
            backing.set(p, at)
            at += p.length
          }
          const bytes = backing.subarray(offset)
          const expected = isValidReference(bytes)
          assert.strictEqual(Utf8.isValidUtf8(bytes), expected)
          assert.strictEqual(firstInvalid(bytes, size === 0 ? 0 : n % (size + 1)) === -1, expected)
        }
      ),
      { numRuns: 10_000 }
    )
  })

  it("counts UTF-8 length without encoding", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), (s) => {
        assert.strictEqual(Utf8.utf8Length(s), Utf8.encodeUtf8(s).length)
      }),
      { numRuns: 5_000 }
    )
    assert.strictEqual(Utf8.utf8Length("\ud800"), 3)
  })

  it("decodes strictly and keeps a BOM", () => {
    assert.isUndefined(Utf8.decodeUtf8(Uint8Array.from([0xc0, 0x80])))
    assert.strictEqual(Utf8.decodeUtf8(Uint8Array.from([0xef, 0xbb, 0xbf, 0x61])), "\ufeffa")
  })
})
