/**
 * Ed25519 keys for audit checkpoints, from PEM or JWK text (the secrets mechanism hands us text).
 * A verifier may be given the private key too: its public half is derived, so operators can
 * check a log with the file they already have, though they should ship only the public key.
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'

function parse(text: string): { key: KeyObject; private: boolean } {
  const t = text.trim()
  if (t.startsWith('{')) {
    const jwk = JSON.parse(t) as { kty?: string; crv?: string; d?: string }
    if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') throw new Error('the JWK is not an Ed25519 key (kty OKP, crv Ed25519)')
    return jwk.d ? { key: createPrivateKey({ key: jwk as never, format: 'jwk' }), private: true } : { key: createPublicKey({ key: jwk as never, format: 'jwk' }), private: false }
  }
  if (t.includes('PRIVATE KEY')) return { key: createPrivateKey(t), private: true }
  return { key: createPublicKey(t), private: false }
}

function ensureEd25519(key: KeyObject): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`the key is ${key.asymmetricKeyType ?? 'not asymmetric'}, not Ed25519`)
  return key
}

export function auditSigningKey(text: string): KeyObject {
  const k = parse(text)
  if (!k.private) throw new Error('the checkpoint signing key must be a private key (PEM PKCS#8 or JWK with d)')
  return ensureEd25519(k.key)
}

export function auditVerifyKey(text: string): KeyObject {
  const k = parse(text)
  return ensureEd25519(k.private ? createPublicKey(k.key) : k.key)
}

/** Names the key in each checkpoint so a verifier given the wrong key says so instead of "forged". */
export function keyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key
  return createHash('sha256').update(pub.export({ format: 'der', type: 'spki' })).digest('base64url').slice(0, 16)
}
