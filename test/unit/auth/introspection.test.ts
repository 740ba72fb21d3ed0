/**
 * Introspection decision logic, called directly: response judgement, per-route audience,
 * cache lifetimes, single flight, the concurrency limiter. A small scripted AS (node:http)
 * stands in for the authorization server; the real one is used by the integration tests.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { cacheUntil, IntrospectionVerifier, judgeIntrospection, Limiter, principalForRoute } from '../../../gateway/auth/introspection.js'
import { MemoryStore } from '../../../gateway/store/shared-store.js'
import { loadConfigText, type RuntimeConfig } from '../../../gateway/config/load.js'
import { GatewayError } from '../../../gateway/errors.js'
import { createMetrics } from '../../../gateway/observability/metrics.js'

const AS = 'https://as.example.com'
const RES_A = 'https://gw.example.com/mcp/alpha'
const RES_B = 'https://gw.example.com/mcp/beta'
const T0 = 1_900_000_000_000
const NOW_SEC = T0 / 1000

interface Recorded {
  method: string
  url: string
  headers: IncomingHttpHeaders
  form: URLSearchParams
}

let server: Server
/** Replaced once the scripted AS listens; config built at collection time only needs a URL. */
let asUrl = 'http://127.0.0.1:9'
let answer: (form: URLSearchParams, path: string) => { status: number; body: string } = () => ({ status: 200, body: '{"active":false}' })
const recorded: Recorded[] = []

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString())
      recorded.push({ method: req.method!, url: req.url!, headers: req.headers, form })
      const a = answer(form, req.url!)
      res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  asUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((r) => server.close(() => r())))
beforeEach(() => {
  recorded.length = 0
})

/** OT from the checklist fixtures: an active opaque token for RES_A. */
const OT = (over: Record<string, unknown> = {}) => ({ active: true, iss: AS, aud: RES_A, sub: 'u1', client_id: 'c1', scope: 'tools.read', exp: NOW_SEC + 300, token_type: 'Bearer', ...over })

function config(introspection = '{}', second = false): RuntimeConfig {
  const issuer = (name: string, path: string) => `  ${name}:
    issuer: ${name === 'corp' ? AS : 'https://other.example.com'}
    validation: introspection
    introspectionEndpoint: ${asUrl}${path}
    client: { id: mcp-warden, secret: { value: s3cret } }
    introspection: ${introspection}
`
  return loadConfigText(
    'gw.yaml',
    `server:
  publicUrl: https://gw.example.com
  listen: { port: 8080 }
admin:
  listen: { port: 9090 }
issuers:
${issuer('corp', '/introspect')}${second ? issuer('other', '/other') : ''}routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: http://127.0.0.1:3000/mcp }
    issuers: [corp${second ? ', other' : ''}]
  - name: beta
    path: /mcp/beta
    upstream: { url: http://127.0.0.1:3001/mcp }
    issuers: [corp]
`,
    { env: {} },
  ).config
}

function verifier(cfg: RuntimeConfig, clock = { now: T0 }) {
  const metrics = createMetrics()
  const v = new IntrospectionVerifier(cfg.issuers.values(), { store: new MemoryStore(), logger: pino({ level: 'silent' }), metrics, discover: () => Promise.reject(new Error('no discovery')), now: () => clock.now })
  const route = (name: string) => cfg.routes.find((r) => r.name === name)!
  const issuers = (name: string) => route(name).issuers.map((n) => cfg.issuers.get(n)!)
  return { v, metrics, clock, verify: (token: string, r = 'alpha') => v.verify(token, route(r), issuers(r)) }
}

const reply = (body: unknown, status = 200) => () => ({ status, body: typeof body === 'string' ? body : JSON.stringify(body) })

describe('judgeIntrospection', () => {
  const issuer = () => config().issuers.get('corp')!

  it('INT-03 / only the JSON boolean true is active', () => {
    expect(judgeIntrospection(OT(), issuer(), NOW_SEC).active).toBe(true)
    for (const body of [{ active: 'true' }, { active: false }, {}, { ...OT(), active: 1 }]) {
      expect(judgeIntrospection(body as Record<string, unknown>, issuer(), NOW_SEC)).toMatchObject({ active: false, reason: 'auth-invalid' })
    }
  })

  it('INT-04 / iss must match when present; aud, exp and client_id are required; exp and nbf are enforced', () => {
    const cases: [Record<string, unknown>, string][] = [
      [OT({ iss: 'https://evil.example' }), 'auth-issuer'],
      [OT({ aud: undefined }), 'auth-audience'],
      [OT({ aud: [] }), 'auth-audience'],
      [OT({ exp: undefined }), 'auth-invalid'],
      [OT({ exp: NOW_SEC - 120 }), 'auth-expired'],
      [OT({ nbf: NOW_SEC + 120 }), 'auth-expired'],
      [OT({ client_id: undefined }), 'auth-invalid'],
      [OT({ scope: ['tools.read'] }), 'auth-invalid'],
    ]
    for (const [body, reason] of cases) expect(judgeIntrospection(JSON.parse(JSON.stringify(body)), issuer(), NOW_SEC), JSON.stringify(body)).toMatchObject({ active: false, reason })
    expect(judgeIntrospection(OT({ iss: undefined }), issuer(), NOW_SEC).active).toBe(true)
  })

  it('INT-09 / a token bound to a key, or that is not a bearer access token, is refused', () => {
    for (const over of [{ cnf: { jkt: 'abc' } }, { token_type: 'DPoP' }, { token_type: 'refresh_token' }]) {
      expect(judgeIntrospection(OT(over), issuer(), NOW_SEC)).toMatchObject({ active: false, reason: 'auth-type' })
    }
  })
})

describe('principalForRoute', () => {
  const cfg = config()
  const iss = cfg.issuers.get('corp')!

  it('AUD-01 / the audience is checked against each route', () => {
    expect(() => principalForRoute(OT(), iss, cfg.routes[1]!)).toThrow(GatewayError)
    expect(principalForRoute(OT({ aud: [RES_B, RES_A] }), iss, cfg.routes[0]!).audience).toEqual([RES_B, RES_A])
  })

  it('feeds the same principal model as JWTs', () => {
    const p = principalForRoute(OT({ act: { sub: 'agent-x', act: { sub: 'agent-y' } }, authorization_details: [{ type: 't' }] }), iss, cfg.routes[0]!)
    expect(p).toMatchObject({ tokenKind: 'opaque', issuerName: 'corp', issuer: AS, subject: 'u1', clientId: 'c1', actor: 'agent-x', delegationChain: ['agent-x', 'agent-y'], userPresent: true, expiresAt: NOW_SEC + 300, authorizationDetails: [{ type: 't' }] })
    expect([...p.scopes]).toEqual(['tools.read'])
    // App-only (client credentials): no sub, the client stands in and no user is present.
    const app = principalForRoute(OT({ sub: undefined, iss: undefined }), iss, cfg.routes[0]!)
    expect(app).toMatchObject({ subject: 'c1', userPresent: false, issuer: AS })
  })
})

describe('cacheUntil', () => {
  it('INT-05/06 / positive results until min(exp, now + maxTtl); refusals for negativeTtl', () => {
    const iss = config('{ cache: { maxTtl: 60s, negativeTtl: 2s } }').issuers.get('corp')!
    expect(cacheUntil({ active: true, claims: OT({ exp: NOW_SEC + 3 }) }, iss, T0)).toBe(T0 + 3000)
    expect(cacheUntil({ active: true, claims: OT() }, iss, T0)).toBe(T0 + 60_000)
    expect(cacheUntil({ active: false, reason: 'auth-invalid', detail: 'inactive' }, iss, T0)).toBe(T0 + 2000)
  })

  it('config refuses a negativeTtl above 10s, and introspection without client credentials', () => {
    expect(() => config('{ cache: { negativeTtl: 11s } }')).toThrow(/gw\.yaml:\d+:\d+ .*negativeTtl may be at most 10s/)
    const text = `server: { publicUrl: https://gw.example.com, listen: { port: 1 } }
admin: { listen: { port: 2 } }
issuers:
  corp: { issuer: ${AS}, validation: both, discovery: false, jwksUri: ${AS}/jwks }
routes: [{ name: a, path: /a, upstream: { url: http://127.0.0.1:3/ }, issuers: [corp] }]
`
    expect(() => loadConfigText('gw.yaml', text, { env: {} })).toThrow(/needs client credentials[\s\S]*needs introspectionEndpoint, or discovery/)
  })
})

describe('IntrospectionVerifier', () => {
  it('INT-01/02 / POSTs the token in a form body with a hint, authenticated, never in the URL', async () => {
    answer = reply(OT())
    const { verify } = verifier(config())
    const p = await verify('opq-1')
    expect(p.subject).toBe('u1')
    expect(recorded).toHaveLength(1)
    const r = recorded[0]!
    expect(r.method).toBe('POST')
    expect(r.url).toBe('/introspect')
    expect(r.headers['content-type']).toBe('application/x-www-form-urlencoded')
    expect(r.form.get('token')).toBe('opq-1')
    expect(r.form.get('token_type_hint')).toBe('access_token')
    expect(r.headers.authorization).toBe(`Basic ${Buffer.from('mcp-warden:s3cret').toString('base64')}`)
  })

  it('INT-05 / a cached result is reused until exp, then introspected again', async () => {
    answer = reply(OT({ exp: NOW_SEC + 3 }))
    const { verify, clock } = verifier(config('{ cache: { maxTtl: 60s } }'))
    await verify('opq-1')
    clock.now = T0 + 1000
    await verify('opq-1')
    expect(recorded).toHaveLength(1)
    clock.now = T0 + 5000
    answer = reply({ active: false })
    await expect(verify('opq-1')).rejects.toMatchObject({ code: 'GW_AUTH_INVALID_TOKEN' })
    expect(recorded).toHaveLength(2)
  })

  it('the cache can be turned off per issuer; concurrent lookups of one token still coalesce', async () => {
    answer = reply(OT())
    const { verify } = verifier(config('{ cache: { enabled: false } }'))
    await verify('opq-1')
    await verify('opq-1')
    expect(recorded).toHaveLength(2)
    await Promise.all(Array.from({ length: 10 }, () => verify('opq-2')))
    expect(recorded).toHaveLength(3)
  })

  it('INT-07 / a 5xx, a non-JSON answer or a non-object is a failure (503 with Retry-After), never cached', async () => {
    const { verify } = verifier(config())
    for (const a of [reply({ error: 'server_error' }, 500), reply('<html>oops</html>'), reply('[true]'), reply({ error: 'invalid_client' }, 401)]) {
      answer = a
      await expect(verify('opq-1')).rejects.toMatchObject({ code: 'GW_AUTH_UNAVAILABLE', statusCode: 503, retryAfter: expect.any(Number) })
    }
    answer = reply(OT())
    expect((await verify('opq-1')).subject).toBe('u1')
  })

  it('INT-03 / {"active":"true"} is an invalid token, not an error', async () => {
    answer = reply({ active: 'true' })
    await expect(verifier(config()).verify('opq-1')).rejects.toMatchObject({ code: 'GW_AUTH_INVALID_TOKEN' })
  })

  it('several issuers: tried in order; one that could not be asked makes a refusal 503', async () => {
    answer = (_f, path) => (path === '/introspect' ? reply({ active: false })() : reply(OT({ iss: 'https://other.example.com' }))())
    const { verify } = verifier(config('{}', true))
    expect((await verify('opq-1')).issuerName).toBe('other')
    answer = (_f, path) => (path === '/introspect' ? reply({ active: false })() : reply('', 502)())
    await expect(verify('opq-2')).rejects.toMatchObject({ code: 'GW_AUTH_UNAVAILABLE' })
  })

  it('metrics count calls, outcomes and cache layers', async () => {
    answer = reply(OT())
    const { verify, metrics } = verifier(config())
    await verify('opq-1')
    await verify('opq-1')
    const calls = await metrics.registry.getSingleMetricAsString('mcp_warden_introspections_total')
    expect(calls).toContain('mcp_warden_introspections_total{issuer="corp",outcome="active"} 1')
    const cache = await metrics.registry.getSingleMetricAsString('mcp_warden_introspection_cache_total')
    expect(cache).toContain('layer="memory"} 1')
    expect(cache).toContain('layer="miss"} 1')
  })
})

describe('Limiter', () => {
  it('INT-10 / at most max in flight, a bounded queue, the rest shed; slots pass to waiters', async () => {
    const l = new Limiter(2, 1)
    const a = await l.acquire(1000)
    const b = await l.acquire(1000)
    expect(a && b).toBeTruthy()
    const queued = l.acquire(1000)
    expect(await l.acquire(1000)).toBeUndefined()
    a!()
    a!()
    const c = await queued
    expect(c).toBeTypeOf('function')
    expect(l.active).toBe(2)
    b!()
    c!()
    expect(l.active).toBe(0)
  })

  it('a waiter that waits longer than its limit is shed', async () => {
    const l = new Limiter(1, 5)
    const a = await l.acquire(1000)
    expect(await l.acquire(20)).toBeUndefined()
    a!()
    expect(l.active).toBe(0)
  })
})
