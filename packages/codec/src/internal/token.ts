/**
 * RFC 7230 §3.2.6 tokens, shared by the header grammars (extensions, subprotocols, HTTP heads).
 *
 * @internal
 * @module
 */

// tchar: "!" "#" "$" "%" "&" "'" "*" "+" "-" "." "^" "_" "`" "|" "~" DIGIT ALPHA
const TCHAR = new Uint8Array(128)
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1

/** Whether a character code is an RFC 7230 tchar. */
export const isTchar = (c: number): boolean => c < 128 && TCHAR[c] === 1

/** Whether `s` is an RFC 7230 token: one or more tchars (no spaces, separators, controls or non-ASCII). */
export const isToken = (s: string): boolean => {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) if (!isTchar(s.charCodeAt(i))) return false
  return true
}
