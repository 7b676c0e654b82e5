import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import {
  formatWebSocketExtensions,
  isExtensionHeaderError,
  parseWebSocketExtensions,
  WebSocketExtensionHeader
} from "../src/ExtensionHeader.ts"
import {
  acceptDeflateResponse,
  type DeflateClientConfig,
  type DeflateNegotiationError,
  type DeflateParameters,
  type DeflateServerConfig,
  isDeflateNegotiationError,
  makeDeflateOffer,
  MIN_DEFLATE_WINDOW_BITS,
  negotiateDeflateServer,
  parseDeflateOffer
} from "../src/PerMessageDeflateNegotiation.ts"

const headers = (value: string): ReadonlyArray<WebSocketExtensionHeader> => {
  const parsed = parseWebSocketExtensions(value)
  if (isExtensionHeaderError(parsed)) return assert.fail(parsed.message)
  return parsed
}
const one = (value: string): WebSocketExtensionHeader => {
  const [h] = headers(value)
  return h ?? assert.fail("no header")
}

const params = (p: Partial<DeflateParameters> = {}): DeflateParameters => ({
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
  ...p
})

/** Negotiates and returns the agreed parameters and the response as a string. */
const negotiate = (offer: string, config: DeflateServerConfig = {}) => {
  const result = negotiateDeflateServer(headers(offer), config)
  return result === undefined ? undefined : { params: result.params, response: result.response.toString() }
}

describe("parseDeflateOffer", () => {
  it("parses every parameter", () => {
    assert.deepStrictEqual(
      parseDeflateOffer(
        one(
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"
        )
      ),
      { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 12 }
    )
    assert.deepStrictEqual(parseDeflateOffer(one("permessage-deflate; client_max_window_bits")), {
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
      serverMaxWindowBits: undefined,
      clientMaxWindowBits: true
    })
    assert.deepStrictEqual(parseDeflateOffer(one("permessage-deflate; server_max_window_bits=\"9\"")), {
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
      serverMaxWindowBits: 9,
      clientMaxWindowBits: undefined
    })
  })

  const invalid: ReadonlyArray<readonly [string, RegExp]> = [
    ["x-webkit-deflate-frame", /expected permessage-deflate/],
    ["permessage-deflate; foo", /unknown permessage-deflate parameter foo/],
    ["permessage-deflate; server_no_context_takeover; server_no_context_takeover", /duplicate/],
    ["permessage-deflate; client_max_window_bits; client_max_window_bits=10", /duplicate/],
    ["permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", /duplicate/],
    ["permessage-deflate; server_no_context_takeover=1", /must not have a value/],
    ["permessage-deflate; client_no_context_takeover=true", /must not have a value/],
    ["permessage-deflate; server_max_window_bits", /server_max_window_bits needs a value/],
    ["permessage-deflate; server_max_window_bits=7", /invalid value "7"/],
    ["permessage-deflate; server_max_window_bits=16", /invalid value/],
    ["permessage-deflate; server_max_window_bits=08", /invalid value/],
    ["permessage-deflate; server_max_window_bits=+9", /invalid value/],
    ["permessage-deflate; server_max_window_bits=abc", /invalid value/],
    ["permessage-deflate; client_max_window_bits=0", /invalid value/],
    ["permessage-deflate; client_max_window_bits=010", /invalid value/],
    ["permessage-deflate; client_max_window_bits=1e1", /invalid value/]
  ]
  for (const [offer, message] of invalid) {
    it(`rejects ${offer}`, () => {
      const result = parseDeflateOffer(one(offer))
      if (!isDeflateNegotiationError(result)) return assert.fail("expected an error")
      assert.strictEqual(result._tag, "DeflateNegotiationError")
      assert.match(result.message, message)
    })
  }
})

describe("negotiateDeflateServer", () => {
  it("accepts a plain offer with default parameters", () => {
    assert.deepStrictEqual(negotiate("permessage-deflate"), { params: params(), response: "permessage-deflate" })
  })

  it("client_max_window_bits without a value: accepted, echoed only when the server limits it", () => {
    assert.deepStrictEqual(negotiate("permessage-deflate; client_max_window_bits"), {
      params: params(),
      response: "permessage-deflate"
    })
    assert.deepStrictEqual(negotiate("permessage-deflate; client_max_window_bits", { clientMaxWindowBits: 10 }), {
      params: params({ clientMaxWindowBits: 10 }),
      response: "permessage-deflate; client_max_window_bits=10"
    })
    // Clamped: the server never imposes an 8-bit window (zlib clients cannot deflate with it).
    assert.deepStrictEqual(negotiate("permessage-deflate; client_max_window_bits", { clientMaxWindowBits: 8 }), {
      params: params({ clientMaxWindowBits: 9 }),
      response: "permessage-deflate; client_max_window_bits=9"
    })
  })

  it("client_max_window_bits with a value: the smaller of the offer and the server's limit", () => {
    for (let bits = 8; bits <= 15; bits++) {
      assert.deepStrictEqual(negotiate(`permessage-deflate; client_max_window_bits=${bits}`), {
        params: params({ clientMaxWindowBits: bits }),
        response: bits === 15 ? "permessage-deflate" : `permessage-deflate; client_max_window_bits=${bits}`
      })
    }
    assert.strictEqual(
      negotiate("permessage-deflate; client_max_window_bits=12", { clientMaxWindowBits: 10 })?.params.clientMaxWindowBits,
      10
    )
    assert.strictEqual(
      negotiate("permessage-deflate; client_max_window_bits=12", { clientMaxWindowBits: 14 })?.params.clientMaxWindowBits,
      12
    )
  })

  it("never answers client_max_window_bits the client did not offer (§7.1.2.2)", () => {
    assert.deepStrictEqual(negotiate("permessage-deflate", { clientMaxWindowBits: 10 }), {
      params: params(),
      response: "permessage-deflate"
    })
  })

  it("server_max_window_bits=9..15 is accepted and answered with the same value", () => {
    for (let bits = 9; bits <= 15; bits++) {
      assert.deepStrictEqual(negotiate(`permessage-deflate; server_max_window_bits=${bits}`), {
        params: params({ serverMaxWindowBits: bits }),
        response: `permessage-deflate; server_max_window_bits=${bits}`
      })
    }
  })

  it("server_max_window_bits=8 is accepted and answered 8 (the answer must not be larger; we deflate with 9)", () => {
    assert.strictEqual(MIN_DEFLATE_WINDOW_BITS, 9)
    for (const config of [{}, { serverMaxWindowBits: 8 }, { serverMaxWindowBits: 12 }]) {
      assert.deepStrictEqual(negotiate("permessage-deflate; server_max_window_bits=8", config), {
        params: params({ serverMaxWindowBits: 8 }),
        response: "permessage-deflate; server_max_window_bits=8"
      })
    }
  })

  it("the server's own window limit is announced and never exceeds the offer", () => {
    assert.deepStrictEqual(negotiate("permessage-deflate", { serverMaxWindowBits: 10 }), {
      params: params({ serverMaxWindowBits: 10 }),
      response: "permessage-deflate; server_max_window_bits=10"
    })
    assert.strictEqual(
      negotiate("permessage-deflate; server_max_window_bits=12", { serverMaxWindowBits: 10 })?.response,
      "permessage-deflate; server_max_window_bits=10"
    )
    assert.strictEqual(
      negotiate("permessage-deflate; server_max_window_bits=9", { serverMaxWindowBits: 10 })?.response,
      "permessage-deflate; server_max_window_bits=9"
    )
    // Config values are clamped: the server compresses with at least 9 bits.
    assert.deepStrictEqual(negotiate("permessage-deflate", { serverMaxWindowBits: 8 })?.params, params({ serverMaxWindowBits: 9 }))
    assert.deepStrictEqual(negotiate("permessage-deflate", { serverMaxWindowBits: 99 }), {
      params: params(),
      response: "permessage-deflate"
    })
  })

  it("echoes server_no_context_takeover and client_no_context_takeover", () => {
    assert.deepStrictEqual(negotiate("permessage-deflate; server_no_context_takeover"), {
      params: params({ serverNoContextTakeover: true }),
      response: "permessage-deflate; server_no_context_takeover"
    })
    assert.deepStrictEqual(negotiate("permessage-deflate; client_no_context_takeover"), {
      params: params({ clientNoContextTakeover: true }),
      response: "permessage-deflate; client_no_context_takeover"
    })
  })

  it("adds the no_context_takeover parameters the server config wants", () => {
    assert.deepStrictEqual(
      negotiate("permessage-deflate", { serverNoContextTakeover: true, clientNoContextTakeover: true }),
      {
        params: params({ serverNoContextTakeover: true, clientNoContextTakeover: true }),
        response: "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
      }
    )
  })

  it("handles combinations", () => {
    assert.deepStrictEqual(
      negotiate(
        "permessage-deflate; client_max_window_bits; server_max_window_bits=10; client_no_context_takeover; server_no_context_takeover"
      ),
      {
        params: params({ serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10 }),
        response: "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
      }
    )
    assert.deepStrictEqual(
      negotiate("permessage-deflate; server_max_window_bits=11; client_max_window_bits=13", {
        serverMaxWindowBits: 12,
        clientMaxWindowBits: 9,
        serverNoContextTakeover: true
      }),
      {
        params: params({ serverNoContextTakeover: true, serverMaxWindowBits: 11, clientMaxWindowBits: 9 }),
        response:
          "permessage-deflate; server_no_context_takeover; server_max_window_bits=11; client_max_window_bits=9"
      }
    )
  })

  it("takes the first acceptable offer in preference order", () => {
    assert.deepStrictEqual(
      negotiate("permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=10"),
      { params: params({ serverMaxWindowBits: 10 }), response: "permessage-deflate; server_max_window_bits=10" }
    )
    assert.deepStrictEqual(
      negotiate("permessage-deflate; foo, permessage-deflate; client_max_window_bits; client_max_window_bits, permessage-deflate; client_max_window_bits"),
      { params: params(), response: "permessage-deflate" }
    )
    assert.deepStrictEqual(
      negotiate("permessage-deflate; server_max_window_bits=12, permessage-deflate"),
      { params: params({ serverMaxWindowBits: 12 }), response: "permessage-deflate; server_max_window_bits=12" }
    )
  })

  it("skips other extensions", () => {
    assert.deepStrictEqual(negotiate("x-webkit-deflate-frame, foo; bar=1, Permessage-Deflate"), {
      params: params(),
      response: "permessage-deflate"
    })
  })

  it("declines (undefined) when every offer is invalid or unsupported", () => {
    assert.strictEqual(
      negotiate(
        "permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits, permessage-deflate; x=1, permessage-deflate; client_no_context_takeover=1, permessage-deflate; client_max_window_bits=16"
      ),
      undefined
    )
    assert.strictEqual(negotiate("x-webkit-deflate-frame"), undefined)
    assert.strictEqual(negotiateDeflateServer([], {}), undefined)
  })
})

describe("makeDeflateOffer", () => {
  const offer = (config: DeflateClientConfig) => makeDeflateOffer(config).toString()

  it("always offers client_max_window_bits", () => {
    assert.strictEqual(offer({}), "permessage-deflate; client_max_window_bits")
    assert.strictEqual(offer({ clientMaxWindowBits: 12 }), "permessage-deflate; client_max_window_bits=12")
  })

  it("offers every parameter", () => {
    assert.strictEqual(
      offer({ serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 11 }),
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"
    )
    assert.strictEqual(
      offer({ serverNoContextTakeover: false, clientNoContextTakeover: false }),
      "permessage-deflate; client_max_window_bits"
    )
  })

  it("clamps window values: ours to 9..15, the server's to 8..15", () => {
    assert.strictEqual(offer({ clientMaxWindowBits: 8 }), "permessage-deflate; client_max_window_bits=9")
    assert.strictEqual(offer({ clientMaxWindowBits: 20 }), "permessage-deflate; client_max_window_bits=15")
    assert.strictEqual(
      offer({ serverMaxWindowBits: 8 }),
      "permessage-deflate; server_max_window_bits=8; client_max_window_bits"
    )
    assert.strictEqual(
      offer({ serverMaxWindowBits: 3 }),
      "permessage-deflate; server_max_window_bits=8; client_max_window_bits"
    )
  })

  it("produces an offer the server parses", () => {
    const h = makeDeflateOffer({ serverMaxWindowBits: 12, clientNoContextTakeover: true })
    assert.deepStrictEqual(parseDeflateOffer(one(h.toString())), {
      serverNoContextTakeover: false,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 12,
      clientMaxWindowBits: true
    })
  })
})

describe("acceptDeflateResponse", () => {
  const accept = (response: string, config: DeflateClientConfig = {}) => acceptDeflateResponse(one(response), config)
  const rejects = (response: string, config: DeflateClientConfig, message: RegExp) => {
    const result = accept(response, config)
    if (!isDeflateNegotiationError(result)) return assert.fail(`expected an error for ${response}`)
    const e: DeflateNegotiationError = result
    assert.strictEqual(e._tag, "DeflateNegotiationError")
    assert.match(e.message, message)
  }

  it("accepts a plain response", () => {
    assert.deepStrictEqual(accept("permessage-deflate"), params())
  })

  it("accepts parameters the server may add unasked", () => {
    assert.deepStrictEqual(
      accept("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"),
      params({ serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 11 })
    )
  })

  it("keeps the promises we made in the offer", () => {
    assert.deepStrictEqual(
      accept("permessage-deflate", { clientNoContextTakeover: true, clientMaxWindowBits: 12 }),
      params({ clientNoContextTakeover: true, clientMaxWindowBits: 12 })
    )
    assert.deepStrictEqual(
      accept("permessage-deflate; server_no_context_takeover; server_max_window_bits=9", {
        serverNoContextTakeover: true,
        serverMaxWindowBits: 10
      }),
      params({ serverNoContextTakeover: true, serverMaxWindowBits: 9 })
    )
    assert.deepStrictEqual(
      accept("permessage-deflate; client_max_window_bits=10", { clientMaxWindowBits: 12 }),
      params({ clientMaxWindowBits: 10 })
    )
  })

  it("rejects another extension", () => rejects("foo", {}, /expected permessage-deflate/))
  it("rejects an unknown parameter", () => rejects("permessage-deflate; foo=1", {}, /unknown permessage-deflate parameter foo/))
  it("rejects a duplicate parameter", () =>
    rejects("permessage-deflate; server_no_context_takeover; server_no_context_takeover", {}, /duplicate/))
  it("rejects a value on a no_context_takeover parameter", () =>
    rejects("permessage-deflate; client_no_context_takeover=1", {}, /must not have a value/))
  it("rejects client_max_window_bits without a value", () =>
    rejects("permessage-deflate; client_max_window_bits", {}, /client_max_window_bits needs a value/))
  it("rejects server_max_window_bits without a value or out of range", () => {
    rejects("permessage-deflate; server_max_window_bits", {}, /needs a value/)
    rejects("permessage-deflate; server_max_window_bits=16", {}, /invalid value/)
  })
  it("rejects a missing server_no_context_takeover we asked for", () =>
    rejects("permessage-deflate", { serverNoContextTakeover: true }, /lacks server_no_context_takeover/))
  it("rejects a missing server_max_window_bits we asked for", () =>
    rejects("permessage-deflate", { serverMaxWindowBits: 10 }, /lacks server_max_window_bits/))
  it("rejects a server_max_window_bits larger than we asked", () =>
    rejects("permessage-deflate; server_max_window_bits=11", { serverMaxWindowBits: 10 }, /larger than the 10/))
  it("rejects a client_max_window_bits larger than we offered", () =>
    rejects("permessage-deflate; client_max_window_bits=13", { clientMaxWindowBits: 12 }, /larger than the 12/))
  it("accepts client_max_window_bits=8 when we offered it without a value (we then deflate with 9)", () => {
    for (const config of [{}, { clientMaxWindowBits: 8 }, { clientMaxWindowBits: 12 }]) {
      const agreed = accept("permessage-deflate; client_max_window_bits=8", config)
      if (isDeflateNegotiationError(agreed)) return assert.fail(agreed.message)
      assert.strictEqual(agreed.clientMaxWindowBits, 8)
    }
  })
})

describe("client and server agree", () => {
  const bits = fc.option(fc.integer({ min: 8, max: 15 }), { nil: undefined })
  const flag = fc.option(fc.boolean(), { nil: undefined })
  const config = fc.record(
    { serverNoContextTakeover: flag, clientNoContextTakeover: flag, serverMaxWindowBits: bits, clientMaxWindowBits: bits },
    { requiredKeys: [] }
  )

  it("the server's answer to makeDeflateOffer is accepted with the same parameters", () => {
    fc.assert(
      fc.property(config, config, (clientConfig, serverConfig) => {
        const offerText = formatWebSocketExtensions([makeDeflateOffer(clientConfig as DeflateClientConfig)])
        const agreement = negotiateDeflateServer(headers(offerText), serverConfig as DeflateServerConfig)
        if (agreement === undefined) return assert.fail(`declined ${offerText}`)
        const client = acceptDeflateResponse(one(formatWebSocketExtensions([agreement.response])), clientConfig as DeflateClientConfig)
        assert.deepStrictEqual(client, agreement.params)
        // 8 only when the client asked for it (the server then deflates with 9).
        assert.isAtLeast(agreement.params.serverMaxWindowBits, clientConfig.serverMaxWindowBits === 8 ? 8 : MIN_DEFLATE_WINDOW_BITS)
        assert.isAtLeast(agreement.params.clientMaxWindowBits, MIN_DEFLATE_WINDOW_BITS)
      }),
      { numRuns: 1000 }
    )
  })
})
