/**
 * The one way a store key is derived from its fields. Every field is length-prefixed
 * (`<utf-8 bytes>:<field>`), so ("ab","c") and ("a","bc") can never name the same key, and the
 * fields are hashed, so no subject, session id, tool name or token lands in a Redis key name.
 */
import { createHash } from 'node:crypto'

/** `<prefix>:<base64url SHA-256 of the length-prefixed fields>`, optionally truncated to `chars`. */
export function keyDigest(prefix: string, fields: readonly string[], chars?: number): string {
  return `${prefix}:${fieldsDigest(fields, chars)}`
}

/** The digest alone (a part of a longer key). */
export function fieldsDigest(fields: readonly string[], chars?: number): string {
  const h = createHash('sha256')
  for (const f of fields) h.update(`${Buffer.byteLength(f)}:${f}`)
  const d = h.digest('base64url')
  return chars === undefined ? d : d.slice(0, chars)
}
