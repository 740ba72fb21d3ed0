/**
 * The one way a value is sealed before it goes to a shared store: AES-256-GCM with a random 96-bit
 * IV, bound to the store key it is written under (additional authenticated data), so a sealed value
 * moved to another key, tampered with, or read with another key opens to nothing. Used for issued
 * upstream tokens (exchange/cache.ts) and approvals' tokens (approval/gate.ts).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

const SEALED_PREFIX = 'v1.'

export function seal(key: Buffer, aad: string, plaintext: string): string {
  const iv = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', key, iv)
  c.setAAD(Buffer.from(aad))
  const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final()])
  return SEALED_PREFIX + Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64url')
}

/** undefined for anything not sealed by this key for this cache key (tampered, moved, rotated). */
export function unseal(key: Buffer, aad: string, sealed: string): string | undefined {
  if (!sealed.startsWith(SEALED_PREFIX)) return undefined
  const raw = Buffer.from(sealed.slice(SEALED_PREFIX.length), 'base64url')
  if (raw.length < 29) return undefined
  try {
    const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12))
    d.setAAD(Buffer.from(aad))
    d.setAuthTag(raw.subarray(12, 28))
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8')
  } catch {
    return undefined
  }
}
