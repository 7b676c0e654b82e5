/**
 * `npm run bench:codec`: our FrameParser and Serializer side by side with `ws`'s own Receiver
 * and Sender, in one process, on the same bytes and the same chunking.
 *
 * - parse: masked client frames (binary, so neither side validates UTF-8) of 16 B … 1 MiB,
 *   concatenated and fed in 64 KiB chunks to a server-side parser;
 * - parse text: the same with Text frames, validated as UTF-8 on both sides (ours in the parser,
 *   `validateUtf8`, as sessions run it; `ws` with Node's native `buffer.isUtf8`), once all ASCII
 *   and once mixed (1-, 2-, 3- and 4-byte characters);
 * - serialize: server frames (unmasked) and client frames (masked; `ws` told the data is
 *   read-only, as our serializer never modifies the caller's payload), one frame per call and
 *   in batches of 64 (our writer serializes each batch it takes from its queue into one buffer
 *   list; `ws` frames one message per call, so its side is 64 calls).
 *
 * Each row is the median of ROUNDS rounds (default 7, env BENCH_ROUNDS) after a warm-up round;
 * ratio = our throughput / ws throughput (> 1 means we are faster). `ws` runs without its
 * optional native addons (bufferutil), as installed by default.
 */
import { Frame, FrameParser, Serializer } from "@effect-ws/codec"
import * as wsModule from "ws"

/** The two `ws` internals we compare against (exported by `ws`, not declared by `@types/ws`). */
interface WsInternals {
  readonly Receiver: new(options: { isServer: boolean; maxPayload: number; binaryType: "nodebuffer" }) => {
    on(event: "message", listener: () => void): void
    on(event: "error", listener: (e: Error) => void): void
    _write(chunk: Buffer, encoding: string, cb: () => void): void
  }
  readonly Sender: {
    frame(data: Buffer, options: { fin: boolean; mask: boolean; opcode: number; readOnly: boolean; rsv1: boolean }): Array<Buffer>
  }
}
const { Receiver, Sender } = wsModule as unknown as WsInternals

const ROUNDS = Math.max(5, Number(process.env["BENCH_ROUNDS"] ?? 7))
const CHUNK = 64 * 1024
const SIZES = [16, 125, 1024, 16 * 1024, 64 * 1024, 1024 * 1024]
/** Bytes of payload per round and size: enough frames to measure, bounded for the small sizes. */
const BYTES_PER_ROUND = 16 * 1024 * 1024

const framesFor = (size: number) => Math.max(16, Math.min(200_000, Math.floor(BYTES_PER_ROUND / size)))

const median = (xs: Array<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

/** Runs `fn` once to warm up, then ROUNDS times, each after an untimed `before`; returns the median seconds. */
const time = (fn: () => void, before?: () => void): number => {
  before?.()
  fn()
  const samples: Array<number> = []
  for (let r = 0; r < ROUNDS; r++) {
    before?.()
    const t0 = process.hrtime.bigint()
    fn()
    samples.push(Number(process.hrtime.bigint() - t0) / 1e9)
  }
  return median(samples)
}

/** What the payloads of a parse row are. */
type Content = "binary" | "ascii" | "mixed"

/** Mixed text: 1-, 2-, 3- and 4-byte UTF-8 characters. */
const MIXED = new TextEncoder().encode("{\"name\":\"Zoë\",\"city\":\"Zürich\",\"note\":\"€ 10 → ✓\",\"emoji\":\"😀\"} ")

/** A payload of `size` bytes: counting bytes, or valid UTF-8 (ASCII / mixed, cut on a character boundary, padded with spaces). */
const payloadOf = (size: number, content: Content): Uint8Array => {
  const payload = new Uint8Array(size)
  if (content === "binary") {
    for (let i = 0; i < size; i++) payload[i] = i & 0xff
    return payload
  }
  if (content === "ascii") {
    for (let i = 0; i < size; i++) payload[i] = 0x20 + (i % 95)
    return payload
  }
  payload.fill(0x20)
  for (let i = 0; i + MIXED.length <= size; i += MIXED.length) payload.set(MIXED, i)
  return payload
}

/** Masked client frames of `size` bytes, serialized by us, cut into 64 KiB chunks. */
const clientStream = (size: number, count: number, content: Content): Array<Uint8Array> => {
  const payload = payloadOf(size, content)
  const parts: Array<Uint8Array> = []
  const serializer = new Serializer.Serializer({ mask: true })
  const frame = content === "binary" ? Frame.binary(payload) : Frame.make("Text", true, false, false, false, payload)
  for (let i = 0; i < count; i++) serializer.serialize(frame, parts)
  const all = Serializer.concat(parts)
  const chunks: Array<Uint8Array> = []
  for (let p = 0; p < all.length; p += CHUNK) chunks.push(Buffer.from(all.subarray(p, p + CHUNK)))
  return chunks
}

interface Row {
  readonly name: string
  readonly size: number
  readonly frames: number
  readonly ours: number
  readonly ws: number
}

const parseRow = (size: number, content: Content): Row => {
  const frames = framesFor(size)
  const chunks = clientStream(size, frames, content)
  // Both parsers unmask in place. XOR costs the same on any bytes, so binary rounds reuse the
  // chunks; text must be validated as clear text, so its chunks are restored (untimed) first.
  const pristine = content === "binary" ? undefined : chunks.map((c) => new Uint8Array(c)) // copies (a Buffer's `slice` is a view)
  const restore = pristine === undefined ? undefined : () => chunks.forEach((c, i) => c.set(pristine[i]!))
  const ours = time(() => {
    const parser = new FrameParser.FrameParser({ role: "server", maxFrameSize: 2 * 1024 * 1024, validateUtf8: true })
    const out: Array<Frame.Frame> = []
    let n = 0
    for (const c of chunks) {
      if (parser.push(c, out) !== undefined) throw new Error("unexpected violation")
      n += out.length
      out.length = 0
    }
    if (n !== frames) throw new Error(`ours parsed ${n} of ${frames}`)
  }, restore)
  const ws = time(() => {
    const receiver = new Receiver({ isServer: true, maxPayload: 2 * 1024 * 1024, binaryType: "nodebuffer" })
    let n = 0
    receiver.on("message", () => n++)
    receiver.on("error", (e: Error) => {
      throw e
    })
    const done = () => {}
    for (const c of chunks) receiver._write(c as Buffer, "buffer", done)
    if (n !== frames) throw new Error(`ws parsed ${n} of ${frames}`)
  }, restore)
  const name = content === "binary" ? "parse masked" : `parse masked text (${content === "ascii" ? "ASCII" : "mixed UTF-8"})`
  return { name, size, frames, ours, ws }
}

/** Frames per batch in the batch rows: what our writer takes from its queue at once under load. */
const BATCH = 64

const serializeRow = (size: number, mask: boolean, batch: boolean): Row => {
  const frames = framesFor(size)
  const payload = Buffer.alloc(size, 0x61)
  const frame = Frame.binary(payload)
  const group: Array<Frame.Frame> = new Array(BATCH).fill(frame)
  const ours = time(() => {
    // A fresh result array per call, as `Sender.frame` returns one.
    const serializer = new Serializer.Serializer({ mask })
    if (batch) for (let i = 0; i < frames; i += BATCH) serializer.serializeBatch(group, [])
    else for (let i = 0; i < frames; i++) serializer.serialize(frame, [])
  })
  const options = { fin: true, mask, opcode: 2, readOnly: true, rsv1: false }
  const ws = time(() => {
    for (let i = 0; i < frames; i += batch ? BATCH : 1) {
      for (let k = 0; k < (batch ? BATCH : 1); k++) Sender.frame(payload, options)
    }
  })
  const name = `serialize ${mask ? "client (masked)" : "server"}${batch ? `, batches of ${BATCH}` : ""}`
  return { name, size, frames: batch ? Math.ceil(frames / BATCH) * BATCH : frames, ours, ws }
}

const fmtSize = (n: number) => (n >= 1024 * 1024 ? `${n / 1024 / 1024} MiB` : n >= 1024 ? `${n / 1024} KiB` : `${n} B`)
const fmt = (x: number, digits = 0) => x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })

const rows: Array<Row> = []
for (const content of ["binary", "ascii", "mixed"] as const) for (const size of SIZES) rows.push(parseRow(size, content))
for (const mask of [false, true]) {
  for (const batch of [false, true]) for (const size of SIZES) rows.push(serializeRow(size, mask, batch))
}

console.log(`codec benchmark: Node ${process.version}, median of ${ROUNDS} rounds, parse fed in ${CHUNK / 1024} KiB chunks`)
console.log("| case | size | ours MB/s | ws MB/s | ours frames/s | ws frames/s | ours/ws |")
console.log("|---|---:|---:|---:|---:|---:|---:|")
for (const r of rows) {
  const bytes = r.size * r.frames
  console.log(
    `| ${r.name} | ${fmtSize(r.size)} | ${fmt(bytes / r.ours / 1e6)} | ${fmt(bytes / r.ws / 1e6)} | ${fmt(r.frames / r.ours)} | ${fmt(r.frames / r.ws)} | ${fmt(r.ws / r.ours, 2)} |`
  )
}
