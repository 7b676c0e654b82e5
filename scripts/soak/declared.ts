/**
 * Issue 19's RSS question, reproducible (not part of `npm test`):
 *   node --conditions=@effect-ws/source scripts/soak/declared.ts
 * ROUNDS (default 3) rounds of CONNS (40) connections to the demo's `/echo`, each declaring a
 * DECLARED_MIB (64) MiB binary frame and sending SENT_MIB (8) MiB of it, against the demo in its
 * own process (`../test/hostile/server.ts`, with `--expose-gc` and SERVER_FLAGS). Per round it
 * prints the server's RSS, heap, external and arrayBuffers: idle (after gc), during (all bytes
 * read, sockets open), after the sockets closed (at once and 5 s later, no gc), after gc, and
 * idle again 2 s later.
 * If heap + arrayBuffers return to the idle level while RSS does not, the memory was freed by us
 * and kept by the allocator; run with MALLOC_ARENA_MAX / MALLOC_TRIM_THRESHOLD_ (glibc) in the
 * environment to see whether RSS then returns. SNAPSHOT=path writes a heap snapshot after the
 * last round.
 */
import { fmt } from "../bench/format.ts"
import { Child, guardChildren } from "../bench/ipc.ts"
import type { ServerStats } from "../bench/protocol.ts"
import { envNumber } from "../bench/settings.ts"
import { header, Peer, pause } from "../test/hostile/wire.ts"

const MiB = 2 ** 20
const rounds = envNumber("ROUNDS", 3, 1)
const conns = envNumber("CONNS", 40, 1)
const declared = envNumber("DECLARED_MIB", 64, 1) * MiB
const sent = envNumber("SENT_MIB", 8, 1) * MiB
const flags = (process.env["SERVER_FLAGS"] ?? "").split(" ").filter((f) => f !== "")

guardChildren(10 * 60_000)
const server = new Child("server", "../test/hostile/server.ts", ["--expose-gc", ...flags])
const MB = (bytes: number) => fmt(bytes / MiB, 0).padStart(5)
const line = (label: string, s: ServerStats) =>
  console.log(`${label.padEnd(26)} RSS ${MB(s.rss)} MB  heap ${MB(s.heapUsed)} MB  external ${MB(s.external)} MB  arrayBuffers ${MB(s.arrayBuffers)} MB  sockets ${s.connections}`)

const main = async () => {
  const port = (await server.waitReady())["port"] as number
  console.log(`${rounds} rounds × ${conns} connections × ${sent / MiB} MiB sent of a declared ${declared / MiB} MiB frame; server flags ${flags.join(" ") || "none"}; MALLOC_ARENA_MAX=${process.env["MALLOC_ARENA_MAX"] ?? "-"} MALLOC_TRIM_THRESHOLD_=${process.env["MALLOC_TRIM_THRESHOLD_"] ?? "-"}`)
  const baseSockets = (await server.stats(true)).connections
  line("start (gc)", await server.stats(true))
  const chunk = Buffer.alloc(256 * 1024, 0x44)
  for (let round = 1; round <= rounds; round++) {
    const peers: Array<Peer> = []
    for (let i = 0; i < conns; i++) peers.push(await Peer.open(port, "/echo"))
    await Promise.all(peers.map(async (peer) => {
      peer.send(header(0x82, declared))
      for (let n = 0; n < sent; n += chunk.length) await peer.sendDrained(chunk, 30_000)
    }))
    // All bytes read once arrayBuffers stops growing (bounded).
    let last = -1
    let during = await server.stats()
    for (let i = 0; i < 100 && during.arrayBuffers !== last; i++) {
      last = during.arrayBuffers
      await pause(100)
      during = await server.stats()
    }
    line(`round ${round}: during`, during)
    for (const p of peers) p.destroy()
    for (let i = 0; i < 100 && (await server.stats()).connections > baseSockets; i++) await pause(50)
    line(`round ${round}: closed, no gc`, await server.stats())
    await pause(5_000)
    line(`round ${round}: closed 5 s, no gc`, await server.stats())
    line(`round ${round}: closed, gc`, await server.stats(true))
    await pause(2_000)
    line(`round ${round}: idle 2 s later`, await server.stats(true))
  }
  const snapshot = process.env["SNAPSHOT"]
  if (snapshot !== undefined) console.log(`heap snapshot: ${await server.request<string>({ type: "snapshot", path: snapshot }, 60_000)}`)
}

main().then(
  async () => {
    await server.stop()
    process.exit(0)
  },
  async (error: unknown) => {
    console.error(error)
    await server.stop()
    process.exit(1)
  }
)
