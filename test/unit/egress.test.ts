/**
 * Decision logic of issue 12 without Fastify: API/egress path mapping, SSRF address rules,
 * trace context parsing, egress configuration, and the identity-chaining client against a
 * recording token endpoint (a fake AS: the real two-AS case is in test/integration/egress.test.ts).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SignJWT } from 'jose'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Principal } from '../../gateway/auth/principal.js'
import { MemoryStore } from '../../gateway/store/shared-store.js'
import { loadConfigText } from '../../gateway/config/load.js'
import { AddressPolicy, specialRange } from '../../gateway/egress/address.js'
import { ConfigError } from '../../gateway/errors.js'
import { CredentialBroker, JWT_BEARER_GRANT } from '../../gateway/exchange/broker.js'
import { createMetrics } from '../../gateway/observability/metrics.js'
import { correlationId, parseTraceparent } from '../../gateway/observability/trace.js'
import { filterQuery, mapPath } from '../../gateway/upstream/path.js'

const code = (f: () => unknown): string => {
  try {
    f()
    return 'ok'
  } catch (e) {
    return (e as { code?: string }).code ?? String(e)
  }
}

describe('path mapping (API routes, egress targets)', () => {
  it('prefix/rest → upstream base + rest, query kept byte for byte without access_token', () => {
    expect(mapPath('GET', '/api/orders/items/7?b=2&a=%20x', '/api/orders', '/v1')).toEqual({
      upstreamPath: '/v1/items/7',
      query: 'b=2&a=%20x',
      facts: { method: 'GET', path: '/items/7', query: { b: ['2'], a: [' x'] } },
    })
    expect(mapPath('GET', '/api/orders', '/api/orders', '/v1/').upstreamPath).toBe('/v1')
    expect(mapPath('GET', '/api/orders', '/api/orders', '/').upstreamPath).toBe('/')
    expect(mapPath('POST', '/api/orders/', '/api/orders', '/v1').upstreamPath).toBe('/v1/')
    expect(filterQuery('access_token=t&x=1&access%5Ftoken=u&x=2')).toEqual({ query: 'x=1&x=2', params: { x: ['1', '2'] } })
  })

  it('refuses every second reading of a path: dot segments (encoded too), encoded separators, //, NUL, bad escapes', () => {
    const bad = ['/p/..', '/p/a/../b', '/p/./a', '/p/%2e%2e/a', '/p/%2E/a', '/p/.%2e/a', '/p/a%2fb', '/p/a%5Cb', '/p//a', '/p/a%00', '/p/a%zz', '/p/a\\b', '/p/a b', '/p/é']
    for (const p of bad) expect([p, code(() => mapPath('GET', p, '/p', '/'))]).toEqual([p, 'GW_HTTP_PATH_INVALID'])
    expect(code(() => mapPath('GET', '/px', '/p', '/'))).toBe('GW_HTTP_NOT_FOUND')
    for (const p of ['/p/a...b', '/p/..a', '/p/a%20b', "/p/a:b@c!$&'()*+,;="]) expect(code(() => mapPath('GET', p, '/p', '/'))).toBe('ok')
  })
})

describe('SSRF address rules', () => {
  it('classifies loopback, private, link-local (metadata), CGNAT, IPv6 and IPv4-mapped forms; public is fine', () => {
    expect(specialRange('169.254.169.254')).toBe('link-local')
    expect(specialRange('127.0.0.1')).toBe('loopback')
    expect(specialRange('10.1.2.3')).toBe('private')
    expect(specialRange('172.31.255.255')).toBe('private')
    expect(specialRange('192.168.0.1')).toBe('private')
    expect(specialRange('100.64.0.1')).toBe('shared (CGNAT)')
    expect(specialRange('0.0.0.0')).toBe('unspecified')
    expect(specialRange('::1')).toBe('loopback')
    expect(specialRange('fd00::1')).toBe('private (ULA)')
    expect(specialRange('fe80::1')).toBe('link-local')
    expect(specialRange('::ffff:169.254.169.254')).toBe('link-local')
    expect(specialRange('::ffff:a9fe:a9fe')).toBe('link-local')
    expect(specialRange('::ffff:7f00:1')).toBe('loopback')
    for (const pub of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700::1111']) expect(specialRange(pub)).toBeUndefined()
  })

  it('only configured ranges open special addresses, and only those', () => {
    const p = new AddressPolicy(['127.0.0.1', '10.20.0.0/16', 'fd00::/8'])
    expect(code(() => p.check('127.0.0.1'))).toBe('ok')
    expect(code(() => p.check('::ffff:127.0.0.1'))).toBe('ok')
    expect(code(() => p.check('127.0.0.2'))).toBe('EGRESS_ADDRESS_REFUSED')
    expect(code(() => p.check('10.20.3.4'))).toBe('ok')
    expect(code(() => p.check('10.21.0.1'))).toBe('EGRESS_ADDRESS_REFUSED')
    expect(code(() => p.check('fd12::1'))).toBe('ok')
    expect(code(() => p.check('169.254.169.254'))).toBe('EGRESS_ADDRESS_REFUSED')
    expect(code(() => p.check('93.184.216.34'))).toBe('ok')
  })

  it('DNS rebinding / every connection checks what the name resolves to now; one bad address refuses the name', async () => {
    const answers = [[{ address: '93.184.216.34', family: 4 }], [{ address: '169.254.169.254', family: 4 }], [{ address: '93.184.216.34', family: 4 }, { address: '10.0.0.1', family: 4 }]]
    const fakeResolve = ((_h: string, _o: unknown, cb: (e: Error | null, a: unknown) => void) => cb(null, answers.shift())) as never
    const lookup = new AddressPolicy([]).lookup(fakeResolve)
    const run = (all: boolean) => new Promise<unknown>((resolve) => lookup('api.example.com', { all }, (err, address) => resolve(err ? (err as { code?: string }).code : address)))
    expect(await run(false)).toBe('93.184.216.34')
    expect(await run(true)).toBe('EGRESS_ADDRESS_REFUSED')
    expect(await run(true)).toBe('EGRESS_ADDRESS_REFUSED')
  })
})

describe('trace context', () => {
  it('W3C traceparent: valid ids only; correlation ids are bounded tokens', () => {
    expect(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')).toEqual({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7' })
    for (const bad of ['ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '00-00000000000000000000000000000000-00f067aa0ba902b7-01', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x', 'x'])
      expect(parseTraceparent(bad)).toBeUndefined()
    expect(correlationId('5f1c9a0e-1b2c-4d5e-8f90-123456789abc')).toBe('5f1c9a0e-1b2c-4d5e-8f90-123456789abc')
    expect(correlationId('a\nb')).toBeUndefined()
    expect(correlationId('x'.repeat(129))).toBeUndefined()
  })
})

const config = (egress: string, extraIssuers = '') => `server:
  publicUrl: http://127.0.0.1:8080
  listen: { port: 8080 }
admin:
  listen: { port: 9090 }
issuers:
  home:
    issuer: http://127.0.0.1:9000
    client: { id: mcp-warden, secret: { value: s3cret } }
${extraIssuers}routes:
  - name: orders
    kind: api
    path: /api/orders
    upstream: { url: http://127.0.0.1:7000/v1 }
    issuers: [home]
egress:
  listen: { port: 8181 }
  issuers: [home]
  resource: http://orders-mcp.internal/mcp
  targets:
${egress.replace(/^/gm, '    ')}
`
const problems = (text: string): string[] => {
  try {
    return loadConfigText('g.yaml', text).warnings.map((w) => `${w.line}:${w.column} ${w.path}: warning: ${w.message}`)
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.line}:${p.column} ${p.path}: ${p.severity === 'warning' ? 'warning: ' : ''}${p.message}`)
    throw e
  }
}

describe('egress configuration', () => {
  it('targets become egress routes validated against the MCP server resource; api routes keep their kind', () => {
    const { config: c } = loadConfigText('g.yaml', config(`- name: orders.example.com\n  url: https://orders.example.com/v1\n  credentials: { strategy: token-exchange, resource: https://orders.example.com/ }`))
    expect(c.routes[0]!.kind).toBe('api')
    const t = c.egress!.targets.get('orders.example.com')!
    expect(t).toMatchObject({ kind: 'egress', name: 'egress:orders.example.com', path: '/orders.example.com', resource: 'http://orders-mcp.internal/mcp', issuers: ['home'], allowAddresses: [] })
    expect(c.egress!.correlationHeader).toBe('x-request-id')
  })

  it('reports each mistake at its position', () => {
    const out = problems(
      config(
        `- name: a\n  url: http://10.0.0.1/x?y=1\n  allowAddresses: [10.0.0.0/33, 10.0.0.1]\n- name: a\n  url: https://a.example\n- name: b\n  url: https://b.example\n  credentials: { strategy: identity-chaining, resource: https://b.example/ }\n- name: c\n  url: https://c.example\n  credentials: { strategy: identity-chaining, targetIssuer: home, resource: https://c.example/ }`,
      ),
    )
    expect(out).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/egress\.targets\[0\]\.url: a target URL has no query/),
        expect.stringMatching(/egress\.targets\[0\]\.url: warning: plain http/),
        expect.stringMatching(/egress\.targets\[0\]\.allowAddresses\[0\]: "10\.0\.0\.0\/33" is not an IP address or CIDR range/),
        expect.stringMatching(/egress\.targets\[1\]\.name: duplicate egress target "a"/),
        expect.stringMatching(/egress\.targets\[2\]\.credentials: identity-chaining needs targetIssuer/),
        expect.stringMatching(/egress\.targets\[3\]\.credentials\.targetIssuer: targetIssuer is the home issuer/),
      ]),
    )
  })
})

describe('identity-chaining client (XDOM-04, XDOM-06)', () => {
  const forms: Array<{ path: string; form: Record<string, string>; auth: string | undefined }> = []
  let server: Server
  let base: string
  const sub = 'alice'
  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', async () => {
        const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()))
        forms.push({ path: req.url!, form, auth: req.headers.authorization })
        const key = new TextEncoder().encode('k'.repeat(32))
        const exp = Math.floor(Date.now() / 1000) + 300
        if (req.url === '/home/token') {
          const grant = await new SignJWT({ sub }).setProtectedHeader({ alg: 'HS256' }).setAudience(form.audience!).setExpirationTime(exp).sign(key)
          return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: grant, issued_token_type: 'urn:ietf:params:oauth:token-type:jwt', token_type: 'N_A', expires_in: 300 }))
        }
        const at = await new SignJWT({ sub: 'partner-alice' }).setProtectedHeader({ alg: 'HS256' }).setAudience(form.resource!).setExpirationTime(exp).setJti('partner-jti').sign(key)
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: at, token_type: 'Bearer', expires_in: 300 }))
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((r) => server.close(() => r())))

  it('asks the home AS for a JWT grant with audience = the target AS issuer, redeems it with jwt-bearer, authenticates at both', async () => {
    const { config: c } = loadConfigText(
      'g.yaml',
      config(
        `- name: partner\n  url: https://partner.example/\n  credentials: { strategy: identity-chaining, targetIssuer: partner, resource: https://partner.example/api, scope: [orders.read] }`,
        `  partner:\n    issuer: https://as.partner.example\n    tokenEndpoint: ${base}/partner/token\n    client: { id: warden-at-partner, auth: client_secret_post, secret: { value: p4ss } }\n`,
      ).replace('issuer: http://127.0.0.1:9000\n', `issuer: http://127.0.0.1:9000\n    tokenEndpoint: ${base}/home/token\n`),
    )
    const route = c.egress!.targets.get('partner')!
    const broker = new CredentialBroker({ issuers: c.issuers, discover: () => Promise.reject(new Error('no discovery')), store: new MemoryStore(), encryptionKey: undefined, metrics: createMetrics(), logger: pino({ level: 'silent' }), publicUrl: c.server.publicUrl })
    const principal = { tokenKind: 'jwt', issuerName: 'home', issuer: 'http://127.0.0.1:9000', subject: sub, clientId: 'mcp-warden', scopes: new Set(['tools.read']), audience: [], actor: 'mcp-warden', delegationChain: ['mcp-warden'], userPresent: true, expiresAt: Math.floor(Date.now() / 1000) + 600, tokenId: undefined, authorizationDetails: undefined, confirmation: undefined, claims: {} } satisfies Principal
    const got = await broker.obtain(route, { principal, token: 'caller.token.sig' })
    expect(got!.record).toEqual({ strategy: 'identity-chaining', tokenId: 'partner-jti', source: 'issued' })
    expect(forms.map((f) => f.path)).toEqual(['/home/token', '/partner/token'])
    const [home, partner] = forms as [(typeof forms)[0], (typeof forms)[0]]
    expect(home.form).toEqual({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: 'caller.token.sig', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', requested_token_type: 'urn:ietf:params:oauth:token-type:jwt', audience: 'https://as.partner.example', scope: 'orders.read' })
    expect(home.auth).toMatch(/^Basic /)
    expect(partner.form).toMatchObject({ grant_type: JWT_BEARER_GRANT, resource: 'https://partner.example/api', scope: 'orders.read', client_id: 'warden-at-partner', client_secret: 'p4ss' })
    expect(partner.form.assertion!.split('.')).toHaveLength(3)
    expect(partner.form.assertion).not.toBe('caller.token.sig')
    expect(got!.headers.authorization).toMatch(/^Bearer ey/)
    // Cached: a second call asks neither AS.
    await broker.obtain(route, { principal, token: 'caller.token.sig' })
    expect(forms).toHaveLength(2)
  })
})
