import { assert, describe, it } from "@effect/vitest"
import { CloseReason, Utf8, Violation } from "@effect-ws/codec"

const payload = (code: number, reason: Uint8Array = new Uint8Array()) => {
  const out = new Uint8Array(2 + reason.length)
  out[0] = code >> 8
  out[1] = code & 0xff
  out.set(reason, 2)
  return out
}

describe("close codes", () => {
  const valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
  const invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]

  it("registers every code 1000–1015 by name", () => {
    const codes = Object.values(CloseReason.CloseCode).sort((a, b) => a - b)
    assert.deepStrictEqual(codes, Array.from({ length: 16 }, (_, i) => 1000 + i))
  })

  it("knows which codes are valid on the wire and sendable (conformance §7)", () => {
    for (const c of valid) {
      assert.isTrue(CloseReason.isValidOnWire(c), `${c}`)
      assert.isTrue(CloseReason.isSendable(c), `${c}`)
    }
    for (const c of invalid) {
      assert.isFalse(CloseReason.isValidOnWire(c), `${c}`)
      assert.isFalse(CloseReason.isSendable(c), `${c}`)
    }
    assert.isTrue(CloseReason.isApplicationCode(3000))
    assert.isFalse(CloseReason.isApplicationCode(2999))
  })

  it("decodes valid Close payloads, echoing every valid code", () => {
    for (const c of valid) {
      assert.deepStrictEqual(CloseReason.decodeCloseReason(payload(c, Utf8.encodeUtf8("ok"))), { code: c, message: "ok" })
    }
    assert.deepStrictEqual(CloseReason.decodeCloseReason(new Uint8Array()), { code: 1005, message: "" })
    assert.deepStrictEqual(CloseReason.decodeCloseReason(payload(1000)), { code: 1000, message: "" })
  })

  it("fails each malformed payload with its own kind and close code (H11)", () => {
    const check = (bytes: Uint8Array, kind: Violation.ViolationKind, code: number) => {
      const r = CloseReason.decodeCloseReason(bytes)
      assert.isTrue(Violation.isProtocolViolation(r))
      if (Violation.isProtocolViolation(r)) {
        assert.strictEqual(r.kind, kind)
        assert.strictEqual(r.code, code)
      }
    }
    check(new Uint8Array([0x03]), "ClosePayloadTooShort", 1002)
    for (const c of invalid) check(payload(c), "InvalidCloseCode", 1002)
    check(payload(1000, new Uint8Array([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xf4, 0x90, 0x80, 0x80])), "InvalidUtf8", 1007)
    check(payload(1000, new Uint8Array(124).fill(0x61)), "CloseReasonTooLong", 1002)
  })

  it("round-trips a reason of exactly 123 bytes", () => {
    const message = "é".repeat(61) + "a"
    assert.strictEqual(Utf8.utf8Length(message), 123)
    const encoded = CloseReason.encodeCloseReason(CloseReason.CloseReason(4321, message))
    assert.strictEqual(encoded.length, 125)
    assert.deepStrictEqual(CloseReason.decodeCloseReason(encoded), { code: 4321, message })
  })

  it("refuses to build a reason over 123 bytes or an impossible code", () => {
    assert.throws(() => CloseReason.CloseReason(1000, "a".repeat(124)), RangeError)
    assert.throws(() => CloseReason.CloseReason(70000), RangeError)
    assert.throws(() => CloseReason.CloseReason(1.5), RangeError)
  })

  it("truncates on a character boundary (surrogate pair = 4 bytes, lone surrogate = 3)", () => {
    assert.strictEqual(CloseReason.truncateReason("a".repeat(200)), "a".repeat(123))
    const s = "a".repeat(121) + "😀" // 121 + 4 = 125 bytes: the emoji does not fit
    assert.strictEqual(CloseReason.truncateReason(s), "a".repeat(121))
    assert.strictEqual(CloseReason.truncateReason("a".repeat(119) + "😀"), "a".repeat(119) + "😀")
    assert.strictEqual(CloseReason.truncateReason("a".repeat(120) + "\ud800b"), "a".repeat(120) + "\ud800")
    assert.strictEqual(CloseReason.truncateReason("é".repeat(100)), "é".repeat(61))
    assert.strictEqual(CloseReason.truncateReason("héllo", 2), "h")
    const t = CloseReason.truncateReason("€".repeat(80))
    assert.isAtMost(Utf8.utf8Length(t), 123)
    assert.strictEqual(Utf8.encodeUtf8(t).length, Utf8.utf8Length(t))
  })
})
