/**
 * H18's random-input properties (fast-check), shared by `hostile.test.ts` (100,000 cases each,
 * in CI) and this file run as a script for longer runs (`FUZZ_RUNS`, default 1,000,000 each):
 *   node --conditions=@effect-ws/source scripts/test/hostile/fuzz.ts
 * The frame parser (both roles, UTF-8 validation on, every RSV allowed or none, a 1,000 B frame
 * limit) and the HTTP head parser (request and response, 512 B and 16 header limits) get random
 * bytes, biased towards plausible ones so deeper states are reached, in random chunkings. Each
 * must never throw, report only typed outcomes (a violation with 1002/1007/1009; a head or an
 * error with 400/431), keep reporting the same failure, and never hold more than its limits.
 */
import { Frame, FrameParser, Handshake, Violation } from "@effect-ws/codec"
import fc from "fast-check"

/** `bytes` cut into chunks of the given sizes (cycled; the rest in one chunk). */
const chunked = function*(bytes: Uint8Array, sizes: ReadonlyArray<number>): Generator<Uint8Array> {
  let at = 0
  for (let i = 0; at < bytes.length; i++) {
    const size = sizes.length === 0 ? bytes.length : sizes[i % sizes.length]!
    yield bytes.subarray(at, at + size)
    at += size
  }
}

const fail = (message: string): never => {
  throw new Error(message)
}

const sizesArb = fc.array(fc.integer({ min: 1, max: 24 }), { maxLength: 5 })

/** Random frame bytes, plausible first bytes and length markers mixed in. */
const frameBytesArb = fc.oneof(
  fc.uint8Array({ maxLength: 96 }),
  fc.array(fc.oneof(fc.constantFrom(0x81, 0x82, 0x01, 0x00, 0x80, 0x88, 0x89, 0x8a, 0xc1, 0xfe, 0xff, 0x7e, 0x7f, 0xe2, 0x82), fc.integer({ min: 0, max: 255 })), { maxLength: 96 })
    .map((a) => Uint8Array.from(a))
)

/** Runs the frame parser property `runs` times (fast-check seed `seed`); throws the counterexample. */
export const fuzzFrameParser = (runs: number, seed: number): void => {
  const maxFrameSize = 1000
  fc.assert(
    fc.property(frameBytesArb, sizesArb, fc.boolean(), fc.boolean(), (bytes, sizes, server, rsv) => {
      const parser = new FrameParser.FrameParser({
        role: server ? "server" : "client",
        maxFrameSize,
        validateUtf8: true,
        ...(rsv ? { allowedRsv: { rsv1: true, rsv2: true, rsv3: true } } : {})
      })
      const out: Array<Frame.Frame> = []
      let failure: Violation.ProtocolViolation | undefined
      for (const chunk of chunked(bytes.slice(), sizes)) {
        const v = parser.push(chunk, out)
        if (parser.bufferedBytes > maxFrameSize + 14) fail(`buffered ${parser.bufferedBytes} B`)
        if (v === undefined) continue
        if (!Violation.isProtocolViolation(v) || ![1002, 1007, 1009].includes(v.code)) fail(`untyped outcome ${String(v)}`)
        if (failure !== undefined && failure !== v) fail("a second, different violation")
        failure = v
      }
      for (const f of out) {
        if (f.payload.length > (Frame.isControl(f) ? 125 : maxFrameSize)) fail(`${f._tag} of ${f.payload.length} B`)
      }
    }),
    { numRuns: runs, seed }
  )
}

const headBytesArb = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  fc.array(
    fc.oneof(
      fc.constantFrom("GET / HTTP/1.1\r\n", "HTTP/1.1 101 OK\r\n", "Upgrade: websocket\r\n", "\r\n", "\n", "\r", ":", " ", "\t", "a", "\x00", "\x7f", "é"),
      fc.string({ maxLength: 8 })
    ),
    { maxLength: 24 }
  ).map((parts) => Buffer.from(parts.join(""), "latin1"))
)

/** Runs the HTTP head parser property `runs` times (fast-check seed `seed`); throws the counterexample. */
export const fuzzHeadParser = (runs: number, seed: number): void => {
  const maxHeaderBytes = 512
  fc.assert(
    fc.property(headBytesArb, sizesArb, fc.boolean(), (bytes, sizes, request) => {
      const parser = new Handshake.HttpHeadParser({ kind: request ? "request" : "response", maxHeaderBytes, maxHeaders: 16 })
      let result: ReturnType<Handshake.HttpHeadParser["push"]>
      for (const chunk of chunked(bytes, sizes)) {
        const r = parser.push(chunk)
        if (parser.bufferedBytes > maxHeaderBytes) fail(`buffered ${parser.bufferedBytes} B`)
        if (result !== undefined && r !== result) fail("a different outcome after the first")
        result = r
      }
      if (result !== undefined && result._tag === "HttpHeadError" && result.status !== 400 && result.status !== 431) fail(`status ${result.status}`)
    }),
    { numRuns: runs, seed }
  )
}

if (import.meta.main) {
  const runs = Number(process.env["FUZZ_RUNS"] ?? 1_000_000)
  const seed = Number(process.env["FUZZ_SEED"] ?? Date.now() % 2 ** 31)
  const started = performance.now()
  console.log(`fuzz: ${runs} cases each, seed ${seed}`)
  fuzzFrameParser(runs, seed)
  fuzzHeadParser(runs, seed)
  console.log(`fuzz: ${2 * runs} cases passed in ${((performance.now() - started) / 1000).toFixed(1)} s`)
}
