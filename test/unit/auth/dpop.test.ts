/**
 * auth/dpop.ts directly: RFC 9449 §4.3 proof checks (DPOP-01, DPOP-02, DPOP-03), the key
 * binding (RFC 7638 thumbprint), replay across two verifiers sharing one store, and nonces
 * (DPOP-06). Proofs are signed with jose, like any client library would.
 */
import { createHmac } from 'node:crypto'
import * as jose from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import { MemoryStore } from '../../../gateway/store/shared-store.js'
import type { RuntimeDpop } from '../../../gateway/config/load.js'
import { accessTokenHash, checkDpopProof, DpopVerifier, jwkThumbprint, normalizeHtu, type ProofContext } from '../../../gateway/auth/dpop.js'
import { GatewayError } from '../../../gateway/errors.js'

const settings: RuntimeDpop = { required: false, algorithms: ['ES256', 'EdDSA', 'PS256', 'RS256'], maxAgeSec: 60, nonce: false, nonceRotationMs: 60_000 }
const URL_ = 'https://gw.example.com/mcp/alpha'
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln'
const NOW = 1_800_000_000

let priv: CryptoKey
let pubJwk: jose.JWK
let jkt: string

beforeAll(async () => {
  const kp = await jose.generateKeyPair('ES256', { extractable: true })
  priv = kp.privateKey
  pubJwk = await jose.exportJWK(kp.publicKey)
  jkt = await jose.calculateJwkThumbprint(pubJwk, 'sha256')
})

async function proof(o: { header?: Record<string, unknown>; claims?: Record<string, unknown>; key?: CryptoKey; alg?: string } = {}): Promise<string> {
  const claims = { jti: crypto.randomUUID(), htm: 'POST', htu: URL_, iat: NOW, ath: accessTokenHash(TOKEN), ...o.claims }
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete (claims as Record<string, unknown>)[k]
  return new jose.SignJWT(claims).setProtectedHeader({ alg: o.alg ?? 'ES256', typ: 'dpop+jwt', jwk: pubJwk, ...o.header } as jose.JWTHeaderParameters).sign(o.key ?? priv)
}

const ctx = (o: Partial<ProofContext> = {}): ProofContext => ({ method: 'POST', url: URL_, accessToken: TOKEN, jkt, nowSec: NOW, clockSkewSec: 5, settings, ...o })

function refusal(f: () => unknown): GatewayError {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(GatewayError)
    return e as GatewayError
  }
  throw new Error('accepted')
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')

describe('DPoP proof checks (RFC 9449 §4.3)', () => {
  it('DPOP-01: a valid proof is accepted and its jti returned', async () => {
    const p = await proof({ claims: { jti: 'abc' } })
    expect(checkDpopProof(p, ctx())).toEqual({ jti: 'abc', iat: NOW, nonce: undefined })
  })

  it('RFC 7638: the thumbprint matches jose\'s for EC, RSA and OKP keys', async () => {
    for (const alg of ['ES256', 'RS256', 'EdDSA'] as const) {
      const { publicKey } = await jose.generateKeyPair(alg, { extractable: true })
      const jwk = await jose.exportJWK(publicKey)
      expect(jwkThumbprint(jwk as Record<string, unknown>)).toBe(await jose.calculateJwkThumbprint(jwk, 'sha256'))
    }
    expect(jwkThumbprint({ kty: 'oct', k: 'AAAA' })).toBeUndefined()
  })

  it('DPOP-01 / ATK-30: each single defect is refused as invalid_dpop_proof', async () => {
    const cases: Array<[string, Promise<string>, Partial<ProofContext>?]> = [
      ['typ jwt', proof({ header: { typ: 'jwt' } })],
      ['htm GET on POST', proof({ claims: { htm: 'GET' } })],
      ['htu of the upstream', proof({ claims: { htu: 'http://u-a.internal:8080/mcp' } })],
      ['htu another route', proof({ claims: { htu: 'https://gw.example.com/mcp/beta' } })],
      ['iat too old', proof({ claims: { iat: NOW - 66 } })],
      ['iat in the future', proof({ claims: { iat: NOW + 6 } })],
      ['jti missing', proof({ claims: { jti: undefined } })],
      ['jti too long', proof({ claims: { jti: 'x'.repeat(257) } })],
      ['alg not allowed', proof(), { settings: { ...settings, algorithms: ['EdDSA'] } }],
    ]
    for (const [name, p, c] of cases) {
      const real = await p
      const got = refusal(() => checkDpopProof(real, ctx(c)))
      expect(got.code, name).toBe('GW_AUTH_INVALID_DPOP_PROOF')
      expect(got.scheme, name).toBe('DPoP')
    }
  })

  it('DPOP-01 / ATK-30: a jwk with private members ("d") is refused', async () => {
    const withD = await jose.exportJWK(priv)
    const p = await proof({ header: { jwk: withD } })
    expect(refusal(() => checkDpopProof(p, ctx())).code).toBe('GW_AUTH_INVALID_DPOP_PROOF')
  })

  it('ATK-30: alg none and HS256 proofs are refused', async () => {
    const claims = { jti: 'n', htm: 'POST', htu: URL_, iat: NOW, ath: accessTokenHash(TOKEN) }
    const none = `${b64({ alg: 'none', typ: 'dpop+jwt', jwk: pubJwk })}.${b64(claims)}.`
    expect(refusal(() => checkDpopProof(none, ctx())).code).toBe('GW_AUTH_INVALID_DPOP_PROOF')
    // HS256 keyed with the public key's x: the classic algorithm-confusion attempt.
    const input = `${b64({ alg: 'HS256', typ: 'dpop+jwt', jwk: pubJwk })}.${b64(claims)}`
    const hs = `${input}.${createHmac('sha256', String(pubJwk.x)).update(input).digest('base64url')}`
    expect(refusal(() => checkDpopProof(hs, ctx({ settings: { ...settings, algorithms: [...settings.algorithms, 'HS256'] } }))).code).toBe('GW_AUTH_INVALID_DPOP_PROOF')
  })

  it('ATK-30: a proof signed by another key than its jwk is refused', async () => {
    const other = await jose.generateKeyPair('ES256')
    const p = await proof({ key: other.privateKey })
    expect(refusal(() => checkDpopProof(p, ctx())).code).toBe('GW_AUTH_INVALID_DPOP_PROOF')
  })

  it('DPOP-01: ath of another token and a key other than cnf.jkt are binding failures (invalid_token)', async () => {
    const p = await proof({ claims: { ath: accessTokenHash('another-token') } })
    const e = refusal(() => checkDpopProof(p, ctx()))
    expect([e.code, e.reason, e.scheme]).toEqual(['GW_AUTH_INVALID_TOKEN', 'auth-dpop', 'DPoP'])
    const q = await proof()
    const other = jwkThumbprint((await jose.exportJWK((await jose.generateKeyPair('ES256', { extractable: true })).publicKey)) as Record<string, unknown>)!
    expect(refusal(() => checkDpopProof(q, ctx({ jkt: other }))).code).toBe('GW_AUTH_INVALID_TOKEN')
  })

  it('DPOP-02: htu is normalised (case, default port, dot segments) and compared without query or fragment', async () => {
    expect(normalizeHtu('HTTPS://GW.EXAMPLE.COM:443/mcp/./alpha?x=1#f')).toBe(URL_)
    const p = await proof({ claims: { htu: 'HTTPS://GW.EXAMPLE.COM:443/mcp/alpha' } })
    expect(checkDpopProof(p, ctx()).jti).toBeTypeOf('string')
    const q = await proof({ claims: { htu: 'https://gw.example.com:8443/mcp/alpha' } })
    expect(refusal(() => checkDpopProof(q, ctx())).code).toBe('GW_AUTH_INVALID_DPOP_PROOF')
    expect(normalizeHtu('ftp://gw.example.com/mcp/alpha')).toBeUndefined()
  })
})

describe('DpopVerifier (shared state)', () => {
  const request = (proofs: string[], s: RuntimeDpop = settings) => ({ proofs, method: 'POST', url: URL_, accessToken: TOKEN, jkt, issuer: 'https://as.example.com', clockSkewSec: 5, settings: s })

  it('DPOP-03: a replayed proof is refused by a second replica sharing the store', async () => {
    const store = new MemoryStore()
    const a = new DpopVerifier(store, () => NOW * 1000)
    const b = new DpopVerifier(store, () => NOW * 1000)
    const p = await proof()
    await expect(a.verify(request([p]))).resolves.toMatchObject({ iat: NOW })
    await expect(b.verify(request([p]))).rejects.toMatchObject({ code: 'GW_AUTH_INVALID_DPOP_PROOF', detail: 'jti already used (replay)' })
    await expect(a.verify(request([await proof()]))).resolves.toBeDefined()
  })

  it('DPOP-01: no proof, or two DPoP headers, is refused', async () => {
    const v = new DpopVerifier(new MemoryStore(), () => NOW * 1000)
    await expect(v.verify(request([]))).rejects.toMatchObject({ code: 'GW_AUTH_INVALID_DPOP_PROOF' })
    await expect(v.verify(request([await proof(), await proof()]))).rejects.toMatchObject({ code: 'GW_AUTH_INVALID_DPOP_PROOF' })
  })

  it('fails closed with 503 when the replay store cannot answer', async () => {
    const down = new MemoryStore()
    Object.assign(down, { setIfAbsent: async () => false, healthy: () => false })
    const v = new DpopVerifier(down, () => NOW * 1000)
    await expect(v.verify(request([await proof()]))).rejects.toMatchObject({ code: 'GW_AUTH_UNAVAILABLE' })
  })

  it('DPOP-06: nonces are demanded, shared across replicas, and rotate', async () => {
    const store = new MemoryStore()
    let now = NOW * 1000
    const a = new DpopVerifier(store, () => now)
    const b = new DpopVerifier(store, () => now)
    const s = { ...settings, nonce: true, nonceRotationMs: 60_000 }
    const e = await a.verify(request([await proof()], s)).catch((x: GatewayError) => x)
    expect(e).toMatchObject({ code: 'GW_AUTH_USE_DPOP_NONCE', scheme: 'DPoP' })
    const nonce = (e as GatewayError).dpopNonce!
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{32}$/)
    // Replica b accepts the nonce replica a handed out.
    await expect(b.verify(request([await proof({ claims: { nonce } })], s))).resolves.toMatchObject({ nonce })
    await expect(b.verify(request([await proof({ claims: { nonce: 'made-up' } })], s))).rejects.toMatchObject({ code: 'GW_AUTH_USE_DPOP_NONCE' })
    // One period later the old nonce still works; two periods later it does not, and a new one is issued.
    now += 60_000
    await expect(a.verify(request([await proof({ claims: { nonce, iat: now / 1000 } })], s))).resolves.toBeDefined()
    now += 60_000
    const late = await a.verify(request([await proof({ claims: { nonce, iat: now / 1000 } })], s)).catch((x: GatewayError) => x)
    expect(late).toMatchObject({ code: 'GW_AUTH_USE_DPOP_NONCE' })
    expect((late as GatewayError).dpopNonce).not.toBe(nonce)
  })
})

