import { assert, describe, it } from "@effect/vitest"
import { Frame, FrameParser, Violation } from "@effect-ws/codec"
import { chunked, hex, plain } from "./helpers.ts"

type Options = FrameParser.FrameParserOptions
const client: Options = { role: "client" } // reads a server's (unmasked) frames
const server: Options = { role: "server" } // reads a client's (masked) frames

/** Feeds chunks (copied, as the parser unmasks in place); returns frames and the violation. */
const feed = (chunks: ReadonlyArray<Uint8Array>, options: Options) => {
  const parser = new FrameParser.FrameParser(options)
  const frames: Array<Frame.Frame> = []
  let violation: Violation.ProtocolViolation | undefined
  for (const c of chunks) {
    violation = parser.push(c.slice(), frames)
    if (violation) break
  }
  return { frames, violation, parser }
}
const feedBytes = (bytes: Uint8Array, options: Options, sizes: ReadonlyArray<number> = []) =>
  feed(chunked(bytes, sizes), options)

/** Expects `bytes` to fail with `kind`/`code`, in one chunk and one byte at a time. */
const expectViolation = (bytes: Uint8Array, options: Options, kind: Violation.ViolationKind, code: number) => {
  for (const sizes of [[], [1], [2, 3]]) {
    const { violation } = feedBytes(bytes, options, sizes)
    assert.strictEqual(violation?.kind, kind, `chunks ${sizes}`)
    assert.strictEqual(violation?.code, code)
  }
}

const text = (s: string, fin = true) => ({ _tag: "Text", fin, rsv1: false, rsv2: false, rsv3: false, payload: Array.from(new TextEncoder().encode(s)) })

describe("FrameParser: RFC 6455 §5.7 examples", () => {
  it("parses a single-frame unmasked text message", () => {
    const { frames, violation } = feedBytes(hex("81 05 48 65 6c 6c 6f"), client)
    assert.isUndefined(violation)
    assert.deepStrictEqual(frames.map(plain), [text("Hello")])
  })

  it("parses a single-frame masked text message", () => {
    for (const sizes of [[], [1], [3]]) {
      const { frames } = feedBytes(hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"), server, sizes)
      assert.deepStrictEqual(frames.map(plain), [text("Hello")])
    }
  })

  it("parses a fragmented unmasked text message", () => {
    const { frames } = feedBytes(hex("01 03 48 65 6c 80 02 6c 6f"), client)
    assert.deepStrictEqual(frames.map(plain), [text("Hel", false), { ...text("lo"), _tag: "Continuation" }])
  })

  it("parses an unmasked Ping and a masked Pong", () => {
    assert.deepStrictEqual(feedBytes(hex("89 05 48 65 6c 6c 6f"), client).frames.map(plain), [{ ...text("Hello"), _tag: "Ping" }])
    assert.deepStrictEqual(feedBytes(hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"), server).frames.map(plain), [{ ...text("Hello"), _tag: "Pong" }])
  })

  it("parses 256-byte and 64 KiB binary messages (16-bit and 64-bit lengths)", () => {
    const small = new Uint8Array(4 + 256)
    small.set(hex("82 7e 01 00"))
    for (let i = 0; i < 256; i++) small[4 + i] = i
    const r1 = feedBytes(small, client)
    assert.strictEqual(r1.frames[0]?.payload.length, 256)
    assert.strictEqual(r1.frames[0]?.payload[255], 255)
    const big = new Uint8Array(10 + 65536)
    big.set(hex("82 7f 00 00 00 00 00 01 00 00"))
    big[10 + 65535] = 7
    for (const sizes of [[], [1000], [7, 1]]) {
      const r = feedBytes(big, client, sizes)
      assert.strictEqual(r.frames.length, 1)
      assert.strictEqual(r.frames[0]?.payload.length, 65536)
      assert.strictEqual(r.frames[0]?.payload[65535], 7)
    }
  })
})

describe("FrameParser: lengths and chunking (conformance §1, H6)", () => {
  it("parses every length-encoding boundary, whole and one byte at a time", () => {
    for (const n of [0, 1, 125, 126, 127, 128, 65535, 65536]) {
      const header = n < 126 ? [0x82, n] : n < 65536 ? [0x82, 126, n >> 8, n & 0xff] : [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
      const bytes = new Uint8Array(header.length + n)
      bytes.set(header)
      bytes.fill(0xab, header.length)
      for (const sizes of [[], [1]]) {
        const { frames, violation, parser } = feedBytes(bytes, client, sizes)
        assert.isUndefined(violation)
        assert.strictEqual(frames.length, 1, `length ${n}`)
        assert.strictEqual(frames[0]!.payload.length, n)
        assert.isTrue(frames[0]!.payload.every((b) => b === 0xab))
        assert.isTrue(parser.atFrameBoundary)
      }
    }
  })

  it("assembles headers split at every offset, reusing its header buffer frame after frame", () => {
    // Masked frames with 7-, 16- and 64-bit lengths: headers of 6, 8 and 14 bytes.
    const frames = [3, 300, 70_000].map((n) => {
      const header = n < 126 ? [0x82, 0x80 | n] : n < 65536 ? [0x82, 0xfe, n >> 8, n & 0xff] : [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0x11, 0x70]
      const bytes = new Uint8Array(header.length + 4 + n)
      bytes.set(header)
      bytes.set([1, 2, 3, 4], header.length)
      for (let i = 0; i < n; i++) bytes[header.length + 4 + i] = (i & 0xff) ^ (i % 4 + 1)
      return { bytes, headerSize: header.length + 4, n }
    })
    for (const { headerSize } of frames) {
      for (let cut = 1; cut < headerSize; cut++) {
        // One parser, every frame cut inside its header (and again right at the start of the next chunk).
        const parser = new FrameParser.FrameParser(server)
        const out: Array<Frame.Frame> = []
        for (const frame of frames) {
          const bytes = frame.bytes.slice()
          const at = Math.min(cut, frame.headerSize - 1)
          assert.isUndefined(parser.push(bytes.subarray(0, at), out))
          assert.strictEqual(parser.bufferedBytes, at)
          assert.isUndefined(parser.push(bytes.subarray(at), out))
          assert.isTrue(parser.atFrameBoundary)
        }
        assert.deepStrictEqual(out.map((f) => f.payload.length), frames.map((f) => f.n))
        for (const f of out) assert.isTrue(f.payload.every((b, i) => b === (i & 0xff)), `cut ${cut}`)
      }
    }
  })

  it("hands out zero-copy views for frames inside a chunk, and copies a spanning frame once", () => {
    const bytes = hex("81 02 68 69 82 03 01 02 03")
    const parser = new FrameParser.FrameParser(client)
    const out: Array<Frame.Frame> = []
    parser.push(bytes, out)
    assert.strictEqual(out[0]!.payload.buffer, bytes.buffer)
    assert.strictEqual(out[1]!.payload.byteOffset, bytes.byteOffset + 6)
    const spanning = new FrameParser.FrameParser(client)
    const out2: Array<Frame.Frame> = []
    spanning.push(hex("82 04 01 02"), out2)
    assert.strictEqual(spanning.bufferedBytes, 4)
    assert.isFalse(spanning.viewsLastChunk)
    spanning.push(hex("03 04"), out2)
    assert.deepStrictEqual(Array.from(out2[0]!.payload), [1, 2, 3, 4])
    assert.strictEqual(out2[0]!.payload.byteLength, out2[0]!.payload.buffer.byteLength)
    assert.strictEqual(spanning.bufferedBytes, 0)
  })

  it("says whether a frame of the last push views its chunk (viewsLastChunk)", () => {
    const parser = new FrameParser.FrameParser(client)
    const out: Array<Frame.Frame> = []
    assert.isFalse(parser.viewsLastChunk)
    parser.push(hex("82 02 01 02"), out) // a whole frame: a view
    assert.isTrue(parser.viewsLastChunk)
    parser.push(hex("82 04 01"), out) // the start of a spanning frame: copied
    assert.isFalse(parser.viewsLastChunk)
    parser.push(hex("02 03 04 81"), out) // its end (copied) and a partial header (copied)
    assert.isFalse(parser.viewsLastChunk)
    parser.push(hex("00"), out) // an empty Text frame is a view too (of length 0)
    assert.isTrue(parser.viewsLastChunk)
    parser.push(hex("89"), out) // half a header
    assert.isFalse(parser.viewsLastChunk)
    assert.deepStrictEqual(out.map((f) => Array.from(f.payload)), [[1, 2], [1, 2, 3, 4], []])
  })

  it("assembles spanning frames in buffers from the given allocator, overwriting every byte", () => {
    const sizes: Array<number> = []
    // A dirty allocator: stale bytes must never reach a frame.
    const allocate = (n: number) => {
      sizes.push(n)
      return new Uint8Array(n).fill(0xee)
    }
    const parser = new FrameParser.FrameParser({ role: "server", allocate })
    const out: Array<Frame.Frame> = []
    const bytes = hex("82 85 01 02 03 04 00 00 00 00 00 81 80 01 02 03 04")
    for (const c of chunked(bytes, [7])) parser.push(c.slice(), out)
    assert.deepStrictEqual(sizes, [5])
    assert.deepStrictEqual(Array.from(out[0]!.payload), [1, 2, 3, 4, 1])
    assert.strictEqual(out[1]!.payload.length, 0)
  })

  it("keeps memory bounded by the frame being assembled when fed one byte at a time (H6)", () => {
    const n = 100_000
    const bytes = new Uint8Array(10 + n)
    bytes.set(hex("82 7f 00 00 00 00 00 01 86 a0"))
    const parser = new FrameParser.FrameParser(client)
    const out: Array<Frame.Frame> = []
    let maxBuffered = 0
    for (let i = 0; i < bytes.length; i++) {
      parser.push(bytes.subarray(i, i + 1), out)
      maxBuffered = Math.max(maxBuffered, parser.bufferedBytes)
    }
    assert.strictEqual(out.length, 1)
    assert.isAtMost(maxBuffered, n)
  })

  it("grows a spanning frame's buffer with the bytes received, not with its declared length", () => {
    // A header declaring 60 MiB costs nothing until bytes come, then at most about twice them.
    const parser = new FrameParser.FrameParser(client)
    const out: Array<Frame.Frame> = []
    assert.isUndefined(parser.push(hex("82 7f 00 00 00 00 03 c0 00 00"), out))
    assert.strictEqual(parser.bufferedBytes, 0)
    assert.isUndefined(parser.push(new Uint8Array(10), out))
    assert.strictEqual(parser.bufferedBytes, 65_536) // 64 KiB at most until more comes
    assert.isFalse(parser.viewsLastChunk)
    let received = 10
    for (const size of [1000, 65_536, 65_536, 1 << 20]) {
      assert.isUndefined(parser.push(new Uint8Array(size), out))
      received += size
      assert.isAtMost(parser.bufferedBytes, Math.max(2 * received, 65_536))
      assert.isAtLeast(parser.bufferedBytes, received)
    }
    // The rest, in 1 MiB chunks; the payload ends at exactly the declared size, every byte kept.
    const total = 60 * 1024 * 1024
    const marker = new Uint8Array(1 << 20)
    for (let i = 0; i < marker.length; i++) marker[i] = i % 251
    let last = 0
    while (received < total) {
      last = Math.min(marker.length, total - received)
      assert.isUndefined(parser.push(marker.slice(0, last), out))
      received += last
    }
    assert.strictEqual(out.length, 1)
    const payload = out[0]!.payload
    assert.strictEqual(payload.length, total)
    assert.strictEqual(payload.buffer.byteLength, total)
    assert.deepStrictEqual(payload.subarray(total - last), marker.subarray(0, last))
    assert.isTrue(parser.atFrameBoundary)
  })

  it("frees the buffers it outgrows, and on discard the one of a frame left half-received", () => {
    const allocated: Array<Uint8Array> = []
    const parser = new FrameParser.FrameParser({ role: "client", allocate: (n) => allocated[allocated.push(new Uint8Array(n)) - 1]! })
    const out: Array<Frame.Frame> = []
    parser.push(hex("82 7f 00 00 00 00 00 10 00 00"), out) // 1 MiB declared
    for (let i = 0; i < 5; i++) parser.push(new Uint8Array(60_000).fill(i + 1), out)
    assert.isAtLeast(allocated.length, 2)
    // Every outgrown buffer was detached (its memory freed); the one in use holds the bytes so far.
    assert.deepStrictEqual(allocated.slice(0, -1).map((b) => b.byteLength), allocated.slice(0, -1).map(() => 0))
    const current = allocated.at(-1)!
    assert.strictEqual(current[299_999], 5)
    parser.discard()
    assert.strictEqual(current.byteLength, 0, "the partial buffer was freed")
    assert.strictEqual(parser.bufferedBytes, 0)
    assert.isTrue(parser.atFrameBoundary)
    // The next push starts at a frame header; a frame handed out is never freed.
    const bytes = new Uint8Array(70_004)
    bytes.set(hex("82 7e ff ff"))
    bytes.fill(7, 4)
    parser.push(bytes.subarray(0, 30_000), out)
    parser.push(bytes.subarray(30_000, 60_000), out)
    parser.push(bytes.subarray(60_000, 65_539), out)
    parser.discard() // nothing held: a no-op
    assert.strictEqual(out.length, 1)
    assert.strictEqual(out[0]!.payload.length, 65_535)
    assert.isTrue(out[0]!.payload.every((b) => b === 7))
    // A pushed chunk is never detached (its piece was copied).
    const chunk = hex("82 7e 01 00 01 02 03")
    parser.push(chunk, out)
    parser.discard()
    assert.strictEqual(chunk.byteLength, 7)
  })

  it("checks maxMessageSize at each data frame header, with what the message's earlier frames declared", () => {
    const limited: Options = { role: "client", maxMessageSize: 10 }
    // One frame declaring 11 bytes: fails at its header, nothing buffered.
    const one = new FrameParser.FrameParser(limited)
    const v = one.push(hex("82 0b"), [])
    assert.strictEqual(v?.kind, "MessageTooBig")
    assert.strictEqual(v?.code, 1009)
    assert.strictEqual(one.bufferedBytes, 0)
    // Fragments of 6 + 4 fit (control frames between them do not count); 6 + 5 fail at the second header.
    const fits = feedBytes(hex("02 06 00 00 00 00 00 00 89 03 61 62 63 80 04 00 00 00 00"), limited, [1])
    assert.isUndefined(fits.violation)
    assert.deepStrictEqual(fits.frames.map((f) => f.payload.length), [6, 3, 4])
    expectViolation(hex("02 06 00 00 00 00 00 00 80 05"), limited, "MessageTooBig", 1009)
    // Each message starts its own count; the frame limit still comes first.
    assert.isUndefined(feedBytes(hex("82 0a 00 00 00 00 00 00 00 00 00 00 82 0a 00 00 00 00 00 00 00 00 00 00"), limited).violation)
    expectViolation(hex("82 0b"), { ...limited, maxFrameSize: 5 }, "FrameTooBig", 1009)
    // A 64-bit length split anywhere is checked once its bytes are in.
    expectViolation(hex("82 7f 00 00 00 00 00 00 00 0b"), limited, "MessageTooBig", 1009)
  })

  it("ignores empty chunks anywhere", () => {
    const bytes = hex("81 85 37 fa 21 3d 7f 9f 4d 51 58")
    const chunks = [...chunked(bytes, [1])].flatMap((c) => [new Uint8Array(), c, new Uint8Array()])
    assert.deepStrictEqual(feed(chunks, server).frames.map(plain), [text("Hello")])
  })

  it("accepts control frames between fragments and tracks the open message", () => {
    const { frames, violation, parser } = feedBytes(hex("01 01 61 89 00 00 01 62 8a 01 7a 80 01 63"), client, [1])
    assert.isUndefined(violation)
    assert.deepStrictEqual(frames.map((f) => f._tag), ["Text", "Ping", "Continuation", "Pong", "Continuation"])
    assert.isFalse(parser.inMessage)
  })
})

describe("FrameParser: violations", () => {
  it("rejects reserved opcodes 3–7 and 11–15, with and without payload (conformance §4, H9)", () => {
    for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) {
      expectViolation(Uint8Array.from([0x80 | op, 0x00]), client, "ReservedOpcode", 1002)
      expectViolation(Uint8Array.from([0x80 | op, 0x02, 0x01, 0x02]), client, "ReservedOpcode", 1002)
    }
  })

  it("rejects RSV bits that no extension claims, on data and control frames (conformance §3)", () => {
    for (const rsv of [0x40, 0x20, 0x10, 0x70]) {
      expectViolation(Uint8Array.from([0x81 | rsv, 0x00]), client, "ReservedBits", 1002)
      expectViolation(Uint8Array.from([0x89 | rsv, 0x00]), client, "ReservedBits", 1002)
    }
    const allowed = { role: "client", allowedRsv: { rsv1: true } } as const
    assert.isTrue(feedBytes(Uint8Array.from([0xc1, 0x00]), allowed).frames[0]!.rsv1)
    expectViolation(Uint8Array.from([0xa1, 0x00]), allowed, "ReservedBits", 1002)
    expectViolation(Uint8Array.from([0xc9, 0x00]), allowed, "ReservedBits", 1002)
  })

  it("delivers frames before a violation, then stays failed", () => {
    const { frames, violation, parser } = feedBytes(hex("81 02 68 69 c1 00 81 00"), client)
    assert.deepStrictEqual(frames.map(plain), [text("hi")])
    assert.strictEqual(violation?.kind, "ReservedBits")
    const again = parser.push(hex("81 00"), [])
    assert.strictEqual(again, violation)
    assert.strictEqual(parser.failed, violation)
  })

  it("rejects fragmented and oversized control frames (conformance §2, §5, H9)", () => {
    expectViolation(hex("09 00"), client, "FragmentedControlFrame", 1002)
    expectViolation(hex("0a 00"), client, "FragmentedControlFrame", 1002)
    expectViolation(hex("08 00"), client, "FragmentedControlFrame", 1002)
    expectViolation(hex("89 7e 00 7e"), client, "ControlFrameTooLarge", 1002)
    expectViolation(hex("88 7f 00 00 00 00 00 00 00 7e"), client, "ControlFrameTooLarge", 1002)
    const ping125 = new Uint8Array(127)
    ping125.set(hex("89 7d"))
    assert.strictEqual(feedBytes(ping125, client).frames[0]!.payload.length, 125)
  })

  it("rejects bad continuation sequences (conformance §5)", () => {
    expectViolation(hex("80 00"), client, "UnexpectedContinuation", 1002)
    expectViolation(hex("00 00"), client, "UnexpectedContinuation", 1002)
    expectViolation(hex("81 00 80 00"), client, "UnexpectedContinuation", 1002)
    expectViolation(hex("01 00 81 00"), client, "UnfinishedMessage", 1002)
    expectViolation(hex("02 00 89 00 02 00"), client, "UnfinishedMessage", 1002)
  })

  it("requires masking from clients and forbids it from servers (H8)", () => {
    expectViolation(hex("81 05 48 65 6c 6c 6f"), server, "UnmaskedFrame", 1002)
    expectViolation(hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"), client, "MaskedFrame", 1002)
  })

  it("fails 1009 from the header of a 2^63−1 byte frame, before buffering anything (H4)", () => {
    const bytes = hex("82 ff 7f ff ff ff ff ff ff ff 00 00 00 00")
    for (const sizes of [[], [1]]) {
      const { violation, parser } = feedBytes(bytes, { role: "server" }, sizes)
      assert.strictEqual(violation?.kind, "FrameTooBig")
      assert.strictEqual(violation?.code, 1009)
      assert.strictEqual(parser.bufferedBytes, 0)
    }
    // Detected as soon as the length is known: the mask key has not even arrived.
    for (const sizes of [[], [1], [3]]) {
      const early = feedBytes(hex("82 ff 7f ff ff ff ff ff ff ff"), { role: "server" }, sizes)
      assert.strictEqual(early.violation?.code, 1009)
      const early16 = feedBytes(hex("82 fe ff ff"), { role: "server", maxFrameSize: 1000 }, sizes)
      assert.strictEqual(early16.violation?.code, 1009)
    }
  })

  it("fails 1002 on a 64-bit length with the top bit set (H4)", () => {
    expectViolation(hex("82 7f 80 00 00 00 00 00 00 01"), client, "LengthTopBitSet", 1002)
    expectViolation(hex("82 7f ff ff ff ff ff ff ff ff"), client, "LengthTopBitSet", 1002)
  })

  it("enforces maxFrameSize at the 7-, 16- and 64-bit lengths, and lets it change", () => {
    const options = { role: "client", maxFrameSize: 100 } as const
    expectViolation(hex("82 65"), options, "FrameTooBig", 1009)
    expectViolation(hex("82 7e 00 65"), options, "FrameTooBig", 1009)
    expectViolation(hex("82 7f 00 00 00 00 00 00 00 65"), options, "FrameTooBig", 1009)
    const ok = new Uint8Array(102)
    ok.set(hex("82 64"))
    assert.strictEqual(feedBytes(ok, options).frames[0]!.payload.length, 100)
    const parser = new FrameParser.FrameParser(options)
    parser.maxFrameSize = 10
    assert.strictEqual(parser.push(hex("82 0b"), [])?.kind, "FrameTooBig")
  })

  it("parseFrames reports an incomplete trailing frame", () => {
    const r = FrameParser.parseFrames(hex("81 02 68 69 82 05 01"), client)
    assert.strictEqual(r.frames.length, 1)
    assert.isUndefined(r.violation)
    assert.isTrue(r.incomplete)
  })
})
