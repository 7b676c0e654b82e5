/**
 * Deterministic test data for the conformance cases: payload fillers, and the five corpora of the
 * permessage-deflate cases (§12), from which messages are cut one after another: prose, JSON and
 * HTML text (with multi-byte characters; cuts never split a character), a compressible
 * bitmap-like binary, and incompressible random bytes.
 */
import { utf8 } from "./wire.ts"

/** `n` bytes of a repeating pattern (different per seed). */
export const filled = (n: number, seed = 0): Uint8Array => {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff
  return b
}

/** `n` bytes of ASCII text. */
export const textOf = (n: number): Uint8Array => utf8("*".repeat(n))

/** A small seeded PRNG (mulberry32): floats in [0, 1). */
export const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const WORDS = (
  "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you " +
  "were her she there would their we him been has when who will more no if out so said what up its about into than " +
  "them can only other new some could time these two may then do first any my now such like our over man me even most " +
  "made after also did many before must through back years where much your way well down should because each just " +
  "those people how too little state good very make world still own see men work long get here between both life " +
  "being under never day same another know while last might us great old year off come since against go came right " +
  "used take three Straße naïve café κόσμε мир 日本語 😀 ünïcödé"
).split(" ")

const CORPUS_BYTES = 512 * 1024

const build = (next: (r: () => number) => string, seed: number): Uint8Array => {
  const r = prng(seed)
  const parts: Array<string> = []
  let n = 0
  while (n < CORPUS_BYTES) {
    const s = next(r)
    parts.push(s)
    n += Buffer.byteLength(s)
  }
  return utf8(parts.join(""))
}

const SYLLABLES = "ka to ri en as mo lu ste pra vin dor el qu ish ent ion al er on th an re is ma ne gu fi zo bel cor dis pen tra mi ur ol".split(" ")

/** A vocabulary of common words and a few thousand made-up ones (so the text compresses like prose, not like a loop). */
const VOCABULARY = (() => {
  const r = prng(99)
  const made = Array.from({ length: 4000 }, () => Array.from({ length: 1 + Math.floor(r() * 4) }, () => SYLLABLES[Math.floor(r() * SYLLABLES.length)]!).join(""))
  return [...WORDS, ...made]
})()

const word = (r: () => number) => VOCABULARY[Math.floor(r() * r() * VOCABULARY.length)]!

const sentence = (r: () => number) => {
  const n = 4 + Math.floor(r() * 14)
  const words = Array.from({ length: n }, () => word(r))
  const first = words[0]!
  words[0] = first.charAt(0).toUpperCase() + first.slice(1)
  return words.join(" ") + (r() < 0.1 ? "?" : r() < 0.2 ? "!" : ".")
}

/** A corpus the §12 cases cut messages from. */
export interface Corpus {
  readonly name: string
  readonly type: "Text" | "Binary"
  readonly bytes: () => Uint8Array
}

const lazily = (f: () => Uint8Array) => {
  let v: Uint8Array | undefined
  return () => (v ??= f())
}

/** The five corpora of §12. */
export const corpora: ReadonlyArray<Corpus> = [
  {
    name: "prose",
    type: "Text",
    bytes: lazily(() => build((r) => sentence(r) + (r() < 0.15 ? "\n\n" : " "), 1))
  },
  {
    name: "JSON",
    type: "Text",
    bytes: lazily(() =>
      build((r) =>
        JSON.stringify({
          id: Math.floor(r() * 1e6),
          name: `${word(r)} ${word(r)}`,
          tags: Array.from({ length: Math.floor(r() * 4) }, () => word(r)),
          score: Math.round(r() * 1e4) / 100,
          active: r() < 0.5,
          note: sentence(r)
        }) + ",\n", 2)
    )
  },
  {
    name: "HTML",
    type: "Text",
    bytes: lazily(() =>
      build((r) => `<div class="item c${Math.floor(r() * 9)}"><h3>${word(r)}</h3><p>${sentence(r)} ${sentence(r)}</p><a href="/${word(r)}/${Math.floor(r() * 1000)}">${word(r)}</a></div>\n`, 3)
    )
  },
  {
    name: "bitmap",
    type: "Binary",
    bytes: lazily(() => {
      const r = prng(4)
      const b = new Uint8Array(CORPUS_BYTES)
      for (let i = 0; i < b.length; i++) {
        const x = i % 512
        const y = Math.floor(i / 512)
        b[i] = (x + 2 * y + ((x * y) >> 9) + Math.floor(r() * 6)) & 0xff
      }
      return b
    })
  },
  {
    name: "random",
    type: "Binary",
    bytes: lazily(() => {
      const r = prng(5)
      const b = new Uint8Array(CORPUS_BYTES)
      for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256)
      return b
    })
  }
]

const isContinuation = (b: number) => (b & 0xc0) === 0x80

/**
 * Message number `i` of `size` bytes cut from a corpus, one after another (wrapping around). Text
 * cuts start on a character and a character cut off at the end is replaced by spaces, so every
 * text message is valid UTF-8 of exactly `size` bytes.
 */
export const cut = (corpus: Corpus, i: number, size: number): Uint8Array => {
  const all = corpus.bytes()
  let from = (i * size) % all.length
  const out = new Uint8Array(size)
  if (corpus.type === "Text") while (isContinuation(all[from]!)) from = (from + 1) % all.length
  for (let k = 0; k < size; k++) out[k] = all[(from + k) % all.length]!
  if (corpus.type === "Text" && size > 0) {
    // Find where the last character starts and whether it is complete.
    let start = size - 1
    while (start > 0 && isContinuation(out[start]!)) start--
    const lead = out[start]!
    const length = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2
    if (start + length > size) out.fill(0x20, start)
  }
  return out
}
