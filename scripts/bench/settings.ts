/**
 * The benchmarks' settings from the environment (BENCH_ROUNDS, BENCH_WARMUP_MS,
 * BENCH_DURATION_MS; the target selection BENCH_SERVERS is in `targets.ts`) and the limits of
 * the machine they run on (open files).
 */
import { execFileSync } from "node:child_process"

/** A number from the environment (at least `min`), or `fallback` when unset or not a number. */
export const envNumber = (name: string, fallback: number, min: number): number => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isFinite(value) ? Math.max(min, value) : fallback
}

/** Runs per server (BENCH_ROUNDS), warm-up and measured window (BENCH_WARMUP_MS, BENCH_DURATION_MS) of the echo benchmarks. */
export const ROUNDS = envNumber("BENCH_ROUNDS", 3, 1)
export const WARMUP_MS = envNumber("BENCH_WARMUP_MS", 1_000, 200)
export const DURATION_MS = envNumber("BENCH_DURATION_MS", 4_000, 500)

/** The soft limit on open files of this process (its children inherit it). */
export const openFileLimit = (): number => {
  try {
    const out = execFileSync("/bin/sh", ["-c", "ulimit -n"], { encoding: "utf8" }).trim()
    return out === "unlimited" ? Number.POSITIVE_INFINITY : Number(out)
  } catch {
    return Number.NaN
  }
}
