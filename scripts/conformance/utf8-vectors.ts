/**
 * UTF-8 decoder test vectors for §6, in the families of Markus Kuhn's UTF-8 decoder stress test
 * (the families Autobahn's cases 6.5 onwards use), generated here: valid sequences, boundary
 * code points, stray continuation bytes, lone lead bytes, truncated sequences, impossible bytes,
 * overlong forms, surrogates, noncharacters. Whether each is valid is decided by the platform's
 * strict decoder (`isValidUtf8`), not by a hand-written table.
 */
import { isValidUtf8, utf8 } from "./wire.ts"

/** One family of vectors. */
export interface Utf8Family {
  readonly name: string
  readonly vectors: ReadonlyArray<{ readonly bytes: Uint8Array; readonly valid: boolean }>
}

/** The bit pattern of `cp` in an `n`-byte UTF-8 form (1..6 bytes), whether or not that form is legal. */
export const encodeAs = (cp: number, n: number): Array<number> => {
  if (n === 1) return [cp & 0x7f]
  const out = new Array<number>(n)
  let v = cp
  for (let k = n - 1; k >= 1; k--) {
    out[k] = 0x80 | (v & 0x3f)
    v = Math.floor(v / 64)
  }
  out[0] = ((0xff << (8 - n)) & 0xff) | v
  return out
}

const cp = (code: number) => [...utf8(String.fromCodePoint(code))]
const surrogate = (code: number) => encodeAs(code, 3)

const family = (name: string, sequences: ReadonlyArray<ReadonlyArray<number>>): Utf8Family => ({
  name,
  vectors: sequences.map((s) => {
    const bytes = Uint8Array.from(s)
    return { bytes, valid: isValidUtf8(bytes) }
  })
})

const kosme = [0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5]
const hello = [...utf8("hello")]
const world = [...utf8("world")]
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

const truncated = [
  ...[2, 3, 4, 5, 6].map((n) => encodeAs(0, n).slice(0, -1)),
  ...[2, 3, 4, 5, 6].map((n) => encodeAs(2 ** (n === 2 ? 11 : 5 * n + 1) - 1, n).slice(0, -1))
]

/** The families, in Autobahn's order (6.5, 6.6, …). */
export const utf8Families: ReadonlyArray<Utf8Family> = [
  family("some valid sequences", [
    [...hello, ...cp(0x24), ...world],
    [...hello, ...cp(0xa2), ...world],
    [...hello, ...cp(0x20ac), ...world],
    [...hello, ...cp(0x24b62), ...world],
    kosme
  ]),
  family("every prefix of a valid multi-byte string", range(1, kosme.length).map((n) => kosme.slice(0, n))),
  family("first code point of each length", [cp(0), cp(0x80), cp(0x800), cp(0x10000), encodeAs(0x200000, 5), encodeAs(0x4000000, 6)]),
  family("last code point of each length", [cp(0x7f), cp(0x7ff), cp(0xffff), cp(0x10ffff), encodeAs(0x1fffff, 4), encodeAs(0x3ffffff, 5), encodeAs(0x7fffffff, 6)]),
  family("other boundaries", [cp(0xd7ff), cp(0xe000), cp(0xfffd), cp(0x10ffff), encodeAs(0x110000, 4)]),
  family("stray continuation bytes", [[0x80], [0xbf], ...range(2, 6).map((n) => range(0, n - 1).map((i) => (i % 2 === 0 ? 0x80 : 0xbf))), range(0x80, 0xbf)]),
  family("lone lead bytes, each followed by a space", [[0xc0, 0xdf], [0xe0, 0xef], [0xf0, 0xf7], [0xf8, 0xfb], [0xfc, 0xfd]].map(([a, b]) => range(a!, b!).flatMap((x) => [x, 0x20]))),
  family("sequences missing their last continuation byte", truncated),
  family("those truncated sequences concatenated", [truncated.flat()]),
  family("impossible bytes", [[0xfe], [0xff], [0xfe, 0xfe, 0xff, 0xff]]),
  family("overlong '/'", [2, 3, 4, 5, 6].map((n) => encodeAs(0x2f, n))),
  family("largest overlong of each length", [encodeAs(0x7f, 2), encodeAs(0x7ff, 3), encodeAs(0xffff, 4), encodeAs(0x1fffff, 5), encodeAs(0x3ffffff, 6)]),
  family("overlong NUL", [2, 3, 4, 5, 6].map((n) => encodeAs(0, n))),
  family("single UTF-16 surrogates", [0xd800, 0xdb7f, 0xdb80, 0xdbff, 0xdc00, 0xdf80, 0xdfff].map(surrogate)),
  family("paired UTF-16 surrogates", [0xd800, 0xdb7f, 0xdb80, 0xdbff].flatMap((h) => [0xdc00, 0xdfff].map((l) => [...surrogate(h), ...surrogate(l)]))),
  family("noncharacters (valid UTF-8)", [cp(0xfffe), cp(0xffff), ...range(1, 16).flatMap((plane) => [cp(plane * 0x10000 + 0xfffe), cp(plane * 0x10000 + 0xffff)])]),
  family("specials (valid UTF-8)", range(0xfff9, 0xffff).map(cp))
]
