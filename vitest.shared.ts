/**
 * The settings every vitest project shares: workspace packages resolve through their
 * `@effect-ws/source` export condition to `src/*.ts`, so tests run on the sources (no build step,
 * one copy of each module) while published packages resolve to `dist/`.
 */
import { defineProject } from "vitest/config"

/** The export condition that maps `@effect-ws/*` imports to their TypeScript sources. */
export const sourceCondition = "@effect-ws/source"

// Vite's default server conditions (its `defaultServerConditions`), after ours.
const conditions = [sourceCondition, "module", "node", "development|production"]

/** A vitest project named `name` running `test/**\/*.test.ts` on the packages' sources. */
export const project = (name: string) =>
  defineProject({
    resolve: { conditions },
    ssr: { resolve: { conditions } },
    // Generous bounds (vitest's defaults are 5 s / 10 s): property tests take several seconds on a
    // loaded 2-core machine; a hang still fails, within a bound.
    test: { name, include: ["test/**/*.test.ts"], testTimeout: 30_000, hookTimeout: 30_000 }
  })
