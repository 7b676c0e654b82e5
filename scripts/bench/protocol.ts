/**
 * What the benchmark processes say to each other, as types: the IPC message shape, a server's
 * `stats` reply, and the load generator's requests and results (`echo`, `open`). Shared by the
 * orchestrators (`echo.ts`, `conns.ts`, `deflate.ts`), the plumbing (`ipc.ts`), the generator
 * (`load.ts`) and the servers, so that none of them imports another for its types.
 */

/** Where every server listens, and the generator connects. */
export const HOST = "127.0.0.1"

/** A message on an IPC channel: `type` plus anything JSON can carry. */
export interface Message {
  readonly type: string
  readonly id?: number | undefined
  readonly [key: string]: unknown
}

/** A server's own view of its resources, taken when asked (after a full GC when asked to). */
export interface ServerStats {
  /** The runtime serving: Bun's heap (JavaScriptCore's) is not comparable with V8's, so it is not reported. */
  readonly runtime: "node" | "bun"
  /** `process.cpuUsage()` user + system, µs. */
  readonly cpuMicros: number
  /** `performance.now()` in µs, when the sample was taken. */
  readonly wallMicros: number
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
  readonly arrayBuffers: number
  /**
   * Bytes of V8's young generation (new space) in physical memory: part of `rss`, sized by V8's
   * scavenger heuristics (it grows with survivors and does not shrink at `gc()`), not by what is
   * live. 0 on Bun.
   */
  readonly newSpace: number
  /** WebSocket connections the server currently has open. */
  readonly connections: number
}

/**
 * How the generator writes its messages: `"per-message"` (one `write` per frame, as real clients
 * do: the default) or `"batched"` (every frame that is due on a connection in one `write`, and
 * replies coalesced per event-loop turn: the pipelined scenario).
 */
export type WriteMode = "per-message" | "batched"

/**
 * Which replies the generator's `EchoReader` accepts: plain ones (RSV1 clear, exactly the
 * expected length), compressed ones (RSV1 set, any length: the compressed size, checked after
 * inflating by whoever listens through `onPayload` / `onMessageEnd`), or either.
 */
export type ReplyCompression = "plain" | "compressed" | "either"

/** Parameters of an `echo` run. */
export interface EchoParams {
  readonly port: number
  readonly conns: number
  readonly inFlight: number
  readonly size: number
  readonly binary: boolean
  readonly warmupMs: number
  readonly durationMs: number
  /** Keep measuring past `durationMs` until this many RTTs were timed (latency runs), bounded by `maxMs`. */
  readonly minSamples: number
  /** Hard limit on the measuring window. */
  readonly maxMs: number
  /** One write per message (default) or batched writes (see `WriteMode`). */
  readonly writes?: WriteMode | undefined
  /** The payload: `"a"` repeated (default) or compressible JSON-ish text (`jsonishPayload`). */
  readonly payload?: "a" | "json" | undefined
  /** permessage-deflate: not offered (default), negotiated but plain messages sent, or RSV1 messages sent. */
  readonly deflate?: "off" | "negotiated" | "compressed" | undefined
  /** Which replies are accepted (default plain). */
  readonly replies?: ReplyCompression | undefined
  /** How many connections' compressed replies are inflated and checked (default 1). */
  readonly verifyConns?: number | undefined
}

/** What an `echo` run measured in its window. */
export interface EchoResult {
  readonly messages: number
  readonly seconds: number
  /** The generator's CPU time in the window, µs. */
  readonly generatorCpuMicros: number
  /** RTT percentiles in µs (1 connection × 1 in flight only). */
  readonly rtt: { readonly samples: number; readonly p50: number; readonly p99: number; readonly mean: number } | null
  /** Bytes of one message as written (frame header, mask and possibly compressed payload). */
  readonly wireBytes: number
  /** Replies inflated and checked (over the whole run, warm-up included), when any was compressed. */
  readonly verified: { readonly messages: number; readonly inflated: number } | null
  /** Replies over the whole run (warm-up included), and how many of them were compressed. */
  readonly replies: number
  readonly compressedReplies: number
}

/** What an `open` request measured. */
export interface OpenResult {
  readonly opened: number
  readonly failed: number
  readonly firstError: string | null
  readonly seconds: number
  readonly generatorCpuMicros: number
  /** Messages echoed after opening (`exchangeSize` only). */
  readonly exchanged: number
}
