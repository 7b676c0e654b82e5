/**
 * The echo servers of the benchmarks (`scripts/bench/targets.ts`) echo correctly: each is started
 * as the benchmarks start it (its own process, IPC to this one; Bun's from the runtimes cache)
 * and a `ws` client checks, byte for byte, text and binary messages of every header length
 * (0 B to 1 MiB, lengths around 125/126 and 65,535/65,536), a Ping answered by a Pong and the
 * Close handshake; `stats` counts the connection while it is open, and `ws+bufferutil` (only)
 * has bufferutil loaded. The floor server is hand-made,
 * so this is its test; for the others it checks that their wiring (the route, ws with and without
 * bufferutil, Bun) serves what the benchmarks measure.
 */
import { assert, describe, it } from "@effect/vitest"
import { randomBytes } from "node:crypto"
import WebSocket from "ws"
import { bun } from "../runtimes.ts"
import { Child } from "../bench/ipc.ts"
import { TARGET_NAMES, TARGETS } from "../bench/targets.ts"

const SIZES = [0, 1, 3, 5, 32, 125, 126, 127, 1_000, 65_535, 65_536, 65_537, 200_001, 1 << 20]

const start = async (name: (typeof TARGET_NAMES)[number]): Promise<{ child: Child; port: number; ready: Record<string, unknown> }> => {
  const target = TARGETS[name]
  const child = target.runtime === "bun"
    ? new Child(name, target.file, [], { execPath: bun(), env: target.env })
    : new Child(name, target.file, [], { env: target.env })
  const ready = await child.waitReady()
  return { child, port: ready["port"] as number, ready }
}

describe("benchmark echo servers", () => {
  for (const name of TARGET_NAMES) {
    it(`${name} echoes text and binary of every length, answers Ping and Close`, { timeout: 120_000 }, async () => {
      const { child, port, ready } = await start(name)
      try {
        if (name === "ws" || name === "ws+bufferutil") assert.strictEqual(ready["bufferutil"], name === "ws+bufferutil")
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`)
        await new Promise((resolve, reject) => {
          ws.once("open", resolve)
          ws.once("error", reject)
        })
        assert.strictEqual((await child.stats()).connections, 1)
        for (const size of SIZES) {
          for (const binary of [true, false]) {
            const payload = binary ? randomBytes(size) : Buffer.from("é".repeat(size >> 1) + (size & 1 ? "a" : ""))
            const echoed = await new Promise<{ data: Buffer; isBinary: boolean }>((resolve) => {
              ws.once("message", (data, isBinary) => resolve({ data: data as Buffer, isBinary }))
              ws.send(payload, { binary })
            })
            assert.strictEqual(echoed.isBinary, binary, `${size} B ${binary ? "binary" : "text"}: type`)
            assert.isTrue(Buffer.from(echoed.data).equals(payload), `${size} B ${binary ? "binary" : "text"}: bytes`)
          }
        }
        const pong = await new Promise<string>((resolve) => {
          ws.once("pong", (data) => resolve(data.toString()))
          ws.ping("hi")
        })
        assert.strictEqual(pong, "hi")
        const code = await new Promise<number>((resolve) => {
          ws.once("close", (closeCode) => resolve(closeCode))
          ws.close(1000)
        })
        assert.strictEqual(code, 1000)
        for (let i = 0; i < 100 && (await child.stats()).connections !== 0; i++) await new Promise((r) => setTimeout(r, 20))
        assert.strictEqual((await child.stats()).connections, 0)
      } finally {
        await child.stop()
      }
    })
  }
})
