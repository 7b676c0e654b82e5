/**
 * `FrameParser` with `validateUtf8`: text messages are validated as their bytes arrive, and the
 * violation (1007) comes from the `push` that brings the first byte no valid UTF-8 text can
 * continue with, never later (RFC 6455 §8.1, conformance §6, hostile-inputs H10). The oracle for
 * "the first invalid byte" is the platform's streaming fatal `TextDecoder`, fed one byte at a time.
 */
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { type Frame, FrameParser, Utf8, type Violation } from "@effect-ws/codec"
import { chunked, hex } from "./helpers.ts"

type Opcode = 0 | 1 | 2 | 9

/** One frame to put on the wire. */
interface Spec {
  readonly opcode: Opcode
  readonly fin: boolean
  readonly payload: Uint8Array
  readonly rsv1?: boolean
}

/** A wire image: the bytes, and for every payload byte of the text message under test its wire offset. */
interface Wire {
  readonly bytes: Uint8Array
  /** Wire offset of each byte of the concatenated text payload (opcodes 1 and 0). */
  readonly textOffsets: ReadonlyArray<number>
  /** Wire offset of the last byte of each frame. */
  readonly frameEnds: ReadonlyArray<number>
}

/**
 * Serializes frames by hand (7-, 16-bit lengths; masked with a fixed key when `masked`); the text
 * message under test starts at `specs[textFrom]`.
 */
const wireOf = (specs: ReadonlyArray<Spec>, masked: boolean, textFrom = 0): Wire => {
  const bytes: Array<number> = []
  const textOffsets: Array<number> = []
  const frameEnds: Array<number> = []
  const key = [0x37, 0xfa, 0x21, 0x3d]
  for (const [index, s] of specs.entries()) {
    const n = s.payload.length
    bytes.push((s.fin ? 0x80 : 0) | (s.rsv1 ? 0x40 : 0) | s.opcode)
    const m = masked ? 0x80 : 0
    if (n < 126) bytes.push(m | n)
    else bytes.push(m | 126, n >> 8, n & 0xff)
    if (masked) bytes.push(...key)
    for (let i = 0; i < n; i++) {
      if (s.opcode <= 1 && index >= textFrom) textOffsets.push(bytes.length)
      bytes.push(masked ? s.payload[i]! ^ key[i & 3]! : s.payload[i]!)
    }
    frameEnds.push(bytes.length - 1)
  }
  return { bytes: Uint8Array.from(bytes), textOffsets, frameEnds }
}

/**
 * The index of the first byte of `bytes` after which no valid UTF-8 text can follow (the
 * streaming fatal decoder throws on it), `bytes.length` when the bytes are a strict prefix of
 * valid text (truncated at the end), or -1 when they are valid UTF-8.
 */
const firstInvalid = (bytes: Uint8Array): number => {
  const decoder = new TextDecoder("utf-8", { fatal: true })
  for (let i = 0; i < bytes.length; i++) {
    try {
      decoder.decode(bytes.subarray(i, i + 1), { stream: true })
    } catch {
      return i
    }
  }
  try {
    decoder.decode()
  } catch {
    return bytes.length
  }
  return -1
}

/** Cuts a text payload into Text + Continuation specs at `cuts` (sorted offsets), Pings optional between them. */
const fragments = (payload: Uint8Array, cuts: ReadonlyArray<number>, pings = false): Array<Spec> => {
  const bounds = [0, ...cuts.filter((c) => c > 0 && c < payload.length), payload.length]
  const specs: Array<Spec> = []
  for (let i = 0; i + 1 < bounds.length; i++) {
    const fin = i + 2 === bounds.length
    specs.push({ opcode: i === 0 ? 1 : 0, fin, payload: payload.subarray(bounds[i]!, bounds[i + 1]!) })
    if (!fin && pings) specs.push({ opcode: 9, fin: true, payload: Uint8Array.of(0xff, 0xfe) }) // not text: never validated
  }
  return specs
}

/**
 * The wire offset of the byte that decides the violation of the text payload `text` laid out in
 * `wire` (its first invalid byte, or the last byte of the final frame for a truncated ending),
 * or -1 when the text is valid.
 */
const decidingOffset = (text: Uint8Array, wire: Wire): number => {
  const at = firstInvalid(text)
  if (at === -1) return -1
  return at < text.length ? wire.textOffsets[at]! : wire.frameEnds[wire.frameEnds.length - 1]!
}

interface Outcome {
  /** Index of the push that returned the violation (-1: none). */
  readonly failedPush: number
  readonly violation: Violation.ProtocolViolation | undefined
  readonly frames: Array<Frame.Frame>
  readonly parser: FrameParser.FrameParser
}

/** Pushes `chunks` (copied: the parser unmasks in place) until a violation. */
const run = (chunks: ReadonlyArray<Uint8Array>, options: FrameParser.FrameParserOptions): Outcome => {
  const parser = new FrameParser.FrameParser(options)
  const frames: Array<Frame.Frame> = []
  for (let i = 0; i < chunks.length; i++) {
    const v = parser.push(chunks[i]!.slice(), frames)
    if (v !== undefined) return { failedPush: i, violation: v, frames, parser }
  }
  return { failedPush: -1, violation: undefined, frames, parser }
}

/** The wire split into two chunks at `cut` (0 < cut < length). */
const splitAt = (bytes: Uint8Array, cut: number) => [bytes.subarray(0, cut), bytes.subarray(cut)]

/** The text payload carried by `frames` (Text and Continuation frames concatenated). */
const textOf = (frames: ReadonlyArray<Frame.Frame>): Array<number> =>
  frames.filter((f) => f._tag === "Text" || f._tag === "Continuation").flatMap((f) => Array.from(f.payload))

const roles = [
  { masked: false, options: { role: "client", validateUtf8: true } },
  { masked: true, options: { role: "server", validateUtf8: true } }
] as const

/** Valid text with every edge code point (1- to 4-byte sequences). */
const VALID = new TextEncoder().encode("a\u007f\u0080\u07ff\u0800\uffff\u{10000}\u{10ffff}κόσμε€😀")

/** Invalid payloads: [name, bytes]. Each decides at a known byte (see `firstInvalid`). */
const INVALID: ReadonlyArray<[string, ReadonlyArray<number>]> = [
  ["lone continuation", [0x61, 0x80, 0x62]],
  ["0xFE", [0x61, 0xfe]],
  ["0xFF", [0xff, 0x61]],
  ["overlong 2-byte", [0x61, 0xc0, 0xaf]],
  ["overlong 3-byte", [0xe0, 0x80, 0xaf]],
  ["overlong 4-byte", [0xf0, 0x8f, 0xbf, 0xbf]],
  ["surrogate U+D800", [0x61, 0xed, 0xa0, 0x80]],
  ["above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
  ["lead byte 0xF5", [0xf5, 0x80, 0x80, 0x80]],
  ["missing continuation", [0xe2, 0x82, 0x61]],
  ["truncated 4-byte sequence at the end", [0x61, 0xf0, 0x9f, 0x98]],
  ["truncated 2-byte sequence at the end", [0xce]],
  ["valid then invalid: κόσμε + 0xED 0xA0 0x80 + more", [0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xed, 0xa0, 0x80, 0x65, 0x64]]
]

/**
 * Checks one layout of a text message behind a valid "ok" message, split into two chunks at every
 * wire position and fed one byte at a time: valid text comes out intact; invalid text fails 1007
 * in exactly the push that carries the deciding byte, after "ok" was delivered.
 */
const checkEverySplit = (text: Uint8Array, specsOf: (text: Uint8Array) => Array<Spec>, label: string) => {
  for (const { masked, options } of roles) {
    const specs: Array<Spec> = [{ opcode: 1, fin: true, payload: new TextEncoder().encode("ok") }, ...specsOf(text)]
    const wire = wireOf(specs, masked, 1)
    const deciding = decidingOffset(text, wire)
    const expected = [0x6f, 0x6b, ...text]
    const splits: Array<[string, Array<Uint8Array>]> = [["bytewise", chunked(wire.bytes, [1])], ["whole", [wire.bytes]]]
    for (let cut = 1; cut < wire.bytes.length; cut++) splits.push([`cut ${cut}`, splitAt(wire.bytes, cut)])
    for (const [how, chunks] of splits) {
      const where = `${label}, ${masked ? "masked" : "unmasked"}, ${how}`
      const outcome = run(chunks, options)
      if (deciding === -1) {
        assert.isUndefined(outcome.violation, where)
        assert.deepStrictEqual(textOf(outcome.frames), expected, where)
        assert.isTrue(outcome.parser.atFrameBoundary, where)
        continue
      }
      // The push that carries the deciding byte: the chunk whose range holds it.
      let start = 0
      let expectedPush = -1
      for (let i = 0; i < chunks.length; i++) {
        if (deciding < start + chunks[i]!.length) {
          expectedPush = i
          break
        }
        start += chunks[i]!.length
      }
      assert.strictEqual(outcome.violation?.kind, "InvalidUtf8", where)
      assert.strictEqual(outcome.violation?.code, 1007, where)
      assert.strictEqual(outcome.failedPush, expectedPush, where)
      assert.deepStrictEqual(Array.from(outcome.frames[0]!.payload), [0x6f, 0x6b], where) // delivered before the violation
      assert.strictEqual(outcome.parser.failed, outcome.violation, where)
    }
  }
}

describe("FrameParser: UTF-8 fail fast (validateUtf8; conformance §6, H10)", () => {
  it("accepts valid text in one frame and in fragments cut at every byte, with the wire split at every byte", () => {
    checkEverySplit(VALID, (t) => [{ opcode: 1, fin: true, payload: t }], "single frame")
    for (let cut = 1; cut < VALID.length; cut++) {
      // Fragments cut inside code points, a Ping between them: still one valid message.
      const sub = VALID.subarray(0, 12)
      if (cut < sub.length) checkEverySplit(sub, (t) => fragments(t, [cut], true), `fragments cut at ${cut}`)
      const r = run(chunked(wireOf(fragments(VALID, [cut]), true).bytes, [3]), roles[1].options)
      assert.isUndefined(r.violation)
      assert.deepStrictEqual(textOf(r.frames), Array.from(VALID))
    }
  })

  it("fails 1007 in the push that brings the first invalid byte, in one frame and in fragments, at every split", () => {
    for (const [name, bad] of INVALID) {
      const text = Uint8Array.from(bad)
      assert.notStrictEqual(firstInvalid(text), -1, name)
      checkEverySplit(text, (t) => [{ opcode: 1, fin: true, payload: t }], `${name}, single frame`)
      for (let cut = 1; cut < text.length; cut++) {
        checkEverySplit(text, (t) => fragments(t, [cut], true), `${name}, fragments cut at ${cut}`)
      }
      // Every byte its own fragment, and a final empty fragment (the truncated ending is decided by it).
      checkEverySplit(text, (t) => [...fragments(t, Array.from(t, (_, i) => i)).map((s) => ({ ...s, fin: false })), { opcode: 0, fin: true, payload: new Uint8Array() }], `${name}, 1-byte fragments`)
    }
  })

  it("fails before the rest of a long frame arrives (6.4.x timing: bad bytes, then a pause)", () => {
    // A 2,000-byte text frame whose 10th payload byte is invalid: the first 14 wire bytes decide.
    const payload = new Uint8Array(2000).fill(0x61)
    payload[9] = 0xc0
    for (const { masked, options } of roles) {
      const wire = wireOf([{ opcode: 1, fin: true, payload }], masked).bytes
      const header = masked ? 8 : 4
      const parser = new FrameParser.FrameParser(options)
      const out: Array<Frame.Frame> = []
      assert.isUndefined(parser.push(wire.slice(0, header + 9), out)) // valid so far
      assert.strictEqual(parser.push(wire.slice(header + 9, header + 10), out)?.code, 1007)
      assert.strictEqual(out.length, 0)
      assert.strictEqual(parser.bufferedBytes, 0) // the partial frame is dropped
    }
  })

  it("keeps a truncated sequence open across chunks and fragments, and fails it only at the end of the message", () => {
    const parser = new FrameParser.FrameParser({ role: "client", validateUtf8: true })
    const out: Array<Frame.Frame> = []
    assert.isUndefined(parser.push(hex("01 02 61 e2"), out)) // Text, fin = 0, "a" + half of "€"
    assert.isUndefined(parser.push(hex("89 00"), out)) // a Ping between the fragments
    assert.isUndefined(parser.push(hex("00 01 82"), out)) // still one byte short, not final
    assert.isUndefined(parser.push(hex("80 01 ac"), out)) // completed by the final fragment
    assert.deepStrictEqual(textOf(out), [0x61, 0xe2, 0x82, 0xac])
    assert.isUndefined(parser.push(hex("01 01 e2"), out))
    assert.strictEqual(parser.push(hex("80 00"), out)?.kind, "InvalidUtf8") // an empty final fragment ends it inside "€"
  })

  it("leaves binary, control payloads, compressed (RSV1) text and text without the option alone", () => {
    const bad = [0xff, 0xc0, 0xed, 0xa0, 0x80]
    const cases: Array<[FrameParser.FrameParserOptions, Uint8Array]> = [
      [{ role: "client", validateUtf8: true }, hex("82 02 ff c0")],
      [{ role: "client", validateUtf8: true }, hex("89 02 ff c0 8a 01 ff")],
      [{ role: "client", validateUtf8: true, allowedRsv: { rsv1: true } }, wireOf([{ opcode: 1, fin: false, rsv1: true, payload: Uint8Array.from(bad) }, { opcode: 0, fin: true, payload: Uint8Array.of(0xff) }], false).bytes],
      [{ role: "client" }, wireOf([{ opcode: 1, fin: true, payload: Uint8Array.from(bad) }], false).bytes],
      [{ role: "client", validateUtf8: false }, wireOf([{ opcode: 1, fin: false, payload: Uint8Array.from(bad) }, { opcode: 0, fin: true, payload: Uint8Array.of(0xff) }], false).bytes]
    ]
    for (const [options, bytes] of cases) {
      for (const sizes of [[], [1], [3]]) {
        const r = run(chunked(bytes, sizes), options)
        assert.isUndefined(r.violation, `${JSON.stringify(options)} ${sizes}`)
      }
    }
    // After a compressed message, the next uncompressed one is validated again.
    const r = run([hex("c1 01 ff 81 01 ff")], { role: "client", validateUtf8: true, allowedRsv: { rsv1: true } })
    assert.strictEqual(r.frames.length, 1)
    assert.strictEqual(r.violation?.code, 1007)
  })

  it("applies a change of validateUtf8 from the next message on", () => {
    const parser = new FrameParser.FrameParser({ role: "client" })
    assert.isFalse(parser.validateUtf8)
    const out: Array<Frame.Frame> = []
    assert.isUndefined(parser.push(hex("01 01 ff"), out)) // a message opens unvalidated
    parser.validateUtf8 = true
    assert.isUndefined(parser.push(hex("80 01 fe"), out)) // it goes on as it started
    assert.isUndefined(parser.push(hex("81 01 61"), out))
    assert.strictEqual(parser.push(hex("81 01 ff"), out)?.code, 1007) // the next one is validated
    const off = new FrameParser.FrameParser({ role: "client", validateUtf8: true })
    assert.isTrue(off.validateUtf8)
    off.validateUtf8 = false
    assert.isUndefined(off.push(hex("81 01 ff"), []))
  })

  it("says whether it validated every text message it started (validatesAllText)", () => {
    const fromStart = new FrameParser.FrameParser({ role: "client", validateUtf8: true })
    assert.isTrue(fromStart.validatesAllText)
    fromStart.push(hex("81 01 61 82 01 ff"), [])
    assert.isTrue(fromStart.validatesAllText)
    // Turned on late, with only binary, control and compressed messages before: still all text.
    const late = new FrameParser.FrameParser({ role: "client", allowedRsv: { rsv1: true } })
    assert.isFalse(late.validatesAllText)
    late.push(hex("82 01 ff 89 00 c1 01 ff 81"), []) // ... and half a header, not yet a message
    late.validateUtf8 = true
    assert.isTrue(late.validatesAllText)
    assert.strictEqual(late.push(hex("01 ff"), [])?.code, 1007)
    // A text message started unvalidated (even one byte of its payload in): never again.
    const started = new FrameParser.FrameParser({ role: "client" })
    started.push(hex("01 01 61"), [])
    started.validateUtf8 = true
    assert.isFalse(started.validatesAllText)
    started.push(hex("80 00 81 00"), [])
    assert.isFalse(started.validatesAllText)
    const toggled = new FrameParser.FrameParser({ role: "client", validateUtf8: true })
    toggled.validateUtf8 = false
    assert.isFalse(toggled.validatesAllText)
    toggled.validateUtf8 = true
    assert.isTrue(toggled.validatesAllText) // no text message started while it was off
  })

  it("keeps zero-copy views and the allocator contract for validated text", () => {
    const parser = new FrameParser.FrameParser({ role: "server", validateUtf8: true, allocate: (n) => new Uint8Array(n).fill(0xff) })
    const out: Array<Frame.Frame> = []
    const whole = wireOf([{ opcode: 1, fin: true, payload: VALID }], true).bytes
    assert.isUndefined(parser.push(whole, out))
    assert.isTrue(parser.viewsLastChunk)
    assert.strictEqual(out[0]!.payload.buffer, whole.buffer) // a view of the chunk, unmasked in place
    assert.deepStrictEqual(Array.from(out[0]!.payload), Array.from(VALID))
    // Spanning: a dirty (0xff-filled) buffer is validated only as far as it is filled.
    const spanning = wireOf([{ opcode: 1, fin: true, payload: VALID }], true).bytes
    for (const c of chunked(spanning, [10])) {
      assert.isUndefined(parser.push(c, out))
      assert.isFalse(parser.viewsLastChunk)
    }
    assert.deepStrictEqual(Array.from(out[1]!.payload), Array.from(VALID))
  })
})

/** Random chunk sizes (small and large) that cycle over the wire. */
const chunkSizesArb = fc.array(fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 300 })), { minLength: 1, maxLength: 6 })

/** Random text (any code point, ASCII-heavy or not) as UTF-8, and cut points for fragments. */
const textArb = fc.oneof(
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.string({ unit: "grapheme", maxLength: 100 }),
  fc.string({ maxLength: 300 })
).map((s) => new TextEncoder().encode(s))

const cutsArb = fc.array(fc.nat({ max: 1000 }), { maxLength: 5 })

const layout = (text: Uint8Array, cuts: ReadonlyArray<number>, pings: boolean): Array<Spec> => {
  const sorted = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)
  return fragments(text, sorted, pings)
}

describe("FrameParser: UTF-8 fail fast, properties", () => {
  it("random valid text, random fragments, random chunks: no violation and the same bytes", () => {
    fc.assert(
      fc.property(textArb, cutsArb, fc.boolean(), fc.boolean(), chunkSizesArb, (text, cuts, pings, masked, sizes) => {
        const wire = wireOf(layout(text, cuts, pings), masked)
        const r = run(chunked(wire.bytes, sizes), roles[masked ? 1 : 0].options)
        assert.isUndefined(r.violation)
        assert.deepStrictEqual(textOf(r.frames), Array.from(text))
        assert.isTrue(r.parser.atFrameBoundary)
      }),
      { numRuns: 5_000 }
    )
  })

  it("random text with one invalid byte inserted: the violation comes from the push that brings the deciding byte", () => {
    const invalidByteArb = fc.oneof(fc.integer({ min: 0x80, max: 0xbf }), fc.constantFrom(0xc0, 0xc1, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xf8, 0xfe, 0xff), fc.integer({ min: 0xc2, max: 0xf4 }))
    fc.assert(
      fc.property(textArb, fc.nat(), invalidByteArb, cutsArb, fc.boolean(), fc.boolean(), chunkSizesArb, (valid, at, byte, cuts, pings, masked, sizes) => {
        const p = at % (valid.length + 1)
        const text = new Uint8Array(valid.length + 1)
        text.set(valid.subarray(0, p))
        text[p] = byte
        text.set(valid.subarray(p), p + 1)
        const wire = wireOf(layout(text, cuts, pings), masked)
        const deciding = decidingOffset(text, wire)
        fc.pre(deciding !== -1)
        const chunks = chunked(wire.bytes, sizes)
        const r = run(chunks, roles[masked ? 1 : 0].options)
        let start = 0
        let expectedPush = -1
        for (let i = 0; i < chunks.length && expectedPush === -1; i++) {
          if (deciding < start + chunks[i]!.length) expectedPush = i
          start += chunks[i]!.length
        }
        assert.strictEqual(r.violation?.kind, "InvalidUtf8")
        assert.strictEqual(r.failedPush, expectedPush)
        // Nothing of the bad message's text beyond what came before the deciding byte was handed out.
        assert.isAtMost(textOf(r.frames).length, text.length)
      }),
      { numRuns: 10_000 }
    )
  })
})

describe("Utf8Validator.state (what a parser keeps between pushes)", () => {
  it("is 0 exactly at a character boundary, and restoring it continues exactly where the validator was", () => {
    const all = [...INVALID.map(([, b]) => Uint8Array.from(b)), VALID]
    for (const bytes of all) {
      const reference = firstInvalid(bytes)
      for (let cut = 0; cut <= bytes.length; cut++) {
        const a = new Utf8.Utf8Validator()
        let failedAt = a.update(bytes, 0, cut)
        if (failedAt === -1) {
          assert.strictEqual(a.state === 0, a.complete)
          const b = new Utf8.Utf8Validator()
          b.update(Uint8Array.of(0xf0, 0x9f), 0, 2) // some other state, overwritten below
          b.state = a.state
          failedAt = b.update(bytes, cut, bytes.length)
          if (failedAt === -1 && !b.finish()) failedAt = bytes.length
        }
        assert.strictEqual(failedAt, reference, `${Array.from(bytes)} cut at ${cut}`)
      }
    }
  })
})
