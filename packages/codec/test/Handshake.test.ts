import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { createHash } from "node:crypto"
import { WebSocketExtensionHeader } from "../src/ExtensionHeader.ts"
import {
  acceptResponseHeaders,
  computeAccept,
  DEFAULT_MAX_HEADER_BYTES,
  encodeLatin1,
  formatRejection,
  formatUpgradeResponse,
  generateKey,
  type HandshakeFailure,
  type HandshakeFailureKind,
  type HandshakeFormatError,
  type HandshakeFormatErrorKind,
  type HandshakeRejection,
  hasToken,
  headerLines,
  headerList,
  type Headers,
  type HttpHead,
  type HttpHeadError,
  HttpHeadParser,
  isHandshakeFailure,
  isHandshakeFormatError,
  isHandshakeRejection,
  isValidKey,
  makeRejection,
  makeUpgradeRequest,
  type UpgradeRequest,
  type UpgradeRequestOptions,
  validateUpgradeRequest,
  validateUpgradeResponse
} from "../src/Handshake.ts"
import { encodeBase64 } from "../src/internal/base64.ts"
import { Sha1, sha1 } from "../src/internal/sha1.ts"
import { chunked, LINEAR_BOUND_MS } from "./helpers.ts"

const hexOf = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0))
const nodeSha1 = (bytes: Uint8Array): string => createHash("sha1").update(bytes).digest("hex")

// RFC 6455 §1.3
const RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
const RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/** The client handshake of RFC 6455 §1.3 as a server sees it. */
const rfcHeaders: Headers = {
  host: "server.example.com",
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-key": RFC_KEY,
  origin: "http://example.com",
  "sec-websocket-protocol": "chat, superchat",
  "sec-websocket-version": "13"
}

const request = (headers: Headers, method = "GET", httpVersion = "1.1") =>
  validateUpgradeRequest({ method, httpVersion, headers })

const accepted = (headers: Headers): UpgradeRequest => {
  const result = request(headers)
  if (isHandshakeRejection(result)) assert.fail(`unexpected rejection ${result.status}: ${result.reason}`)
  return result
}

const rejected = (result: UpgradeRequest | HandshakeRejection): HandshakeRejection => {
  if (!isHandshakeRejection(result)) assert.fail("expected a rejection")
  return result
}

const without = (name: string): Headers => Object.fromEntries(Object.entries(rfcHeaders).filter(([k]) => k !== name))

const formatFailure = (u: unknown, kind: HandshakeFormatErrorKind): HandshakeFormatError => {
  if (!isHandshakeFormatError(u)) assert.fail(`expected a HandshakeFormatError, got ${JSON.stringify(u)}`)
  assert.strictEqual(u.kind, kind)
  return u
}

const deflate = (params: ReadonlyArray<{ name: string; value: string | undefined }> = []) =>
  new WebSocketExtensionHeader("permessage-deflate", params)

describe("SHA-1", () => {
  it("matches the FIPS 180 test vectors", () => {
    assert.strictEqual(hexOf(sha1(ascii(""))), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    assert.strictEqual(hexOf(sha1(ascii("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d")
    assert.strictEqual(
      hexOf(sha1(ascii("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
      "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    )
    assert.strictEqual(
      hexOf(
        sha1(
          ascii(
            "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
          )
        )
      ),
      "a49b2446a02c645bf419f995b67091253a04a259"
    )
  })

  it("hashes a million 'a' in one shot and incrementally", () => {
    const expected = "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
    const million = new Uint8Array(1_000_000).fill(0x61)
    assert.strictEqual(hexOf(sha1(million)), expected)
    const hasher = new Sha1()
    const piece = new Uint8Array(999).fill(0x61)
    let left = 1_000_000
    while (left > 0) {
      const n = Math.min(left, piece.length)
      hasher.update(piece, 0, n)
      left -= n
    }
    assert.strictEqual(hexOf(hasher.digest()), expected)
  })

  it("agrees with node:crypto around the padding boundaries and after reset", () => {
    const hasher = new Sha1()
    for (let n = 0; n <= 200; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff)
      assert.strictEqual(hexOf(hasher.reset().update(bytes).digest()), nodeSha1(bytes), `length ${n}`)
    }
  })

  it("agrees with node:crypto on arbitrary bytes in arbitrary pieces", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.integer({ min: 1, max: 130 }), { maxLength: 5 }), (bytes, sizes) => {
        const hasher = new Sha1()
        for (const c of chunked(bytes, sizes)) hasher.update(c)
        assert.strictEqual(hexOf(hasher.digest()), nodeSha1(bytes))
      }),
      { numRuns: 2_000 }
    )
  })

  it("writes the digest into a caller's buffer at an offset", () => {
    const out = new Uint8Array(24)
    new Sha1().update(ascii("abc")).digest(out, 2)
    assert.strictEqual(hexOf(out.subarray(2, 22)), "a9993e364706816aba3e25717850c26c9cd0d89d")
    assert.deepStrictEqual([out[0], out[1], out[22], out[23]], [0, 0, 0, 0])
  })
})

describe("base64", () => {
  it("agrees with Buffer on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        assert.strictEqual(encodeBase64(bytes), Buffer.from(bytes).toString("base64"))
      }),
      { numRuns: 2_000 }
    )
  })
})

describe("keys and Sec-WebSocket-Accept", () => {
  it("computes the accept of RFC 6455 §1.3", () => {
    assert.strictEqual(computeAccept(RFC_KEY), RFC_ACCEPT)
  })

  it("agrees with node:crypto for arbitrary latin1 keys (long ones too)", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 100 }), (key) => {
        const expected = createHash("sha1")
          .update(Buffer.from(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", "latin1"))
          .digest("base64")
        assert.strictEqual(computeAccept(key), expected)
      }),
      { numRuns: 1_000 }
    )
  })

  it("throws a RangeError for a key with a character above U+00FF", () => {
    assert.throws(() => computeAccept("\u0100"), RangeError)
  })

  it("generates base64 of 16 bytes from the random source", () => {
    const key = generateKey((bytes) => {
      assert.strictEqual(bytes.length, 16)
      for (let i = 0; i < bytes.length; i++) bytes[i] = i
    })
    assert.strictEqual(key, "AAECAwQFBgcICQoLDA0ODw==")
    assert.isTrue(isValidKey(key))
    const a = generateKey()
    const b = generateKey()
    assert.isTrue(isValidKey(a))
    assert.isTrue(isValidKey(b))
    assert.notStrictEqual(a, b)
  })

  it("accepts exactly 22 base64 characters then ==", () => {
    assert.isTrue(isValidKey(RFC_KEY))
    assert.isTrue(isValidKey("+/+/+/+/+/+/+/+/+/+/+w=="))
    // Non-zero unused bits in the last character: tolerated (RFC 4648 §3.5).
    assert.isTrue(isValidKey("dGhlIHNhbXBsZSBub25jZR=="))
    for (const bad of [
      "",
      "dGhlIHNhbXBsZSBub25jZQ=",
      "dGhlIHNhbXBsZSBub25jZQ===",
      "dGhlIHNhbXBsZSBub25jZQ",
      "dGhlIHNhbXBsZSBub25jZQAA",
      "dGhlIHNhbXBsZSBub25jZ===",
      "dGhlIHNhbXBsZSBub25j-Q==",
      "dGhlIHNhbXBsZSBub25j_Q==",
      "dGhlIHNhbXBsZSBub25j Q==",
      "dGhlIHNhbXBsZSBub25jZQ==\r\n",
      "AAAAAAAAAAAAAAAAAAAAAAAA", // 18 bytes
      "AAAAAAAAAAAAAAAAAAAAAA=" // 16 bytes, one pad character
    ]) {
      assert.isFalse(isValidKey(bad), JSON.stringify(bad))
    }
  })
})

describe("header helpers", () => {
  const headers: Headers = {
    connection: ["keep-alive", " UPGRADE ,close"],
    upgrade: "h2c,  WebSocket ",
    single: " x ",
    empty: ", ,",
    absent: undefined
  }

  it("reads lines and comma lists across lines", () => {
    assert.deepStrictEqual(headerLines(headers, "Connection"), ["keep-alive", " UPGRADE ,close"])
    assert.deepStrictEqual(headerLines(headers, "single"), [" x "])
    assert.deepStrictEqual(headerLines(headers, "absent"), [])
    assert.deepStrictEqual(headerLines(headers, "missing"), [])
    assert.deepStrictEqual(headerLines(headers, "constructor"), [])
    assert.deepStrictEqual(headerList(headers, "connection"), ["keep-alive", "UPGRADE", "close"])
    assert.deepStrictEqual(headerList(headers, "empty"), [])
  })

  it("finds tokens case-insensitively anywhere in the list", () => {
    assert.isTrue(hasToken(headers, "connection", "upgrade"))
    assert.isTrue(hasToken(headers, "connection", "Close"))
    assert.isTrue(hasToken(headers, "UPGRADE", "websocket"))
    assert.isFalse(hasToken(headers, "upgrade", "web"))
    assert.isFalse(hasToken(headers, "missing", "upgrade"))
  })
})

describe("validateUpgradeRequest", () => {
  it("accepts the request of RFC 6455 §1.3", () => {
    assert.deepStrictEqual(accepted(rfcHeaders), {
      _tag: "UpgradeRequest",
      key: RFC_KEY,
      accept: RFC_ACCEPT,
      protocols: ["chat", "superchat"],
      extensions: [],
      origin: "http://example.com"
    })
  })

  it("accepts tokens in any case, in lists, across several header lines", () => {
    const result = accepted({
      ...rfcHeaders,
      connection: ["keep-alive", "UPGRADE"],
      upgrade: ["h2c", "foo, WebSocket"],
      "sec-websocket-key": `  ${RFC_KEY}\t`,
      "sec-websocket-version": " 13 ",
      "sec-websocket-protocol": ["chat", " , superchat,, v2.json "]
    })
    assert.strictEqual(result.key, RFC_KEY)
    assert.strictEqual(result.accept, RFC_ACCEPT)
    assert.deepStrictEqual(result.protocols, ["chat", "superchat", "v2.json"])
  })

  it("parses offered extensions from every line, and leaves optional parts empty", () => {
    const result = accepted({
      ...without("origin"),
      "sec-websocket-protocol": undefined,
      "sec-websocket-extensions": ["permessage-deflate; client_max_window_bits", "x-foo, permessage-deflate"]
    })
    assert.deepStrictEqual(
      result.extensions.map((e) => e.toString()),
      ["permessage-deflate; client_max_window_bits", "x-foo", "permessage-deflate"]
    )
    assert.deepStrictEqual(result.protocols, [])
    assert.isUndefined(result.origin)
  })

  it("skips the HTTP version check when no version is given", () => {
    assert.strictEqual(validateUpgradeRequest({ method: "GET", headers: rfcHeaders })._tag, "UpgradeRequest")
    assert.strictEqual(request(rfcHeaders, "GET", "1.2")._tag, "UpgradeRequest")
  })

  it("answers a method other than GET with 405 and Allow: GET", () => {
    for (const method of ["POST", "HEAD", "get", "CONNECT"]) {
      const r = rejected(request(rfcHeaders, method))
      assert.strictEqual(r.status, 405)
      assert.deepStrictEqual(r.headers, { Allow: "GET" })
    }
  })

  it("answers HTTP versions other than 1.1+ with 400", () => {
    for (const version of ["1.0", "0.9", "2.0", "3", "11", "1.1 ", ""]) {
      const r = rejected(request(rfcHeaders, "GET", version))
      assert.strictEqual(r.status, 400, version)
      assert.deepStrictEqual(r.headers, {})
    }
  })

  it("answers a missing, empty or repeated Host with 400", () => {
    for (const host of [undefined, "", " ", ["a", "b"]]) {
      const r = rejected(request({ ...rfcHeaders, host }))
      assert.strictEqual(r.status, 400)
      assert.deepStrictEqual(r.headers, {})
    }
  })

  it("answers a missing websocket upgrade with 426, Upgrade: websocket and Connection: Upgrade", () => {
    for (const upgrade of [undefined, "", "h2c", "websocket2", "web socket", ["h2c", "tls/1.0"]]) {
      const r = rejected(request({ ...rfcHeaders, upgrade }))
      assert.strictEqual(r.status, 426)
      assert.deepStrictEqual(r.headers, { Upgrade: "websocket", Connection: "Upgrade" })
    }
  })

  it("answers a Connection without the upgrade token with 400", () => {
    for (const connection of [undefined, "", "keep-alive", "upgrades", ["keep-alive", "close"]]) {
      const r = rejected(request({ ...rfcHeaders, connection }))
      assert.strictEqual(r.status, 400)
      assert.deepStrictEqual(r.headers, {})
    }
  })

  it("answers a missing, repeated or other version with 426 and Sec-WebSocket-Version: 13", () => {
    for (const version of [undefined, "", "8", "12", "13, 8", "013", ["13", "13"], ["8", "13"]]) {
      const r = rejected(request({ ...rfcHeaders, "sec-websocket-version": version }))
      assert.strictEqual(r.status, 426, JSON.stringify(version))
      assert.deepStrictEqual(r.headers, { Upgrade: "websocket", Connection: "Upgrade", "Sec-WebSocket-Version": "13" })
    }
  })

  it("checks the version before the key (an old client gets 426, not 400)", () => {
    const r = rejected(request({ ...without("sec-websocket-key"), "sec-websocket-version": "8" }))
    assert.strictEqual(r.status, 426)
  })

  it("answers a missing, repeated or malformed key with 400", () => {
    for (const key of [undefined, "", "abc", "dGhlIHNhbXBsZSBub25jZQ", [RFC_KEY, RFC_KEY], [RFC_KEY, "x"], `${RFC_KEY}, ${RFC_KEY}`]) {
      const r = rejected(request({ ...rfcHeaders, "sec-websocket-key": key }))
      assert.strictEqual(r.status, 400, JSON.stringify(key))
      assert.deepStrictEqual(r.headers, {})
    }
  })

  it("answers a subprotocol list that is not unique tokens with 400", () => {
    for (const protocol of ["", " , ", "chat superchat", "chat; q=1", "(chat)", "ch\"at", "chat, chat", ["chat", "chat"], "é"]) {
      const r = rejected(request({ ...rfcHeaders, "sec-websocket-protocol": protocol }))
      assert.strictEqual(r.status, 400, JSON.stringify(protocol))
      assert.deepStrictEqual(r.headers, {})
    }
  })

  it("answers bad extension syntax with 400", () => {
    for (const extensions of ["", ",", "permessage-deflate;", "a b", 'x; y="unterminated', ["ok", "bad name"]]) {
      const r = rejected(request({ ...rfcHeaders, "sec-websocket-extensions": extensions }))
      assert.strictEqual(r.status, 400, JSON.stringify(extensions))
    }
  })

  it("answers several Origin headers with 400", () => {
    assert.strictEqual(rejected(request({ ...rfcHeaders, origin: ["http://a", "http://b"] })).status, 400)
  })

  it("parses crafted 1 MB Protocol and Extensions values in linear time (H2)", () => {
    const spaces = " ".repeat(1 << 20)
    const commas = ", ".repeat(1 << 19)
    const unique = Array.from({ length: 100_000 }, (_, i) => `p${i}`).join(",")
    const cases: Array<[Headers, number]> = [
      [{ ...rfcHeaders, "sec-websocket-protocol": spaces + "a" + spaces + "b" }, 400],
      [{ ...rfcHeaders, "sec-websocket-protocol": commas }, 400],
      [{ ...rfcHeaders, "sec-websocket-protocol": commas + "a" }, 0],
      [{ ...rfcHeaders, "sec-websocket-protocol": unique }, 0],
      [{ ...rfcHeaders, "sec-websocket-extensions": "x" + ";".repeat(1 << 20) }, 400],
      [{ ...rfcHeaders, "sec-websocket-extensions": 'x; a="' + " ".repeat(1 << 20) }, 400],
      [{ ...rfcHeaders, "sec-websocket-extensions": commas + "x" }, 0]
    ]
    for (const [headers, status] of cases) {
      const start = performance.now()
      const result = request(headers)
      const elapsed = performance.now() - start
      if (status === 0) assert.strictEqual(result._tag, "UpgradeRequest")
      else assert.strictEqual(rejected(result).status, status)
      assert.isBelow(elapsed, LINEAR_BOUND_MS)
    }
  })

  it("never throws on arbitrary headers (H18)", () => {
    const valueArb = fc.oneof(
      fc.constant(undefined),
      fc.string({ maxLength: 30 }),
      fc.constantFrom("websocket", "Upgrade", "13", RFC_KEY, "chat, superchat", "permessage-deflate; x=1"),
      fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 })
    )
    const nameArb = fc.constantFrom(
      "host",
      "upgrade",
      "connection",
      "sec-websocket-key",
      "sec-websocket-version",
      "sec-websocket-protocol",
      "sec-websocket-extensions",
      "origin",
      "__proto__",
      "constructor"
    )
    fc.assert(
      fc.property(fc.dictionary(nameArb, valueArb), fc.constantFrom("GET", "POST"), (headers, method) => {
        const result = validateUpgradeRequest({ method, httpVersion: "1.1", headers: { ...rfcHeaders, ...headers } })
        if (isHandshakeRejection(result)) assert.include([400, 405, 426], result.status)
        else assert.strictEqual(result.accept, computeAccept(result.key))
      }),
      { numRuns: 5_000 }
    )
  })
})

describe("accepting: response headers and text", () => {
  const req = accepted({ ...rfcHeaders, "sec-websocket-extensions": "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame" })

  it("gives Upgrade, Connection and Sec-WebSocket-Accept by default", () => {
    assert.deepStrictEqual(acceptResponseHeaders(req), {
      Upgrade: "websocket",
      Connection: "Upgrade",
      "Sec-WebSocket-Accept": RFC_ACCEPT
    })
  })

  it("formats the 101 response of RFC 6455 §1.3 byte for byte", () => {
    assert.strictEqual(
      formatUpgradeResponse(req, { protocol: "chat" }),
      "HTTP/1.1 101 Switching Protocols\r\n" +
        "Upgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
        "Sec-WebSocket-Protocol: chat\r\n" +
        "\r\n"
    )
  })

  it("adds negotiated extensions and extra headers, in that order", () => {
    const options = {
      protocol: "superchat",
      extensions: [deflate([{ name: "client_max_window_bits", value: "10" }])],
      headers: { "Set-Cookie": "a=b; Path=/", "X-Latin1": "caf\u00e9" }
    }
    assert.strictEqual(
      formatUpgradeResponse(req, options),
      "HTTP/1.1 101 Switching Protocols\r\n" +
        "Upgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${RFC_ACCEPT}\r\n` +
        "Sec-WebSocket-Protocol: superchat\r\n" +
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n" +
        "Set-Cookie: a=b; Path=/\r\n" +
        "X-Latin1: caf\u00e9\r\n" +
        "\r\n"
    )
    const headers = acceptResponseHeaders(req, options)
    assert.deepStrictEqual(Object.keys(headers), [
      "Upgrade",
      "Connection",
      "Sec-WebSocket-Accept",
      "Sec-WebSocket-Protocol",
      "Sec-WebSocket-Extensions",
      "Set-Cookie",
      "X-Latin1"
    ])
  })

  it("keeps an own __proto__ header as a header", () => {
    const extra = JSON.parse('{"__proto__": "x"}') as Record<string, string>
    const headers = acceptResponseHeaders(req, { headers: extra })
    assert.isFalse(isHandshakeFormatError(headers))
    assert.isTrue(Object.hasOwn(headers, "__proto__"))
  })

  it("refuses a subprotocol or extension the client did not offer", () => {
    formatFailure(acceptResponseHeaders(req, { protocol: "other" }), "UnofferedProtocol")
    formatFailure(acceptResponseHeaders(req, { protocol: "Chat" }), "UnofferedProtocol")
    formatFailure(formatUpgradeResponse(accepted(without("sec-websocket-protocol")), { protocol: "chat" }), "UnofferedProtocol")
    formatFailure(acceptResponseHeaders(req, { extensions: [new WebSocketExtensionHeader("x-other")] }), "UnofferedExtension")
    formatFailure(formatUpgradeResponse(accepted(rfcHeaders), { extensions: [deflate()] }), "UnofferedExtension")
  })

  it("refuses header injection, invalid names and the handshake's own headers", () => {
    const cases: Array<[Record<string, string>, HandshakeFormatErrorKind]> = [
      [{ "X-A": "1\r\nX-Evil: 1" }, "InvalidHeaderValue"],
      [{ "X-A": "1\nX-Evil: 1" }, "InvalidHeaderValue"],
      [{ "X-A": "1\r" }, "InvalidHeaderValue"],
      [{ "X-A": "\u0000" }, "InvalidHeaderValue"],
      [{ "X-A": "\u007f" }, "InvalidHeaderValue"],
      [{ "X-A": "\u0100" }, "InvalidHeaderValue"],
      [{ "X-A\r\nX-Evil": "1" }, "InvalidHeaderName"],
      [{ "X A": "1" }, "InvalidHeaderName"],
      [{ "X-A:": "1" }, "InvalidHeaderName"],
      [{ "": "1" }, "InvalidHeaderName"],
      [{ upgrade: "h2c" }, "ReservedHeader"],
      [{ CONNECTION: "close" }, "ReservedHeader"],
      [{ "Sec-WebSocket-Accept": "x" }, "ReservedHeader"],
      [{ "sec-websocket-protocol": "chat" }, "ReservedHeader"],
      [{ "Content-Length": "0" }, "ReservedHeader"]
    ]
    for (const [headers, kind] of cases) {
      formatFailure(acceptResponseHeaders(req, { headers }), kind)
      formatFailure(formatUpgradeResponse(req, { headers }), kind)
    }
  })
})

describe("rejections", () => {
  it("formats a 405 with Allow, Connection: close, Content-Length and the reason as body", () => {
    const r = rejected(request(rfcHeaders, "POST"))
    const body = "A WebSocket upgrade must use GET"
    assert.strictEqual(
      formatRejection(r),
      "HTTP/1.1 405 Method Not Allowed\r\n" +
        "Allow: GET\r\n" +
        "Connection: close\r\n" +
        "Content-Type: text/plain; charset=utf-8\r\n" +
        `Content-Length: ${body.length}\r\n` +
        "\r\n" +
        body
    )
  })

  it("merges a 426's Connection: Upgrade with close", () => {
    const r = rejected(request({ ...rfcHeaders, "sec-websocket-version": "8" }))
    const text = formatRejection(r)
    const [head, body] = text.split("\r\n\r\n") as [string, string]
    assert.deepStrictEqual(head.split("\r\n"), [
      "HTTP/1.1 426 Upgrade Required",
      "Upgrade: websocket",
      "Sec-WebSocket-Version: 13",
      "Connection: Upgrade, close",
      "Content-Type: text/plain; charset=utf-8",
      `Content-Length: ${body.length}`
    ])
    assert.strictEqual(body, r.reason)
  })

  it("formats every built-in rejection as a parseable 4xx response", () => {
    const inputs: Array<UpgradeRequest | HandshakeRejection> = [
      request(rfcHeaders, "PUT"),
      request(rfcHeaders, "GET", "1.0"),
      request(without("host")),
      request(without("upgrade")),
      request(without("connection")),
      request(without("sec-websocket-version")),
      request(without("sec-websocket-key")),
      request({ ...rfcHeaders, "sec-websocket-protocol": "a b" }),
      request({ ...rfcHeaders, "sec-websocket-extensions": "a b" }),
      request({ ...rfcHeaders, origin: ["a", "b"] })
    ]
    assert.deepStrictEqual(
      inputs.map((r) => rejected(r).status),
      [405, 400, 400, 426, 400, 426, 400, 400, 400, 400]
    )
    for (const input of inputs) {
      const r = rejected(input)
      const parser = new HttpHeadParser({ kind: "response" })
      const head = parser.push(encodeLatin1(formatRejection(r)))
      if (head?._tag !== "HttpHead") assert.fail(`unparseable rejection: ${JSON.stringify(head)}`)
      assert.strictEqual(head.status, r.status)
      assert.strictEqual(new TextDecoder().decode(parser.rest()), r.reason)
      assert.strictEqual(head.headers["content-length"], String(r.reason.length))
      assert.isTrue(hasToken(head.headers, "connection", "close"))
    }
  })

  it("leaves out invalid or conflicting headers, keeps an existing close, sanitizes the body", () => {
    const r = makeRejection(403, "Origin \u00e9vil\r\nrefused", {
      "X-Ok": "1",
      "X-Bad": "1\r\nX-Evil: 1",
      "Bad Name": "1",
      "Content-Length": "999",
      "Content-Type": "text/html",
      "Transfer-Encoding": "chunked",
      Connection: "Close"
    })
    const body = "Origin ?vil??refused"
    assert.strictEqual(
      formatRejection(r),
      "HTTP/1.1 403 Forbidden\r\n" +
        "X-Ok: 1\r\n" +
        "Connection: Close\r\n" +
        "Content-Type: text/plain; charset=utf-8\r\n" +
        `Content-Length: ${body.length}\r\n` +
        "\r\n" +
        body
    )
    assert.strictEqual(formatRejection(makeRejection(499, "")), "HTTP/1.1 499 Error\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n\r\n")
  })

  it("makeRejection refuses statuses outside 400-599", () => {
    for (const status of [101, 200, 399, 600, 400.5, NaN]) assert.throws(() => makeRejection(status, "x"), RangeError)
    assert.deepStrictEqual(makeRejection(404, "no"), { _tag: "HandshakeRejection", status: 404, reason: "no", headers: {} })
  })

  it("encodeLatin1 maps each code unit to a byte", () => {
    assert.deepStrictEqual(Array.from(encodeLatin1("A\u00e9\u00ff")), [0x41, 0xe9, 0xff])
  })
})

describe("client: makeUpgradeRequest", () => {
  const base: UpgradeRequestOptions = { host: "server.example.com", path: "/chat", key: RFC_KEY }

  it("formats the request of RFC 6455 §1.3 byte for byte", () => {
    assert.strictEqual(
      makeUpgradeRequest({ ...base, protocols: ["chat", "superchat"], origin: "http://example.com" }),
      "GET /chat HTTP/1.1\r\n" +
        "Host: server.example.com\r\n" +
        "Upgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\n" +
        "Sec-WebSocket-Protocol: chat, superchat\r\n" +
        "Origin: http://example.com\r\n" +
        "\r\n"
    )
  })

  it("adds extensions and extra headers; Origin may come from the headers", () => {
    assert.strictEqual(
      makeUpgradeRequest({
        host: "[::1]:8080",
        path: "/a?b=c%20d",
        key: RFC_KEY,
        extensions: [deflate([{ name: "client_max_window_bits", value: undefined }]), new WebSocketExtensionHeader("x-foo")],
        headers: { Authorization: "Bearer t", Origin: "https://o" }
      }),
      "GET /a?b=c%20d HTTP/1.1\r\n" +
        "Host: [::1]:8080\r\n" +
        "Upgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        `Sec-WebSocket-Key: ${RFC_KEY}\r\n` +
        "Sec-WebSocket-Version: 13\r\n" +
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo\r\n" +
        "Authorization: Bearer t\r\n" +
        "Origin: https://o\r\n" +
        "\r\n"
    )
  })

  it("refuses bad targets, hosts, keys, protocols and headers", () => {
    const cases: Array<[UpgradeRequestOptions, HandshakeFormatErrorKind]> = [
      [{ ...base, path: "" }, "InvalidTarget"],
      [{ ...base, path: "chat" }, "InvalidTarget"],
      [{ ...base, path: "http://x/chat" }, "InvalidTarget"],
      [{ ...base, path: "/a b" }, "InvalidTarget"],
      [{ ...base, path: "/a\r\nX-Evil: 1" }, "InvalidTarget"],
      [{ ...base, path: "/caf\u00e9" }, "InvalidTarget"],
      [{ ...base, host: "" }, "InvalidHost"],
      [{ ...base, host: "a b" }, "InvalidHost"],
      [{ ...base, host: "a\r\nX-Evil: 1" }, "InvalidHost"],
      [{ ...base, key: "short" }, "InvalidKey"],
      [{ ...base, protocols: ["chat", "a b"] }, "InvalidProtocol"],
      [{ ...base, protocols: [""] }, "InvalidProtocol"],
      [{ ...base, protocols: ["chat", "chat"] }, "InvalidProtocol"],
      [{ ...base, protocols: ["a,b"] }, "InvalidProtocol"],
      [{ ...base, origin: "http://x\r\nX-Evil: 1" }, "InvalidHeaderValue"],
      [{ ...base, headers: { "X-A": "1\r\nX-Evil: 1" } }, "InvalidHeaderValue"],
      [{ ...base, headers: { "X-A\n": "1" } }, "InvalidHeaderName"],
      [{ ...base, headers: { host: "other" } }, "ReservedHeader"],
      [{ ...base, headers: { "Sec-WebSocket-Key": RFC_KEY } }, "ReservedHeader"],
      [{ ...base, headers: { "sec-websocket-version": "8" } }, "ReservedHeader"],
      [{ ...base, origin: "http://a", headers: { origin: "http://b" } }, "ReservedHeader"]
    ]
    for (const [options, kind] of cases) formatFailure(makeUpgradeRequest(options), kind)
  })
})

describe("client: validateUpgradeResponse", () => {
  const good: Headers = {
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-accept": RFC_ACCEPT
  }
  const offer = { key: RFC_KEY, protocols: ["chat", "superchat"], extensions: ["Permessage-Deflate"] }
  const response = (headers: Headers, status = 101) => validateUpgradeResponse({ status, headers }, offer)
  const failure = (result: unknown, kind: HandshakeFailureKind): HandshakeFailure => {
    if (!isHandshakeFailure(result)) assert.fail(`expected a HandshakeFailure, got ${JSON.stringify(result)}`)
    assert.strictEqual(result.kind, kind)
    return result
  }

  it("accepts a minimal 101 and reports no protocol and no extensions", () => {
    assert.deepStrictEqual(response(good), { _tag: "AcceptedResponse", protocol: undefined, extensions: [] })
    assert.deepStrictEqual(validateUpgradeResponse({ status: 101, headers: good }, { key: RFC_KEY, protocols: [], extensions: [] }), {
      _tag: "AcceptedResponse",
      protocol: undefined,
      extensions: []
    })
  })

  it("accepts header values in any case, in lists, with whitespace", () => {
    const result = response({
      upgrade: " WebSocket ",
      connection: ["keep-alive", "UPGRADE"],
      "sec-websocket-accept": ` ${RFC_ACCEPT} `,
      "sec-websocket-protocol": " superchat ",
      "sec-websocket-extensions": ["permessage-deflate; server_no_context_takeover"]
    })
    if (isHandshakeFailure(result)) assert.fail(result.message)
    assert.strictEqual(result.protocol, "superchat")
    assert.deepStrictEqual(result.extensions.map((e) => e.toString()), ["permessage-deflate; server_no_context_takeover"])
  })

  it("fails on a status other than 101, carrying the status and headers", () => {
    const headers: Headers = { "content-type": "text/plain", "sec-websocket-version": "13" }
    for (const status of [200, 400, 426, 100, 302]) {
      const f = failure(response(headers, status), "UnexpectedStatus")
      assert.strictEqual(f.status, status)
      assert.strictEqual(f.headers, headers)
    }
  })

  it("fails on a missing or wrong Upgrade or Connection", () => {
    for (const upgrade of [undefined, "", "h2c", "websocket, h2c", ["websocket", "websocket"]]) {
      failure(response({ ...good, upgrade }), "MissingUpgrade")
    }
    for (const connection of [undefined, "", "keep-alive", "upgraded"]) {
      failure(response({ ...good, connection }), "MissingConnection")
    }
  })

  it("fails on a missing, repeated or wrong Sec-WebSocket-Accept", () => {
    for (const accept of [undefined, "", computeAccept(generateKey()), RFC_ACCEPT.toLowerCase(), [RFC_ACCEPT, RFC_ACCEPT]]) {
      const f = failure(response({ ...good, "sec-websocket-accept": accept }), "InvalidAccept")
      assert.strictEqual(f.status, 101)
    }
  })

  it("fails on a subprotocol that was not offered, any when none was, or more than one", () => {
    for (const protocol of ["other", "Chat", "", "chat, superchat", ["chat", "superchat"], ["chat", "chat"]]) {
      failure(response({ ...good, "sec-websocket-protocol": protocol }), "UnofferedProtocol")
    }
    failure(
      validateUpgradeResponse({ status: 101, headers: { ...good, "sec-websocket-protocol": "chat" } }, { key: RFC_KEY, protocols: [], extensions: [] }),
      "UnofferedProtocol"
    )
  })

  it("fails on extensions that are malformed, not offered, or repeated", () => {
    failure(response({ ...good, "sec-websocket-extensions": "permessage-deflate;" }), "InvalidExtensions")
    failure(response({ ...good, "sec-websocket-extensions": "" }), "InvalidExtensions")
    failure(response({ ...good, "sec-websocket-extensions": "x-foo" }), "UnofferedExtension")
    failure(response({ ...good, "sec-websocket-extensions": "permessage-deflate, x-foo" }), "UnofferedExtension")
    failure(response({ ...good, "sec-websocket-extensions": "permessage-deflate, Permessage-Deflate" }), "DuplicateExtension")
    failure(response({ ...good, "sec-websocket-extensions": ["permessage-deflate", "permessage-deflate"] }), "DuplicateExtension")
    failure(
      validateUpgradeResponse({ status: 101, headers: { ...good, "sec-websocket-extensions": "permessage-deflate" } }, { ...offer, extensions: [] }),
      "UnofferedExtension"
    )
  })
})

describe("handshake round trip", () => {
  it("client request → server validation → 101 → client validation, through HttpHeadParser", () => {
    const key = generateKey()
    const requestText = makeUpgradeRequest({
      host: "localhost:9001",
      path: "/ws",
      key,
      protocols: ["v2.chat", "v1.chat"],
      extensions: [deflate([{ name: "client_max_window_bits", value: undefined }])],
      origin: "http://localhost"
    })
    if (typeof requestText !== "string") assert.fail(requestText.message)
    const server = new HttpHeadParser({ kind: "request" })
    const frame = Uint8Array.of(0x81, 0x80, 1, 2, 3, 4)
    const wire = new Uint8Array([...encodeLatin1(requestText), ...frame])
    const head = server.push(wire)
    if (head?._tag !== "HttpHead") assert.fail(JSON.stringify(head))
    assert.deepStrictEqual(Array.from(server.rest()), Array.from(frame))
    const req = validateUpgradeRequest({ method: head.method!, httpVersion: head.httpVersion, headers: head.headers })
    if (isHandshakeRejection(req)) assert.fail(req.reason)
    assert.strictEqual(req.origin, "http://localhost")
    const responseText = formatUpgradeResponse(req, {
      protocol: req.protocols[1]!,
      extensions: [deflate([{ name: "client_max_window_bits", value: "12" }])]
    })
    if (typeof responseText !== "string") assert.fail(responseText.message)
    const client = new HttpHeadParser({ kind: "response" })
    let response: HttpHead | HttpHeadError | undefined
    for (const byte of encodeLatin1(responseText)) response = client.push(Uint8Array.of(byte))
    if (response?._tag !== "HttpHead") assert.fail(JSON.stringify(response))
    assert.strictEqual(response.status, 101)
    assert.strictEqual(response.statusText, "Switching Protocols")
    const result = validateUpgradeResponse(
      { status: response.status!, headers: response.headers },
      { key, protocols: ["v2.chat", "v1.chat"], extensions: ["permessage-deflate"] }
    )
    if (isHandshakeFailure(result)) assert.fail(result.message)
    assert.strictEqual(result.protocol, "v1.chat")
    assert.deepStrictEqual(result.extensions.map(String), ["permessage-deflate; client_max_window_bits=12"])
  })
})

describe("HttpHeadParser", () => {
  const requestHead =
    "GET /chat?x=1 HTTP/1.1\r\n" +
    "Host: server.example.com\r\n" +
    "Upgrade: websocket\r\n" +
    "Connection: keep-alive\r\n" +
    "Connection:Upgrade\r\n" +
    "X-Spaces: \t  a  b \t\r\n" +
    "X-Empty:\r\n" +
    "X-Latin1: caf\u00e9\r\n" +
    "__proto__: p\r\n" +
    "X-Three: 1\r\n" +
    "x-three: 2\r\n" +
    "X-THREE: 3\r\n" +
    "\r\n"

  const expectedHeaders: Array<[string, string | Array<string>]> = [
    ["host", "server.example.com"],
    ["upgrade", "websocket"],
    ["connection", ["keep-alive", "Upgrade"]],
    ["x-spaces", "a  b"],
    ["x-empty", ""],
    ["x-latin1", "caf\u00e9"],
    ["__proto__", "p"],
    ["x-three", ["1", "2", "3"]]
  ]

  const check = (result: HttpHead | HttpHeadError | undefined): HttpHead => {
    if (result?._tag !== "HttpHead") assert.fail(`expected a head, got ${JSON.stringify(result)}`)
    assert.strictEqual(result.method, "GET")
    assert.strictEqual(result.target, "/chat?x=1")
    assert.strictEqual(result.httpVersion, "1.1")
    assert.isUndefined(result.status)
    assert.deepStrictEqual(Object.entries(result.headers), expectedHeaders)
    assert.strictEqual(result.headers["__proto__"], "p")
    assert.strictEqual(Object.getPrototypeOf(result.headers), null)
    return result
  }

  it("parses a request head in one chunk, keeping the bytes after it", () => {
    const parser = new HttpHeadParser({ kind: "request" })
    const bytes = new Uint8Array([...encodeLatin1(requestHead), 0x81, 0x00])
    check(parser.push(bytes))
    assert.deepStrictEqual(Array.from(parser.rest()), [0x81, 0x00])
    // The remainder is a copy: the caller may reuse its buffer.
    bytes.fill(0)
    assert.deepStrictEqual(Array.from(parser.rest()), [0x81, 0x00])
  })

  it("parses the same head one byte at a time", () => {
    const parser = new HttpHeadParser({ kind: "request" })
    const bytes = encodeLatin1(requestHead)
    for (let i = 0; i < bytes.length - 1; i++) assert.isUndefined(parser.push(bytes.subarray(i, i + 1)))
    assert.deepStrictEqual(Array.from(parser.rest()), [])
    check(parser.push(bytes.subarray(bytes.length - 1)))
    assert.strictEqual(parser.rest().length, 0)
    assert.strictEqual(parser.bufferedBytes, 0)
  })

  it("parses under any chunking", () => {
    const bytes = new Uint8Array([...encodeLatin1(requestHead), 1, 2, 3])
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 6 }), (sizes) => {
        const parser = new HttpHeadParser({ kind: "request" })
        let result: HttpHead | HttpHeadError | undefined
        const rest: Array<number> = []
        for (const c of chunked(bytes, sizes)) {
          if (result === undefined) {
            result = parser.push(c)
            if (result !== undefined) rest.push(...parser.rest())
          } else {
            rest.push(...c)
          }
        }
        check(result)
        assert.deepStrictEqual(rest, [1, 2, 3])
      }),
      { numRuns: 500 }
    )
  })

  it("accepts bare LF line ends and skips empty lines before a request line", () => {
    const parser = new HttpHeadParser({ kind: "request" })
    const head = parser.push(ascii("\r\n\nGET / HTTP/1.0\nHost: a\r\nX: b\n\nrest"))
    assert.deepStrictEqual(head, { _tag: "HttpHead", method: "GET", target: "/", httpVersion: "1.0", headers: Object.assign(Object.create(null), { host: "a", x: "b" }) })
    assert.strictEqual(new TextDecoder().decode(parser.rest()), "rest")
  })

  it("parses status lines", () => {
    const cases: Array<[string, number, string]> = [
      ["HTTP/1.1 101 Switching Protocols", 101, "Switching Protocols"],
      ["HTTP/1.1 404 ", 404, ""],
      ["HTTP/1.1 200", 200, ""],
      ["HTTP/1.0 503 Service \t Unavailable \u00e9", 503, "Service \t Unavailable \u00e9"]
    ]
    for (const [line, status, statusText] of cases) {
      const parser = new HttpHeadParser({ kind: "response" })
      const head = parser.push(encodeLatin1(`${line}\r\nUpgrade: websocket\r\n\r\n`))
      if (head?._tag !== "HttpHead") assert.fail(`${line}: ${JSON.stringify(head)}`)
      assert.strictEqual(head.status, status)
      assert.strictEqual(head.statusText, statusText)
      assert.strictEqual(head.headers["upgrade"], "websocket")
      assert.isUndefined(head.method)
    }
  })

  it("keeps returning its result and ignores later chunks", () => {
    const parser = new HttpHeadParser({ kind: "request" })
    const head = parser.push(ascii("GET / HTTP/1.1\r\n\r\nab"))
    assert.strictEqual(parser.push(ascii("cd")), head)
    assert.strictEqual(new TextDecoder().decode(parser.rest()), "ab")
    const bad = new HttpHeadParser({ kind: "request" })
    const error = bad.push(ascii("BAD\r\n"))
    assert.strictEqual(bad.push(ascii("GET / HTTP/1.1\r\n\r\n")), error)
    assert.strictEqual(bad.rest().length, 0)
  })

  it("answers 431 as soon as the head passes maxHeaderBytes", () => {
    const head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    // Exactly at the limit: fine.
    assert.strictEqual(new HttpHeadParser({ kind: "request", maxHeaderBytes: head.length }).push(ascii(head))?._tag, "HttpHead")
    // One byte over, fed byte by byte: 431 on the byte that crosses it.
    const parser = new HttpHeadParser({ kind: "request", maxHeaderBytes: head.length - 1 })
    const bytes = ascii(head)
    for (let i = 0; i < bytes.length - 1; i++) assert.isUndefined(parser.push(bytes.subarray(i, i + 1)))
    const error = parser.push(bytes.subarray(bytes.length - 1))
    assert.strictEqual(error?._tag === "HttpHeadError" && error.status, 431)
    // A huge chunk is refused without buffering past the limit.
    const huge = new Uint8Array(4 << 20).fill(0x61)
    const big = new HttpHeadParser({ kind: "request" })
    assert.isUndefined(big.push(ascii("GET / HTTP/1.1\r\nX: ")))
    const start = performance.now()
    const result = big.push(huge)
    assert.strictEqual(result?._tag === "HttpHeadError" && result.status, 431)
    assert.isBelow(performance.now() - start, LINEAR_BOUND_MS)
    assert.strictEqual(big.bufferedBytes, 0)
    // Thousands of tiny header lines: 431 by size.
    const lines = new HttpHeadParser({ kind: "request", maxHeaders: 1_000_000 })
    const many = ascii("GET / HTTP/1.1\r\n" + "a:\r\n".repeat(10_000))
    assert.strictEqual((lines.push(many) as HttpHeadError).status, 431)
  })

  it("never holds more than maxHeaderBytes of line buffer", () => {
    const max = 1000
    const parser = new HttpHeadParser({ kind: "request", maxHeaderBytes: max })
    assert.isUndefined(parser.push(ascii("GET /" + "a".repeat(990))))
    assert.isAtMost(parser.bufferedBytes, max)
    assert.strictEqual((parser.push(ascii("a".repeat(20))) as HttpHeadError).status, 431)
  })

  it("answers 431 on the header line that passes maxHeaders", () => {
    const parser = new HttpHeadParser({ kind: "request", maxHeaders: 3 })
    assert.isUndefined(parser.push(ascii("GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n")))
    const error = parser.push(ascii("d: 4\r\n"))
    assert.deepStrictEqual(error, { _tag: "HttpHeadError", status: 431, message: "More than 3 headers" })
    assert.strictEqual(new HttpHeadParser({ kind: "request", maxHeaders: 3 }).push(ascii("GET / HTTP/1.1\r\na: 1\r\na: 2\r\na: 3\r\n\r\n"))?._tag, "HttpHead")
    const defaults = new HttpHeadParser({ kind: "request" })
    const many = "GET / HTTP/1.1\r\n" + Array.from({ length: 101 }, (_, i) => `h${i}: v\r\n`).join("") + "\r\n"
    assert.strictEqual((defaults.push(ascii(many)) as HttpHeadError).status, 431)
  })

  it("answers 400 for malformed heads", () => {
    const requests = [
      "GET /\r\n\r\n",
      "GET\r\n\r\n",
      "GET  / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1 \r\n\r\n",
      " GET / HTTP/1.1\r\n\r\n",
      "GET / HTTX/1.1\r\n\r\n",
      "GET / http/1.1\r\n\r\n",
      "GET / HTTP/1.10\r\n\r\n",
      "GET / HTTP/11\r\n\r\n",
      "G(T / HTTP/1.1\r\n\r\n",
      "GET /caf\u00e9 HTTP/1.1\r\n\r\n",
      "GET /\u0001 HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\rHost: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n",
      "GET / HTTP/1.1\r\nHost a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
      "GET / HTTP/1.1\r\n: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHo(st: a\r\n\r\n",
      "GET / HTTP/1.1\r\nH\u00e9st: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\u0000b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\u007fb\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\u001bb\r\n\r\n"
    ]
    for (const text of requests) {
      for (const oneByOne of [false, true]) {
        const parser = new HttpHeadParser({ kind: "request" })
        const bytes = encodeLatin1(text)
        let result: HttpHead | HttpHeadError | undefined
        if (oneByOne) for (let i = 0; i < bytes.length && result === undefined; i++) result = parser.push(bytes.subarray(i, i + 1))
        else result = parser.push(bytes)
        assert.strictEqual(result?._tag, "HttpHeadError", JSON.stringify(text))
        assert.strictEqual((result as HttpHeadError).status, 400, JSON.stringify(text))
      }
    }
    const responses = ["\r\n", "HTTP/1.1\r\n\r\n", "HTTP/1.1 10\r\n\r\n", "HTTP/1.1 1011\r\n\r\n", "HTTP/1.1  101\r\n\r\n", "HTTP/1.1 abc\r\n\r\n", "HTTP/1.1 101 A\u0001\r\n\r\n", "GET / HTTP/1.1\r\n\r\n"]
    for (const text of responses) {
      const result = new HttpHeadParser({ kind: "response" }).push(encodeLatin1(text))
      assert.strictEqual((result as HttpHeadError | undefined)?.status, 400, JSON.stringify(text))
    }
    assert.strictEqual((new HttpHeadParser({ kind: "request" }).push(ascii("HTTP/1.1 101 OK\r\n\r\n")) as HttpHeadError).status, 400)
  })

  it("refuses invalid limits with a RangeError", () => {
    for (const maxHeaderBytes of [0, -1, 1.5, NaN, Infinity]) {
      assert.throws(() => new HttpHeadParser({ kind: "request", maxHeaderBytes }), RangeError)
    }
    for (const maxHeaders of [-1, 0.5, NaN]) assert.throws(() => new HttpHeadParser({ kind: "request", maxHeaders }), RangeError)
    assert.strictEqual(DEFAULT_MAX_HEADER_BYTES, 16384)
  })

  it("parses a 1 MB header inside the limit in linear time (H2)", () => {
    const parser = new HttpHeadParser({ kind: "request", maxHeaderBytes: 2 << 20 })
    const value = ", ".repeat(1 << 19)
    const start = performance.now()
    const head = parser.push(ascii(`GET / HTTP/1.1\r\nSec-WebSocket-Protocol: ${value}a\r\n\r\n`))
    if (head?._tag !== "HttpHead") assert.fail(JSON.stringify(head))
    assert.strictEqual((head.headers["sec-websocket-protocol"] as string).length, value.length + 1)
    assert.isBelow(performance.now() - start, LINEAR_BOUND_MS)
  })

  it("never throws on random bytes in random chunkings, and stays within its limits (H18)", () => {
    const plausible = fc
      .array(
        fc.oneof(
          fc.constantFrom("GET / HTTP/1.1\r\n", "HTTP/1.1 101 OK\r\n", "Host: a\r\n", "\r\n", "\n", "\r", ":", " ", "\t", "a", "\u0000", "\u00ff"),
          fc.string({ maxLength: 4 })
        ),
        { maxLength: 24 }
      )
      .map((parts) => encodeLatin1(parts.join("").replace(/[^\u0000-\u00ff]/g, "?")))
    const bytesArb = fc.oneof(fc.uint8Array({ maxLength: 96 }), plausible)
    fc.assert(
      fc.property(
        bytesArb,
        fc.array(fc.integer({ min: 1, max: 16 }), { maxLength: 4 }),
        fc.constantFrom<"request" | "response">("request", "response"),
        fc.integer({ min: 1, max: 80 }),
        fc.integer({ min: 0, max: 4 }),
        (bytes, sizes, kind, maxHeaderBytes, maxHeaders) => {
          const parser = new HttpHeadParser({ kind, maxHeaderBytes, maxHeaders })
          let result: HttpHead | HttpHeadError | undefined
          let pushed = 0
          for (const c of chunked(bytes, sizes)) {
            const r = parser.push(c)
            assert.isAtMost(parser.bufferedBytes, maxHeaderBytes)
            if (result !== undefined) assert.strictEqual(r, result)
            else if (r !== undefined) {
              result = r
              pushed += c.length
            } else pushed += c.length
          }
          if (result === undefined) {
            assert.isAtMost(bytes.length, maxHeaderBytes)
            return
          }
          if (result._tag === "HttpHeadError") {
            assert.include([400, 431], result.status)
            assert.strictEqual(parser.rest().length, 0)
          } else {
            assert.isAtMost(pushed - parser.rest().length, maxHeaderBytes)
            assert.isAtMost(Object.keys(result.headers).length, maxHeaders)
            if (kind === "request") assert.isString(result.method)
            else assert.isNumber(result.status)
          }
        }
      ),
      { numRuns: 100_000 }
    )
  })
})
