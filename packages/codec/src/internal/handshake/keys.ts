/**
 * Keys and `Sec-WebSocket-Accept` (RFC 6455 §1.3, §4.1): the GUID and version constants, a fresh
 * `Sec-WebSocket-Key`, the accept hash over a key, and the key's syntax check. `Handshake`
 * re-exports every name here.
 *
 * @internal
 * @module
 */
import { base64Value, encodeBase64 } from "../base64.ts"
import { Sha1 } from "../sha1.ts"

/** The GUID appended to the key before hashing (RFC 6455 §1.3). */
export const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/** The only protocol version this library speaks (`Sec-WebSocket-Version: 13`). */
export const WEBSOCKET_VERSION = "13"

const defaultRandom = (bytes: Uint8Array): void => {
  globalThis.crypto.getRandomValues(bytes)
}

/** A fresh `Sec-WebSocket-Key` (documented at `Handshake.generateKey`). */
export const generateKey = (random: (bytes: Uint8Array) => void = defaultRandom): string => {
  const bytes = new Uint8Array(16)
  random(bytes)
  return encodeBase64(bytes)
}

const GUID_BYTES = Uint8Array.from(WEBSOCKET_GUID, (c) => c.charCodeAt(0))
const acceptHasher = new Sha1()
const acceptDigest = new Uint8Array(20)
const keyScratch = new Uint8Array(64)

/** `Sec-WebSocket-Accept` for a key, hashed with one reused SHA-1 state and scratch buffers (documented at `Handshake.computeAccept`). */
export const computeAccept = (key: string): string => {
  const bytes = key.length <= keyScratch.length ? keyScratch : new Uint8Array(key.length)
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    if (c > 0xff) throw new RangeError("Sec-WebSocket-Key has a character outside ISO-8859-1")
    bytes[i] = c
  }
  acceptHasher.reset().update(bytes, 0, key.length).update(GUID_BYTES).digest(acceptDigest)
  return encodeBase64(acceptDigest)
}

/** Whether `key` is base64 of 16 bytes (documented at `Handshake.isValidKey`). */
export const isValidKey = (key: string): boolean => {
  if (key.length !== 24 || key.charCodeAt(22) !== 0x3d || key.charCodeAt(23) !== 0x3d) return false
  for (let i = 0; i < 22; i++) if (base64Value(key, i) < 0) return false
  return true
}
