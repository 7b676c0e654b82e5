import { defineProject } from "vitest/config"

export default defineProject({ test: { name: "node-adapter", include: ["test/**/*.test.ts"] } })
