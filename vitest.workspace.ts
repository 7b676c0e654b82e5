/**
 * The vitest project list: one project per package, plus `scripts` (the README examples).
 * vitest 5 no longer discovers this file on its own, so `vitest.config.ts` imports it and passes
 * it as `test.projects`. node-adapter has a second project: its permessage-deflate tests on
 * node:zlib's public API (`packages/node-adapter/vitest.zlib-public-api.config.ts`).
 */
export default ["packages/*", "packages/node-adapter/vitest.zlib-public-api.config.ts", "scripts"]
