/**
 * Downstream credentials (issue 3): the caller's token never leaves the gateway. Real
 * oidc-provider AS (token exchange grant, client credentials, private_key_jwt), real MCP SDK
 * upstreams that record every request, real redis-server. Checklist sections 7 (AUD-04), 11 (TX)
 * and 19 (ATK-31/32/37).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Redis } from 'ioredis'
import { createRemoteJWKSet, decodeJwt, exportJWK, exportPKCS8, generateKeyPair, importSPKI, exportSPKI, jwtVerify, type JWTPayload } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { GATEWAY_PKJWT_CLIENT_ID, startAuthorizationServer } from '../../demo/authorization-server.js'
import type { McpUpstream } from '../../demo/mcp-server.js'
import { buildGateway } from '../../gateway/server.js'
import { INIT, MCP_HEADERS, parseChallenge, startStack, type Stack } from '../helpers/stack.js'

const UPSTREAM_A = 'http://upstream-a.internal/mcp'
const UPSTREAM_B = 'http://upstream-b.internal/mcp'
const ENC_KEY = randomBytes(32).toString('base64')

const basicClient = (secret: string) => `client: { id: mcp-warden, auth: client_secret_basic, secret: { value: "${secret}" } }`

async function connect(s: Stack, route: 'alpha' | 'beta', token: string, extraHeaders: Record<string, string> = {}) {
  const client = new Client({ name: 'credentials-test', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/${route}`), { requestInit: { headers: { authorization: `Bearer ${token}`, ...extraHeaders } } })
  await client.connect(transport)
  return { client, close: () => client.close() }
}

async function whoami(s: Stack, route: 'alpha' | 'beta', token: string, extraHeaders: Record<string, string> = {}): Promise<Record<string, string>> {
  const c = await connect(s, route, token, extraHeaders)
  try {
    const r = await c.client.callTool({ name: 'whoami', arguments: {} })
    return JSON.parse((r.content as Array<{ text: string }>)[0]!.text) as Record<string, string>
  } finally {
    await c.close()
  }
}

const bearerOf = (headers: Record<string, string>) => /^Bearer (\S+)$/.exec(headers.authorization ?? '')?.[1]

/** Every bearer value the upstream received, across all recorded requests. */
const bearersSeen = (u: McpUpstream) => [...new Set(u.requests.map((r) => /^Bearer (\S+)$/.exec(String(r.headers.authorization ?? ''))?.[1]).filter((t): t is string => !!t))]

const post = (s: Stack, route: 'alpha' | 'beta', token: string, body = INIT) =>
  fetch(`${s.url}/mcp/${route}`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body })

async function metric(s: Stack, name: string, labels: Record<string, string>): Promise<number> {
  const m = await s.gateway.metrics.registry.getSingleMetric(name)?.get()
  return (m?.values ?? []).filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0)
}

describe('token exchange and chains (client_secret_basic, Redis)', () => {
  let s: Stack
  beforeAll(async () => {
    const as = await startAuthorizationServer()
    s = await startStack({
      as,
      redis: true,
      redisExtra: `encryptionKey: { value: "${ENC_KEY}" }`,
      issuerExtra: basicClient(as.gateway.clientSecret),
      routeExtras: {
        alpha: `credentials:
  strategy: token-exchange
  resource: ${UPSTREAM_A}
  scopes: { tools.read: [tools.read] }`,
        beta: `credentials:
  chain:
    - { when: user, strategy: token-exchange, resource: ${UPSTREAM_B} }
    - { when: app, strategy: client-credentials, resource: ${UPSTREAM_B}, scope: [tools.read] }`,
      },
    })
  })
  afterAll(async () => {
    await s?.close()
    await s?.as.close()
  })

  it('TX-01 / TX-08 / AUD-04 / ATK-31 / the upstream gets an exchanged JWT for itself, same sub, act = mcp-warden; never the caller token, streaming included', async () => {
    s.alpha.reset()
    const token = await s.token({ scope: 'tools.read tools.write' })
    const c = await connect(s, 'alpha', token)
    const r = await c.client.callTool({ name: 'whoami', arguments: {} })
    const echoed = JSON.parse((r.content as Array<{ text: string }>)[0]!.text) as Record<string, string>
    const progress: number[] = []
    const streamed = await c.client.callTool({ name: 'count_slowly', arguments: { n: 3, delayMs: 20 } }, undefined, { onprogress: (p) => progress.push(p.progress) })
    expect(streamed).toMatchObject({ content: [{ text: 'counted to 3' }] })
    expect(progress).toEqual([1, 2, 3])
    await c.close()

    const downstream = bearerOf(echoed)!
    expect(downstream).toBeDefined()
    expect(downstream).not.toBe(token)
    const { payload, protectedHeader } = await jwtVerify(downstream, createRemoteJWKSet(new URL(s.as.jwksUri)), { issuer: s.as.issuer, audience: UPSTREAM_A })
    expect(protectedHeader.typ).toBe('at+jwt')
    expect(payload.sub).toBe(decodeJwt(token).sub)
    expect(payload.act).toEqual({ sub: 'mcp-warden' })
    expect(payload.client_id).toBe('mcp-warden')
    expect(payload.aud).not.toContain(s.resource.alpha)
    // Narrowed: the caller held tools.read and tools.write, the mapping grants only tools.read upstream.
    expect(payload.scope).toBe('tools.read')
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(3600)
    expect(s.alpha.requests.length).toBeGreaterThanOrEqual(4)
    expect(s.alpha.sawString(token)).toBe(false)
    expect(s.alpha.sawString(token.split('.')[2]!)).toBe(false)
    expect(bearersSeen(s.alpha)).toEqual([downstream])

    const audit = s.logLines().filter((l) => l.audit).map((l) => l.audit as Record<string, unknown>)
    const last = audit.at(-1)!
    expect(last.credential).toMatchObject({ strategy: 'token-exchange', tokenId: payload.jti })
    const logText = s.logs.join('\n')
    expect(logText).not.toContain(downstream.split('.')[2]!)
    expect(logText).not.toContain(token.split('.')[2]!)
  })

  it('TX-06 / N concurrent first requests cause one exchange; another user gets their own', async () => {
    const token = await s.token()
    const before = s.as.counters.tokenExchange
    const cache = (layer: string, result: string) => metric(s, 'mcp_warden_credential_cache_total', { layer, result })
    const [memMiss, sharedMiss, memHit] = [await cache('memory', 'miss'), await cache('shared', 'miss'), await cache('memory', 'hit')]
    s.alpha.reset()
    const answers = await Promise.all(Array.from({ length: 8 }, () => post(s, 'alpha', token)))
    for (const a of answers) {
      expect(a.status).toBe(200)
      await a.text()
    }
    expect(s.as.counters.tokenExchange - before).toBe(1)
    expect(bearersSeen(s.alpha)).toHaveLength(1)
    // The misses in memory (all eight, unless one arrives after the token is cached) are coalesced
    // into one Redis lookup and one exchange (single flight).
    const misses = (await cache('memory', 'miss')) - memMiss
    const hits = (await cache('memory', 'hit')) - memHit
    expect(misses).toBeGreaterThanOrEqual(2)
    expect(misses + hits).toBe(8)
    expect(await cache('shared', 'miss')).toBe(sharedMiss + 1)
    expect((await post(s, 'alpha', token)).status).toBe(200)
    expect(s.as.counters.tokenExchange - before).toBe(1)
    expect(await cache('memory', 'hit')).toBe(memHit + hits + 1)

    const bob = await s.token({ subject: 'bob' })
    expect((await post(s, 'alpha', bob)).status).toBe(200)
    expect(s.as.counters.tokenExchange - before).toBe(2)
    const seen = bearersSeen(s.alpha)
    expect(seen).toHaveLength(2)
    expect(seen.map((t) => decodeJwt(t).sub).sort()).toEqual(['alice', 'bob'])
  })

  it('TX-06 / a second gateway instance on the same Redis reuses the issued token', async () => {
    const token = await s.token()
    s.alpha.reset()
    expect((await post(s, 'alpha', token)).status).toBe(200)
    const before = s.as.counters.tokenExchange
    const replica = await buildGateway(s.gateway.config, { logger: pino({ level: 'silent' }) })
    try {
      const res = await replica.app.inject({ method: 'POST', url: '/mcp/alpha', headers: { ...MCP_HEADERS, host: new URL(s.url).host, authorization: `Bearer ${token}` }, payload: INIT })
      expect(res.statusCode).toBe(200)
      expect(s.as.counters.tokenExchange).toBe(before)
      expect(bearersSeen(s.alpha)).toHaveLength(1)
      const shared = (await replica.metrics.registry.getSingleMetric('mcp_warden_credential_cache_total')?.get())?.values.find((v) => v.labels.layer === 'shared' && v.labels.result === 'hit')
      expect(shared?.value).toBe(1)
    } finally {
      await replica.close()
    }
  })

  it('TX-06 / Redis holds no plaintext token: keys are digests, values sealed', async () => {
    const redis = new Redis(s.redis!.url)
    try {
      const keys: string[] = []
      let cursor = '0'
      do {
        const [next, batch] = await redis.scan(cursor, 'COUNT', 1000)
        cursor = next
        keys.push(...batch)
      } while (cursor !== '0')
      const credKeys = keys.filter((k) => k.startsWith('mcpw:cred:'))
      expect(credKeys.length).toBeGreaterThanOrEqual(3)
      const values = await Promise.all(keys.map(async (k) => ((await redis.type(k)) === 'string' ? ((await redis.get(k)) ?? '') : '')))
      const dump = [...keys, ...values].join('\n')
      const secrets = [...bearersSeen(s.alpha), ...bearersSeen(s.beta)]
      expect(secrets.length).toBeGreaterThan(0)
      for (const t of secrets) {
        expect(dump).not.toContain(t)
        for (const part of t.split('.')) expect(dump).not.toContain(part)
      }
      expect(dump).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/)
      for (const v of values.filter((_, i) => keys[i]!.startsWith('mcpw:cred:'))) expect(v.startsWith('v1.')).toBe(true)
    } finally {
      redis.disconnect()
    }
  })

  it('chain / a user token is exchanged, an app-only token gets client credentials; audit names the strategy', async () => {
    s.beta.reset()
    const user = await s.token({ route: 'beta' })
    const asUser = bearerOf(await whoami(s, 'beta', user))!
    expect(decodeJwt(asUser)).toMatchObject({ aud: UPSTREAM_B, sub: 'alice', act: { sub: 'mcp-warden' } })

    const appOnly = (await s.as.clientCredentialsToken({ resource: s.resource.beta, scope: 'tools.read' })).access_token
    const ccBefore = s.as.counters.token.byGrantType.client_credentials ?? 0
    const asApp = bearerOf(await whoami(s, 'beta', appOnly))!
    const claims = decodeJwt(asApp)
    expect(claims).toMatchObject({ aud: UPSTREAM_B, sub: 'mcp-warden', client_id: 'mcp-warden' })
    expect(claims.act).toBeUndefined()
    expect(asApp).not.toBe(appOnly)
    // One client-credentials grant serves the whole session (initialize, notifications, call).
    expect((s.as.counters.token.byGrantType.client_credentials ?? 0) - ccBefore).toBe(1)
    expect(s.beta.sawString(user)).toBe(false)
    expect(s.beta.sawString(appOnly)).toBe(false)
    const audit = s.logLines().filter((l) => (l.audit as { route?: string } | undefined)?.route === 'beta').map((l) => l.audit as { credential?: { strategy: string }; principal?: { userPresent: boolean } })
    expect(audit.some((a) => a.credential?.strategy === 'client-credentials' && a.principal?.userPresent === false)).toBe(true)
    expect(audit.some((a) => a.credential?.strategy === 'token-exchange' && a.principal?.userPresent === true)).toBe(true)
  })
})

describe('misbehaving and failing authorization servers', () => {
  let s: Stack
  let shim: Server
  let mode = 'forward'
  const description = 'secret-internal-description'
  beforeAll(async () => {
    const as = await startAuthorizationServer()
    // A token endpoint in front of the real AS that can misbehave on demand.
    shim = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const form = new URLSearchParams(Buffer.concat(chunks).toString())
        const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
        switch (mode) {
          case 'echo':
            return json(200, { access_token: form.get('subject_token'), token_type: 'Bearer', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', expires_in: 300 })
          case 'wrong-audience':
            form.set('resource', UPSTREAM_B)
            break
          case 'invalid_grant':
          case 'invalid_target':
            return json(400, { error: mode, error_description: description })
          case 'html':
            return res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>')
          case 'no-lifetime':
            return json(200, { access_token: 'opaque-token-value', token_type: 'Bearer', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' })
          case 'down':
            return json(503, { error: 'temporarily_unavailable', error_description: description })
          case 'reset':
            return req.socket.destroy()
        }
        void fetch(as.tokenEndpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: String(req.headers.authorization) }, body: form }).then(async (r) =>
          res.writeHead(r.status, { 'content-type': 'application/json' }).end(await r.text()),
        )
      })
    })
    await new Promise<void>((r) => shim.listen(0, '127.0.0.1', r))
    s = await startStack({
      as,
      issuerExtra: `${basicClient(as.gateway.clientSecret)}\ntokenEndpoint: http://127.0.0.1:${(shim.address() as AddressInfo).port}/token`,
      routeExtras: { alpha: `credentials: { strategy: token-exchange, resource: ${UPSTREAM_A} }` },
    })
  })
  afterAll(async () => {
    await s?.close()
    await s?.as.close()
    shim?.closeAllConnections()
    await new Promise((r) => shim?.close(r))
  })

  it('forwarding shim works (control)', async () => {
    mode = 'forward'
    expect((await post(s, 'alpha', await s.token())).status).toBe(200)
  })

  const cases: Array<{ mode: string; status: number; code: string; outcome: string; id: string }> = [
    { id: 'ATK-32 / TX-09 / AS echoes the subject token', mode: 'echo', status: 502, code: 'GW_EXCHANGE_FAILED', outcome: 'invalid-response' },
    { id: 'ATK-32 / AS issues a token for another upstream', mode: 'wrong-audience', status: 502, code: 'GW_EXCHANGE_FAILED', outcome: 'invalid-response' },
    { id: 'TX-05 / malformed (non-JSON) response', mode: 'html', status: 502, code: 'GW_EXCHANGE_FAILED', outcome: 'error' },
    { id: 'TX-05 / no expires_in and not a JWT', mode: 'no-lifetime', status: 502, code: 'GW_EXCHANGE_FAILED', outcome: 'invalid-response' },
    { id: 'TX-07 / invalid_target', mode: 'invalid_target', status: 403, code: 'GW_EXCHANGE_FORBIDDEN', outcome: 'forbidden' },
    { id: 'AS answers 503', mode: 'down', status: 503, code: 'GW_EXCHANGE_UNAVAILABLE', outcome: 'unavailable' },
    { id: 'AS resets the connection', mode: 'reset', status: 503, code: 'GW_EXCHANGE_UNAVAILABLE', outcome: 'unavailable' },
  ]
  for (const c of cases) {
    it(`${c.id} → ${c.status}, upstream not called, nothing secret in the answer`, async () => {
      mode = c.mode
      const token = await s.token()
      s.alpha.reset()
      const outcomeBefore = await metric(s, 'mcp_warden_credential_requests_total', { route: 'alpha', outcome: c.outcome })
      const res = await post(s, 'alpha', token)
      const text = await res.text()
      expect(res.status).toBe(c.status)
      const body = JSON.parse(text) as { id: unknown; error: { data: { code: string } } }
      expect(body.id).toBe(1)
      expect(body.error.data.code).toBe(c.code)
      expect(s.alpha.requests).toHaveLength(0)
      expect(text).not.toContain(description)
      expect(text).not.toContain(token.split('.')[2]!)
      expect(await metric(s, 'mcp_warden_credential_requests_total', { route: 'alpha', outcome: c.outcome })).toBe(outcomeBefore + 1)
      const logged = s.logLines().filter((l) => l.event === 'credentials.failed').at(-1)
      expect(logged).toMatchObject({ route: 'alpha', outcome: c.outcome })
      expect(s.logs.join('\n')).not.toContain(description)
      expect(s.logs.join('\n')).not.toContain(token.split('.')[2]!)
    })
  }

  it('TX-07 / invalid_grant → 401 invalid_token (re-authenticate), never a retry with the original token', async () => {
    mode = 'invalid_grant'
    const token = await s.token()
    s.alpha.reset()
    const res = await post(s, 'alpha', token)
    expect(res.status).toBe(401)
    expect(parseChallenge(res.headers.get('www-authenticate'))?.params.error).toBe('invalid_token')
    expect(await res.text()).not.toContain(description)
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('TX-10 / a subject token whose may_act names someone else is not exchanged', async () => {
    mode = 'forward'
    const now = Math.floor(Date.now() / 1000)
    const token = await s.as.signJwt({ iss: s.as.issuer, sub: 'alice', aud: s.resource.alpha, client_id: 'demo-agent', scope: 'tools.read', iat: now, exp: now + 300, jti: 'm1', may_act: { sub: 'other-service' } })
    const before = s.as.counters.token.total
    s.alpha.reset()
    const res = await post(s, 'alpha', token)
    expect(res.status).toBe(403)
    expect(s.as.counters.token.total).toBe(before)
    expect(s.alpha.requests).toHaveLength(0)
  })
})

describe('token lifetimes (AS issues 3 s tokens)', () => {
  let s: Stack
  beforeAll(async () => {
    const as = await startAuthorizationServer({ accessTokenTTL: 3 })
    s = await startStack({
      as,
      issuerExtra: basicClient(as.gateway.clientSecret),
      routeExtras: {
        alpha: `credentials: { strategy: client-credentials, resource: ${UPSTREAM_A}, safetyMargin: 1s }`,
        beta: `credentials: { strategy: token-exchange, resource: ${UPSTREAM_B}, safetyMargin: 1s }`,
      },
    })
  })
  afterAll(async () => {
    await s?.close()
    await s?.as.close()
  })

  it('an expired cache entry is refreshed; an exchanged token is never reused past the caller token exp (real invalid_grant)', async () => {
    const cc = () => s.as.counters.token.byGrantType.client_credentials ?? 0
    const first = await s.token()
    const subject = await s.token({ route: 'beta' })
    const subjectExp = decodeJwt(subject).exp!
    expect((await post(s, 'alpha', first)).status).toBe(200)
    expect((await post(s, 'beta', subject)).status).toBe(200)
    expect(cc()).toBe(1)
    expect(s.as.counters.tokenExchange).toBe(1)
    expect((await post(s, 'alpha', first)).status).toBe(200)
    expect(cc()).toBe(1)

    // Past the caller token's exp (still inside the gateway's 30 s clock skew) and past
    // expires_in − safetyMargin of the client-credentials token.
    await new Promise((r) => setTimeout(r, Math.max(2100, subjectExp * 1000 - Date.now() + 200)))
    expect((await post(s, 'alpha', await s.token())).status).toBe(200)
    expect(cc()).toBe(2)
    const issued = bearersSeen(s.alpha)
    expect(issued).toHaveLength(2)

    s.beta.reset()
    const res = await post(s, 'beta', subject)
    expect(res.status).toBe(401)
    expect(s.as.counters.token.byGrantType['urn:ietf:params:oauth:grant-type:token-exchange']).toBe(2)
    expect(s.beta.requests).toHaveLength(0)
  })
})

describe('private_key_jwt and actor tokens', () => {
  let s: Stack
  beforeAll(async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true })
    const pub = { ...(await exportJWK(publicKey)), kid: 'gw-1', alg: 'RS256', use: 'sig' }
    const as = await startAuthorizationServer({ gatewayJwks: { keys: [pub] } })
    const pem = (await exportPKCS8(privateKey)).replace(/\n/g, '\\n')
    s = await startStack({
      as,
      issuerExtra: `client: { id: ${GATEWAY_PKJWT_CLIENT_ID}, auth: private_key_jwt, keyId: gw-1, privateKey: { value: "${pem}" } }`,
      routeExtras: {
        alpha: `credentials: { strategy: token-exchange, resource: ${UPSTREAM_A}, actorToken: true, subjectTokenType: jwt }`,
        beta: `credentials: { strategy: client-credentials, resource: ${UPSTREAM_B} }`,
      },
    })
  })
  afterAll(async () => {
    await s?.close()
    await s?.as.close()
  })

  it('TX-04 / TX-08 / exchange and client credentials authenticate with private_key_jwt', async () => {
    const token = await s.token()
    const ex = bearerOf(await whoami(s, 'alpha', token))!
    const { payload } = await jwtVerify(ex, createRemoteJWKSet(new URL(s.as.jwksUri)), { audience: UPSTREAM_A })
    expect(payload).toMatchObject({ sub: 'alice', act: { sub: GATEWAY_PKJWT_CLIENT_ID }, client_id: GATEWAY_PKJWT_CLIENT_ID })
    const cc = bearerOf(await whoami(s, 'beta', await s.token({ route: 'beta' })))!
    expect(decodeJwt(cc)).toMatchObject({ aud: UPSTREAM_B, sub: GATEWAY_PKJWT_CLIENT_ID })
    expect(s.as.serverErrors).toEqual([])
  })
})

describe('static and identity headers', () => {
  let s: Stack
  let verifyKey: CryptoKey
  const apiKey = `k-${randomBytes(12).toString('hex')}`
  beforeAll(async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
    verifyKey = (await importSPKI(await exportSPKI(publicKey), 'ES256')) as CryptoKey
    const pem = (await exportPKCS8(privateKey)).replace(/\n/g, '\\n')
    process.env.MCPW_TEST_API_KEY = apiKey
    s = await startStack({
      routeExtras: {
        alpha: 'credentials: { strategy: static, header: X-Api-Key, value: { fromEnv: MCPW_TEST_API_KEY } }',
        beta: `credentials:
  strategy: identity-headers
  headers: { subject: X-MCP-Subject, agent: X-MCP-Agent, scopes: X-MCP-Scopes }
  jwt: { header: X-MCP-Identity, key: { value: "${pem}" }, keyId: id-1, ttl: 30s }`,
      },
    })
  })
  afterAll(async () => {
    await s?.close()
    delete process.env.MCPW_TEST_API_KEY
  })

  it('static / the legacy upstream gets the API key, never the caller token; the client never sees the key', async () => {
    s.alpha.reset()
    const token = await s.token()
    const echoed = await whoami(s, 'alpha', token)
    expect(echoed['x-api-key']).toBe(apiKey)
    expect(echoed.authorization).toBeUndefined()
    expect(s.alpha.sawString(token)).toBe(false)
    expect(s.logs.join('\n')).not.toContain(apiKey)
    const audit = s.logLines().filter((l) => l.audit).at(-1)!.audit as { credential: unknown }
    expect(audit.credential).toEqual({ strategy: 'static' })
  })

  it('identity-headers / ATK-37 / verified facts and a signed identity JWT; client-sent copies never arrive', async () => {
    s.beta.reset()
    const token = await s.token({ route: 'beta' })
    const echoed = await whoami(s, 'beta', token, { 'x-mcp-subject': 'admin', 'x-mcp-identity': 'forged' })
    expect(echoed['x-mcp-subject']).toBe('alice')
    expect(echoed['x-mcp-agent']).toBe('demo-agent')
    expect(echoed['x-mcp-scopes']).toBe('tools.read')
    expect(echoed.authorization).toBeUndefined()
    const { payload, protectedHeader }: { payload: JWTPayload; protectedHeader: { kid?: string } } = await jwtVerify(echoed['x-mcp-identity']!, verifyKey, { issuer: new URL(s.url).origin, audience: s.beta.url })
    expect(protectedHeader.kid).toBe('id-1')
    expect(payload).toMatchObject({ sub: 'alice', client_id: 'demo-agent', scope: 'tools.read' })
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(30)
    expect(s.beta.sawString(token)).toBe(false)
    expect(s.beta.sawString('forged')).toBe(false)
    expect(s.beta.requests.every((r) => r.headers['x-mcp-subject'] === 'alice')).toBe(true)
  })
})
