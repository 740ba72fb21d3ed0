/**
 * Every JWS algorithm the gateway accepts, end to end: keys published in the real AS's JWKS, tokens
 * signed by jose (an implementation independent of the gateway's node:crypto verifier), verified
 * by the gateway and forwarded to the real MCP upstream. Controls for the verifier swap in
 * gateway/auth/jws-verify.ts: what was accepted with jose is accepted, what was refused is refused.
 */
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { atClaims, b64u, publicJwk } from '../helpers/forge.js'
import { probe, type Probe } from '../helpers/probe.js'
import { startStack, type Stack } from '../helpers/stack.js'

const ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const
type Alg = (typeof ALGS)[number]

let s: Stack
let p: Probe
const keys = new Map<Alg, JWK>()
let base: { iss: string; aud: string }

async function newKey(alg: Alg): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true })
  return { ...(await exportJWK(privateKey)), kid: `k-${alg}`, alg, use: 'sig' }
}

const sign = async (alg: Alg, key: JWK = keys.get(alg)!, kid = `k-${alg}`) =>
  new SignJWT(atClaims(base)).setProtectedHeader({ alg, kid, typ: 'at+jwt' }).sign(await importJWK(key, alg))

beforeAll(async () => {
  for (const alg of ALGS) keys.set(alg, await newKey(alg))
  // The AS signs its own tokens with the first key (RS256); the others are only published.
  s = await startStack({ asOptions: { keys: ALGS.map((a) => keys.get(a)!) }, issuerExtra: `algorithms: [${ALGS.join(', ')}]` })
  p = probe(s)
  base = { iss: s.as.issuer, aud: s.resource.alpha }
}, 120_000)
afterAll(async () => {
  await s?.close()
})
beforeEach(() => {
  s.alpha.reset()
})

describe('JWS algorithms through the gateway', () => {
  it('the AS publishes every test key, public halves only', async () => {
    const jwks = (await (await fetch(`${s.as.issuer}/jwks`)).json()) as { keys: JWK[] }
    for (const alg of ALGS) expect(jwks.keys.find((k) => k.kid === `k-${alg}`), alg).toMatchObject(publicJwk(keys.get(alg)!))
  })

  for (const alg of ALGS) {
    it(`JWT-04 / ${alg}: a token signed with the published key is accepted and forwarded; a tampered one is refused`, async () => {
      const token = await sign(alg)
      expect((await p.send(token)).status).toBe(200)
      expect(s.alpha.requests.length).toBeGreaterThan(0)
      s.alpha.reset()
      const [h, pl, sig] = token.split('.') as [string, string, string]
      const bytes = Buffer.from(sig, 'base64url')
      bytes[0]! ^= 0x80
      p.expectInvalidToken(await p.send(`${h}.${pl}.${b64u(bytes)}`))
      const claims = JSON.parse(Buffer.from(pl, 'base64url').toString()) as Record<string, unknown>
      p.expectInvalidToken(await p.send(`${h}.${b64u(JSON.stringify({ ...claims, sub: 'someone-else' }))}.${sig}`))
      expect(s.alpha.requests).toHaveLength(0)
    })
  }

  it('JWT-05 / a key used under another algorithm of its own family, or another family, is refused', async () => {
    // PS256 signature claimed under the RS256 key's kid, ES384 key named as ES256, Ed25519 named as ES256.
    p.expectInvalidToken(await p.send(await sign('PS256', keys.get('RS256')!, 'k-RS256')))
    p.expectInvalidToken(await p.send(await sign('ES256', keys.get('ES256')!, 'k-ES384')))
    p.expectInvalidToken(await p.send(await sign('EdDSA', keys.get('EdDSA')!, 'k-ES256')))
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('a real AS token (RS256) is still accepted', async () => {
    expect((await p.send(await s.token())).status).toBe(200)
  })
})
