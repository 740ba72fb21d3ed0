/**
 * The credential stage's synchronous path (broker.cachedSync): a token exchange already in the
 * in-process cache is answered without a promise, with exactly what `obtain` answers; anything
 * else is left to `obtain`. A local token endpoint stands in for the AS (unit test).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Principal } from '../../gateway/auth/principal.js'
import { MemoryStore } from '../../gateway/store/shared-store.js'
import { loadConfigText } from '../../gateway/config/load.js'
import { GatewayError } from '../../gateway/errors.js'
import { CredentialBroker } from '../../gateway/exchange/broker.js'
import { createMetrics } from '../../gateway/observability/metrics.js'

const UP = 'https://upstream-a.internal/mcp'
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')

describe('credential fast path (broker.cachedSync)', () => {
  const forms: Record<string, string>[] = []
  let server: Server
  let base: string
  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()))
        forms.push(form)
        const at = `${b64({ alg: 'RS256', typ: 'at+jwt' })}.${b64({ aud: UP, sub: 'alice', exp: Math.floor(Date.now() / 1000) + 300, jti: `x-${forms.length}` })}.c2ln`
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: at, token_type: 'Bearer', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', expires_in: 300 }))
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((r) => server.close(() => r())))

  const setup = (credentials: string) => {
    const { config } = loadConfigText(
      'g.yaml',
      `server:
  publicUrl: http://127.0.0.1:8080
  listen: { port: 8080 }
admin:
  listen: { port: 9090 }
issuers:
  demo:
    issuer: http://127.0.0.1:9000
    tokenEndpoint: ${base}/token
    client: { id: mcp-warden, auth: client_secret_post, secret: { value: s3cret } }
routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: http://127.0.0.1:7000/mcp }
    issuers: [demo]
    credentials:
${credentials.replace(/^/gm, '      ')}
`,
    )
    const metrics = createMetrics()
    const broker = new CredentialBroker({ issuers: config.issuers, discover: () => Promise.reject(new Error('no discovery')), store: new MemoryStore(), encryptionKey: undefined, metrics, logger: pino({ level: 'silent' }), publicUrl: config.server.publicUrl })
    return { broker, route: config.routes[0]!, metrics }
  }
  const principal = (over: Partial<Principal> = {}): Principal =>
    ({ tokenKind: 'jwt', issuerName: 'demo', issuer: 'http://127.0.0.1:9000', subject: 'alice', clientId: 'agent', scopes: new Set(['tools.read']), audience: [], actor: undefined, delegationChain: [], userPresent: true, expiresAt: Math.floor(Date.now() / 1000) + 600, tokenId: undefined, authorizationDetails: undefined, confirmation: undefined, claims: {}, ...over }) as Principal
  const hits = async (metrics: ReturnType<typeof createMetrics>) => (await metrics.credentialCache.get()).values.filter((v) => v.labels.layer === 'memory').map((v) => `${v.labels.result}=${v.value}`).sort()

  it('TX-04 / a miss is left to obtain; once cached, the same credential comes back synchronously, no second exchange, the hit counted once', async () => {
    const { broker, route, metrics } = setup(`strategy: token-exchange\nresource: ${UP}`)
    const caller = { principal: principal(), token: 'caller.token.sig' }
    const before = forms.length
    expect(broker.cachedSync(route, caller)).toBeUndefined()
    expect(await hits(metrics)).toEqual([]) // obtain counts the miss, not the peek
    const issued = await broker.obtain(route, caller)
    expect(issued!.record.source).toBe('issued')
    expect(await hits(metrics)).toEqual(['miss=1'])
    const fast = broker.cachedSync(route, caller)
    expect(fast).not.toBeInstanceOf(Promise)
    expect(fast).toEqual({ headers: issued!.headers, record: { ...issued!.record, source: 'memory' } })
    expect(await broker.obtain(route, caller)).toEqual(fast)
    expect(await hits(metrics)).toEqual(['hit=2', 'miss=1'])
    expect(forms.length - before).toBe(1)
    // Another caller token is another cache entry: not answered from this one.
    expect(broker.cachedSync(route, { ...caller, token: 'other.token.sig' })).toBeUndefined()
  })

  it('TX-10 / refusals are the same on the fast path: a may_act that does not name the gateway throws before any cache lookup', () => {
    const { broker, route } = setup(`strategy: token-exchange\nresource: ${UP}`)
    const caller = { principal: principal({ claims: { may_act: { sub: 'someone-else' } } } as Partial<Principal>), token: 'caller.token.sig' }
    let thrown: unknown
    try {
      broker.cachedSync(route, caller)
    } catch (e) {
      thrown = e
    }
    expect(thrown).toBeInstanceOf(GatewayError)
    expect(thrown).toMatchObject({ code: 'GW_EXCHANGE_FORBIDDEN', detail: expect.stringMatching(/may_act/) })
  })

  it('no fitting strategy is left to obtain, which refuses it', async () => {
    const { broker, route } = setup(`chain:\n  - { when: user, strategy: token-exchange, resource: ${UP} }`)
    const caller = { principal: principal({ userPresent: false }), token: 'caller.token.sig' }
    expect(broker.cachedSync(route, caller)).toBeUndefined()
    await expect(broker.obtain(route, caller)).rejects.toThrow(GatewayError)
  })
})
