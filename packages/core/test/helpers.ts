/** Test helpers: a scripted WebSocket peer over the in-memory test kit. */
import { type Frame, FrameParser, Serializer, Violation } from "@effect-ws/codec"
import { Effect } from "effect"
import type { TransportClosed } from "../src/Errors.ts"
import type { TestTransport } from "../src/TestTransport.ts"

/** What the peer saw next: a frame, the end of input, or a violation of our bytes. */
export type PeerEvent = Frame.Frame | TransportClosed | Violation.ProtocolViolation

/**
 * A scripted peer on the other end of a test transport: it writes frames with a real serializer
 * and parses what the session under test writes with a real parser (so masking and framing on
 * the wire are checked too).
 */
export class TestPeer {
  readonly transport: TestTransport
  readonly parser: FrameParser.FrameParser
  readonly serializer: Serializer.Serializer
  private readonly buffered: Array<Frame.Frame> = []
  /** Every byte the session wrote, in order. */
  readonly wire: Array<number> = []

  /** `role` is the peer's role: the opposite of the session under test. */
  constructor(transport: TestTransport, role: "server" | "client") {
    this.transport = transport
    this.parser = new FrameParser.FrameParser({ role, allowedRsv: { rsv1: true, rsv2: true, rsv3: true } })
    this.serializer = new Serializer.Serializer({ mask: role === "client" })
  }

  /** Writes frames (one write). */
  send(...frames: ReadonlyArray<Frame.Frame>): Effect.Effect<void, TransportClosed> {
    const out: Array<Uint8Array> = []
    this.serializer.serializeBatch(frames, out)
    return this.transport.write(out)
  }

  /** Writes raw bytes. */
  sendBytes(bytes: Uint8Array | ReadonlyArray<number>): Effect.Effect<void, TransportClosed> {
    return this.transport.write([bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes)])
  }

  /** The next frame the session wrote, or why input ended. */
  get next(): Effect.Effect<PeerEvent> {
    const self = this
    return Effect.gen(function*() {
      for (let i = 0; i < 1_000_000; i++) {
        const frame = self.buffered.shift()
        if (frame !== undefined) return frame as PeerEvent
        const chunk = yield* Effect.result(self.transport.read)
        if (chunk._tag === "Failure") return chunk.failure
        for (const b of chunk.success) self.wire.push(b)
        const v = self.parser.push(chunk.success, self.buffered)
        if (v !== undefined && self.buffered.length === 0) return v
      }
      throw new Error("unreachable")
    })
  }

  /** Reads frames until input ends; returns them (the end reason last). */
  get drain(): Effect.Effect<Array<PeerEvent>> {
    const self = this
    return Effect.gen(function*() {
      const events: Array<PeerEvent> = []
      for (let i = 0; i < 100_000; i++) {
        const e = yield* self.next
        events.push(e)
        if (e._tag === "TransportClosed" || e._tag === "ProtocolViolation") return events
      }
      return events
    })
  }
}

/** Frame payload as text. */
export const text = (f: PeerEvent): string =>
  "payload" in f ? new TextDecoder().decode(f.payload) : `<${f._tag}>`

/** Close frame payload as [code, reason]. */
export const closeOf = (f: PeerEvent): [number, string] | string => {
  if (f._tag !== "Close") return `<${f._tag}${"reason" in f ? ` ${f.reason}` : ""}>`
  if (f.payload.length < 2) return [1005, ""]
  return [(f.payload[0]! << 8) | f.payload[1]!, new TextDecoder().decode(f.payload.subarray(2))]
}

export const bytes = (...b: ReadonlyArray<number>): Uint8Array => Uint8Array.from(b)
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)
export { Violation }
