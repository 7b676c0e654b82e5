/**
 * The vitest project list: one project per package, plus `scripts` (the README examples).
 * vitest 5 no longer discovers this file on its own, so `vitest.config.ts` imports it and passes
 * it as `test.projects`.
 */
export default ["packages/*", "scripts"]
