/**
 * Opaque tokens through RFC 7662 introspection, black-box: a real oidc-provider AS issuing
 * opaque tokens for the routes' resources, its introspection and revocation endpoints, a real
 * redis-server shared by two gateway instances, and the MCP SDK client. Checklist sections 6
 * (INT) and 7 (AUD). Faults are injected by a pass-through hop in front of the AS's
 * introspection endpoint that can delay, drop or garble answers.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../demo/authorization-server.js'
import { startRedis, type RedisInstance } from '../helpers/redis.js'
import { INIT, listenerYaml, MCP_HEADERS, parseChallenge, type Stack, startStack } from '../helpers/stack.js'

const PUBLIC = 'https://gw.example.test'
const RES = { alpha: `${PUBLIC}/mcp/alpha`, beta: `${PUBLIC}/mcp/beta` }
/** The revocation window configured for the shared-cache gateways. */
const MAX_TTL_MS = 2000

interface Hop {
  url: string
  mode: 'pass' | 'down' | 'garbage'
  delayMs: number
  calls: number
  inFlight: number
  maxInFlight: number
  close(): Promise<void>
}

/** Forwards introspection requests to the real AS, unless told to fail. */
async function startHop(target: string): Promise<Hop> {
  const server: Server = createServer((req, res) => {
    hop.calls++
    hop.inFlight++
    hop.maxInFlight = Math.max(hop.maxInFlight, hop.inFlight)
    // In flight while the gateway still waits: a call it abandoned (timeout) closes the socket and
    // stops counting then, not when this hop finishes its artificial delay.
    res.once('close', () => hop.inFlight--)
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        try {
          if (hop.delayMs > 0) await new Promise((r) => setTimeout(r, hop.delayMs))
          if (hop.mode === 'down') return req.socket.destroy()
          if (hop.mode === 'garbage') return res.writeHead(200, { 'content-type': 'application/json' }).end('<html>gateway timeout</html>')
          const r = await fetch(target, { method: 'POST', headers: { 'content-type': req.headers['content-type'] ?? '', authorization: req.headers.authorization ?? '' }, body: Buffer.concat(chunks) })
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await r.arrayBuffer()))
        } catch {
          req.socket.destroy()
        }
      })()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const hop: Hop = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`,
    mode: 'pass',
    delayMs: 0,
    calls: 0,
    inFlight: 0,
    maxInFlight: 0,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
  return hop
}

function gatewayYaml(as: AuthorizationServer, o: { introspection: string; endpoint?: string }) {
  return (ctx: { port: number; adminPort: number; issuer: string; alpha: string; beta: string; redisUrl?: string }) => `${listenerYaml({ publicUrl: PUBLIC, port: ctx.port, adminPort: ctx.adminPort, shutdownGrace: '1s', serverExtra: `allowedHosts: ['127.0.0.1:${ctx.port}']` })}issuers:
  demo:
    issuer: ${ctx.issuer}
    validation: both
    jwks: { cooldown: 5s }
    client: { id: ${as.gateway.clientId}, secret: { value: "${as.gateway.clientSecret}" } }
${o.endpoint ? `    introspectionEndpoint: ${o.endpoint}\n` : ''}    introspection: ${o.introspection}
routes:
${(['alpha', 'beta'] as const).map((n) => `  - { name: ${n}, path: /mcp/${n}, resource: ${RES[n]}, upstream: { url: ${ctx[n]}, timeout: 5s }, issuers: [demo], scopesSupported: [tools.read] }\n`).join('')}${ctx.redisUrl ? `cache:\n  redis: { url: ${ctx.redisUrl} }\n` : ''}logging: { level: info }
`
}

let as: AuthorizationServer
let redis: RedisInstance
let s1: Stack
let s2: Stack

const opaque = async (resource = RES.alpha) => (await as.getToken({ resource, scope: 'tools.read' })).access_token
const call = (s: Stack, token: string, path = '/mcp/alpha') => fetch(`${s.url}${path}`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: INIT })

beforeAll(async () => {
  as = await startAuthorizationServer({ resources: { [RES.alpha]: { scopes: ['tools.read'], format: 'opaque' }, [RES.beta]: { scopes: ['tools.read'], format: 'opaque' } } })
  redis = await startRedis()
  const yaml = gatewayYaml(as, { introspection: `{ cache: { maxTtl: ${MAX_TTL_MS}ms, negativeTtl: 1s } }` })
  s1 = await startStack({ as, redis, yaml })
  s2 = await startStack({ as, redis, yaml })
})
afterAll(async () => {
  await s2?.close()
  await s1?.close()
  await redis?.stop()
  await as?.close()
})

describe('opaque tokens end to end', () => {
  it('INT-01/02 / an opaque token works through the gateway with the MCP SDK client, introspected once', async () => {
    const token = await opaque()
    expect(token.split('.')).toHaveLength(1)
    s1.alpha.reset()
    const before = as.counters.introspection
    const client = new Client({ name: 'int-test', version: '1.0.0' })
    const transport = new StreamableHTTPClientTransport(new URL(`${s1.url}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${token}` } } })
    await client.connect(transport)
    const { tools } = await client.listTools()
    expect(tools.map((t) => t.name)).toContain('whoami')
    expect(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })).toMatchObject({ content: [{ type: 'text', text: '5' }] })
    await client.close()
    // initialize, notifications/initialized, tools/list, tools/call, DELETE: one AS call in all.
    expect(as.counters.introspection - before).toBe(1)
    expect(s1.alpha.sawString(token)).toBe(false)
    expect(s1.logs.join('\n')).not.toContain(token)
    const audit = s1.logLines().find((l) => (l.audit as { principal?: { tokenKind?: string } } | undefined)?.principal?.tokenKind === 'opaque')
    expect(audit).toBeDefined()
    expect(as.serverErrors).toEqual([])
  })

  it('INT-03 / CHL-03 / an unknown token → 401 invalid_token; repeats within negativeTtl cost the AS nothing', async () => {
    s1.alpha.reset()
    const before = as.counters.introspection
    for (let i = 0; i < 3; i++) {
      const res = await call(s1, 'no-such-token-0123456789')
      expect(res.status).toBe(401)
      expect(parseChallenge(res.headers.get('www-authenticate'))?.params.error).toBe('invalid_token')
    }
    expect(as.counters.introspection - before).toBe(1)
    expect(s1.alpha.requests).toHaveLength(0)
  })

  it('INT-04 / AUD-01 / an active token for another route\'s resource is refused', async () => {
    const forBeta = await opaque(RES.beta)
    expect((await as.introspect(forBeta)).active).toBe(true)
    s1.alpha.reset()
    const res = await call(s1, forBeta, '/mcp/alpha')
    expect(res.status).toBe(401)
    expect(parseChallenge(res.headers.get('www-authenticate'))?.params.error).toBe('invalid_token')
    expect(s1.alpha.requests).toHaveLength(0)
    // Served from the cache this time, and the audience is still checked per route.
    expect((await call(s1, forBeta, '/mcp/beta')).status).toBe(200)
    expect((await call(s1, forBeta, '/mcp/alpha')).status).toBe(401)
  })

  it('INT-08 / JWT and opaque side by side: a JWS from the JWT issuer is verified locally, never introspected', async () => {
    const now = Math.floor(Date.now() / 1000)
    const claims = { iss: as.issuer, aud: RES.alpha, sub: 'bob', client_id: 'demo-agent', scope: 'tools.read', iat: now, exp: now + 300, jti: crypto.randomUUID() }
    const jwt = await as.signJwt(claims)
    const before = as.counters.introspection
    expect((await call(s1, jwt)).status).toBe(200)
    expect((await call(s1, await opaque())).status).toBe(200)
    const [h, p] = jwt.split('.')
    const badSig = `${h}.${p}.${Buffer.from('not the signature').toString('base64url')}`
    expect((await call(s1, badSig)).status).toBe(401)
    // Only the opaque token reached the introspection endpoint.
    expect(as.counters.introspection - before).toBe(1)
  })

  it('INT-05/06 / a revoked token stops working within the revocation window', async () => {
    const token = await opaque()
    expect((await call(s1, token)).status).toBe(200)
    expect((await call(s2, token)).status).toBe(200)
    await as.revoke(token)
    const revokedAt = Date.now()
    const stoppedAt = { s1: 0, s2: 0 }
    while (Date.now() - revokedAt < MAX_TTL_MS + 3000 && (!stoppedAt.s1 || !stoppedAt.s2)) {
      for (const [name, s] of [['s1', s1], ['s2', s2]] as const) {
        if (!stoppedAt[name] && (await call(s, token)).status === 401) stoppedAt[name] = Date.now()
      }
      await new Promise((r) => setTimeout(r, 50))
    }
    const window = { s1: stoppedAt.s1 - revokedAt, s2: stoppedAt.s2 - revokedAt }
    console.info(`revocation took effect after ${window.s1} ms (gateway 1) and ${window.s2} ms (gateway 2); maxTtl ${MAX_TTL_MS} ms`)
    expect(stoppedAt.s1).toBeGreaterThan(0)
    expect(stoppedAt.s2).toBeGreaterThan(0)
    // The bound is the configured window (plus one polling round), never longer.
    expect(window.s1).toBeLessThanOrEqual(MAX_TTL_MS + 1000)
    expect(window.s2).toBeLessThanOrEqual(MAX_TTL_MS + 1000)
  })

  it('a token introspected by one gateway instance is served from the shared cache by the other', async () => {
    const token = await opaque()
    const before = as.counters.introspection
    expect((await call(s1, token)).status).toBe(200)
    expect(as.counters.introspection - before).toBe(1)
    for (let i = 0; i < 5; i++) expect((await call(s2, token)).status).toBe(200)
    expect(as.counters.introspection - before).toBe(1)
    const m = await s2.gateway.metrics.registry.getSingleMetricAsString('mcp_warden_introspection_cache_total')
    expect(m).toMatch(/layer="redis"\} [1-9]/)
    expect(m).toMatch(/layer="memory"\} [1-9]/)
  })

  it('INT-10 / concurrent requests with one new token coalesce into one introspection', async () => {
    const token = await opaque()
    const before = as.counters.introspection
    const statuses = await Promise.all(Array.from({ length: 20 }, () => call(s1, token).then((r) => r.status)))
    expect(statuses.every((st) => st === 200)).toBe(true)
    expect(as.counters.introspection - before).toBe(1)
  })
})

describe('faults', () => {
  let hop: Hop
  let s3: Stack
  const MAX_CONCURRENT = 4
  const MAX_QUEUED = 4

  beforeAll(async () => {
    hop = await startHop(as.introspectionEndpoint)
    s3 = await startStack({ as, yaml: gatewayYaml(as, { endpoint: hop.url, introspection: `{ timeout: 1500ms, maxConcurrent: ${MAX_CONCURRENT}, maxQueued: ${MAX_QUEUED}, cache: { maxTtl: 30s, negativeTtl: 5s } }` }) })
  })
  afterAll(async () => {
    await s3?.close()
    await hop?.close()
  })

  it('INT-07 / AS down → 503 with Retry-After for uncached tokens, cached ones keep working, AS back → recovery', async () => {
    const cached = await opaque()
    const fresh = await opaque()
    expect((await call(s3, cached)).status).toBe(200)
    hop.mode = 'down'
    s3.alpha.reset()
    for (const t of [fresh, 'junk-while-down']) {
      const res = await call(s3, t)
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toMatch(/^[1-9][0-9]*$/)
      expect(parseChallenge(res.headers.get('www-authenticate'))?.params.error).not.toBe('invalid_token')
      expect(((await res.json()) as { error: string }).error).toBe('temporarily_unavailable')
    }
    expect(s3.alpha.requests.every((r) => !r.headers.authorization)).toBe(true)
    expect(s3.alpha.requests).toHaveLength(0)
    expect((await call(s3, cached)).status).toBe(200)
    const ready = (await (await fetch(`${s3.adminUrl}/readyz`)).json()) as Record<string, unknown>
    expect(JSON.stringify(ready)).toContain('introspection')

    hop.mode = 'pass'
    // A failure is never cached: the same token works as soon as the AS answers again.
    expect((await call(s3, fresh)).status).toBe(200)
    expect((await call(s3, 'junk-while-down')).status).toBe(401)
  })

  it('INT-07 / a slow AS (timeout) and a malformed answer are failures, never allows', async () => {
    s3.alpha.reset()
    hop.delayMs = 2500
    const slow = await call(s3, await opaque())
    expect(slow.status).toBe(503)
    hop.delayMs = 0
    hop.mode = 'garbage'
    expect((await call(s3, await opaque())).status).toBe(503)
    hop.mode = 'pass'
    expect(s3.alpha.requests).toHaveLength(0)
  })

  it('INT-10 / a flood of distinct junk tokens reaches the AS at most maxConcurrent at a time', async () => {
    // Requests the gateway gave up on (the timeout test) may still sit at the hop.
    while (hop.inFlight > 0) await new Promise((r) => setTimeout(r, 50))
    hop.delayMs = 700
    hop.maxInFlight = 0
    const callsBefore = hop.calls
    const N = 150
    const statuses = await Promise.all(Array.from({ length: N }, (_, i) => call(s3, `junk-flood-${i}-${crypto.randomUUID()}`).then((r) => r.status)))
    hop.delayMs = 0
    const calls = hop.calls - callsBefore
    console.info(`flood of ${N} distinct junk tokens: ${calls} introspection calls, at most ${hop.maxInFlight} in flight; answers ${JSON.stringify(countBy(statuses))}`)
    expect(statuses.every((st) => st === 401 || st === 503)).toBe(true)
    expect(hop.maxInFlight).toBeLessThanOrEqual(MAX_CONCURRENT)
    expect(calls).toBeLessThan(N)
    // Shed requests say "try later", not "your token is bad".
    expect(statuses.filter((st) => st === 503).length).toBeGreaterThan(0)
    // A legitimate token still works once the flood is over.
    expect((await call(s3, await opaque())).status).toBe(200)
  })
})

function countBy(xs: number[]): Record<number, number> {
  const out: Record<number, number> = {}
  for (const x of xs) out[x] = (out[x] ?? 0) + 1
  return out
}
