/**
 * Compact JWS signature verification with synchronous `node:crypto` (docs/performance.md,
 * "JWS verification"). jose goes through WebCrypto, whose promise-based calls cost several times
 * the RSA arithmetic itself on the cold path; the checks jose made on the key are repeated here,
 * so swapping the engine weakens nothing:
 *
 * - only the asymmetric algorithms below exist; `none` and HS* cannot be named, so a public key
 *   can never be used as an HMAC secret (algorithm confusion, RFC 8725 §2.1);
 * - the key is a public JWK whose kty (and crv) fit the algorithm, whose use/key_ops/alg, when
 *   present, allow verification with that algorithm, RSA moduli of at least 2048 bits (as jose);
 * - a key is bound to one algorithm when imported, and verification refuses any other;
 * - ECDSA signatures are the raw r||s of RFC 7518 §3.4, of exactly the curve's length; DER is refused;
 * - the signature segment must be canonical base64url, so one signature has one spelling.
 */
import { constants, createPublicKey, verify as cryptoVerify, type KeyObject, type VerifyKeyObjectInput, type VerifyPublicKeyInput } from 'node:crypto'

interface AlgSpec {
  kty: 'RSA' | 'EC' | 'OKP'
  /** Digest for crypto.verify; null for EdDSA, which hashes internally. */
  hash: string | null
  /** JWK crv and the matching node:crypto key details. */
  crv?: string
  nodeCurve?: string
  nodeType: 'rsa' | 'ec' | 'ed25519'
  pss?: boolean
  /** Exact signature length in bytes, where the algorithm fixes it (RSA: the modulus length). */
  sigBytes?: number
}

const ALGORITHMS: ReadonlyMap<string, AlgSpec> = new Map<string, AlgSpec>([
  ['RS256', { kty: 'RSA', hash: 'sha256', nodeType: 'rsa' }],
  ['RS384', { kty: 'RSA', hash: 'sha384', nodeType: 'rsa' }],
  ['RS512', { kty: 'RSA', hash: 'sha512', nodeType: 'rsa' }],
  ['PS256', { kty: 'RSA', hash: 'sha256', nodeType: 'rsa', pss: true }],
  ['PS384', { kty: 'RSA', hash: 'sha384', nodeType: 'rsa', pss: true }],
  ['PS512', { kty: 'RSA', hash: 'sha512', nodeType: 'rsa', pss: true }],
  ['ES256', { kty: 'EC', hash: 'sha256', crv: 'P-256', nodeCurve: 'prime256v1', nodeType: 'ec', sigBytes: 64 }],
  ['ES384', { kty: 'EC', hash: 'sha384', crv: 'P-384', nodeCurve: 'secp384r1', nodeType: 'ec', sigBytes: 96 }],
  ['ES512', { kty: 'EC', hash: 'sha512', crv: 'P-521', nodeCurve: 'secp521r1', nodeType: 'ec', sigBytes: 132 }],
  // Ed448 is not accepted: jose never supported it under EdDSA, and no AS we know signs with it.
  ['EdDSA', { kty: 'OKP', hash: null, crv: 'Ed25519', nodeType: 'ed25519', sigBytes: 64 }],
])

export const JWS_ALGORITHMS: readonly string[] = [...ALGORITHMS.keys()]

const MIN_RSA_BITS = 2048

/** Members that only private or symmetric keys have. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const

export type JwsErrorCode = 'alg-unsupported' | 'key-unusable' | 'alg-mismatch' | 'malformed' | 'signature-invalid'

export class JwsError extends Error {
  constructor(
    readonly code: JwsErrorCode,
    message: string,
  ) {
    super(message)
    this.name = 'JwsError'
  }
}

/** A public key bound to one algorithm, ready for crypto.verify without further work per call. */
export interface JwsVerifyKey {
  readonly alg: string
  readonly key: KeyObject
  /** The digest argument of crypto.verify. */
  readonly hash: string | null
  /** The key argument of crypto.verify, with padding/salt/encoding fixed by the algorithm. */
  readonly input: VerifyKeyObjectInput | VerifyPublicKeyInput
  readonly sigBytes: number | undefined
}

/** One KeyObject per JWK object: a key used with several algorithms (e.g. RS256 and PS256) is parsed once. */
const keyObjects = new WeakMap<object, KeyObject>()

/** JWK → JwsVerifyKey for `alg`. Throws JwsError (never anything else) when the key does not fit. */
export function importVerifyKey(jwk: unknown, alg: string): JwsVerifyKey {
  const spec = ALGORITHMS.get(alg)
  if (!spec) throw new JwsError('alg-unsupported', `algorithm ${String(alg).slice(0, 32)} is not supported`)
  if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk)) throw new JwsError('key-unusable', 'key is not a JWK object')
  const k = jwk as Record<string, unknown>
  if (k.kty !== spec.kty) throw new JwsError('key-unusable', `${alg} needs kty ${spec.kty}`)
  if (spec.crv !== undefined && k.crv !== spec.crv) throw new JwsError('key-unusable', `${alg} needs crv ${spec.crv}`)
  if (PRIVATE_MEMBERS.some((m) => m in k)) throw new JwsError('key-unusable', 'not a public key')
  if (k.use !== undefined && k.use !== 'sig') throw new JwsError('key-unusable', 'key use is not sig')
  if (k.alg !== undefined && k.alg !== alg) throw new JwsError('key-unusable', 'key is for another algorithm')
  if (k.ext !== undefined && typeof k.ext !== 'boolean') throw new JwsError('key-unusable', 'ext is not a boolean')
  if (k.key_ops !== undefined) {
    const ops = k.key_ops
    if (!Array.isArray(ops) || ops.some((o) => typeof o !== 'string') || new Set(ops).size !== ops.length || !ops.includes('verify')) {
      throw new JwsError('key-unusable', 'key_ops does not allow verify')
    }
  }

  let key = keyObjects.get(k)
  if (!key) {
    try {
      key = createPublicKey({ key: k as never, format: 'jwk' })
    } catch {
      throw new JwsError('key-unusable', 'key cannot be imported')
    }
    keyObjects.set(k, key)
  }
  // What node:crypto made of the JWK, not what the JWK claims, decides.
  if (key.type !== 'public' || key.asymmetricKeyType !== spec.nodeType) throw new JwsError('key-unusable', `${alg} needs a ${spec.nodeType} public key`)
  let sigBytes = spec.sigBytes
  if (spec.kty === 'RSA') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    if (bits < MIN_RSA_BITS) throw new JwsError('key-unusable', `${alg} needs a modulus of at least ${MIN_RSA_BITS} bits`)
    sigBytes = Math.ceil(bits / 8)
  }
  if (spec.nodeCurve !== undefined && key.asymmetricKeyDetails?.namedCurve !== spec.nodeCurve) throw new JwsError('key-unusable', `${alg} needs curve ${spec.crv}`)

  const input: VerifyKeyObjectInput | VerifyPublicKeyInput =
    spec.kty === 'EC'
      ? { key, dsaEncoding: 'ieee-p1363' }
      : spec.pss
        ? // RFC 7518 §3.5: the salt is exactly as long as the digest.
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
        : spec.kty === 'RSA'
          ? { key, padding: constants.RSA_PKCS1_PADDING }
          : { key }
  return { alg, key, hash: spec.hash, input, sigBytes }
}

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

/**
 * Checks the signature of a compact JWS whose header names `alg`. Returns normally only when the
 * signature is valid for `key`; throws JwsError otherwise. Parsing the header and claims is the
 * caller's job (jwt.ts), done before the key lookup.
 */
export function verifyCompactJws(token: string, alg: string, key: JwsVerifyKey): void {
  if (alg !== key.alg) throw new JwsError('alg-mismatch', 'key was imported for another algorithm')
  if (!COMPACT_JWS.test(token)) throw new JwsError('malformed', 'not a signed compact JWS')
  const dot = token.lastIndexOf('.')
  const encoded = token.slice(dot + 1)
  const signature = Buffer.from(encoded, 'base64url')
  if (signature.toString('base64url') !== encoded) throw new JwsError('malformed', 'signature is not canonical base64url')
  if (key.sigBytes !== undefined && signature.length !== key.sigBytes) throw new JwsError('signature-invalid', 'signature has the wrong length')
  let ok = false
  try {
    // The signing input is ASCII (checked above), so latin1 gives exactly its bytes.
    ok = cryptoVerify(key.hash, Buffer.from(token.slice(0, dot), 'latin1'), key.input, signature)
  } catch {
    ok = false
  }
  if (!ok) throw new JwsError('signature-invalid', 'signature verification failed')
}
