import { assert, describe, it } from "@effect/vitest"
import { CloseReason, Frame, FrameType } from "@effect-ws/codec"

describe("FrameType", () => {
  it("maps opcodes to Ktor's five frame types with the control flag", () => {
    assert.strictEqual(FrameType.frameTypeOf(1), FrameType.FrameType.Text)
    assert.strictEqual(FrameType.frameTypeOf(2), FrameType.FrameType.Binary)
    assert.strictEqual(FrameType.frameTypeOf(8)?.controlFrame, true)
    assert.strictEqual(FrameType.frameTypeOf(9)?.name, "Ping")
    assert.strictEqual(FrameType.frameTypeOf(10)?.name, "Pong")
    for (const op of [0, 3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) assert.isUndefined(FrameType.frameTypeOf(op))
    assert.isFalse(FrameType.FrameType.Text.controlFrame)
    assert.isTrue(FrameType.isControlOpcode(0xb))
    assert.isFalse(FrameType.isDefinedOpcode(0xb))
  })
})

describe("Frame constructors", () => {
  it("build data frames with fin and rsv bits", () => {
    const t = Frame.text("héllo")
    assert.strictEqual(t._tag, "Text")
    assert.isTrue(t.fin)
    assert.deepStrictEqual(Array.from(t.payload), [0x68, 0xc3, 0xa9, 0x6c, 0x6c, 0x6f])
    const b = Frame.binary(new Uint8Array([1, 2]), { fin: false, rsv1: true })
    assert.isFalse(b.fin)
    assert.isTrue(b.rsv1)
    assert.isFalse(b.rsv2)
    assert.strictEqual(Frame.opcodeOf(Frame.continuation(new Uint8Array())), 0)
    assert.strictEqual(Frame.readText(Frame.text("ok")), "ok")
  })

  it("refuse control payloads over 125 bytes and accept exactly 125", () => {
    assert.strictEqual(Frame.ping(new Uint8Array(125)).payload.length, 125)
    assert.throws(() => Frame.ping(new Uint8Array(126)), RangeError)
    assert.throws(() => Frame.pong(new Uint8Array(126)), RangeError)
    assert.throws(() => Frame.close(new Uint8Array(126)), RangeError)
  })

  it("encode a close reason as code + UTF-8 message", () => {
    const c = Frame.close(CloseReason.CloseReason(1000, "bye"))
    assert.deepStrictEqual(Array.from(c.payload), [0x03, 0xe8, 0x62, 0x79, 0x65])
    assert.strictEqual(Frame.close().payload.length, 0)
    assert.isTrue(Frame.isControl(c))
  })

  it("readBytes copies the payload", () => {
    const f = Frame.binary(new Uint8Array([1, 2, 3]))
    const copy = Frame.readBytes(f)
    copy[0] = 9
    assert.strictEqual(f.payload[0], 1)
  })
})
