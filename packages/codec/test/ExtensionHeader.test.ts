import { assert, describe, it } from "@effect/vitest"
import { LINEAR_BOUND_MS } from "./helpers.ts"
import fc from "fast-check"
import {
  type ExtensionHeaderError,
  type ExtensionParameter,
  formatWebSocketExtensions,
  isExtensionHeaderError,
  isToken,
  parseWebSocketExtensions,
  WebSocketExtensionHeader
} from "../src/ExtensionHeader.ts"

type Shape = ReadonlyArray<{ readonly name: string; readonly parameters: ReadonlyArray<ExtensionParameter> }>

const shape = (headers: ReadonlyArray<WebSocketExtensionHeader>): Shape =>
  headers.map((h) => ({ name: h.name, parameters: h.parameters.map((p) => ({ name: p.name, value: p.value })) }))

const ok = (value: string | ReadonlyArray<string>): Shape => {
  const result = parseWebSocketExtensions(value)
  if (isExtensionHeaderError(result)) assert.fail(`unexpected error: ${result.message} at ${result.position}`)
  return shape(result)
}

const err = (value: string | ReadonlyArray<string>): ExtensionHeaderError => {
  const result = parseWebSocketExtensions(value)
  if (!isExtensionHeaderError(result)) return assert.fail(`expected an error, got ${formatWebSocketExtensions(result)}`)
  assert.strictEqual(result._tag, "ExtensionHeaderError")
  return result
}

const ext = (name: string, ...parameters: ReadonlyArray<readonly [string, string?]>) => ({
  name,
  parameters: parameters.map(([n, v]) => ({ name: n, value: v }))
})

describe("parseWebSocketExtensions", () => {
  it("parses a bare extension token", () => {
    assert.deepStrictEqual(ok("permessage-deflate"), [ext("permessage-deflate")])
  })

  it("parses parameters with and without values", () => {
    assert.deepStrictEqual(ok("permessage-deflate; client_max_window_bits; server_max_window_bits=10"), [
      ext("permessage-deflate", ["client_max_window_bits"], ["server_max_window_bits", "10"])
    ])
  })

  it("accepts every tchar in names and values", () => {
    const t = "!#$%&'*+-.^_`|~09azAZ"
    assert.deepStrictEqual(ok(`${t}; ${t}=${t}`), [ext(t.toLowerCase(), [t.toLowerCase(), t])])
  })

  it("lowercases extension and parameter names, keeps values as sent", () => {
    assert.deepStrictEqual(ok("PerMessage-Deflate; Client_Max_Window_Bits=AbC"), [
      ext("permessage-deflate", ["client_max_window_bits", "AbC"])
    ])
  })

  it("unquotes quoted-string values and their backslash escapes", () => {
    assert.deepStrictEqual(ok(`x; a="10"; b="1\\0"; c="\\a\\b\\c"`), [ext("x", ["a", "10"], ["b", "10"], ["c", "abc"])])
  })

  it("allows OWS (spaces and tabs) around , ; =", () => {
    assert.deepStrictEqual(ok(" \t a \t ; \t b \t = \t c \t ; d=\"e\" \t , \t f \t"), [
      ext("a", ["b", "c"], ["d", "e"]),
      ext("f")
    ])
  })

  it("parses several extensions in order", () => {
    assert.deepStrictEqual(ok("foo, bar; baz=2, permessage-deflate;client_max_window_bits"), [
      ext("foo"),
      ext("bar", ["baz", "2"]),
      ext("permessage-deflate", ["client_max_window_bits"])
    ])
  })

  it("keeps duplicate extensions and parameters", () => {
    assert.deepStrictEqual(ok("a; x; x=1, a"), [ext("a", ["x"], ["x", "1"]), ext("a")])
  })

  it("concatenates several header lines with ','", () => {
    assert.deepStrictEqual(ok(["a; b=1", "c", " d ; e "]), [ext("a", ["b", "1"]), ext("c"), ext("d", ["e"])])
    assert.deepStrictEqual(ok(["", "a", " "]), [ext("a")])
  })

  it("skips empty list elements", () => {
    assert.deepStrictEqual(ok(", a, , b ,,"), [ext("a"), ext("b")])
    assert.deepStrictEqual(ok(",\t,a"), [ext("a")])
  })

  const errors: ReadonlyArray<readonly [string, number, RegExp]> = [
    ["", 0, /at least one extension/],
    ["   ", 3, /at least one extension/],
    [" , ,", 4, /at least one extension/],
    [";a", 0, /expected an extension name/],
    ["a, ;b", 3, /expected an extension name/],
    ["=a", 0, /expected an extension name/],
    ["\"a\"", 0, /expected an extension name/],
    ["é", 0, /expected an extension name/],
    ["a;", 2, /expected a parameter name.*end of input/],
    ["a; =1", 3, /expected a parameter name/],
    ["a;;b", 2, /expected a parameter name/],
    ["a; b=", 5, /expected a token or quoted-string value/],
    ["a; b=,c", 5, /expected a token or quoted-string value/],
    ["a; b= ;", 6, /expected a token or quoted-string value/],
    ["a b", 2, /expected ',' or ';'/],
    ["a; b=c d", 7, /expected ',' or ';'/],
    ["a; b=c=d", 6, /expected ',' or ';'/],
    ["a; b=\"c\"d", 8, /expected ',' or ';'/],
    ["a(b)", 1, /expected ',' or ';'/],
    ["a; b=\"1", 7, /unterminated quoted-string opened at offset 5/],
    ["a; b=\"1\\", 8, /unterminated quoted-string/],
    ["a; b=\"1\\\"", 9, /unterminated quoted-string/],
    ["a; b=\"1 2\"", 7, /must be a token.*offset 7/],
    ["a; b=\"1,2\"", 7, /must be a token/],
    ["a; b=\"1\\\"2\"", 8, /must be a token/],
    ["a; b=\"\"", 5, /must be a token.*empty/],
    ["a; b=\"\u0001\"", 6, /invalid character/],
    ["a; b=\"\\\u0000\"", 7, /invalid escaped character/],
    ["a; b=\"\u0100\"", 6, /invalid character/]
  ]
  for (const [input, position, message] of errors) {
    it(`rejects ${JSON.stringify(input)} at offset ${position}`, () => {
      const e = err(input)
      assert.strictEqual(e.position, position)
      assert.match(e.message, message)
    })
  }

  it("reports offsets into the joined header lines", () => {
    const e = err(["a", "b c"])
    assert.strictEqual(e.position, 4)
    assert.deepStrictEqual(err([]).position, 0)
  })
})

describe("WebSocketExtensionHeader", () => {
  it("looks parameters up case-insensitively, first match wins", () => {
    const h = new WebSocketExtensionHeader("X", [{ name: "A", value: "1" }, { name: "a", value: "2" }, {
      name: "b",
      value: undefined
    }])
    assert.strictEqual(h.name, "x")
    assert.deepStrictEqual(h.parameter("a"), { name: "a", value: "1" })
    assert.deepStrictEqual(h.parameter("B"), { name: "b", value: undefined })
    assert.strictEqual(h.parameter("c"), undefined)
  })

  it("formats as a header element", () => {
    const h = new WebSocketExtensionHeader("permessage-deflate", [
      { name: "client_max_window_bits", value: "10" },
      { name: "server_no_context_takeover", value: undefined }
    ])
    assert.strictEqual(h.toString(), "permessage-deflate; client_max_window_bits=10; server_no_context_takeover")
    assert.strictEqual(new WebSocketExtensionHeader("foo").toString(), "foo")
  })

  it("quotes a value only when it is not a token", () => {
    const h = new WebSocketExtensionHeader("x", [
      { name: "a", value: "plain" },
      { name: "b", value: "two words" },
      { name: "c", value: "q\"b\\" },
      { name: "d", value: "" }
    ])
    assert.strictEqual(h.toString(), `x; a=plain; b="two words"; c="q\\"b\\\\"; d=""`)
  })

  it("throws a RangeError on names that are not tokens or values that cannot be quoted", () => {
    assert.throws(() => new WebSocketExtensionHeader("a b"), RangeError)
    assert.throws(() => new WebSocketExtensionHeader(""), RangeError)
    assert.throws(() => new WebSocketExtensionHeader("a", [{ name: "b=", value: undefined }]), RangeError)
    assert.throws(() => new WebSocketExtensionHeader("a", [{ name: "b", value: "\n" }]), RangeError)
  })

  it("isToken", () => {
    assert.isTrue(isToken("permessage-deflate"))
    assert.isFalse(isToken(""))
    assert.isFalse(isToken("a b"))
    assert.isFalse(isToken("a\""))
    assert.isFalse(isToken("ä"))
  })
})

describe("formatWebSocketExtensions", () => {
  it("joins elements with ', '", () => {
    assert.strictEqual(
      formatWebSocketExtensions([new WebSocketExtensionHeader("a"), new WebSocketExtensionHeader("b", [{ name: "c", value: "1" }])]),
      "a, b; c=1"
    )
  })

  const tokenArb = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,8}$/)
  const paramArb = fc.record({ name: tokenArb, value: fc.option(tokenArb, { nil: undefined }) })
  const extArb = fc.record({ name: tokenArb, parameters: fc.array(paramArb, { maxLength: 4 }) })
  const listArb = fc.array(extArb, { minLength: 1, maxLength: 4 })
  const owsArb = fc.stringMatching(/^[ \t]{0,2}$/)

  it("round-trips: parse(format(parse(x))) has the structure of parse(x) for generated valid headers", () => {
    fc.assert(
      fc.property(listArb, fc.infiniteStream(owsArb), fc.infiniteStream(fc.boolean()), (list, ows, flags) => {
        const sp = () => ows.next().value
        const flag = () => flags.next().value
        // Render with random OWS, empty elements and quoted (partly escaped) values.
        const quote = (v: string) => `"${[...v].map((c) => (flag() ? `\\${c}` : c)).join("")}"`
        const text = list
          .map((e) =>
            (flag() ? `${sp()},` : "") + sp() + e.name +
            e.parameters.map((p) =>
              `${sp()};${sp()}${p.name}` +
              (p.value === undefined ? "" : `${sp()}=${sp()}${flag() ? quote(p.value) : p.value}`)
            ).join("") + sp()
          )
          .join(",")
        const expected = list.map((e) => ({
          name: e.name.toLowerCase(),
          parameters: e.parameters.map((p) => ({ name: p.name.toLowerCase(), value: p.value }))
        }))
        const parsed = parseWebSocketExtensions(text)
        if (isExtensionHeaderError(parsed)) return assert.fail(`${text}: ${parsed.message}`)
        assert.deepStrictEqual(shape(parsed), expected)
        assert.deepStrictEqual(ok(formatWebSocketExtensions(parsed)), expected)
      }),
      { numRuns: 500 }
    )
  })
})

describe("linear time on hostile input (H2)", () => {
  const MB = 1 << 20
  const fill = (prefix: string, unit: string, suffix = "") =>
    prefix + unit.repeat(Math.ceil((MB - prefix.length - suffix.length) / unit.length)) + suffix
  const inputs: ReadonlyArray<readonly [string, string]> = [
    ["spaces", fill("", " ")],
    ["tabs and spaces around a name", fill("", " \t", "a")],
    ["commas", fill("", ",")],
    ["comma-space runs", fill("", " , ")],
    ["semicolons", fill("a", ";")],
    ["semicolons with spaces", fill("a", " ; ")],
    ["quotes", fill("", "\"")],
    ["quotes after =", fill("a; b=", "\"")],
    ["unterminated quoted string", fill("a; b=\"", "x")],
    ["unterminated quoted string of spaces", fill("a; b=\"", " ")],
    ["backslashes in a quoted string", fill("a; b=\"", "\\")],
    ["escaped pairs in a quoted string", fill("a; b=\"", "\\x", "\"")],
    ["a long quoted token", fill("a; b=\"", "x", "\"")],
    ["many extensions", fill("", "a, ")],
    ["many parameters", fill("a", "; b=\"c\"")],
    ["many quoted-string starts", fill("a", "; b=\"c")],
    ["equals signs", fill("a; b", "=")],
    ["a long token", fill("", "a")],
    ["spaces between two names", fill("a", " ", "b")]
  ]
  for (const [label, input] of inputs) {
    it(`1 MB of ${label}`, () => {
      const start = performance.now()
      const result = parseWebSocketExtensions(input)
      const elapsed = performance.now() - start
      assert.isTrue(isExtensionHeaderError(result) || Array.isArray(result))
      assert.isBelow(elapsed, LINEAR_BOUND_MS)
    })
  }

  it("1 MB spread over many header lines", () => {
    const lines = Array.from({ length: 1 << 14 }, () => " ".repeat(63))
    const start = performance.now()
    const result = parseWebSocketExtensions(lines)
    assert.isBelow(performance.now() - start, LINEAR_BOUND_MS)
    assert.isTrue(isExtensionHeaderError(result))
  })
})
