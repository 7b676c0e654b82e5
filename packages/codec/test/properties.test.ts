/**
 * Property tests of the frame codec (fast-check): serialize → parse round trips of arbitrary
 * frame sequences under arbitrary chunkings, and arbitrary bytes never producing anything but
 * frames or a typed violation (H18). Together with the other property tests of this package
 * they run well over 100,000 cases per CI run.
 */
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { Frame, FrameParser, Serializer, Violation } from "@effect-ws/codec"
import { chunked, plain } from "./helpers.ts"

const payloadArb = (max: number) =>
  fc.oneof(
    { weight: 8, arbitrary: fc.uint8Array({ maxLength: Math.min(max, 200) }) },
    { weight: 1, arbitrary: fc.constantFrom(125, 126, 127, 128).filter((n) => n <= max).map((n) => new Uint8Array(n).fill(n)) },
    { weight: max > 65536 ? 1 : 0, arbitrary: fc.constantFrom(65535, 65536).map((n) => new Uint8Array(n).fill(7)) }
  )

const rsvArb = fc.record({ rsv1: fc.boolean(), rsv2: fc.boolean(), rsv3: fc.boolean() })

const controlArb: fc.Arbitrary<Frame.Frame> = fc
  .tuple(fc.constantFrom("Close", "Ping", "Pong") as fc.Arbitrary<"Close" | "Ping" | "Pong">, fc.uint8Array({ maxLength: 125 }))
  .map(([tag, payload]) => Frame.make(tag, true, false, false, false, payload))

/** A message split into fragments, with control frames interleaved between them. */
const messageArb = (big: boolean): fc.Arbitrary<Array<Frame.Frame>> =>
  fc
    .tuple(
      fc.constantFrom("Text", "Binary") as fc.Arbitrary<"Text" | "Binary">,
      fc.array(fc.tuple(payloadArb(big ? 70_000 : 300), rsvArb), { minLength: 1, maxLength: 4 }),
      fc.array(fc.option(controlArb, { nil: undefined }), { maxLength: 4 })
    )
    .map(([tag, parts, controls]) => {
      const frames: Array<Frame.Frame> = []
      parts.forEach(([payload, rsv], i) => {
        const fin = i === parts.length - 1
        frames.push(Frame.make(i === 0 ? tag : "Continuation", fin, rsv.rsv1, rsv.rsv2, rsv.rsv3, payload))
        const c = controls[i]
        if (!fin && c !== undefined) frames.push(c)
      })
      return frames
    })

const streamArb = (big: boolean) =>
  fc.array(fc.oneof({ weight: 3, arbitrary: messageArb(big) }, { weight: 1, arbitrary: controlArb.map((c) => [c]) }), { maxLength: big ? 3 : 8 })
    .map((groups) => groups.flat())

const chunkSizesArb = fc.array(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 70_000 })), { maxLength: 6 })

/**
 * With `release`, each chunk is a buffer of its own and is overwritten as soon as the parser
 * says no frame views it (`viewsLastChunk` false), as a transport that frees or reuses released
 * chunks would: the frames must come out intact all the same.
 */
const roundTrip = (frames: ReadonlyArray<Frame.Frame>, masked: boolean, sizes: ReadonlyArray<number>, batch: boolean, release = false) => {
  const serializer = new Serializer.Serializer({ mask: masked })
  const parts: Array<Uint8Array> = []
  if (batch) serializer.serializeBatch(frames, parts)
  else for (const f of frames) serializer.serialize(f, parts)
  const bytes = Serializer.concat(parts).slice() // the parser unmasks in place: never hand it the caller's payloads
  const parser = new FrameParser.FrameParser({ role: masked ? "server" : "client", maxFrameSize: 1 << 20, allowedRsv: { rsv1: true, rsv2: true, rsv3: true } })
  const out: Array<Frame.Frame> = []
  for (const c of chunked(bytes, sizes)) {
    const chunk = release ? c.slice() : c
    assert.isUndefined(parser.push(chunk, out))
    if (release && !parser.viewsLastChunk) chunk.fill(0xee)
  }
  assert.isTrue(parser.atFrameBoundary)
  assert.deepStrictEqual(out.map(plain), frames.map(plain))
}

describe("codec properties", () => {
  it("round-trips arbitrary frame sequences, masked and unmasked, under arbitrary chunkings", () => {
    fc.assert(
      fc.property(streamArb(false), fc.boolean(), chunkSizesArb, fc.boolean(), (frames, masked, sizes, batch) =>
        roundTrip(frames, masked, sizes, batch)
      ),
      { numRuns: 20_000 }
    )
  })

  it("round-trips large frames (16- and 64-bit lengths) under arbitrary chunkings", () => {
    fc.assert(
      fc.property(streamArb(true), fc.boolean(), chunkSizesArb, fc.boolean(), (frames, masked, sizes, batch) =>
        roundTrip(frames, masked, sizes, batch)
      ),
      { numRuns: 300 }
    )
  })

  it("keeps no view of a chunk it says it does not view (viewsLastChunk), under arbitrary chunkings", () => {
    fc.assert(
      fc.property(streamArb(false), fc.boolean(), chunkSizesArb, (frames, masked, sizes) => roundTrip(frames, masked, sizes, true, true)),
      { numRuns: 10_000 }
    )
    fc.assert(
      fc.property(streamArb(true), fc.boolean(), chunkSizesArb, (frames, masked, sizes) => roundTrip(frames, masked, sizes, true, true)),
      { numRuns: 200 }
    )
  })

  it("never throws on arbitrary bytes in arbitrary chunkings: frames or one typed violation (H18)", () => {
    const bytesArb = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      // Biased towards plausible headers, so that deeper states are reached.
      fc.array(fc.oneof(fc.constantFrom(0x81, 0x82, 0x01, 0x00, 0x80, 0x88, 0x89, 0x8a, 0xc1, 0x7e, 0x7f, 0xfe, 0xff, 0x05), fc.integer({ min: 0, max: 255 })), { maxLength: 64 }).map((a) => Uint8Array.from(a))
    )
    fc.assert(
      fc.property(bytesArb, fc.array(fc.integer({ min: 1, max: 16 }), { maxLength: 4 }), fc.boolean(), (bytes, sizes, server) => {
        const maxFrameSize = 1000
        const parser = new FrameParser.FrameParser({ role: server ? "server" : "client", maxFrameSize })
        const out: Array<Frame.Frame> = []
        let failure: Violation.ProtocolViolation | undefined
        for (const c of chunked(bytes, sizes)) {
          const v = parser.push(c, out)
          assert.isAtMost(parser.bufferedBytes, maxFrameSize + 14)
          if (v !== undefined) {
            assert.isTrue(Violation.isProtocolViolation(v))
            assert.include([1002, 1007, 1009], v.code)
            if (failure !== undefined) assert.strictEqual(v, failure)
            failure = v
          }
        }
        for (const f of out) {
          if (Frame.isControl(f)) assert.isAtMost(f.payload.length, 125)
          assert.isAtMost(f.payload.length, maxFrameSize)
        }
      }),
      { numRuns: 60_000 }
    )
  })
})
