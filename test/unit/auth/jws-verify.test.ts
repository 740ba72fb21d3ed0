import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign, constants, type KeyObject } from 'node:crypto'
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import { keyMatchesAlg } from '../../../gateway/auth/jwks.js'
import { importVerifyKey, JWS_ALGORITHMS, JwsError, verifyCompactJws, type JwsErrorCode } from '../../../gateway/auth/jws-verify.js'

const ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const
type Alg = (typeof ALGS)[number]

const b64u = (v: string | Uint8Array) => Buffer.from(v).toString('base64url')

interface Pair {
  privateKey: CryptoKey | KeyObject
  jwk: JWK
  /** A second key of the same kind: signatures by one must not verify under the other. */
  otherJwk: JWK
}

const pairs = new Map<Alg, Pair>()

async function keysFor(alg: Alg): Promise<Pair> {
  const a = await generateKeyPair(alg, { extractable: true })
  const b = await generateKeyPair(alg, { extractable: true })
  return { privateKey: a.privateKey, jwk: await exportJWK(a.publicKey), otherJwk: await exportJWK(b.publicKey) }
}

// Tokens are signed by jose (an independent implementation), so these tests check interoperability
// with the encoding the AS uses, not just that node:crypto agrees with itself.
const signed = (alg: Alg, privateKey: CryptoKey | KeyObject, claims: Record<string, unknown> = { sub: 'alice', scope: 'tools.read' }) =>
  new SignJWT(claims).setProtectedHeader({ alg, typ: 'at+jwt', kid: 'k1' }).sign(privateKey)

const codeOf = (f: () => unknown): JwsErrorCode | 'ok' => {
  try {
    f()
    return 'ok'
  } catch (e) {
    expect(e).toBeInstanceOf(JwsError)
    return (e as JwsError).code
  }
}

/** Flips one bit in the middle of a base64url segment, keeping it canonical. */
function tamperSegment(seg: string): string {
  const bytes = Buffer.from(seg, 'base64url')
  bytes[bytes.length >> 1]! ^= 0x01
  return b64u(bytes)
}

beforeAll(async () => {
  for (const alg of ALGS) pairs.set(alg, await keysFor(alg))
}, 60_000)

describe('verifyCompactJws: every supported algorithm', () => {
  it('supports exactly the asymmetric algorithms of the config schema', () => {
    expect([...JWS_ALGORITHMS].sort()).toEqual([...ALGS].sort())
  })

  for (const alg of ALGS) {
    describe(alg, () => {
      it(`JWT-04 ${alg}: a valid signature verifies`, async () => {
        const { privateKey, jwk } = pairs.get(alg)!
        const token = await signed(alg, privateKey)
        expect(codeOf(() => verifyCompactJws(token, alg, importVerifyKey(jwk, alg)))).toBe('ok')
      })

      it(`JWT-04 ${alg}: a tampered payload is refused`, async () => {
        const { privateKey, jwk } = pairs.get(alg)!
        const [h, p, s] = (await signed(alg, privateKey)).split('.') as [string, string, string]
        const forgedClaims = b64u(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), scope: 'admin' }))
        const key = importVerifyKey(jwk, alg)
        expect(codeOf(() => verifyCompactJws(`${h}.${forgedClaims}.${s}`, alg, key))).toBe('signature-invalid')
        expect(codeOf(() => verifyCompactJws(`${h}.${tamperSegment(p)}.${s}`, alg, key))).toBe('signature-invalid')
      })

      it(`JWT-04 ${alg}: a tampered header is refused`, async () => {
        const { privateKey, jwk } = pairs.get(alg)!
        const [, p, s] = (await signed(alg, privateKey)).split('.') as [string, string, string]
        const h2 = b64u(JSON.stringify({ alg, typ: 'at+jwt', kid: 'k2' }))
        expect(codeOf(() => verifyCompactJws(`${h2}.${p}.${s}`, alg, importVerifyKey(jwk, alg)))).toBe('signature-invalid')
      })

      it(`JWT-04 ${alg}: a tampered signature is refused`, async () => {
        const { privateKey, jwk } = pairs.get(alg)!
        const [h, p, s] = (await signed(alg, privateKey)).split('.') as [string, string, string]
        expect(codeOf(() => verifyCompactJws(`${h}.${p}.${tamperSegment(s)}`, alg, importVerifyKey(jwk, alg)))).toBe('signature-invalid')
      })

      it(`JWT-04 ${alg}: a signature by another key is refused`, async () => {
        const { privateKey, otherJwk } = pairs.get(alg)!
        const token = await signed(alg, privateKey)
        expect(codeOf(() => verifyCompactJws(token, alg, importVerifyKey(otherJwk, alg)))).toBe('signature-invalid')
      })

      it(`JWT-04 ${alg}: truncated, extended and empty signatures are refused`, async () => {
        const { privateKey, jwk } = pairs.get(alg)!
        const [h, p, s] = (await signed(alg, privateKey)).split('.') as [string, string, string]
        const sig = Buffer.from(s, 'base64url')
        const key = importVerifyKey(jwk, alg)
        expect(codeOf(() => verifyCompactJws(`${h}.${p}.${b64u(sig.subarray(0, sig.length - 1))}`, alg, key))).toBe('signature-invalid')
        expect(codeOf(() => verifyCompactJws(`${h}.${p}.${b64u(Buffer.concat([sig, Buffer.from([0])]))}`, alg, key))).toBe('signature-invalid')
        expect(codeOf(() => verifyCompactJws(`${h}.${p}.`, alg, key))).toBe('malformed')
      })
    })
  }
})

describe('verifyCompactJws: ECDSA signature encoding', () => {
  for (const [alg, len] of [
    ['ES256', 64],
    ['ES384', 96],
    ['ES512', 132],
  ] as const) {
    it(`JWT-04 ${alg}: only raw r||s of ${len} bytes is accepted; the DER form of the same valid signature is refused`, async () => {
      const { jwk } = pairs.get(alg)!
      const key = importVerifyKey(jwk, alg)
      // Sign with node:crypto in both encodings over the same input: the DER one is mathematically
      // valid, so only the encoding rule can refuse it.
      const priv = createPrivateKey({ key: (await exportJWK(pairs.get(alg)!.privateKey as CryptoKey)) as never, format: 'jwk' })
      const h = b64u(JSON.stringify({ alg, typ: 'at+jwt' }))
      const p = b64u(JSON.stringify({ sub: 'alice' }))
      const hash = `sha${alg.slice(2)}`
      const raw = cryptoSign(hash, Buffer.from(`${h}.${p}`), { key: priv, dsaEncoding: 'ieee-p1363' })
      const der = cryptoSign(hash, Buffer.from(`${h}.${p}`), { key: priv, dsaEncoding: 'der' })
      expect(raw.length).toBe(len)
      expect(codeOf(() => verifyCompactJws(`${h}.${p}.${b64u(raw)}`, alg, key))).toBe('ok')
      expect(codeOf(() => verifyCompactJws(`${h}.${p}.${b64u(der)}`, alg, key))).toBe('signature-invalid')
      // Right length, wrong content (all zeros: r = s = 0 is never a valid signature).
      expect(codeOf(() => verifyCompactJws(`${h}.${p}.${b64u(Buffer.alloc(len))}`, alg, key))).toBe('signature-invalid')
    })
  }

  it('JWT-04 ES256: a P-256 signature presented as ES384 (padded to 96 bytes) is refused', async () => {
    const { privateKey } = pairs.get('ES256')!
    const [h, p, s] = (await signed('ES256', privateKey)).split('.') as [string, string, string]
    const key = importVerifyKey(pairs.get('ES384')!.jwk, 'ES384')
    expect(codeOf(() => verifyCompactJws(`${h}.${p}.${b64u(Buffer.concat([Buffer.from(s, 'base64url'), Buffer.alloc(32)]))}`, 'ES384', key))).toBe('signature-invalid')
  })
})

describe('importVerifyKey / verifyCompactJws: algorithm and key confusion', () => {
  it('JWT-04 none, HS256/384/512 and unknown names are not algorithms at all', () => {
    const { jwk } = pairs.get('RS256')!
    for (const alg of ['none', 'None', 'HS256', 'HS384', 'HS512', 'RSA-OAEP', 'ES256K', 'Ed448', 'constructor', '__proto__', '']) {
      expect(codeOf(() => importVerifyKey(jwk, alg))).toBe('alg-unsupported')
    }
  })

  it('JWT-04 an HS256 token whose secret is the RSA public key (algorithm confusion) is refused', async () => {
    const { jwk } = pairs.get('RS256')!
    const pem = createPublicKey({ key: jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' })
    const h = b64u(JSON.stringify({ alg: 'HS256', typ: 'at+jwt', kid: 'k1' }))
    const p = b64u(JSON.stringify({ sub: 'mallory', scope: 'admin' }))
    const token = `${h}.${p}.${b64u(createHmac('sha256', pem).update(`${h}.${p}`).digest())}`
    // No key can be had for HS256, and the RS256 key refuses a token that names HS256.
    expect(codeOf(() => importVerifyKey(jwk, 'HS256'))).toBe('alg-unsupported')
    expect(codeOf(() => verifyCompactJws(token, 'HS256', importVerifyKey(jwk, 'RS256')))).toBe('alg-mismatch')
    // Even if a caller passed RS256, the HMAC bytes are not an RSA signature.
    expect(codeOf(() => verifyCompactJws(token, 'RS256', importVerifyKey(jwk, 'RS256')))).toBe('signature-invalid')
  })

  it('JWT-04 a key refuses a token whose header names another algorithm, even of the same family', async () => {
    const { privateKey, jwk } = pairs.get('RS256')!
    const rs256 = await signed('RS256', privateKey)
    expect(codeOf(() => verifyCompactJws(rs256, 'PS256', importVerifyKey(jwk, 'RS256')))).toBe('alg-mismatch')
    // The same RSA key imported for PS256 does not accept a PKCS#1 v1.5 signature.
    expect(codeOf(() => verifyCompactJws(rs256, 'PS256', importVerifyKey(jwk, 'PS256')))).toBe('signature-invalid')
    expect(codeOf(() => verifyCompactJws(rs256, 'RS384', importVerifyKey(jwk, 'RS384')))).toBe('signature-invalid')
  })

  it('JWT-05 the key type must fit the algorithm', () => {
    const rsa = pairs.get('RS256')!.jwk
    const p256 = pairs.get('ES256')!.jwk
    const p384 = pairs.get('ES384')!.jwk
    const ed = pairs.get('EdDSA')!.jwk
    const cases: [JWK, string][] = [
      [rsa, 'ES256'],
      [rsa, 'EdDSA'],
      [p256, 'RS256'],
      [p256, 'PS256'],
      [p256, 'ES384'],
      [p384, 'ES256'],
      [p384, 'ES512'],
      [ed, 'ES256'],
      [ed, 'RS256'],
    ]
    for (const [jwk, alg] of cases) expect(codeOf(() => importVerifyKey(jwk, alg)), `${jwk.kty}/${jwk.crv ?? ''} as ${alg}`).toBe('key-unusable')
  })

  it('JWT-05 a JWK whose kty/crv lie about the key material is refused by what node:crypto parsed', () => {
    const p256 = pairs.get('ES256')!.jwk
    // P-256 coordinates labelled as P-384: node:crypto refuses or parses them as another curve.
    expect(codeOf(() => importVerifyKey({ ...p256, crv: 'P-384' }, 'ES384'))).toBe('key-unusable')
    const ed = pairs.get('EdDSA')!.jwk
    expect(codeOf(() => importVerifyKey({ ...ed, crv: 'Ed448' }, 'EdDSA'))).toBe('key-unusable')
  })

  it('JWT-05 use, key_ops, alg and ext members are honoured', () => {
    const rsa = pairs.get('RS256')!.jwk
    expect(codeOf(() => importVerifyKey({ ...rsa, use: 'sig', key_ops: ['verify'], alg: 'RS256', ext: true }, 'RS256'))).toBe('ok')
    expect(codeOf(() => importVerifyKey({ ...rsa, use: 'enc' }, 'RS256'))).toBe('key-unusable')
    expect(codeOf(() => importVerifyKey({ ...rsa, alg: 'RS512' }, 'RS256'))).toBe('key-unusable')
    expect(codeOf(() => importVerifyKey({ ...rsa, key_ops: ['encrypt'] }, 'RS256'))).toBe('key-unusable')
    expect(codeOf(() => importVerifyKey({ ...rsa, key_ops: 'verify' } as unknown as JWK, 'RS256'))).toBe('key-unusable')
    expect(codeOf(() => importVerifyKey({ ...rsa, key_ops: ['verify', 'verify'] }, 'RS256'))).toBe('key-unusable')
    expect(codeOf(() => importVerifyKey({ ...rsa, ext: 'yes' } as unknown as JWK, 'RS256'))).toBe('key-unusable')
  })

  it('JWT-05 private and symmetric keys, junk and RSA moduli under 2048 bits are refused', async () => {
    const { privateKey } = pairs.get('RS256')!
    const privJwk = await exportJWK(privateKey as CryptoKey)
    expect(codeOf(() => importVerifyKey(privJwk, 'RS256'))).toBe('key-unusable')
    expect(codeOf(() => importVerifyKey({ kty: 'oct', k: b64u('secret') }, 'RS256'))).toBe('key-unusable')
    for (const junk of [null, undefined, 'RS256', 42, [], {}, { kty: 'RSA' }, { kty: 'RSA', n: '!!', e: 'AQAB' }, { kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' }]) {
      expect(codeOf(() => importVerifyKey(junk, junk && typeof junk === 'object' && 'crv' in junk ? 'ES256' : 'RS256'))).toBe('key-unusable')
    }
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 })
    expect(codeOf(() => importVerifyKey(small.publicKey.export({ format: 'jwk' }), 'RS256'))).toBe('key-unusable')
    const ok = generateKeyPairSync('rsa', { modulusLength: 2048 })
    expect(codeOf(() => importVerifyKey(ok.publicKey.export({ format: 'jwk' }), 'RS256'))).toBe('ok')
  })

  it('JWT-04 PS256: the salt must be as long as the digest (RFC 7518 §3.5)', async () => {
    const { jwk } = pairs.get('PS256')!
    const priv = createPrivateKey({ key: (await exportJWK(pairs.get('PS256')!.privateKey as CryptoKey)) as never, format: 'jwk' })
    const h = b64u(JSON.stringify({ alg: 'PS256' }))
    const p = b64u(JSON.stringify({ sub: 'alice' }))
    const withSalt = (saltLength: number) => b64u(cryptoSign('sha256', Buffer.from(`${h}.${p}`), { key: priv, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }))
    const key = importVerifyKey(jwk, 'PS256')
    expect(codeOf(() => verifyCompactJws(`${h}.${p}.${withSalt(32)}`, 'PS256', key))).toBe('ok')
    expect(codeOf(() => verifyCompactJws(`${h}.${p}.${withSalt(0)}`, 'PS256', key))).toBe('signature-invalid')
    expect(codeOf(() => verifyCompactJws(`${h}.${p}.${withSalt(64)}`, 'PS256', key))).toBe('signature-invalid')
  })
})

describe('verifyCompactJws: shape of the token', () => {
  it('JWT-12 a non-canonical spelling of a valid signature is refused (one signature, one token)', async () => {
    // 256-byte RSA signature: 342 base64url chars, the last carrying 2 unused bits.
    const { privateKey, jwk } = pairs.get('RS256')!
    const [h, p, s] = (await signed('RS256', privateKey)).split('.') as [string, string, string]
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const last = alphabet.indexOf(s.at(-1)!)
    const variant = `${s.slice(0, -1)}${alphabet[last ^ 1]}`
    expect(Buffer.from(variant, 'base64url').equals(Buffer.from(s, 'base64url'))).toBe(true)
    const key = importVerifyKey(jwk, 'RS256')
    expect(codeOf(() => verifyCompactJws(`${h}.${p}.${s}`, 'RS256', key))).toBe('ok')
    expect(codeOf(() => verifyCompactJws(`${h}.${p}.${variant}`, 'RS256', key))).toBe('malformed')
  })

  it('JWT-12 padding, non-base64url characters, extra segments and non-ASCII are refused without throwing anything else', async () => {
    const { privateKey, jwk } = pairs.get('RS256')!
    const token = await signed('RS256', privateKey)
    const [h, p, s] = token.split('.') as [string, string, string]
    const key = importVerifyKey(jwk, 'RS256')
    for (const t of [`${token}=`, `${h}.${p}.${s}.x`, `${h}.${p}`, `${h}.${p}é.${s}`, `${h}.${p}.+${s.slice(1)}`, `.${p}.${s}`, `${h}..${s}`, '', '..']) {
      expect(codeOf(() => verifyCompactJws(t, 'RS256', key))).not.toBe('ok')
    }
  })

  it('JWT-05 one KeyObject per JWK: importing the same key for two algorithms parses it once', () => {
    const { jwk } = pairs.get('RS256')!
    const a = importVerifyKey(jwk, 'RS256')
    const b = importVerifyKey(jwk, 'PS256')
    expect(a.key).toBe(b.key)
    expect(a.alg).toBe('RS256')
    expect(b.alg).toBe('PS256')
  })
})

describe('keyMatchesAlg (key selection by kid, before import)', () => {
  it('JWT-05 a malformed key_ops in a JWKS makes the key unusable instead of throwing', () => {
    const rsa = pairs.get('RS256')!.jwk
    for (const key_ops of [5, null, 'verify', { 0: 'verify' }]) {
      expect(() => keyMatchesAlg({ ...rsa, key_ops } as unknown as JWK, 'RS256')).not.toThrow()
      expect(keyMatchesAlg({ ...rsa, key_ops } as unknown as JWK, 'RS256')).toBe(false)
    }
    expect(keyMatchesAlg({ ...rsa, key_ops: ['verify'] }, 'RS256')).toBe(true)
  })
})
