/**
 * The steps a conformance case is written in, the same whichever side is under test: the peer
 * sends frames (masked or not by its role), then expects messages and Pongs, a Close with given
 * codes, silence for a while, or the clean close handshake. Each step is bounded by a deadline
 * and strict: anything the implementation sends that the step does not expect fails the case.
 */
import type { Conn, Event, Message } from "./conn.ts"
import { CLOSE, closePayload, equalBytes, type RawFrame } from "./wire.ts"

/** A case's result: passed, or why not. */
export type Verdict = { readonly ok: true } | { readonly ok: false; readonly why: string }

/** The verdict "passed". */
export const pass: Verdict = { ok: true }

/** The verdict "failed", saying why. */
export const fail = (why: string): Verdict => ({ ok: false, why })

/** How the client under test must end (the fuzzing server checks it after the case's script). */
export type ClientEnd =
  | { readonly _tag: "Clean" }
  | { readonly _tag: "Closed"; readonly codes: ReadonlyArray<number | undefined> }
  | { readonly _tag: "UpgradeFailed" }

/** Timing knobs: the subset in `npm test` uses shorter pauses than the full run. */
export interface Profile {
  readonly full: boolean
  /** How long the peer waits where a case pauses (fail-fast windows, "nothing yet" checks). */
  readonly pauseMs: number
}

/** The profile of the full run (`npm run conformance`). */
export const FULL: Profile = { full: true, pauseMs: 1000 }

/** The profile of the subset in `npm test`. */
export const SUBSET: Profile = { full: false, pauseMs: 250 }

/** What a case's script gets. */
export interface Ctx {
  readonly conn: Conn
  readonly profile: Profile
  /** The fragment size the implementation was configured with (§10 cases). */
  readonly fragmentSize?: number
  /** Set by the closing steps: how the client under test must end (ignored when testing a server). */
  end: ClientEnd | undefined
}

/** The default deadline of one step. */
export const STEP_MS = 5000

/** A message the implementation must send back. */
export interface Expected {
  readonly type: "Text" | "Binary"
  readonly data: Uint8Array
  /** Extra checks on how it came (fragmentation, compression); returns why not, if not. */
  readonly check?: (m: Message) => string | undefined
}

const describe = (e: Event): string => {
  switch (e._tag) {
    case "Message":
      return `a ${e.message.type} message of ${e.message.data.length} bytes`
    case "Pong":
      return `a Pong (${e.payload.length} bytes)`
    case "Close":
      return `a Close ${e.code ?? "(no code)"}`
    case "TcpClosed":
      return "the TCP close"
    case "Violation":
      return e.message
    case "Timeout":
      return "nothing"
  }
}

const codesText = (codes: ReadonlyArray<number | undefined>) => codes.map((c) => c ?? "(no code)").join("/")

/**
 * Expects `messages` in order and `pongs` in order (one Pong per Ping, each with its Ping's
 * payload), interleaved in any way, and nothing else.
 */
export const expect = async (
  ctx: Ctx,
  expected: { readonly messages?: ReadonlyArray<Expected>; readonly pongs?: ReadonlyArray<Uint8Array>; readonly ms?: number }
): Promise<Verdict> => {
  const messages = [...(expected.messages ?? [])]
  const pongs = [...(expected.pongs ?? [])]
  const total = { messages: messages.length, pongs: pongs.length }
  const deadline = Date.now() + (expected.ms ?? STEP_MS)
  while (messages.length > 0 || pongs.length > 0) {
    const e = await ctx.conn.next(deadline - Date.now())
    const got = `${total.messages - messages.length} of ${total.messages} message(s) and ${total.pongs - pongs.length} of ${total.pongs} Pong(s)`
    switch (e._tag) {
      case "Timeout":
        return fail(`timed out after ${got}`)
      case "Violation":
        return fail(e.message)
      case "TcpClosed":
      case "Close":
        return fail(`${describe(e)} after ${got}`)
      case "Pong": {
        const want = pongs.shift()
        if (want === undefined) return fail(`an unexpected Pong after ${got}`)
        if (!equalBytes(want, e.payload)) {
          const pending = [want, ...pongs].findIndex((p) => equalBytes(p, e.payload))
          return fail(
            pending > 0
              ? `Pong ${total.pongs - pongs.length} of ${total.pongs} is missing: the next Pong answers a later Ping (one Pong per Ping, in order)`
              : `a Pong whose payload matches no Ping (after ${got})`
          )
        }
        break
      }
      case "Message": {
        const want = messages.shift()
        if (want === undefined) return fail(`an unexpected ${describe(e)} after ${got}`)
        const m = e.message
        if (m.type !== want.type) return fail(`expected a ${want.type} message, got ${m.type}`)
        if (!equalBytes(m.data, want.data)) return fail(`a ${want.type} message of ${want.data.length} bytes came back different (${m.data.length} bytes)`)
        const why = want.check?.(m)
        if (why !== undefined) return fail(why)
        break
      }
    }
  }
  return pass
}

/** Expects nothing at all for `ms` (the implementation must still be waiting for more). */
export const quiet = async (ctx: Ctx, ms: number, what: string): Promise<Verdict> => {
  const e = await ctx.conn.next(ms)
  return e._tag === "Timeout" ? pass : fail(`${describe(e)} ${what}`)
}

/**
 * Expects a Close with one of `codes` (within `ms`) and nothing before it, then completes the
 * close handshake: we answer with the same code unless we sent a Close already; a server under
 * test must then close TCP; with a client under test we close TCP (as a server does) once the
 * client has sent its Close.
 */
export const expectClose = async (ctx: Ctx, codes: ReadonlyArray<number | undefined>, ms = STEP_MS, before = ""): Promise<Verdict> => {
  const conn = ctx.conn
  ctx.end = { _tag: "Closed", codes }
  const deadline = Date.now() + ms
  const e = await conn.next(deadline - Date.now())
  if (e._tag === "Timeout") return fail(`no Close ${codesText(codes)} within ${ms} ms${before}`)
  if (e._tag !== "Close") return fail(`expected a Close ${codesText(codes)}${before}, got ${describe(e)}`)
  if (!codes.includes(e.code)) return fail(`expected a Close ${codesText(codes)}, got ${e.code ?? "a Close without code"}`)
  return finishClose(ctx, e.code, Math.max(deadline - Date.now(), 1000))
}

const finishClose = async (ctx: Ctx, code: number | undefined, ms: number): Promise<Verdict> => {
  const conn = ctx.conn
  if (!conn.closeSent) await conn.sendFrames([{ opcode: CLOSE, payload: closePayload(code) }])
  if (conn.role === "server") conn.end()
  const after = await conn.next(ms)
  if (after._tag === "TcpClosed") return pass
  if (after._tag === "Timeout") return fail(conn.role === "client" ? "the server did not close TCP after the Close exchange" : "the client did not close TCP after the Close exchange")
  return fail(`${describe(after)} after the Close`)
}

/** The clean close handshake: we send Close 1000, the implementation answers Close 1000 (nothing else before it), TCP closes. */
export const closeCleanly = async (ctx: Ctx, ms = STEP_MS): Promise<Verdict> => {
  const conn = ctx.conn
  ctx.end = { _tag: "Clean" }
  await conn.sendFrames([{ opcode: CLOSE, payload: closePayload(1000) }])
  const e = await conn.next(ms)
  if (e._tag !== "Close") return fail(`expected the Close reply, got ${describe(e)}`)
  if (e.code !== 1000) return fail(`Close reply ${e.code ?? "without code"}, expected 1000`)
  return finishClose(ctx, e.code, ms)
}

/** Runs steps in order until one fails. */
export const seq = async (...steps: ReadonlyArray<() => Promise<Verdict>>): Promise<Verdict> => {
  for (const step of steps) {
    const v = await step()
    if (!v.ok) return v
  }
  return pass
}

/** How a step writes its frames. */
export interface How {
  /** In writes of this many bytes. */
  readonly chop?: number
  /** With `chop`: yield to the event loop only after this many writes (default: after each, for up to 4096 writes). */
  readonly yieldEvery?: number
  /** One write per frame, with a short pause between them. */
  readonly framewise?: boolean
}

/** A step that sends frames. */
export const send = (ctx: Ctx, frames: ReadonlyArray<RawFrame>, how: How = {}) => async (): Promise<Verdict> => {
  if (how.framewise === true) await ctx.conn.sendFramewise(frames)
  else await ctx.conn.sendFrames(frames, how.chop, how.yieldEvery)
  return pass
}
