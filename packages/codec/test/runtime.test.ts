import { assert, describe, it } from "@effect/vitest"

/**
 * A check of the toolchain, not of our code (the one such check in the repository): tests must
 * run on Node 24, the `node` devDependency that `npx`/`npm run` put first on the PATH. The system
 * Node here is 20, on which the test reporter crashes instead of reporting, so a run that
 * bypassed the devDependency fails here, by name, rather than somewhere obscure.
 */
describe("toolchain", () => {
  it("runs on Node 24 (the `node` devDependency), not the system Node", () => {
    assert.match(process.version, /^v24\./)
  })
})
