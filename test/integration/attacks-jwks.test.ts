/**
 * JWKS handling under attack and failure (checklist section 5, ATK-07, ATK-21, ATK-22): the
 * unknown-kid flood, key rotation against the real AS, and issuers whose key hosts misbehave
 * (failing, lying in discovery, redirecting), served by peers this file controls.
 */
import { randomUUID } from 'node:crypto'
import type { JWK } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { atClaims, b64u, forge, newKey, publicJwk } from '../helpers/forge.js'
import { json, startPeer, type Peer } from '../helpers/peer.js'
import { expectNoTokenInLogs, probe, type Probe } from '../helpers/probe.js'
import { listenerYaml, parseChallenge, type Stack, startStack } from '../helpers/stack.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const AT = (kid: string, alg = 'RS256') => ({ alg, kid, typ: 'at+jwt' })

describe('ATK-21 / JWKS-02 / unknown-kid flood', () => {
  let s: Stack
  let p: Probe
  let k1: JWK
  beforeAll(async () => {
    k1 = await newKey('RS256', 'k1')
    s = await startStack({ asOptions: { keys: [k1] }, issuerExtra: 'jwks: { cooldown: 30s }' })
    p = probe(s)
  })
  afterAll(async () => s?.close())

  it('ATK-21 / 320 tokens with random kids → all 401, the AS sees at most one JWKS fetch per cooldown, valid tokens still pass', async () => {
    const base = { iss: s.as.issuer, aud: s.resource.alpha }
    const before = s.as.counters.jwks
    s.alpha.reset()
    const statuses: number[] = []
    const valid: number[] = []
    for (let batch = 0; batch < 8; batch++) {
      const flood = Array.from({ length: 40 }, () => p.send(forge(AT(randomUUID()), atClaims(base), k1)))
      const good = p.send(forge(AT('k1'), atClaims(base), k1))
      const answers = await Promise.all(flood)
      for (const a of answers) {
        p.expectInvalidToken(a)
        statuses.push(a.status)
      }
      valid.push((await good).status)
    }
    expect(statuses).toHaveLength(320)
    expect(valid).toEqual(Array(8).fill(200))
    // One cooldown window (30 s) covers the whole test: at most one refetch.
    expect(s.as.counters.jwks - before).toBeLessThanOrEqual(1)
    // Only the valid requests reached the upstream.
    expect(s.alpha.requests.length).toBe(8)
    expectNoTokenInLogs(s, p.tokens)
  })
})

describe('JWKS-03 / ATK-22 / key rotation at the real AS', () => {
  let s: Stack
  let p: Probe
  let k1: JWK
  beforeAll(async () => {
    k1 = await newKey('RS256', 'k1')
    s = await startStack({ asOptions: { keys: [k1] }, issuerExtra: 'jwks: { cooldown: 1s }' })
    p = probe(s)
  })
  afterAll(async () => s?.close())

  it('JWKS-03 / a new kid works after one refresh; a removed key stops working after the next refresh', async () => {
    const claims = () => atClaims({ iss: s.as.issuer, aud: s.resource.alpha })
    const old = await s.token()
    expect((await p.send(old)).status).toBe(200)

    const { kid: k3 } = await s.as.rotateKeys({ keepOld: true })
    await sleep(1100) // the start-up fetch opened a cooldown window
    const before = s.as.counters.jwks
    const t3 = await s.as.signJwt(claims(), { kid: k3 })
    expect((await p.send(t3)).status).toBe(200)
    expect(s.as.counters.jwks - before).toBe(1)
    expect((await p.send(old)).status).toBe(200)

    // K1 and K3 leave the JWKS; K4 alone signs.
    const { kid: k4 } = await s.as.rotateKeys({ keepOld: false })
    await sleep(1100)
    const t4 = await s.as.signJwt(claims(), { kid: k4 })
    expect((await p.send(t4)).status).toBe(200)
    expect(s.as.counters.jwks - before).toBe(2)
    s.alpha.reset()
    // The cached verification of `old` is dropped once its key is gone; fresh K1 tokens too.
    p.expectInvalidToken(await p.send(old))
    p.expectInvalidToken(await p.send(forge(AT('k1'), claims(), k1)))
    p.expectInvalidToken(await p.send(t3))
    expect(s.alpha.requests).toHaveLength(0)
    expectNoTokenInLogs(s, p.tokens)
  })
})

describe('key hosts that misbehave', () => {
  let s: Stack
  let p: Probe
  let ecKey: JWK
  let flakyKey: JWK
  /** Issuer with an EC P-256 key (and one marked for encryption). */
  let ec: Peer
  /** Issuer whose JWKS endpoint fails on demand. */
  let flaky: Peer
  /** Issuer whose discovery document names someone else. */
  let liar: Peer
  /** Issuer whose JWKS endpoint redirects elsewhere. */
  let redirector: Peer
  let target: Peer
  let flakyMode: 'ok' | '500' | 'html' = 'ok'

  beforeAll(async () => {
    ecKey = await newKey('ES256', 'k2')
    const encKey = { ...publicJwk(await newKey('ES256', 'k-enc')), use: 'enc' }
    flakyKey = await newKey('RS256', 'kf')
    ec = await startPeer((_q, res) => json(res, 200, { keys: [publicJwk(ecKey), encKey] }))
    flaky = await startPeer((_q, res) => {
      if (flakyMode === '500') return json(res, 500, { error: 'down' })
      if (flakyMode === 'html') return void res.writeHead(200, { 'content-type': 'text/html' }).end('<html>maintenance</html>')
      json(res, 200, { keys: [publicJwk(flakyKey)] })
    })
    target = await startPeer((_q, res) => json(res, 200, { keys: [publicJwk(flakyKey)] }))
    redirector = await startPeer((_q, res) => void res.writeHead(302, { location: `${target.url}/jwks` }).end())
    liar = await startPeer((req, res) => {
      if (req.url?.startsWith('/.well-known/')) return json(res, 200, { issuer: 'https://other.example', jwks_uri: `${liar.url}/jwks` })
      json(res, 200, { keys: [publicJwk(flakyKey)] })
    })
    s = await startStack({
      asOptions: {},
      yaml: (c) => `${listenerYaml({ publicUrl: c.publicUrl, port: c.port, adminPort: c.adminPort })}issuers:
  demo: { issuer: ${c.issuer} }
  ec: { issuer: ${ec.url}, jwksUri: ${ec.url}/jwks, algorithms: [ES256] }
  flaky:
    issuer: ${flaky.url}
    jwksUri: ${flaky.url}/jwks
    jwks: { cooldown: 500ms, maxStale: 3s }
  liar: { issuer: ${liar.url} }
  redirect: { issuer: ${redirector.url}, jwksUri: ${redirector.url}/jwks }
routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: ${c.alpha} }
    issuers: [demo, ec, flaky, liar, redirect]
  - name: beta
    path: /mcp/beta
    upstream: { url: ${c.beta} }
    issuers: [demo]
`,
    })
    p = probe(s)
  })
  afterAll(async () => {
    await s?.close()
    await Promise.all([ec, flaky, liar, redirector, target].map((x) => x?.close()))
  })

  const claims = (iss: string) => atClaims({ iss, aud: s.resource.alpha })

  it('ATK-07 / an ES256 signature of 64 zero bytes (r = s = 0) is refused; a real ES256 signature passes', async () => {
    expect((await p.send(forge(AT('k2', 'ES256'), claims(ec.url), ecKey))).status).toBe(200)
    s.alpha.reset()
    const input = `${b64u(JSON.stringify(AT('k2', 'ES256')))}.${b64u(JSON.stringify(claims(ec.url)))}`
    p.expectInvalidToken(await p.send(`${input}.${b64u(Buffer.alloc(64))}`))
    // r = s = n (the group order) is the same bug in another spelling; a short signature too.
    const n = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex')
    p.expectInvalidToken(await p.send(`${input}.${b64u(Buffer.concat([n, n]))}`))
    p.expectInvalidToken(await p.send(`${input}.${b64u(Buffer.alloc(1))}`))
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('JWKS-04 / a key published with use "enc" is never a signature key', async () => {
    const encPriv = await newKey('ES256', 'k-enc')
    s.alpha.reset()
    p.expectInvalidToken(await p.send(forge(AT('k-enc', 'ES256'), claims(ec.url), encPriv)))
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('JWKS-05 / ATK-22 / a failing JWKS endpoint: cached keys keep working; past maxStale → 503 + Retry-After, no invalid_token', async () => {
    const fetchedAt = Date.now() // the start-up fetch, give or take
    expect((await p.send(forge(AT('kf'), claims(flaky.url), flakyKey))).status).toBe(200)
    for (const mode of ['500', 'html'] as const) {
      flakyMode = mode
      await sleep(600) // past the cooldown, so the unknown kid below does refetch
      const hits = flaky.count('/jwks')
      p.expectInvalidToken(await p.send(forge(AT('unknown'), claims(flaky.url), flakyKey)))
      expect(flaky.count('/jwks')).toBe(hits + 1)
      expect((await p.send(forge(AT('kf'), claims(flaky.url), flakyKey))).status).toBe(200)
    }
    await sleep(Math.max(0, fetchedAt + 3200 - Date.now()))
    s.alpha.reset()
    const a = await p.send(forge(AT('kf'), claims(flaky.url), flakyKey))
    expect(a.status).toBe(503)
    expect(Number(a.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(a.challenge ?? '').not.toContain('invalid_token')
    expect(JSON.parse(a.body)).toMatchObject({ error: 'temporarily_unavailable' })
    expect(s.alpha.requests).toHaveLength(0)
    // Recovery: the endpoint comes back, the next refetch restores service.
    flakyMode = 'ok'
    await sleep(600)
    expect((await p.send(forge(AT('kf'), claims(flaky.url), flakyKey))).status).toBe(200)
  })

  it('JWKS-01 / discovery metadata naming another issuer → keys never loaded, tokens refused', async () => {
    s.alpha.reset()
    const a = await p.send(forge(AT('kf'), claims(liar.url), flakyKey))
    expect([401, 503]).toContain(a.status)
    expect(liar.count('/.well-known/')).toBeGreaterThan(0)
    expect(liar.count('/jwks')).toBe(0)
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('JWKS-06 / a redirecting JWKS endpoint is not followed; tokens are refused', async () => {
    s.alpha.reset()
    const a = await p.send(forge(AT('kf'), claims(redirector.url), flakyKey))
    expect([401, 503]).toContain(a.status)
    expect(redirector.count('/jwks')).toBeGreaterThan(0)
    expect(target.hits).toEqual([])
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('no 503 carried an invalid_token challenge and no token reached a log line', () => {
    for (const a of p.answers.filter((x) => x.status === 503)) expect(parseChallenge(a.challenge)?.params.error).toBeUndefined()
    expectNoTokenInLogs(s, p.tokens)
  })
})
