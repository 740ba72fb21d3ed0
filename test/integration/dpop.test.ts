/**
 * DPoP (RFC 9449) end to end: the real oidc-provider (its dPoP feature, on by default in v9)
 * issues cnf.jkt-bound tokens to a real DPoP client (oauth4webapi), and the gateway accepts them
 * only with valid proofs. Checklist DPOP-01..08, PRM-08, INT-09, ATK-29, ATK-30; every attack
 * proves that nothing reached the upstream.
 */
import * as jose from 'jose'
import * as oauth from 'oauth4webapi'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, TOKEN_EXCHANGE_GRANT, type AuthorizationServer } from '../../demo/authorization-server.js'
import { accessTokenHash } from '../../gateway/auth/dpop.js'
import { INIT, listenerYaml, MCP_HEADERS, parseChallenge, startStack, type Stack } from '../helpers/stack.js'
import { startRedis, type RedisInstance } from '../helpers/redis.js'

const insecure = { [oauth.allowInsecureRequests]: true } as const

interface Client {
  as: oauth.AuthorizationServer
  client: oauth.Client
  auth: oauth.ClientAuth
}

async function dpopClient(as: AuthorizationServer): Promise<Client> {
  const issuer = new URL(as.issuer)
  const md = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure))
  return { as: md, client: { client_id: as.gateway.clientId }, auth: oauth.ClientSecretBasic(as.gateway.clientSecret) }
}

/** A token from the AS's token endpoint, bound to `keyPair` by the client library's own proof. */
async function boundToken(c: Client, keyPair: CryptoKeyPair, resource: string): Promise<oauth.TokenEndpointResponse> {
  const DPoP = oauth.DPoP(c.client, keyPair)
  const grant = () => oauth.clientCredentialsGrantRequest(c.as, c.client, c.auth, { resource, scope: 'tools.read' }, { DPoP, ...insecure })
  let res = await grant()
  // oidc-provider may ask for its nonce; the client library learns it from the answer.
  try {
    return await oauth.processClientCredentialsResponse(c.as, c.client, res)
  } catch (e) {
    if (!oauth.isDPoPNonceError(e)) throw e
    res = await grant()
    return oauth.processClientCredentialsResponse(c.as, c.client, res)
  }
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')

/** A proof made by hand, for the attacks the client library would never make. */
async function proof(kp: CryptoKeyPair, o: { htu: string; htm?: string; token?: string; iat?: number; nonce?: string; jwkOf?: CryptoKeyPair }): Promise<string> {
  const jwk = await jose.exportJWK((o.jwkOf ?? kp).publicKey)
  const claims: Record<string, unknown> = { jti: crypto.randomUUID(), htm: o.htm ?? 'POST', htu: o.htu, iat: o.iat ?? Math.floor(Date.now() / 1000) }
  if (o.token) claims.ath = accessTokenHash(o.token)
  if (o.nonce) claims.nonce = o.nonce
  return new jose.SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).sign(kp.privateKey)
}

describe('DPoP-bound JWTs, two replicas sharing Redis', () => {
  let redis: RedisInstance
  let a: Stack
  let b: Stack
  let c: Client
  let keyPair: CryptoKeyPair
  let token: string
  let alphaUrl: string

  const post = (stack: Stack, headers: Record<string, string>, path = '/mcp/alpha') => fetch(`${stack.url}${path}`, { method: 'POST', headers: { ...MCP_HEADERS, ...headers }, body: INIT })
  /** Runs an attack and proves the upstream saw nothing of it. */
  async function refused(send: () => Promise<Response>): Promise<{ status: number; challenges: string; body: Record<string, unknown> }> {
    const before = a.alpha.requests.length
    const res = await send()
    const body = (await res.json()) as Record<string, unknown>
    expect(a.alpha.requests.length).toBe(before)
    return { status: res.status, challenges: res.headers.get('www-authenticate') ?? '', body }
  }

  beforeAll(async () => {
    redis = await startRedis()
    const as = await startAuthorizationServer()
    const issuerExtra = `dpop: { maxAge: 60s }\nclient: { id: ${as.gateway.clientId}, auth: client_secret_basic, secret: { value: "${as.gateway.clientSecret}" } }`
    // beta exchanges the caller's token for the upstream (TX-11).
    const routeExtras = { beta: 'credentials: { strategy: token-exchange, resource: https://upstream-b.example/mcp }' }
    a = await startStack({ redis, as, issuerExtra, routeExtras })
    b = await startStack({ redis, issuerExtra, routeExtras, as, replicaOf: a })
    c = await dpopClient(a.as)
    keyPair = await oauth.generateKeyPair('ES256')
    const t = await boundToken(c, keyPair, a.resource.alpha)
    expect(t.token_type.toLowerCase()).toBe('dpop')
    token = t.access_token
    alphaUrl = `${a.url}/mcp/alpha`
  })
  afterAll(async () => {
    await b?.close()
    await a?.close()
    await a?.as.close()
    await redis?.stop()
  })

  it('the AS bound the token: cnf.jkt is the RFC 7638 thumbprint of the client key', async () => {
    const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(keyPair.publicKey), 'sha256')
    expect(jose.decodeJwt(token).cnf).toEqual({ jkt })
  })

  it('PRM-08 / the metadata lists asymmetric proof algorithms and whether DPoP is required', async () => {
    const doc = (await (await fetch(`${a.url}/.well-known/oauth-protected-resource/mcp/alpha`)).json()) as Record<string, unknown>
    expect(doc.dpop_signing_alg_values_supported).toEqual(['ES256', 'EdDSA', 'PS256', 'RS256'])
    expect(doc.dpop_bound_access_tokens_required).toBe(false)
  })

  it('DPOP-05 / no credentials: a Bearer and a DPoP challenge with algs, neither with error', async () => {
    const res = await post(a, {})
    expect(res.status).toBe(401)
    const header = res.headers.get('www-authenticate')!
    expect(header).toMatch(/^Bearer .*resource_metadata=/)
    expect(header).toMatch(/DPoP .*algs="ES256 EdDSA PS256 RS256"/)
    expect(header).not.toContain('error=')
  })

  it('DPOP-01 / DPOP-08 / the real client with its own proofs is served; the upstream never sees the token or the proof', async () => {
    const sent: string[] = []
    const recording = (url: string, init: oauth.CustomFetchOptions<string, oauth.ProtectedResourceRequestBody>) => {
      sent.push(new Headers(init.headers).get('dpop') ?? '')
      return fetch(url, init as RequestInit)
    }
    const DPoP = oauth.DPoP(c.client, keyPair)
    a.alpha.reset()
    const res = await oauth.protectedResourceRequest(token, 'POST', new URL(alphaUrl), new Headers(MCP_HEADERS), INIT, { DPoP, ...insecure, [oauth.customFetch]: recording })
    expect(res.status).toBe(200)
    await res.text()
    expect(a.alpha.requests.length).toBe(1)
    expect(sent).toHaveLength(1)
    expect(a.alpha.sawString(token)).toBe(false)
    expect(a.alpha.sawString(sent[0]!)).toBe(false)
    expect(a.alpha.requests[0]!.rawHeaders.some(([n]) => n === 'dpop')).toBe(false)
    expect(a.logs.some((l) => l.includes(token) || l.includes(sent[0]!))).toBe(false)

    // DPOP-03 / ATK-30: the same proof again, on this replica and on the other one.
    const replay = { authorization: `DPoP ${token}`, dpop: sent[0]! }
    for (const stack of [a, b]) {
      const r = await refused(() => post(stack, replay))
      expect(r.status).toBe(401)
      expect(parseChallenge(r.challenges.slice(r.challenges.indexOf('DPoP ')))!.params.error).toBe('invalid_dpop_proof')
      expect(r.body.error).toBe('invalid_dpop_proof')
    }
  })

  it('DPOP-03 / a fresh proof is accepted by the second replica (state is shared, not sticky)', async () => {
    const res = await post(b, { authorization: `DPoP ${token}`, dpop: await proof(keyPair, { htu: alphaUrl, token }) })
    expect(res.status).toBe(200)
    await res.text()
  })

  it('ATK-30 / DPOP-01 / DPOP-02 / a proof for another method, URL or token is refused', async () => {
    const cases: Array<[string, Promise<string>, string]> = [
      ['htm GET on POST', proof(keyPair, { htu: alphaUrl, token, htm: 'GET' }), 'invalid_dpop_proof'],
      ['htu of another route', proof(keyPair, { htu: `${a.url}/mcp/beta`, token }), 'invalid_dpop_proof'],
      ['htu of the upstream', proof(keyPair, { htu: a.alpha.url, token }), 'invalid_dpop_proof'],
      ['ath of another token', proof(keyPair, { htu: alphaUrl, token: 'some-other-token' }), 'invalid_token'],
      ['no ath', proof(keyPair, { htu: alphaUrl }), 'invalid_token'],
      ['iat 10 minutes old', proof(keyPair, { htu: alphaUrl, token, iat: Math.floor(Date.now() / 1000) - 600 }), 'invalid_dpop_proof'],
    ]
    for (const [name, p, error] of cases) {
      const r = await refused(async () => post(a, { authorization: `DPoP ${token}`, dpop: await p }))
      expect(r.status, name).toBe(401)
      expect(r.body.error, name).toBe(error)
      expect(r.challenges, name).toContain(`DPoP error="${error}"`)
    }
  })

  it('ATK-30 / a proof by another key (valid in itself) does not match cnf.jkt', async () => {
    const thief = await oauth.generateKeyPair('ES256')
    const r = await refused(async () => post(a, { authorization: `DPoP ${token}`, dpop: await proof(thief, { htu: alphaUrl, token }) }))
    expect([r.status, r.body.error]).toEqual([401, 'invalid_token'])
    // The thief's key in the header but the victim's signature: the signature check fails first.
    const mixed = await refused(async () => post(a, { authorization: `DPoP ${token}`, dpop: await proof(keyPair, { htu: alphaUrl, token, jwkOf: thief }) }))
    expect([mixed.status, mixed.body.error]).toEqual([401, 'invalid_dpop_proof'])
  })

  it('ATK-30 / alg none and HS256 proofs are refused', async () => {
    const jwk = await jose.exportJWK(keyPair.publicKey)
    const claims = { jti: crypto.randomUUID(), htm: 'POST', htu: alphaUrl, iat: Math.floor(Date.now() / 1000), ath: accessTokenHash(token) }
    const none = `${b64({ alg: 'none', typ: 'dpop+jwt', jwk })}.${b64(claims)}.`
    const hs = await new jose.SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk } as jose.JWTHeaderParameters).sign(new TextEncoder().encode(String(jwk.x)))
    for (const p of [none, hs]) {
      const r = await refused(() => post(a, { authorization: `DPoP ${token}`, dpop: p }))
      expect([r.status, r.body.error]).toEqual([401, 'invalid_dpop_proof'])
    }
  })

  it('DPOP-01 / a missing proof, or two DPoP headers, is refused', async () => {
    const r = await refused(() => post(a, { authorization: `DPoP ${token}` }))
    expect([r.status, r.body.error]).toEqual([401, 'invalid_dpop_proof'])
    const p1 = await proof(keyPair, { htu: alphaUrl, token })
    const p2 = await proof(keyPair, { htu: alphaUrl, token })
    const two = await refused(() => fetch(alphaUrl, { method: 'POST', headers: [...Object.entries(MCP_HEADERS), ['authorization', `DPoP ${token}`], ['dpop', p1], ['dpop', p2]], body: INIT }))
    expect([two.status, two.body.error]).toEqual([401, 'invalid_dpop_proof'])
  })

  it('ATK-29 / DPOP-04 / the bound token presented as Bearer is refused, with or without a proof', async () => {
    for (const extra of [{}, { dpop: await proof(keyPair, { htu: alphaUrl, token }) }] as Record<string, string>[]) {
      const r = await refused(() => post(a, { authorization: `Bearer ${token}`, ...extra }))
      expect(r.status).toBe(401)
      expect(parseChallenge(r.challenges)).toMatchObject({ scheme: 'Bearer', params: { error: 'invalid_token' } })
    }
  })

  it('TX-11 / a bound token is exchanged only after its proof passed', async () => {
    const t = (await boundToken(c, keyPair, a.resource.beta)).access_token
    const betaUrl = `${a.url}/mcp/beta`
    const exchanges = () => a.as.counters.token.byGrantType[TOKEN_EXCHANGE_GRANT] ?? 0
    const before = exchanges()
    const beta = a.beta.requests.length
    const bad = await post(a, { authorization: `DPoP ${t}`, dpop: await proof(keyPair, { htu: alphaUrl, token: t }) }, '/mcp/beta')
    expect(bad.status).toBe(401)
    expect(exchanges()).toBe(before)
    expect(a.beta.requests.length).toBe(beta)
    const good = await post(a, { authorization: `DPoP ${t}`, dpop: await proof(keyPair, { htu: betaUrl, token: t }) }, '/mcp/beta')
    await good.text()
    expect(exchanges()).toBe(before + 1)
    expect(good.status).toBe(200)
    expect(a.beta.sawString(t)).toBe(false)
  })

  it('an unbound token still works as Bearer where the issuer does not require DPoP, and is refused under the DPoP scheme', async () => {
    const plain = await a.token()
    const ok = await post(a, { authorization: `Bearer ${plain}` })
    expect(ok.status).toBe(200)
    await ok.text()
    const r = await refused(async () => post(a, { authorization: `DPoP ${plain}`, dpop: await proof(keyPair, { htu: alphaUrl, token: plain }) }))
    expect([r.status, r.body.error]).toEqual([401, 'invalid_token'])
  })
})

describe('DPoP required, server nonces, opaque tokens', () => {
  const PUBLIC = 'https://gw.example.test'
  const RES = { alpha: `${PUBLIC}/mcp/alpha`, beta: `${PUBLIC}/mcp/beta` }
  let as: AuthorizationServer
  let s: Stack
  let c: Client
  let keyPair: CryptoKeyPair

  const post = (headers: Record<string, string>, path = '/mcp/alpha') => fetch(`${s.url}${path}`, { method: 'POST', headers: { ...MCP_HEADERS, ...headers }, body: INIT })

  beforeAll(async () => {
    // beta's tokens are opaque: their binding comes from introspection (INT-09).
    as = await startAuthorizationServer({ resources: { [RES.alpha]: { scopes: ['tools.read'] }, [RES.beta]: { scopes: ['tools.read'], format: 'opaque' } } })
    s = await startStack({
      as,
      yaml: (ctx) => `${listenerYaml({ publicUrl: PUBLIC, port: ctx.port, adminPort: ctx.adminPort, serverExtra: `allowedHosts: ['127.0.0.1:${ctx.port}']` })}issuers:
  demo:
    issuer: ${ctx.issuer}
    validation: both
    jwks: { cooldown: 5s }
    client: { id: ${as.gateway.clientId}, secret: { value: "${as.gateway.clientSecret}" } }
    dpop: { required: true, nonce: true, algorithms: [ES256] }
routes:
${(['alpha', 'beta'] as const).map((n) => `  - { name: ${n}, path: /mcp/${n}, resource: ${RES[n]}, upstream: { url: ${ctx[n]}, timeout: 5s }, issuers: [demo], scopesSupported: [tools.read] }\n`).join('')}logging: { level: info }
`,
    })
    c = await dpopClient(as)
    keyPair = await oauth.generateKeyPair('ES256')
  })
  afterAll(async () => {
    await s?.close()
    await as?.close()
  })

  it('DPOP-05 / PRM-08 / required: only a DPoP challenge, and the metadata says bound tokens are required', async () => {
    const res = await post({})
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe(`DPoP scope="tools.read", resource_metadata="${PUBLIC}/.well-known/oauth-protected-resource/mcp/alpha", algs="ES256"`)
    const doc = (await (await fetch(`${s.url}/.well-known/oauth-protected-resource/mcp/alpha`)).json()) as Record<string, unknown>
    expect(doc).toMatchObject({ dpop_signing_alg_values_supported: ['ES256'], dpop_bound_access_tokens_required: true })
  })

  it('DPOP-06 / DPOP-07 / a proof without the nonce gets use_dpop_nonce and one DPoP-Nonce; with it, it is served; a stale one is refused', async () => {
    const token = (await boundToken(c, keyPair, RES.alpha)).access_token
    const htu = RES.alpha
    s.alpha.reset()
    const first = await post({ authorization: `DPoP ${token}`, dpop: await proof(keyPair, { htu, token }) })
    expect(first.status).toBe(401)
    expect(first.headers.get('www-authenticate')).toContain('DPoP error="use_dpop_nonce"')
    expect(first.headers.get('cache-control')).toBe('no-store')
    const nonce = first.headers.get('dpop-nonce')!
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{32}$/)
    expect(s.alpha.requests).toHaveLength(0)
    const ok = await post({ authorization: `DPoP ${token}`, dpop: await proof(keyPair, { htu, token, nonce }) })
    expect(ok.status).toBe(200)
    await ok.text()
    const later = await post({ authorization: `DPoP ${token}`, dpop: await proof(keyPair, { htu, token }) })
    expect(later.status).toBe(401)
    const wrong = await post({ authorization: `DPoP ${token}`, dpop: await proof(keyPair, { htu, token, nonce: 'not-the-nonce' }) })
    expect(wrong.status).toBe(401)
    expect(wrong.headers.get('dpop-nonce')).toBe(nonce)
    expect(s.alpha.requests).toHaveLength(1)
  })

  it('DPOP-06 / the real client follows use_dpop_nonce by itself', async () => {
    const token = (await boundToken(c, keyPair, RES.alpha)).access_token
    const DPoP = oauth.DPoP(c.client, keyPair)
    // htu is the public URL (DPOP-02); the request goes to the loopback listener behind it.
    const toListener = (url: string, init: oauth.CustomFetchOptions<string, oauth.ProtectedResourceRequestBody>) => fetch(url.replace(PUBLIC, s.url), init as RequestInit)
    const call = () => oauth.protectedResourceRequest(token, 'POST', new URL(RES.alpha), new Headers(MCP_HEADERS), INIT, { DPoP, [oauth.customFetch]: toListener })
    let res: Response
    let demanded = false
    try {
      res = await call()
      if (res.status === 401) {
        demanded = res.headers.has('dpop-nonce')
        res = await call()
      }
    } catch (e) {
      demanded = oauth.isDPoPNonceError(e)
      res = await call()
    }
    expect(demanded).toBe(true)
    expect(res.status).toBe(200)
    await res.text()
  })

  it('DPOP-04 / required: an unbound token is refused even as Bearer', async () => {
    const plain = (await as.getToken({ resource: RES.alpha, scope: 'tools.read' })).access_token
    s.alpha.reset()
    const r = await post({ authorization: `Bearer ${plain}` })
    expect(r.status).toBe(401)
    expect(r.headers.get('www-authenticate')).toContain('DPoP error="invalid_token"')
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('INT-09 / an opaque token bound by introspection needs its proof; as Bearer it is refused', async () => {
    const t = await boundToken(c, keyPair, RES.beta)
    expect(t.access_token.split('.')).toHaveLength(1)
    const token = t.access_token
    const htu = RES.beta
    s.beta.reset()
    const asBearer = await post({ authorization: `Bearer ${token}` }, '/mcp/beta')
    expect(asBearer.status).toBe(401)
    const noProof = await post({ authorization: `DPoP ${token}` }, '/mcp/beta')
    expect(noProof.status).toBe(401)
    const first = await post({ authorization: `DPoP ${token}`, dpop: await proof(keyPair, { htu, token }) }, '/mcp/beta')
    expect(first.status).toBe(401)
    const nonce = first.headers.get('dpop-nonce')!
    expect(nonce).toBeTruthy()
    const thief = await oauth.generateKeyPair('ES256')
    const stolen = await post({ authorization: `DPoP ${token}`, dpop: await proof(thief, { htu, token, nonce }) }, '/mcp/beta')
    expect([stolen.status, ((await stolen.json()) as { error: string }).error]).toEqual([401, 'invalid_token'])
    expect(s.beta.requests).toHaveLength(0)
    const ok = await post({ authorization: `DPoP ${token}`, dpop: await proof(keyPair, { htu, token, nonce }) }, '/mcp/beta')
    expect(ok.status).toBe(200)
    await ok.text()
  })
})
