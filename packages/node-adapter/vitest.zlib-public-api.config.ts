/**
 * The permessage-deflate tests again, on node:zlib's public API instead of the native handle
 * (`PerMessageDeflate.zlibEngine()`): `EFFECT_WS_ZLIB_PUBLIC_API=1` is set for these files only,
 * each run in a fresh module graph (vitest isolates test files), so the engine is chosen anew.
 */
import { defineProject } from "vitest/config"
import { project } from "../../vitest.shared.ts"

const base = project("node-adapter (zlib public API)")

export default defineProject({
  ...base,
  test: {
    ...base.test,
    include: ["test/PerMessageDeflate*.test.ts"],
    env: { EFFECT_WS_ZLIB_PUBLIC_API: "1" }
  }
})
