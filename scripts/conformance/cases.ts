/**
 * The conformance cases, after `shared/docs/conformance.md` (sections 1–7, 9, 10, 12–13 and the
 * opening handshake), each checking the strict outcome. Most are written once and run on both
 * sides: against a server (our peer is the client and masks its frames) and against a client
 * (our peer is a fuzzing server, its frames unmasked, the client's frames must be masked). Ids
 * follow Autobahn|Testsuite's numbering where a case has a direct counterpart there (what it
 * sends and expects is the same; the descriptions are ours); cases of ours have an `x` or a
 * descriptive name in the id. `subset` marks the representative cases that run in `npm test`.
 */
import { acceptFor, Conn, type Incoming, respond } from "./conn.ts"
import { corpora, cut, filled, textOf } from "./data.ts"
import { formatDeflate, type DeflateTerms } from "./deflate.ts"
import {
  closeCleanly,
  type Ctx,
  type ClientEnd,
  expect,
  expectClose,
  type Expected,
  fail,
  type How,
  pass,
  type Profile,
  quiet,
  send,
  seq,
  STEP_MS,
  type Verdict
} from "./script.ts"
import { utf8Families } from "./utf8-vectors.ts"
import { BINARY, CLOSE, closePayload, CONTINUATION, encodeFrame, PING, PONG, type RawFrame, TEXT, utf8 } from "./wire.ts"
import * as net from "node:net"

/** Which implementation is under test: a server (we are its client) or a client (we are its server). */
export type Side = "server" | "client"

/** The server under test: an echo endpoint, and optionally one that fragments its messages. */
export interface ServerTarget {
  readonly url: URL
  /** An echo endpoint of the same implementation configured to split outgoing messages into `size`-byte frames (§10). */
  readonly fragmenting?: { readonly url: URL; readonly size: number }
}

/** How the client under test is configured, when a case needs more than the plain echo client. */
export interface ClientConfig {
  /** The permessage-deflate settings it offers with (the library's names). */
  readonly deflate?: {
    readonly serverNoContextTakeover?: boolean
    readonly clientNoContextTakeover?: boolean
    readonly serverMaxWindowBits?: number
    readonly clientMaxWindowBits?: number
  }
  /** Split outgoing messages into frames of at most this many bytes (§10). */
  readonly outgoingFragmentSize?: number
}

/** What a client-side handshake case reports: its verdict, and how the client must have ended. */
export interface ClientRunResult {
  readonly verdict: Verdict
  readonly end: ClientEnd | undefined
}

/** One conformance case. */
export interface Case {
  readonly id: string
  /** The conformance.md section, as printed in the tables ("1 framing", …). */
  readonly section: string
  readonly title: string
  readonly sides: ReadonlyArray<Side>
  /** Part of the bounded subset in `npm test`. */
  readonly subset: boolean
  /** Server under test: the `Sec-WebSocket-Extensions` offer to make. */
  readonly offer?: string
  /** Client under test: the permessage-deflate terms to answer with (computed from the client's offer when a function). */
  readonly answer?: DeflateTerms | ((incoming: Incoming) => DeflateTerms | string)
  /** Whether permessage-deflate must be agreed (the case fails otherwise); by default it must be when offered/answered. */
  readonly compression?: "required" | "optional" | "none"
  /** Server under test: runs against the fragmenting endpoint (skipped when the target has none). */
  readonly fragmenting?: boolean
  /** Client under test: the configured client to run instead of the plain echo client. */
  readonly client?: ClientConfig
  /** §9: the group's name and this case's value in it, for the timings line. */
  readonly timing?: { readonly group: string; readonly label: string }
  /** The case's script after the opening handshake (both sides). */
  readonly script?: (ctx: Ctx) => Promise<Verdict>
  /** Server under test: the whole case, handshake included (replaces `offer` + `script`). */
  readonly serverRun?: (target: ServerTarget, profile: Profile) => Promise<Verdict>
  /** Client under test: the whole case from the client's request on (replaces `answer` + `script`). */
  readonly clientRun?: (incoming: Incoming, profile: Profile) => Promise<ClientRunResult>
}

const BOTH: ReadonlyArray<Side> = ["server", "client"]
const enc = utf8
const bytes = (...xs: Array<number>) => Uint8Array.from(xs)
const text = (data: Uint8Array | string, check?: Expected["check"]): Expected => ({ type: "Text", data: typeof data === "string" ? enc(data) : data, ...(check ? { check } : {}) })
const binary = (data: Uint8Array, check?: Expected["check"]): Expected => ({ type: "Binary", data, ...(check ? { check } : {}) })
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))


/** Sends `frames`, expects `messages`/`pongs` back, then the clean close. */
const echo = (frames: ReadonlyArray<RawFrame>, expected: { messages?: ReadonlyArray<Expected>; pongs?: ReadonlyArray<Uint8Array>; ms?: number }, how: How = {}) => (ctx: Ctx) =>
  seq(send(ctx, frames, how), () => expect(ctx, expected), () => closeCleanly(ctx))

/** Sends `frames`, expects `before` (echoes that must come first), then a Close with one of `codes`. */
const fails = (frames: ReadonlyArray<RawFrame>, codes: ReadonlyArray<number | undefined>, before: { messages?: ReadonlyArray<Expected>; pongs?: ReadonlyArray<Uint8Array> } = {}, how: How = {}) => (ctx: Ctx) =>
  seq(send(ctx, frames, how), () => expect(ctx, before), () => expectClose(ctx, codes))

/** Builds the catalogue for a profile (the full run and the subset differ in repetitions and pauses). */
export const buildCases = (profile: Profile): Array<Case> => {
  const cases: Array<Case> = []
  const add = (c: Omit<Case, "sides" | "subset"> & { sides?: ReadonlyArray<Side>; subset?: boolean }) =>
    cases.push({ ...c, sides: c.sides ?? BOTH, subset: c.subset ?? false })
  const pause = profile.pauseMs

  // §1 Framing: every length-encoding boundary, in one write and in small writes.
  const S1 = "1 framing"
  const sizes = [0, 125, 126, 127, 128, 65535, 65536]
  for (const [k, type, op] of [[1, "text", TEXT], [2, "binary", BINARY]] as const) {
    sizes.forEach((n, i) => {
      const data = type === "text" ? textOf(n) : filled(n)
      const message = type === "text" ? text(data) : binary(data)
      add({ id: `1.${k}.${i + 1}`, section: S1, title: `${type} message of ${n} bytes`, subset: [0, 2, 6].includes(i) && k === 1 || [3, 5].includes(i) && k === 2, script: echo([{ opcode: op, payload: data }], { messages: [message] }) })
    })
    const big = type === "text" ? textOf(65536) : filled(65536)
    add({ id: `1.${k}.8`, section: S1, title: `${type} message of 65536 bytes in 997-byte writes`, subset: k === 1, script: echo([{ opcode: op, payload: big }], { messages: [type === "text" ? text(big) : binary(big)] }, { chop: 997 }) })
    for (const n of [0, 125, 126, 127, 128, 65535]) {
      const data = type === "text" ? textOf(n) : filled(n)
      const chop = n <= 128 ? 1 : 997
      add({ id: `1.${k}.x.${n}.chopped`, section: S1, title: `${type} message of ${n} bytes in ${chop}-byte writes`, subset: n === 126 && k === 2, script: echo([{ opcode: op, payload: data }], { messages: [type === "text" ? text(data) : binary(data)] }, { chop }) })
    }
  }

  // §2 Ping / Pong.
  const S2 = "2 ping/pong"
  const pingPayloads: Array<[string, string, Uint8Array]> = [
    ["2.1", "empty", new Uint8Array()],
    ["2.2", "text", enc("Hello, world!")],
    ["2.3", "binary", bytes(0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff)],
    ["2.4", "125-byte", filled(125)]
  ]
  for (const [id, name, payload] of pingPayloads) {
    add({ id, section: S2, title: `a Ping with ${name} payload is answered by a Pong with the same payload`, subset: id === "2.1" || id === "2.4", script: echo([{ opcode: PING, payload }], { pongs: [payload] }) })
  }
  add({ id: "2.5", section: S2, title: "a Ping with 126 payload bytes fails 1002 (no Pong)", subset: true, script: fails([{ opcode: PING, payload: filled(126) }], [1002]) })
  add({ id: "2.6", section: S2, title: "a 125-byte Ping in 1-byte writes is answered", subset: true, script: echo([{ opcode: PING, payload: filled(125, 3) }], { pongs: [filled(125, 3)] }, { chop: 1 }) })
  add({ id: "2.7", section: S2, title: "an unsolicited empty Pong is ignored", script: echo([{ opcode: PONG }], {}) })
  add({ id: "2.8", section: S2, title: "an unsolicited Pong with payload is ignored", script: echo([{ opcode: PONG, payload: enc("unsolicited pong payload") }], {}) })
  add({ id: "2.9", section: S2, title: "an unsolicited Pong, then a Ping: one Pong, for the Ping", subset: true, script: echo([{ opcode: PONG, payload: enc("unsolicited pong payload") }, { opcode: PING, payload: enc("ping payload") }], { pongs: [enc("ping payload")] }) })
  const ten = Array.from({ length: 10 }, (_, i) => enc(`payload-${i + 1}`))
  add({ id: "2.10", section: S2, title: "10 Pings back to back: 10 Pongs, in order, each with its Ping's payload", subset: true, script: echo(ten.map((payload) => ({ opcode: PING, payload })), { pongs: ten }) })
  // Written back to back (a yield only every 64 writes), so several Pings complete in one read.
  add({ id: "2.11", section: S2, title: "10 Pings in 1-byte writes, back to back: 10 Pongs, in order, each with its Ping's payload", subset: true, script: echo(ten.map((payload) => ({ opcode: PING, payload })), { pongs: ten }, { chop: 1, yieldEvery: 64 }) })
  add({ id: "2.x.pings-one-byte-apart", section: S2, title: "10 Pings in 1-byte writes, each byte read on its own: 10 Pongs, in order", script: echo(ten.map((payload) => ({ opcode: PING, payload })), { pongs: ten }, { chop: 1 }) })

  // §3 Reserved bits (no extension negotiated).
  const S3 = "3 rsv bits"
  const hello = enc("Hello, world!")
  const afterValid = (rsv: number, how: How) =>
    fails([{ opcode: TEXT, payload: hello }, { opcode: TEXT, payload: hello, rsv }, { opcode: PING }], [1002], { messages: [text(hello)] }, how)
  add({ id: "3.1", section: S3, title: "a text frame with RSV1 fails 1002", subset: true, script: fails([{ opcode: TEXT, payload: hello, rsv: 4 }], [1002]) })
  add({ id: "3.2", section: S3, title: "a valid text, then RSV2 on text, then a Ping: the echo, then 1002 (no Pong)", subset: true, script: afterValid(2, {}) })
  add({ id: "3.3", section: S3, title: "same with RSV1+RSV2, one write per frame", script: afterValid(6, { framewise: true }) })
  add({ id: "3.4", section: S3, title: "same with RSV3, in 1-byte writes", subset: true, script: afterValid(1, { chop: 1 }) })
  add({ id: "3.5", section: S3, title: "a binary frame with RSV1+RSV3 fails 1002", script: fails([{ opcode: BINARY, payload: filled(8), rsv: 5 }], [1002]) })
  add({ id: "3.6", section: S3, title: "a Ping with RSV2+RSV3 fails 1002 (no Pong)", subset: true, script: fails([{ opcode: PING, payload: hello, rsv: 3 }], [1002]) })
  add({ id: "3.7", section: S3, title: "a Close with all RSV bits fails 1002", script: fails([{ opcode: CLOSE, payload: closePayload(1000), rsv: 7 }], [1002]) })
  for (const rsv of [1, 2, 3, 4, 5, 6, 7]) {
    add({ id: `3.x.text.rsv${rsv}`, section: S3, title: `text with RSV bits ${rsv.toString(2).padStart(3, "0")} fails 1002`, script: fails([{ opcode: TEXT, payload: hello, rsv }], [1002]) })
    add({ id: `3.x.binary.rsv${rsv}`, section: S3, title: `binary with RSV bits ${rsv.toString(2).padStart(3, "0")} fails 1002`, script: fails([{ opcode: BINARY, payload: filled(5), rsv }], [1002]) })
    add({ id: `3.x.pong.rsv${rsv}`, section: S3, title: `Pong with RSV bits ${rsv.toString(2).padStart(3, "0")} fails 1002`, script: fails([{ opcode: PONG, rsv }], [1002]) })
    add({ id: `3.x.continuation.rsv${rsv}`, section: S3, title: `a continuation with RSV bits ${rsv.toString(2).padStart(3, "0")} fails 1002`, script: fails([{ opcode: TEXT, payload: enc("a"), fin: false }, { opcode: CONTINUATION, payload: enc("b"), rsv }], [1002]) })
  }

  // §4 Reserved opcodes.
  const S4 = "4 opcodes"
  ;[[1, [3, 4, 5, 6, 7]], [2, [11, 12, 13, 14, 15]]].forEach(([group, ops]) => {
    const [a, b, c, d, e] = ops as Array<number>
    const g = group as number
    const kind = g === 1 ? "data" : "control"
    add({ id: `4.${g}.1`, section: S4, title: `reserved ${kind} opcode ${a} fails 1002`, subset: g === 1, script: fails([{ opcode: a! }], [1002]) })
    add({ id: `4.${g}.2`, section: S4, title: `reserved ${kind} opcode ${b} with payload fails 1002`, script: fails([{ opcode: b!, payload: enc("reserved opcode payload") }], [1002]) })
    add({ id: `4.${g}.3`, section: S4, title: `a valid text, opcode ${c}, a Ping: the echo, then 1002 (no Pong)`, subset: g === 1, script: fails([{ opcode: TEXT, payload: hello }, { opcode: c! }, { opcode: PING }], [1002], { messages: [text(hello)] }) })
    add({ id: `4.${g}.4`, section: S4, title: `a valid text, opcode ${d} with payload, a Ping: the echo, then 1002`, subset: g === 2, script: fails([{ opcode: TEXT, payload: hello }, { opcode: d!, payload: hello }, { opcode: PING }], [1002], { messages: [text(hello)] }) })
    add({ id: `4.${g}.5`, section: S4, title: `same with opcode ${e}, in 1-byte writes`, script: fails([{ opcode: TEXT, payload: hello }, { opcode: e!, payload: hello }, { opcode: PING }], [1002], { messages: [text(hello)] }, { chop: 1 }) })
  })

  // §5 Fragmentation.
  const S5 = "5 fragmentation"
  const f1 = enc("fragment1")
  const f2 = enc("fragment2")
  const twoFragments: Array<RawFrame> = [{ opcode: TEXT, payload: f1, fin: false }, { opcode: CONTINUATION, payload: f2 }]
  const withPing: Array<RawFrame> = [{ opcode: TEXT, payload: f1, fin: false }, { opcode: PING, payload: enc("ping payload") }, { opcode: CONTINUATION, payload: f2 }]
  const noneOpen = (fin: boolean): Array<RawFrame> => [{ opcode: CONTINUATION, payload: f1, fin }, { opcode: TEXT, payload: f2 }]
  add({ id: "5.1", section: S5, title: "a fragmented Ping fails 1002", subset: true, script: fails([{ opcode: PING, payload: f1, fin: false }, { opcode: CONTINUATION, payload: f2 }], [1002]) })
  add({ id: "5.2", section: S5, title: "a fragmented Pong fails 1002", script: fails([{ opcode: PONG, payload: f1, fin: false }, { opcode: CONTINUATION, payload: f2 }], [1002]) })
  add({ id: "5.3", section: S5, title: "text in 2 fragments echoes as one message", subset: true, script: echo(twoFragments, { messages: [text("fragment1fragment2")] }) })
  add({ id: "5.4", section: S5, title: "same, one write per frame", script: echo(twoFragments, { messages: [text("fragment1fragment2")] }, { framewise: true }) })
  add({ id: "5.5", section: S5, title: "same, in 1-byte writes", script: echo(twoFragments, { messages: [text("fragment1fragment2")] }, { chop: 1 }) })
  add({ id: "5.6", section: S5, title: "a Ping between 2 text fragments: the Pong and the echo", subset: true, script: echo(withPing, { messages: [text("fragment1fragment2")], pongs: [enc("ping payload")] }) })
  add({ id: "5.7", section: S5, title: "same, one write per frame", script: echo(withPing, { messages: [text("fragment1fragment2")], pongs: [enc("ping payload")] }, { framewise: true }) })
  add({ id: "5.8", section: S5, title: "same, in 1-byte writes", script: echo(withPing, { messages: [text("fragment1fragment2")], pongs: [enc("ping payload")] }, { chop: 1 }) })
  add({ id: "5.9", section: S5, title: "a final continuation with no message open fails 1002 (no echo of what follows)", subset: true, script: fails(noneOpen(true), [1002]) })
  add({ id: "5.10", section: S5, title: "same, one write per frame", script: fails(noneOpen(true), [1002], {}, { framewise: true }) })
  add({ id: "5.11", section: S5, title: "same, in 1-byte writes", script: fails(noneOpen(true), [1002], {}, { chop: 1 }) })
  add({ id: "5.12", section: S5, title: "a non-final continuation with no message open fails 1002", script: fails(noneOpen(false), [1002]) })
  add({ id: "5.13", section: S5, title: "same, one write per frame", script: fails(noneOpen(false), [1002], {}, { framewise: true }) })
  add({ id: "5.14", section: S5, title: "same, in 1-byte writes", script: fails(noneOpen(false), [1002], {}, { chop: 1 }) })
  add({
    id: "5.15",
    section: S5,
    title: "a complete fragmented text, then a continuation with nothing open: the echo, then 1002",
    subset: true,
    script: fails([...twoFragments, { opcode: CONTINUATION, payload: enc("fragment3"), fin: false }, { opcode: TEXT, payload: enc("fragment4") }], [1002], { messages: [text("fragment1fragment2")] })
  })
  const orphan = (fin: boolean): Array<RawFrame> => [{ opcode: CONTINUATION, payload: f1, fin }, { opcode: TEXT, payload: f2, fin: false }, { opcode: CONTINUATION, payload: enc("fragment3") }]
  add({ id: "5.16", section: S5, title: "a non-final continuation with nothing open, before a fragmented text, fails 1002", script: fails([...orphan(false), ...orphan(false)], [1002]) })
  add({ id: "5.17", section: S5, title: "a final continuation with nothing open, before a fragmented text, fails 1002", script: fails([...orphan(true), ...orphan(true)], [1002]) })
  add({ id: "5.18", section: S5, title: "a new text frame while a text message is open fails 1002", subset: true, script: fails([{ opcode: TEXT, payload: f1, fin: false }, { opcode: TEXT, payload: f2 }], [1002]) })
  const fragments = Array.from({ length: 5 }, (_, i) => enc(`fragment${i + 1}`))
  const pings = [enc("pongme 1!"), enc("pongme 2!")]
  const fiveWithPings = (how: How) => (ctx: Ctx) =>
    seq(
      send(ctx, [{ opcode: TEXT, payload: fragments[0]!, fin: false }, { opcode: CONTINUATION, payload: fragments[1]!, fin: false }, { opcode: PING, payload: pings[0]! }], how),
      // The first Ping must be answered while the message is still open.
      () => expect(ctx, { pongs: [pings[0]!], ms: pause + STEP_MS }),
      () => sleep(pause).then(() => pass),
      send(ctx, [{ opcode: CONTINUATION, payload: fragments[2]!, fin: false }, { opcode: CONTINUATION, payload: fragments[3]!, fin: false }, { opcode: PING, payload: pings[1]! }, { opcode: CONTINUATION, payload: fragments[4]! }], how),
      () => expect(ctx, { pongs: [pings[1]!], messages: [text("fragment1fragment2fragment3fragment4fragment5")] }),
      () => closeCleanly(ctx)
    )
  add({ id: "5.19", section: S5, title: "5 text fragments with Pings between and a pause: each Pong at once, then the echo", subset: true, script: fiveWithPings({}) })
  add({ id: "5.20", section: S5, title: "same, one write per frame", script: fiveWithPings({ framewise: true }) })
  add({ id: "5.x.binary-10", section: S5, title: "binary in 10 fragments echoes as one message", script: echo([{ opcode: BINARY, payload: filled(10), fin: false }, ...Array.from({ length: 8 }, (_, i) => ({ opcode: CONTINUATION, payload: filled(10, i + 1), fin: false })), { opcode: CONTINUATION, payload: filled(10, 9) }], { messages: [binary(Uint8Array.from(Array.from({ length: 10 }, (_, i) => [...filled(10, i)]).flat()))] }) })
  add({ id: "5.x.one-byte-fragments", section: S5, title: "11 one-byte fragments in 1-byte writes echo as one message", subset: true, script: echo([..."hello world"].map((c, i, all) => ({ opcode: i === 0 ? TEXT : CONTINUATION, payload: enc(c), fin: i === all.length - 1 })), { messages: [text("hello world")] }, { chop: 1 }) })
  add({ id: "5.x.pong-between", section: S5, title: "a Pong between fragments is ignored, the message echoes", script: echo([{ opcode: BINARY, payload: f1, fin: false }, { opcode: PONG, payload: f2 }, { opcode: CONTINUATION, payload: f2 }], { messages: [binary(enc("fragment1fragment2"))] }) })

  // §6 UTF-8.
  const S6 = "6 utf-8"
  add({ id: "6.1.1", section: S6, title: "an empty text message echoes", subset: true, script: echo([{ opcode: TEXT }], { messages: [text("")] }) })
  add({ id: "6.1.2", section: S6, title: "a text message of 3 empty fragments echoes (empty)", script: echo([{ opcode: TEXT, fin: false }, { opcode: CONTINUATION, fin: false }, { opcode: CONTINUATION }], { messages: [text("")] }) })
  add({ id: "6.1.3", section: S6, title: "empty, non-empty, empty fragments echo as one message", script: echo([{ opcode: TEXT, fin: false }, { opcode: CONTINUATION, payload: enc("middle frame payload"), fin: false }, { opcode: CONTINUATION }], { messages: [text("middle frame payload")] }) })
  const mixed = enc("Hello-µ@ßöäüàá-UTF-8!!")
  const kosme = bytes(0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5)
  add({ id: "6.2.1", section: S6, title: "valid multi-byte UTF-8 in one frame echoes", subset: true, script: echo([{ opcode: TEXT, payload: mixed }], { messages: [text(mixed)] }) })
  add({ id: "6.2.2", section: S6, title: "valid UTF-8 in 2 fragments split on a code point boundary echoes", script: echo([{ opcode: TEXT, payload: mixed.subarray(0, 7), fin: false }, { opcode: CONTINUATION, payload: mixed.subarray(7) }], { messages: [text(mixed)] }) })
  add({ id: "6.2.3", section: S6, title: "valid UTF-8 in one frame, in 1-byte writes, echoes", script: echo([{ opcode: TEXT, payload: mixed }], { messages: [text(mixed)] }, { chop: 1 }) })
  add({ id: "6.2.4", section: S6, title: "valid UTF-8 in 1-byte fragments (code points split across frames) echoes", subset: true, script: echo([...kosme].map((b, i) => ({ opcode: i === 0 ? TEXT : CONTINUATION, payload: bytes(b), fin: i === kosme.length - 1 })), { messages: [text(kosme)] }) })
  const invalid = Uint8Array.from([...kosme, 0xed, 0xa0, 0x80, ...enc("edited")])
  add({ id: "6.3.1", section: S6, title: "invalid UTF-8 (a surrogate) in one frame fails 1007", subset: true, script: fails([{ opcode: TEXT, payload: invalid }], [1007]) })
  add({ id: "6.3.2", section: S6, title: "the same in 1-byte fragments fails 1007", script: fails([...invalid].map((b, i) => ({ opcode: i === 0 ? TEXT : CONTINUATION, payload: bytes(b), fin: i === invalid.length - 1 })), [1007]) })
  // 6.4: fail fast. Part 1 is valid (nothing may happen during the pause), part 2 makes it
  // invalid: the Close 1007 must come within the pause, before part 3 is sent.
  const part1 = kosme
  const part2 = bytes(0xf4, 0x90, 0x80, 0x80)
  const part3 = enc("edited")
  const failFast = (parts: ReadonlyArray<Uint8Array>, asFrames: boolean) => (ctx: Ctx) => {
    const whole = Uint8Array.from([...parts[0]!, ...parts[1]!, ...parts[2]!])
    const wires: Array<Uint8Array> = []
    if (asFrames) {
      parts.forEach((payload, i) => wires.push(encodeFrame({ opcode: i === 0 ? TEXT : CONTINUATION, payload, fin: i === 2 }, ctx.conn.role === "client")))
    } else {
      const frame = encodeFrame({ opcode: TEXT, payload: whole }, ctx.conn.role === "client")
      const head = frame.length - whole.length
      const a = head + parts[0]!.length
      const b = a + parts[1]!.length
      wires.push(frame.subarray(0, a), frame.subarray(a, b), frame.subarray(b))
    }
    return seq(
      () => ctx.conn.sendBytes(wires[0]!).then(() => pass),
      () => quiet(ctx, pause, "while the message so far was valid UTF-8"),
      () => ctx.conn.sendBytes(wires[1]!).then(() => pass),
      // The rest is never sent: an implementation that waits for it never closes. The window
      // only bounds the wait (a loaded machine may take a while to answer).
      () => expectClose(ctx, [1007], 4 * pause, " while the rest of the message was held back (UTF-8 must fail fast)")
    )
  }
  add({ id: "6.4.1", section: S6, title: "fail fast: the fragment with an invalid code point (U+110000) gets 1007 before the last fragment", subset: true, script: failFast([part1, part2, part3], true) })
  add({ id: "6.4.2", section: S6, title: "fail fast: the fragment holding the one invalid byte gets 1007 before the last fragment", subset: true, script: failFast([Uint8Array.from([...part1, 0xf4]), bytes(0x90), Uint8Array.from([0x80, 0x80, ...part3])], true) })
  add({ id: "6.4.3", section: S6, title: "fail fast inside one frame: the chunk with an invalid code point gets 1007 before the rest of the frame", subset: true, script: failFast([part1, part2, part3], false) })
  add({ id: "6.4.4", section: S6, title: "fail fast inside one frame: the chunk holding the one invalid byte gets 1007 before the rest", subset: true, script: failFast([Uint8Array.from([...part1, 0xf4]), bytes(0x90), Uint8Array.from([0x80, 0x80, ...part3])], false) })
  utf8Families.forEach((fam, f) => {
    fam.vectors.forEach((v, i) => {
      const id = `6.${f + 5}.${i + 1}`
      const hex = Buffer.from(v.bytes.subarray(0, 24)).toString("hex") + (v.bytes.length > 24 ? "…" : "")
      add({
        id,
        section: S6,
        title: `${fam.name}: ${hex} ${v.valid ? "echoes" : "fails 1007"}`,
        subset: i === 0,
        script: v.valid ? echo([{ opcode: TEXT, payload: v.bytes }], { messages: [text(v.bytes)] }) : fails([{ opcode: TEXT, payload: v.bytes }], [1007])
      })
    })
  })
  // Fail fast on fragment boundaries: the invalid bytes end the first fragment; the rest is never sent.
  for (const [name, bad] of [["surrogate", bytes(0xed, 0xa0, 0x80)], ["overlong", bytes(0xc0, 0xaf)], ["above U+10FFFF", bytes(0xf4, 0x90)], ["0xFF", bytes(0xff)]] as const) {
    add({
      id: `6.x.fail-fast.${name.replace(/\W+/g, "-")}`,
      section: S6,
      title: `fail fast: a first fragment ending in ${name} gets 1007 with the message still open`,
      subset: name === "surrogate",
      script: (ctx) => seq(send(ctx, [{ opcode: TEXT, payload: Uint8Array.from([...enc("valid so far "), ...bad]), fin: false }]), () => expectClose(ctx, [1007], 4 * pause, " while the message was still open (UTF-8 must fail fast)"))
    })
  }
  const edges = enc("κόσμε \u007f\u0080\u07ff\u0800\uffff\u{10000}\u{10ffff}")
  add({
    id: "6.x.split-everywhere",
    section: S6,
    title: "valid UTF-8 with the edge code points in 2 fragments, split at every byte (one message per split)",
    subset: true,
    script: async (ctx) => {
      for (let at = 1; at < edges.length; at++) {
        await ctx.conn.sendFrames([{ opcode: TEXT, payload: edges.subarray(0, at), fin: false }, { opcode: CONTINUATION, payload: edges.subarray(at) }])
        const v = await expect(ctx, { messages: [text(edges)] })
        if (!v.ok) return fail(`split at byte ${at}: ${v.why}`)
      }
      return closeCleanly(ctx)
    }
  })

  // §7 Close.
  const S7 = "7 close"
  const close = (code?: number, reason: Uint8Array | string = new Uint8Array()): RawFrame => ({ opcode: CLOSE, payload: closePayload(code, reason) })
  const hw = enc("Hello World!")
  add({ id: "7.1.1", section: S7, title: "a text echoes, then the clean close", subset: true, script: echo([{ opcode: TEXT, payload: hw }], { messages: [text(hw)] }) })
  add({ id: "7.1.2", section: S7, title: "two Close frames: one Close reply, then TCP closes", script: fails([close(1000), close(1000)], [1000]) })
  add({ id: "7.1.3", section: S7, title: "a Ping after the Close is ignored (no Pong)", subset: true, script: fails([close(1000), { opcode: PING, payload: enc("ping") }], [1000]) })
  add({ id: "7.1.4", section: S7, title: "a text after the Close is ignored (no echo)", script: fails([close(1000), { opcode: TEXT, payload: hw }], [1000]) })
  add({ id: "7.1.5", section: S7, title: "a fragmented text interrupted by the Close is dropped", script: fails([{ opcode: TEXT, payload: f1, fin: false }, close(1000), { opcode: CONTINUATION, payload: f2 }], [1000]) })
  add({
    id: "7.1.6",
    section: S7,
    title: "256 KiB text, a small text, Close, Ping: the echoes that come are right and in order, then Close 1000, no Pong",
    script: async (ctx) => {
      const big = filled(256 * 1024).map((b) => 0x41 + (b % 26))
      await ctx.conn.sendFrames([{ opcode: TEXT, payload: big }, { opcode: TEXT, payload: hw }, close(1000), { opcode: PING }])
      const want = [big, hw]
      const deadline = Date.now() + STEP_MS
      for (;;) {
        const e = await ctx.conn.peek(deadline - Date.now())
        if (e._tag !== "Message") break
        await ctx.conn.next(0)
        const w = want.shift()
        if (w === undefined || e.message.type !== "Text" || Buffer.compare(e.message.data, w) !== 0) return fail("an echo that is not the next message sent")
      }
      return expectClose(ctx, [1000], deadline - Date.now())
    }
  })
  add({ id: "7.3.1", section: S7, title: "an empty Close: a Close reply (empty or 1000), TCP closes", subset: true, script: fails([close()], [undefined, 1000]) })
  add({ id: "7.3.2", section: S7, title: "a Close with a 1-byte payload fails 1002", subset: true, script: fails([{ opcode: CLOSE, payload: bytes(0x03) }], [1002]) })
  add({ id: "7.3.3", section: S7, title: "Close 1000 without reason: Close 1000", script: fails([close(1000)], [1000]) })
  add({ id: "7.3.4", section: S7, title: "Close 1000 with a reason: Close 1000", script: fails([close(1000, "Hello World!")], [1000]) })
  add({ id: "7.3.5", section: S7, title: "Close 1000 with a 123-byte reason: Close 1000", script: fails([close(1000, "*".repeat(123))], [1000]) })
  add({ id: "7.3.6", section: S7, title: "Close 1000 with a 124-byte reason (payload 126) fails 1002", subset: true, script: fails([close(1000, "*".repeat(124))], [1002]) })
  add({ id: "7.5.1", section: S7, title: "a Close reason that is not valid UTF-8 fails 1007", subset: true, script: fails([close(1000, invalid)], [1007]) })
  ;[1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999].forEach((code, i) => {
    add({ id: `7.7.${i + 1}`, section: S7, title: `Close ${code} is answered with Close ${code}`, subset: code === 1001 || code === 4999, script: fails([close(code, "ok")], [code]) })
  })
  for (const code of [1012, 1013, 1014]) add({ id: `7.7.x.${code}`, section: S7, title: `Close ${code} is answered with Close ${code}`, script: fails([close(code)], [code]) })
  ;[0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999].forEach((code, i) => {
    add({ id: `7.9.${i + 1}`, section: S7, title: `Close ${code} on the wire fails 1002`, subset: code === 1005 || code === 999, script: fails([close(code)], [1002]) })
  })
  add({ id: "7.9.x.1015", section: S7, title: "Close 1015 on the wire fails 1002", script: fails([close(1015)], [1002]) })
  add({ id: "7.13.1", section: S7, title: "Close 5000 fails 1002", script: fails([close(5000)], [1002]) })
  add({ id: "7.13.2", section: S7, title: "Close 65535 fails 1002", subset: true, script: fails([close(65535)], [1002]) })

  // §9 Limits and performance (the runner reports each case's time).
  const S9 = "9 limits"
  const M = 1024 * 1024
  const bigSizes = [64 * 1024, 256 * 1024, M, 4 * M, 8 * M, 16 * M]
  const bigMs = (n: number) => STEP_MS + Math.ceil(n / M) * 2000
  const label = (n: number) => (n >= M ? `${n / M} MiB` : n >= 1024 ? `${n / 1024} KiB` : `${n} B`)
  for (const [k, type] of [[1, "Text"], [2, "Binary"]] as const) {
    bigSizes.forEach((n, i) => {
      add({
        id: `9.${k}.${i + 1}`,
        section: S9,
        title: `${type.toLowerCase()} message of ${label(n)}`,
        timing: { group: `${type.toLowerCase()}, one frame`, label: label(n) },
        subset: n === M,
        script: async (ctx) => {
          const data = type === "Text" ? textOf(n) : filled(n)
          await ctx.conn.sendMessage(type, data)
          return seq(() => expect(ctx, { messages: [{ type, data }], ms: bigMs(n) }), () => closeCleanly(ctx))
        }
      })
    })
  }
  const fragmentSizes = [64, 256, 1024, 4096, 16384, 65536, 256 * 1024, M, 4 * M]
  for (const [k, type] of [[3, "Text"], [4, "Binary"]] as const) {
    fragmentSizes.forEach((size, i) => {
      add({
        id: `9.${k}.${i + 1}`,
        section: S9,
        title: `${type.toLowerCase()} message of 4 MiB in ${label(size)} fragments`,
        timing: { group: `${type.toLowerCase()} 4 MiB, by fragment size`, label: label(size) },
        subset: k === 4 && size === 65536,
        script: async (ctx) => {
          const data = type === "Text" ? textOf(4 * M) : filled(4 * M)
          await ctx.conn.sendMessage(type, data, { fragmentSize: size })
          return seq(() => expect(ctx, { messages: [{ type, data }], ms: bigMs(4 * M) * 2 }), () => closeCleanly(ctx))
        }
      })
    })
  }
  const chops = [64, 128, 256, 512, 1024, 2048]
  for (const [k, type] of [[5, "Text"], [6, "Binary"]] as const) {
    chops.forEach((chop, i) => {
      add({
        id: `9.${k}.${i + 1}`,
        section: S9,
        title: `${type.toLowerCase()} message of 1 MiB in ${chop}-byte writes`,
        timing: { group: `${type.toLowerCase()} 1 MiB, by TCP write size`, label: label(chop) },
        subset: k === 5 && chop === 2048,
        script: async (ctx) => {
          const data = type === "Text" ? textOf(M) : filled(M)
          await ctx.conn.sendMessage(type, data, { chop })
          return seq(() => expect(ctx, { messages: [{ type, data }], ms: bigMs(M) * 2 }), () => closeCleanly(ctx))
        }
      })
    })
  }
  const sequential = [0, 16, 64, 256, 1024, 4096]
  for (const [k, type] of [[7, "Text"], [8, "Binary"]] as const) {
    sequential.forEach((size, i) => {
      add({
        id: `9.${k}.${i + 1}`,
        section: S9,
        title: `1,000 ${type.toLowerCase()} messages of ${size} bytes, one round trip at a time`,
        timing: { group: `1,000 ${type.toLowerCase()} round trips, by size`, label: label(size) },
        subset: k === 7 && size === 16,
        script: async (ctx) => {
          const data = type === "Text" ? textOf(size) : filled(size)
          for (let m = 0; m < 1000; m++) {
            await ctx.conn.sendMessage(type, data)
            const v = await expect(ctx, { messages: [{ type, data }] })
            if (!v.ok) return fail(`message ${m + 1}: ${v.why}`)
          }
          return closeCleanly(ctx)
        }
      })
    })
  }
  add({
    id: "9.x.16MiB-in-4MiB-writes",
    section: S9,
    title: "binary message of 16 MiB in 4 MiB writes",
    timing: { group: "binary, large writes", label: "16 MiB in 4 MiB" },
    script: async (ctx) => {
      const data = filled(16 * M, 1)
      await ctx.conn.sendMessage("Binary", data, { chop: 4 * M })
      return seq(() => expect(ctx, { messages: [{ type: "Binary", data }], ms: bigMs(16 * M) }), () => closeCleanly(ctx))
    }
  })
  add({
    id: "9.x.4MiB-in-64KiB-writes",
    section: S9,
    title: "binary message of 4 MiB in 64 KiB writes",
    timing: { group: "binary, large writes", label: "4 MiB in 64 KiB" },
    script: async (ctx) => {
      const data = filled(4 * M, 2)
      await ctx.conn.sendMessage("Binary", data, { chop: 65536 })
      return seq(() => expect(ctx, { messages: [{ type: "Binary", data }], ms: bigMs(4 * M) }), () => closeCleanly(ctx))
    }
  })

  // §10 Automatic fragmentation.
  const S10 = "10 auto-fragmentation"
  const FRAG = 1300
  const star64k = textOf(65536)
  add({
    id: "10.1.1",
    section: S10,
    title: "a 64 KiB text sent in 1300-byte fragments echoes as one message",
    subset: true,
    script: async (ctx) => {
      await ctx.conn.sendMessage("Text", star64k, { fragmentSize: FRAG })
      return seq(() => expect(ctx, { messages: [text(star64k)] }), () => closeCleanly(ctx))
    }
  })
  /** Checks that a message came in frames of exactly `size` bytes but the last (1..size). */
  const inFrames = (size: number) => (m: { frameSizes: ReadonlyArray<number> }) => {
    const s = m.frameSizes
    const bad = s.findIndex((n, i) => (i < s.length - 1 ? n !== size : n < 1 || n > size))
    return bad === -1 ? undefined : `frame ${bad + 1} of ${s.length} has ${s[bad]} payload bytes (fragment size ${size}: expected ${size} in all but the last)`
  }
  const ownFragmentation = (type: "Text" | "Binary", data: Uint8Array, compress: boolean) => async (ctx: Ctx) => {
    const size = ctx.fragmentSize ?? FRAG
    if (compress && ctx.conn.deflate === undefined) return fail("permessage-deflate was not agreed")
    await ctx.conn.sendMessage(type, data, { compress })
    const frames = Math.ceil(data.length / size)
    const check = (m: { frameSizes: ReadonlyArray<number>; compressed: boolean }) => {
      if (compress && !m.compressed) return "the echo was not compressed"
      const why = inFrames(size)(m)
      if (why !== undefined) return why
      if (!compress && m.frameSizes.length !== frames) return `${m.frameSizes.length} frames, expected ${frames}`
      return undefined
    }
    return seq(() => expect(ctx, { messages: [{ type, data, check }], ms: bigMs(data.length) }), () => closeCleanly(ctx))
  }
  const prose64k = cut(corpora[0]!, 0, 65536)
  add({ id: "10.x.text-64KiB", section: S10, title: `our side set to fragment at ${FRAG} bytes: a 64 KiB text echoes in ${Math.ceil(65536 / FRAG)} valid frames`, subset: true, fragmenting: true, client: { outgoingFragmentSize: FRAG }, script: ownFragmentation("Text", prose64k, false) })
  add({ id: "10.x.binary-1MiB", section: S10, title: `our side set to fragment at ${FRAG} bytes: a 1 MiB binary echoes in ${Math.ceil(M / FRAG)} valid frames`, fragmenting: true, client: { outgoingFragmentSize: FRAG }, script: ownFragmentation("Binary", filled(M), false) })
  add({ id: "10.x.small", section: S10, title: "our side set to fragment: a message below the fragment size goes in one frame", fragmenting: true, client: { outgoingFragmentSize: FRAG }, script: ownFragmentation("Text", enc("short"), false) })
  add({
    id: "10.x.compressed",
    section: S10,
    title: `our side set to fragment at ${FRAG} bytes, with permessage-deflate: the compressed echo is one message in ${FRAG}-byte frames, RSV1 on the first only`,
    subset: true,
    fragmenting: true,
    client: { outgoingFragmentSize: FRAG, deflate: {} },
    offer: "permessage-deflate; client_max_window_bits",
    answer: {},
    script: ownFragmentation("Text", cut(corpora[0]!, 1, 256 * 1024), true)
  })

  // §12 permessage-deflate: each corpus, messages of 16 B to 128 KiB, repeated, some fragmented.
  const S12 = "12 deflate"
  const rows: ReadonlyArray<readonly [number, number]> = [
    [16, 0], [64, 0], [256, 0], [1024, 0], [4096, 0], [8192, 0], [16384, 0], [32768, 0], [65536, 0], [131072, 0],
    [8192, 256], [16384, 256], [32768, 256], [65536, 256], [131072, 256], [131072, 1024], [131072, 4096], [131072, 32768]
  ]
  const reps12 = (size: number) => (profile.full ? Math.min(1000, Math.max(20, M / size)) : size >= 32768 ? 4 : 20)
  corpora.forEach((corpus, j) => {
    rows.forEach(([size, fragment], i) => {
      const count = reps12(size)
      add({
        id: `12.${j + 1}.${i + 1}`,
        section: S12,
        title: `${count} compressed ${corpus.name} messages of ${size} bytes${fragment > 0 ? ` in ${fragment}-byte fragments` : ""}`,
        subset: (j === 0 && (i === 0 || i === 9 || i === 16)) || (j === 4 && i === 4) || (j === 3 && i === 12),
        offer: "permessage-deflate; client_max_window_bits",
        answer: {},
        script: deflateEcho(corpus, size, count, fragment)
      })
    })
  })

  // §13 permessage-deflate parameters. Server under test: the offers a client may make.
  // Client under test: the answers a server may give to its offer.
  const S13 = "13 deflate params"
  const rows13: ReadonlyArray<readonly [number, number]> = [[16, 0], [256, 0], [4096, 0], [32768, 0], [131072, 0], [131072, 1024]]
  const reps13 = (size: number) => (profile.full ? Math.min(200, Math.max(10, M / size)) : size >= 32768 ? 3 : 12)
  const prose = corpora[0]!
  const json = corpora[1]!
  const ab = "permessage-deflate; client_no_context_takeover; client_max_window_bits"
  const offers: ReadonlyArray<{ offer: string; compression?: "required" | "optional" | "none"; subset?: boolean }> = [
    { offer: ab },
    { offer: `${ab}; server_no_context_takeover`, subset: true },
    { offer: `${ab}; server_max_window_bits=8`, subset: true },
    { offer: `${ab}; server_max_window_bits=15` },
    { offer: `${ab}; server_no_context_takeover; server_max_window_bits=8` },
    { offer: `${ab}; server_no_context_takeover; server_max_window_bits=15` },
    { offer: `${ab}; server_no_context_takeover; server_max_window_bits=8, ${ab}; server_no_context_takeover, ${ab}`, subset: true },
    { offer: "permessage-deflate" },
    { offer: "permessage-deflate; client_max_window_bits" },
    { offer: "permessage-deflate; client_max_window_bits=9", subset: true },
    { offer: "permessage-deflate; client_max_window_bits=12" },
    ...[8, 9, 10, 11, 12, 13, 14, 15].map((b) => ({ offer: `permessage-deflate; server_max_window_bits=${b}`, subset: b === 9 })),
    { offer: "permessage-deflate; client_no_context_takeover" },
    { offer: "permessage-deflate; server_no_context_takeover" },
    { offer: "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9", subset: true },
    { offer: "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11" },
    { offer: "permessage-deflate; unknown_parameter, permessage-deflate; server_max_window_bits=10", subset: true },
    { offer: "permessage-deflate; server_max_window_bits=16, permessage-deflate; client_no_context_takeover" },
    { offer: "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits" },
    { offer: "permessage-deflate; server_max_window_bits=16", compression: "none" },
    { offer: "permessage-deflate; server_no_context_takeover; server_no_context_takeover", compression: "none" },
    { offer: "permessage-deflate; server_max_window_bits=010", compression: "none" }
  ]
  offers.forEach((o, j) => {
    rows13.forEach(([size, fragment], i) => {
      const count = reps13(size)
      add({
        id: `13.${j + 1}.${i + 1}`,
        section: S13,
        title: `offer "${o.offer}": ${count} JSON messages of ${size} bytes${fragment > 0 ? ` in ${fragment}-byte fragments` : ""}${o.compression === "none" ? " (the offer must be declined)" : o.compression === "optional" ? " (accepted, or declined)" : ""}`,
        sides: ["server"],
        subset: o.subset === true && (i === 1 || i === 4),
        offer: o.offer,
        compression: o.compression ?? "required",
        script: deflateEcho(json, size, count, fragment)
      })
    })
  })
  const answers: ReadonlyArray<{ answer: DeflateTerms; subset?: boolean }> = [
    { answer: {} },
    { answer: { clientNoContextTakeover: true }, subset: true },
    { answer: { clientMaxWindowBits: 8 }, subset: true },
    { answer: { clientMaxWindowBits: 15 } },
    { answer: { clientNoContextTakeover: true, clientMaxWindowBits: 8 } },
    { answer: { clientNoContextTakeover: true, clientMaxWindowBits: 15 } },
    { answer: { serverNoContextTakeover: true }, subset: true },
    ...[8, 9, 10, 11, 12, 13, 14, 15].map((b) => ({ answer: { serverMaxWindowBits: b }, subset: b === 8 })),
    ...[9, 10, 11, 12, 13, 14].map((b) => ({ answer: { clientMaxWindowBits: b }, subset: b === 9 })),
    { answer: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 9 }, subset: true },
    { answer: { serverNoContextTakeover: true, serverMaxWindowBits: 10 } }
  ]
  answers.forEach((a, j) => {
    rows13.forEach(([size, fragment], i) => {
      const count = reps13(size)
      add({
        id: `13.${j + 1}.${i + 1}`,
        section: S13,
        title: `answer "${formatDeflate(a.answer)}": ${count} JSON messages of ${size} bytes${fragment > 0 ? ` in ${fragment}-byte fragments` : ""}`,
        sides: ["client"],
        subset: a.subset === true && (i === 1 || i === 4),
        answer: a.answer,
        script: deflateEcho(json, size, count, fragment)
      })
    })
  })
  // Client under test, configured: the offers our client makes, answered as offered.
  const configured: ReadonlyArray<{ deflate: NonNullable<ClientConfig["deflate"]>; offered: DeflateTerms; subset?: boolean }> = [
    { deflate: { serverNoContextTakeover: true }, offered: { serverNoContextTakeover: true }, subset: true },
    { deflate: { clientNoContextTakeover: true }, offered: { clientNoContextTakeover: true } },
    { deflate: { serverMaxWindowBits: 10 }, offered: { serverMaxWindowBits: 10 } },
    { deflate: { serverMaxWindowBits: 8 }, offered: { serverMaxWindowBits: 8 }, subset: true },
    { deflate: { clientMaxWindowBits: 10 }, offered: { clientMaxWindowBits: 10 } },
    { deflate: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 9 }, offered: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 9 }, subset: true }
  ]
  configured.forEach((c, j) => {
    rows13.forEach(([size, fragment], i) => {
      const count = reps13(size)
      add({
        id: `13.x.${j + 1}.${i + 1}`,
        section: S13,
        title: `client configured to offer "${formatDeflate(c.offered)}", answered in kind: ${count} JSON messages of ${size} bytes${fragment > 0 ? ` in ${fragment}-byte fragments` : ""}`,
        sides: ["client"],
        subset: c.subset === true && i === 4,
        client: { deflate: c.deflate },
        answer: (incoming) => {
          const o = incoming.offers[0]
          if (o === undefined) return `the client made no valid permessage-deflate offer (${incoming.extensionsHeader ?? "no header"})`
          for (const k of Object.keys(c.offered) as Array<keyof DeflateTerms>) {
            if (o[k] !== c.offered[k]) return `the client's offer ${JSON.stringify(incoming.extensionsHeader)} lacks ${formatDeflate({ [k]: c.offered[k] }).slice(20)}`
          }
          return {
            ...(o.serverNoContextTakeover ? { serverNoContextTakeover: true } : {}),
            ...(o.clientNoContextTakeover ? { clientNoContextTakeover: true } : {}),
            ...(o.serverMaxWindowBits !== undefined ? { serverMaxWindowBits: o.serverMaxWindowBits } : {}),
            ...(typeof o.clientMaxWindowBits === "number" ? { clientMaxWindowBits: o.clientMaxWindowBits } : {})
          }
        },
        script: deflateEcho(prose, size, count, fragment)
      })
    })
  })

  // Opening handshake (§4). Server under test: bad requests get the right status.
  const SH = "handshake"
  const good = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
  const base = (u: URL) => [`GET ${u.pathname} HTTP/1.1`, `Host: ${u.host}`, "Upgrade: websocket", "Connection: Upgrade"]
  const serverHs = (id: string, title: string, lines: (u: URL) => ReadonlyArray<string>, status: ReadonlyArray<number>, header?: RegExp, subset = false) =>
    add({
      id,
      section: SH,
      title,
      sides: ["server"],
      subset,
      serverRun: async (target) => {
        const response = await rawRequest(target.url, lines(target.url))
        const m = /^HTTP\/1\.1 (\d{3})/.exec(response)
        if (m === null) return fail(`no HTTP response (${JSON.stringify(response.slice(0, 40))})`)
        if (!status.includes(Number(m[1]))) return fail(`status ${m[1]}, expected ${status.join("/")}`)
        if (header !== undefined && !header.test(response)) return fail(`missing header ${header}`)
        return pass
      }
    })
  serverHs("hs.version", "a version other than 13 gets 426 with Sec-WebSocket-Version: 13", (u) => [...base(u), good, "Sec-WebSocket-Version: 8"], [426], /sec-websocket-version: 13/i, true)
  serverHs("hs.no-key", "a missing key gets 400", (u) => [...base(u), "Sec-WebSocket-Version: 13"], [400], undefined, true)
  serverHs("hs.bad-key", "a key that is not base64 of 16 bytes gets 400", (u) => [...base(u), "Sec-WebSocket-Key: c2hvcnQ=", "Sec-WebSocket-Version: 13"], [400])
  serverHs("hs.method", "a POST upgrade is refused", (u) => [`POST ${u.pathname} HTTP/1.1`, `Host: ${u.host}`, "Upgrade: websocket", "Connection: Upgrade", good, "Sec-WebSocket-Version: 13", "Content-Length: 0"], [400, 405])
  serverHs("hs.no-upgrade", "no Upgrade header: refused", (u) => [`GET ${u.pathname} HTTP/1.1`, `Host: ${u.host}`, "Connection: Upgrade", good, "Sec-WebSocket-Version: 13"], [400, 426])
  serverHs("hs.no-connection", "no Connection: Upgrade: refused", (u) => [`GET ${u.pathname} HTTP/1.1`, `Host: ${u.host}`, "Upgrade: websocket", good, "Sec-WebSocket-Version: 13"], [400, 426])
  serverHs("hs.token-list", "Upgrade and Connection tokens match case-insensitively inside lists", (u) => [`GET ${u.pathname} HTTP/1.1`, `Host: ${u.host}`, "Upgrade: WebSocket", "Connection: keep-alive, UPGRADE", good, "Sec-WebSocket-Version: 13"], [101], /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i, true)

  // Client under test: what it must accept, and what must fail its connect with a typed error.
  add({ id: "hs.client.request", section: SH, title: "the client's request is a valid upgrade (checked on every case) and it offers permessage-deflate validly", sides: ["client"], subset: true, clientRun: async (incoming, p) => {
    if (incoming.offers.length === 0) return { verdict: fail(`no valid permessage-deflate offer (${incoming.extensionsHeader ?? "no Sec-WebSocket-Extensions"})`), end: undefined }
    return acceptAndEcho(incoming, p, {})
  } })
  add({ id: "hs.client.tokens", section: SH, title: "a 101 with mixed-case tokens in lists is accepted", sides: ["client"], clientRun: (incoming, p) => acceptAndEcho(incoming, p, { raw: (key) => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\nSec-WebSocket-Accept: ${key}\r\n\r\n` }) })
  add({ id: "hs.client.frame-with-101", section: SH, title: "a frame in the same TCP write as the 101 is read and echoed", sides: ["client"], subset: true, clientRun: (incoming, p) => acceptAndEcho(incoming, p, { trailing: encodeFrame({ opcode: TEXT, payload: enc("right after the 101") }, false), expectFirst: "right after the 101" }) })
  const rejected = (id: string, title: string, response: (accept: string) => string, subset = false) =>
    add({ id, section: SH, title, sides: ["client"], subset, clientRun: (incoming) => rejectedUpgrade(incoming, response) })
  const ok101 = (accept: string, extra = "") => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${extra}\r\n`
  rejected("hs.client.200", "a 200 instead of 101 fails the connect (typed), nothing sent", () => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true)
  rejected("hs.client.403", "a 403 fails the connect", () => "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
  rejected("hs.client.no-upgrade", "a 101 without Upgrade fails the connect", (a) => `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${a}\r\n\r\n`)
  rejected("hs.client.wrong-upgrade", "a 101 with Upgrade: h2c fails the connect", (a) => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${a}\r\n\r\n`)
  rejected("hs.client.no-connection", "a 101 without Connection: Upgrade fails the connect", (a) => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: ${a}\r\n\r\n`)
  rejected("hs.client.wrong-accept", "a wrong Sec-WebSocket-Accept fails the connect", () => ok101("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), true)
  rejected("hs.client.no-accept", "a missing Sec-WebSocket-Accept fails the connect", () => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
  rejected("hs.client.protocol", "a subprotocol that was not offered fails the connect", (a) => ok101(a, "Sec-WebSocket-Protocol: chat\r\n"), true)
  rejected("hs.client.extension", "an extension that was not offered fails the connect", (a) => ok101(a, "Sec-WebSocket-Extensions: x-unknown-extension\r\n"), true)
  rejected("hs.client.deflate-unknown-param", "a permessage-deflate answer with an unknown parameter fails the connect", (a) => ok101(a, "Sec-WebSocket-Extensions: permessage-deflate; unknown_parameter\r\n"))
  rejected("hs.client.deflate-cmwb-no-value", "client_max_window_bits without a value in the answer fails the connect", (a) => ok101(a, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"))
  rejected("hs.client.deflate-smwb-16", "server_max_window_bits=16 in the answer fails the connect", (a) => ok101(a, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n"), true)
  rejected("hs.client.deflate-twice", "permessage-deflate accepted twice fails the connect", (a) => ok101(a, "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n"))

  return cases
}

/** Echo with compression: `count` messages cut from `corpus`, each sent compressed (in `fragment`-byte frames when > 0) and awaited. */
const deflateEcho = (corpus: (typeof corpora)[number], size: number, count: number, fragment: number) => async (ctx: Ctx): Promise<Verdict> => {
  const conn = ctx.conn
  let compressedEchoes = 0
  let compressible = 0
  for (let i = 0; i < count; i++) {
    const data = cut(corpus, i, size)
    await conn.sendMessage(corpus.type, data, { compress: true, ...(fragment > 0 ? { fragmentSize: fragment } : {}) })
    let echoed: { compressed: boolean } | undefined
    const v = await expect(ctx, { messages: [{ type: corpus.type, data, check: (m) => void (echoed = m) }] })
    if (!v.ok) return fail(`message ${i + 1} of ${count}: ${v.why}`)
    if (size >= 1024) compressible++
    if (echoed?.compressed) compressedEchoes++
  }
  if (conn.deflate !== undefined && compressible > 0 && compressedEchoes === 0) return fail("permessage-deflate was agreed but no echo of 1 KiB or more came compressed")
  return closeCleanly(ctx)
}

/** One raw HTTP request; resolves with whatever came back before the server closed (or 5 s passed). */
const rawRequest = (url: URL, lines: ReadonlyArray<string>) =>
  new Promise<string>((resolve) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port || 80) })
    let response = ""
    const timer = setTimeout(() => socket.destroy(), STEP_MS)
    socket.on("data", (b) => {
      response += b.toString("latin1")
      // The status line and headers are all we check (the connection may stay open after them).
      if (response.includes("\r\n\r\n")) socket.destroy()
    })
    socket.on("close", () => {
      clearTimeout(timer)
      resolve(response)
    })
    socket.on("error", () => {})
    socket.write(lines.join("\r\n") + "\r\n\r\n")
  })

/** Client under test: answers with a (possibly unusual but valid) 101, then expects the echo of what it sends. */
const acceptAndEcho = async (
  incoming: Incoming,
  profile: Profile,
  how: { readonly raw?: (accept: string) => string; readonly trailing?: Uint8Array; readonly expectFirst?: string }
): Promise<ClientRunResult> => {
  let conn: Conn
  if (how.raw !== undefined) {
    incoming.socket.write(how.raw(acceptFor(incoming.key)))
    conn = new Conn(incoming.socket, "server", undefined, incoming.head.rest)
  } else {
    conn = respond(incoming, how.trailing === undefined ? {} : { trailing: how.trailing })
  }
  const ctx: Ctx = { conn, profile, end: undefined }
  const verdict = await seq(
    () => (how.expectFirst === undefined ? Promise.resolve(pass) : expect(ctx, { messages: [text(how.expectFirst)] })),
    send(ctx, [{ opcode: TEXT, payload: enc("Hello, client!") }, { opcode: BINARY, payload: filled(300) }]),
    () => expect(ctx, { messages: [text("Hello, client!"), binary(filled(300))] }),
    () => closeCleanly(ctx)
  )
  return { verdict, end: ctx.end }
}

/** Client under test: answers with an unacceptable response; the client must send nothing more and close TCP. */
const rejectedUpgrade = async (incoming: Incoming, response: (accept: string) => string): Promise<ClientRunResult> => {
  const socket = incoming.socket
  let extra = incoming.head.rest.length
  socket.on("data", (b: Buffer) => (extra += b.length))
  socket.resume()
  socket.write(response(acceptFor(incoming.key)))
  const closed = await new Promise<boolean>((resolve) => {
    if (socket.destroyed) return resolve(true)
    const t = setTimeout(() => resolve(false), STEP_MS)
    socket.once("close", () => {
      clearTimeout(t)
      resolve(true)
    })
  })
  const verdict = !closed
    ? fail(`the client did not close the connection within ${STEP_MS} ms`)
    : extra > 0
    ? fail(`the client sent ${extra} bytes after an unacceptable response`)
    : pass
  return { verdict, end: { _tag: "UpgradeFailed" } }
}
