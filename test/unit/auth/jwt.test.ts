import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { IssuerKeys } from '../../../gateway/auth/jwks.js'
import { audienceMatches, decodeJwt, verifyAccessToken } from '../../../gateway/auth/jwt.js'
import type { RuntimeIssuer } from '../../../gateway/config/load.js'
import { GatewayError } from '../../../gateway/errors.js'

const b64u = (v: string | Uint8Array) => Buffer.from(v).toString('base64url')
const RES = 'https://gw.example.com/mcp/alpha'
const ISS = 'https://as.example.com'

const onlyGatewayErrors = (f: () => unknown) => {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(GatewayError)
    expect((e as GatewayError).code).toBe('GW_AUTH_INVALID_TOKEN')
  }
}

describe('decodeJwt', () => {
  it('throws only GW_AUTH_INVALID_TOKEN on arbitrary strings', () => {
    fc.assert(fc.property(fc.string(), (t) => onlyGatewayErrors(() => decodeJwt(t))), { numRuns: 1000 })
  })

  it('throws only GW_AUTH_INVALID_TOKEN on three base64url segments of arbitrary bytes or JSON', () => {
    const segment = fc.oneof(
      fc.uint8Array({ maxLength: 96 }).map(b64u),
      fc.jsonValue({ maxDepth: 4 }).map((v) => b64u(JSON.stringify(v) ?? 'null')),
      fc.constantFrom(b64u('{"a":1,"a":2}'), b64u('\ufeff{}'), b64u('['.repeat(100)), b64u(Buffer.from('{}', 'utf16le'))),
    )
    fc.assert(
      fc.property(segment, segment, segment, (h, p, sig) =>
        onlyGatewayErrors(() => {
          const d = decodeJwt(`${h}.${p}.${sig}`)
          expect(typeof d.header).toBe('object')
          expect(Array.isArray(d.claims)).toBe(false)
        }),
      ),
      { numRuns: 1000 },
    )
  })
})

describe('verifyAccessToken', () => {
  const issuer = { name: 'demo', issuer: ISS, algorithms: ['RS256'], extraAudiences: [], clockSkewSec: 30, requireTyp: 'at+jwt', strictAudience: false } as unknown as RuntimeIssuer
  const keys = {
    generation: 0,
    keyFor: async () => {
      throw new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'auth-unknown-key' })
    },
  } as unknown as IssuerKeys
  const now = 1_800_000_000
  const validClaims = { iss: ISS, aud: RES, sub: 'u1', client_id: 'c1', scope: 'a', iat: now, exp: now + 300, jti: 'j' }
  const validHeader = { alg: 'RS256', kid: 'k1', typ: 'at+jwt' }

  it('every claim check runs before the key lookup: a valid shape reaches keyFor', async () => {
    await expect(verifyAccessToken('x.y.z', { header: validHeader, claims: validClaims }, { issuer, keys, resource: RES, nowSec: now })).rejects.toMatchObject({ reason: 'auth-unknown-key' })
    await expect(verifyAccessToken('x.y.z', { header: validHeader, claims: { ...validClaims, aud: 'https://gw.example.com/mcp/beta' } }, { issuer, keys, resource: RES, nowSec: now })).rejects.toMatchObject({ reason: 'auth-audience' })
  })

  it('rejects with GatewayError only, whatever type each header member and claim has', async () => {
    const anyValue = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(undefined))
    const overrides = (keysOf: string[]) => fc.dictionary(fc.constantFrom(...keysOf), anyValue, { maxKeys: 4 })
    await fc.assert(
      fc.asyncProperty(overrides(['alg', 'kid', 'typ', 'crit', 'jku']), overrides(['iss', 'aud', 'sub', 'client_id', 'azp', 'scope', 'iat', 'exp', 'nbf', 'jti', 'nonce', 'cnf', 'act']), async (h, c) => {
        try {
          await verifyAccessToken('x.y.z', { header: { ...validHeader, ...h }, claims: { ...validClaims, ...c } }, { issuer, keys, resource: RES, nowSec: now })
          throw new Error('accepted without a key')
        } catch (e) {
          expect(e).toBeInstanceOf(GatewayError)
        }
      }),
      { numRuns: 1000 },
    )
  })
})

describe('audienceMatches (AUD-02)', () => {
  it('scheme and host compare case-insensitively, nothing else is normalised', () => {
    expect(audienceMatches(RES, RES)).toBe(true)
    expect(audienceMatches('HTTPS://GW.EXAMPLE.COM/mcp/alpha', RES)).toBe(true)
    expect(audienceMatches('https://Gw.Example.Com/mcp/alpha', RES)).toBe(true)
    for (const aud of [`${RES}/`, 'https://gw.example.com:443/mcp/alpha', 'https://gw.example.com/mcp/Alpha', 'https://gw.example.com/mcp/./alpha', 'https://gw.example.com/mcp/%61lpha', 'https://gw.example.com/MCP/alpha', 'http://gw.example.com/mcp/alpha', 'https://gw.example.com./mcp/alpha', 'https://u@gw.example.com/mcp/alpha', `${RES}?`, `${RES}#`, 'gw.example.com/mcp/alpha', '']) {
      expect(audienceMatches(aud, RES), aud).toBe(false)
    }
  })
})
