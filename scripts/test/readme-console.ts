/**
 * Preloaded (`--import`) into a README example by `readme.test.ts`: every `console.log` call made
 * from the example's own file is appended, as `{ line, text }` JSON, to the file named by
 * `README_CONSOLE_OUT`, so the test can compare each call's prints with the comment that
 * documents them. The output still goes to stdout as usual.
 */
import { appendFileSync } from "node:fs"
import { pathToFileURL } from "node:url"
import { format } from "node:util"

const out = process.env.README_CONSOLE_OUT
const script = process.argv[1]
if (out !== undefined && script !== undefined) {
  const url = pathToFileURL(script).href
  const log = console.log.bind(console)
  console.log = (...args: Array<unknown>): void => {
    const frame = (new Error().stack ?? "").split("\n").find((l) => l.includes(`${url}:`) || l.includes(`${script}:`))
    const line = frame === undefined ? undefined : /:(\d+):\d+\)?$/.exec(frame)?.[1]
    appendFileSync(out, JSON.stringify({ line: line === undefined ? 0 : Number(line), text: format(...args) }) + "\n")
    log(...args)
  }
}
