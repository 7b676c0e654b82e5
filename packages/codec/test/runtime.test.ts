import { assert, describe, it } from "@effect/vitest"

describe("runtime", () => {
  it("runs on Node 24 (the `node` devDependency), not the system Node", () => {
    assert.match(process.version, /^v24\./)
  })
})
