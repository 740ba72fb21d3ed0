/**
 * Token forgery for attack tests. Header and payload are signed as raw JSON text, so tests can
 * express what a JSON library would never produce (duplicate members, odd encodings), and any
 * key material can be used, including an HMAC secret made of an RSA public key.
 */
import { constants, createHmac, createPrivateKey, createPublicKey, randomUUID, sign } from 'node:crypto'
import { exportJWK, generateKeyPair, type JWK } from 'jose'

export const b64u = (v: string | Uint8Array): string => Buffer.from(v).toString('base64url')

export async function newKey(alg: 'RS256' | 'ES256', kid: string): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true })
  return { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' }
}

/** The public half of a private JWK, with the members a JWKS publishes. */
export function publicJwk(k: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = k
  return pub
}

export type SigningKey = JWK | { hmac: Uint8Array | string }

/** Signature over `<b64u(header)>.<b64u(payload)>` by the named algorithm. */
function signature(alg: string, input: string, key: SigningKey): Buffer {
  if ('hmac' in key) return createHmac(`sha${alg.slice(2)}`, key.hmac).update(input).digest()
  const k = createPrivateKey({ key: key as never, format: 'jwk' })
  const hash = `sha${alg.slice(2)}`
  if (alg.startsWith('RS')) return sign(hash, Buffer.from(input), k)
  if (alg.startsWith('PS')) return sign(hash, Buffer.from(input), { key: k, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 })
  if (alg.startsWith('ES')) return sign(hash, Buffer.from(input), { key: k, dsaEncoding: 'ieee-p1363' })
  throw new Error(`forge: no signer for ${alg}`)
}

/** A compact JWS from raw header and payload text. `alg` picks the signer; the header says what it says. */
export function signRaw(headerText: string, payloadText: string | Uint8Array, key: SigningKey, alg: string): string {
  const input = `${b64u(headerText)}.${b64u(payloadText)}`
  return `${input}.${b64u(signature(alg, input, key))}`
}

/** A compact JWS of JSON header and claims; alg defaults to the header's. */
export function forge(header: Record<string, unknown>, claims: Record<string, unknown>, key: SigningKey, alg = String(header.alg)): string {
  return signRaw(JSON.stringify(header), JSON.stringify(claims), key, alg)
}

/** K1's public key in the encodings an HS256 key-confusion attacker would try (ATK-03). */
export function publicKeyEncodings(k: JWK): Record<string, Uint8Array | string> {
  const pub = createPublicKey({ key: publicJwk(k) as never, format: 'jwk' })
  return {
    'spki PEM': pub.export({ type: 'spki', format: 'pem' }) as string,
    'pkcs1 PEM': pub.export({ type: 'pkcs1', format: 'pem' }) as string,
    'spki DER': pub.export({ type: 'spki', format: 'der' }),
    'JWK JSON': JSON.stringify(publicJwk(k)),
    'n bytes': Buffer.from(k.n!, 'base64url'),
  }
}

/** RFC 9068 claims for a resource, valid now; overrides replace members (undefined deletes). */
export function atClaims(base: { iss: string; aud: string | string[] }, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  const c: Record<string, unknown> = { iss: base.iss, aud: base.aud, sub: 'u1', client_id: 'c1', scope: 'tools.read', iat: now, exp: now + 300, jti: randomUUID() }
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete c[k]
    else c[k] = v
  }
  return c
}
