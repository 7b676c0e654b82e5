/**
 * How the benchmarks print numbers: thousands separators, medians, ratios, and markdown tables
 * (printed as they are, so that the README can show them unchanged).
 */

/** Formats a number with thousands separators ("n/a" when it is not finite). */
export const fmt = (x: number, digits = 0): string =>
  Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "n/a"

/** Formats a measurement with 3 significant digits (at least 0 decimals): 37.4, 4.13, 131, 6,621. */
export const sig3 = (x: number): string => {
  if (!Number.isFinite(x)) return "n/a"
  const digits = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2
  return fmt(x, digits)
}

/** `a / b` as "1.21×" ("—" when either is missing). */
export const ratio = (a: number, b: number): string =>
  Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : "—"

/** The median of some numbers (NaN for none). */
export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** A markdown table: `header` cells, then `rows`; the first column left-aligned, the others right-aligned. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
    ...rows.map((row) => `| ${row.join(" | ")} |`)
  ].join("\n")
