/**
 * The second leg of the chain of custody (issue 12): API routes and the egress listener. Real
 * oidc-provider AS (token exchange for mcp-warden and for the MCP server's workload identity),
 * real redis-server, a plain HTTP API that records the credential it received, and an MCP SDK
 * server whose tool calls that API through the egress listener with the token it was given.
 * Checklist sections 11 (TX) and 12 (XDOM), SSRF (no open proxy).
 */
import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../demo/authorization-server.js'
import { loadConfigText } from '../../gateway/config/load.js'
import { REDACT_PATHS, serializeRequest } from '../../gateway/observability/logger.js'
import { buildGateway, type Gateway } from '../../gateway/server.js'
import { startOrdersMcpServer, startRecordingApi, type OrdersMcpServer, type RecordingApi } from '../helpers/orders.js'
import { freePort } from '../helpers/ports.js'
import { startRedis, type RedisInstance } from '../helpers/redis.js'
import { listenerYaml, parseChallenge } from '../helpers/stack.js'

const MCP_RESOURCE = 'http://orders-mcp.internal/mcp'
const API_RESOURCE = 'http://orders-api.internal/'
const PARTNER_RESOURCE = 'http://partner-api.example/'
const WORKLOAD = { clientId: 'orders-mcp', clientSecret: randomBytes(24).toString('base64url') }
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'

let as: AuthorizationServer
/** The partner domain's AS: trusts grants from `as` (identity chaining). */
let partnerAs: AuthorizationServer
let api: RecordingApi
let mcp: OrdersMcpServer
let redis: RedisInstance
let gw: Gateway
let url: string
let egressUrl: string
const logs: string[] = []

const audits = (): Record<string, unknown>[] =>
  logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit).map((l) => ({ msg: l.msg, ...(l.audit as Record<string, unknown>) }))

beforeAll(async () => {
  ;[as, api, redis] = await Promise.all([startAuthorizationServer({ exchangeClients: [WORKLOAD] }), startRecordingApi(), startRedis()])
  partnerAs = await startAuthorizationServer({ trustedIssuers: [{ issuer: as.issuer, jwksUri: as.jwksUri }] })
  const [port, adminPort, egressPort] = [await freePort(), await freePort(), await freePort()]
  egressUrl = `http://127.0.0.1:${egressPort}`
  mcp = await startOrdersMcpServer({ egressUrl: () => egressUrl })
  const yaml = `${listenerYaml({ port, adminPort, shutdownGrace: '1s' })}issuers:
  demo:
    issuer: ${as.issuer}
    client: { id: mcp-warden, auth: client_secret_basic, secret: { value: "${as.gateway.clientSecret}" } }
  # The MCP server's workload identity at the same AS: held by its sidecar, so act names the MCP server.
  orders-mcp-identity:
    issuer: ${as.issuer}
    client: { id: ${WORKLOAD.clientId}, auth: client_secret_basic, secret: { value: "${WORKLOAD.clientSecret}" } }
  partner:
    issuer: ${partnerAs.issuer}
    client: { id: mcp-warden, auth: client_secret_basic, secret: { value: "${partnerAs.gateway.clientSecret}" } }
routes:
  - name: orders-mcp
    path: /mcp/orders
    upstream: { url: ${mcp.url}, timeout: 5s }
    issuers: [demo]
    scopesSupported: [tools.read]
    credentials: { strategy: token-exchange, resource: ${MCP_RESOURCE} }
  - name: orders-api
    kind: api
    path: /api/orders
    upstream: { url: ${api.url}/v1, timeout: 5s }
    issuers: [demo]
    scopesSupported: [tools.read]
    credentials: { strategy: token-exchange, resource: ${API_RESOURCE} }
egress:
  listen: { host: 127.0.0.1, port: ${egressPort} }
  issuers: [demo]
  resource: ${MCP_RESOURCE}
  targets:
    - name: orders.example.com
      url: ${api.url}/v1
      allowAddresses: [127.0.0.1]
      credentials: { strategy: token-exchange, issuer: orders-mcp-identity, resource: ${API_RESOURCE} }
    - name: partner.example.net
      url: ${api.url}/partner
      allowAddresses: [127.0.0.0/8]
      credentials: { strategy: identity-chaining, issuer: orders-mcp-identity, targetIssuer: partner, resource: ${PARTNER_RESOURCE} }
    - name: loopback-not-allowed
      url: ${api.url}/v1
    - name: by-name
      url: http://localhost:${api.port}/v1
    - name: metadata
      url: http://169.254.169.254/latest
    - name: private
      url: http://10.255.255.1/
cache:
  redis: { url: ${redis.url}, encryptionKey: { value: "${randomBytes(32).toString('base64')}" } }
`
  const { config } = loadConfigText('egress-test.yaml', yaml)
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter(Boolean))
      cb()
    },
  })
  const logger = pino({ level: 'info', redact: { paths: REDACT_PATHS, censor: '[redacted]' }, serializers: { req: serializeRequest } }, sink)
  gw = await buildGateway(config, { logger })
  const started = await gw.start()
  url = started.url
  expect(started.egressUrl).toBe(egressUrl)
})

afterAll(async () => {
  await gw?.close()
  await Promise.all([mcp?.close(), api?.close(), as?.close(), partnerAs?.close(), redis?.stop()])
})

const agentToken = (resource: string) => as.getToken({ resource, scope: 'tools.read' }).then((t) => t.access_token)

async function callApiTool(token: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const client = new Client({ name: 'egress-test', version: '1.0.0' })
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp/orders`), { requestInit: { headers: { authorization: `Bearer ${token}`, ...headers } } }))
  try {
    const r = await client.callTool({ name: 'call_api', arguments: { path } })
    return JSON.parse((r.content as Array<{ text: string }>)[0]!.text) as { status: number; body: string }
  } finally {
    await client.close()
  }
}

/** The token mcp-warden gives the MCP server on the inbound leg (what the MCP server presents at egress). */
const mcpServerToken = async (agent: string) => {
  const r = await as.exchangeToken({ subjectToken: agent, resource: MCP_RESOURCE })
  return (r.body as { access_token: string }).access_token
}

describe('egress: both legs of the chain of custody', () => {
  it('TX-01 / XDOM / the API gets a token for its own audience with the act chain; the agent token reaches neither the MCP server nor the API; audit links both legs', async () => {
    api.reset()
    const agent = await agentToken(`${url}/mcp/orders`)
    const traceparent = `00-${TRACE_ID}-00f067aa0ba902b7-01`
    const r = await callApiTool(agent, '/orders.example.com/orders?status=open', { traceparent })
    expect(r.status).toBe(200)
    const seen = JSON.parse(r.body) as { path: string; query: string; authorization: string }
    expect(seen.path).toBe('/v1/orders')
    expect(seen.query).toBe('status=open')

    // Leg 1: the MCP server holds a token for itself, never the agent's.
    const inbound = mcp.inboundAuthorizations.map((a) => a.replace(/^Bearer /, ''))
    expect(inbound.length).toBeGreaterThan(0)
    expect(inbound).not.toContain(agent)
    const mcpToken = inbound.at(-1)!
    expect(decodeJwt(mcpToken)).toMatchObject({ aud: MCP_RESOURCE, sub: 'alice', act: { sub: 'mcp-warden' } })

    // Leg 2: the API sees neither token, only one made for it, naming the MCP server as actor.
    const apiToken = seen.authorization.replace(/^Bearer /, '')
    expect(apiToken).not.toBe(agent)
    expect(apiToken).not.toBe(mcpToken)
    expect(api.sawString(agent)).toBe(false)
    expect(api.sawString(agent.split('.')[2]!)).toBe(false)
    expect(api.sawString(mcpToken.split('.')[2]!)).toBe(false)
    const { payload } = await jwtVerify(apiToken, createRemoteJWKSet(new URL(as.jwksUri)), { issuer: as.issuer, audience: API_RESOURCE })
    expect(payload.sub).toBe('alice')
    // user alice → (agent via mcp-warden on the inbound leg) → orders-mcp → API.
    expect(payload.act).toEqual({ sub: 'orders-mcp', act: { sub: 'mcp-warden' } })
    expect(payload.client_id).toBe('orders-mcp')

    // Audit: the inbound MCP line and the egress line share the trace id, and the egress line names the inbound request id.
    const lines = audits()
    const egressLine = lines.filter((l) => l.msg === 'egress.request').at(-1)!
    const inboundLine = lines.find((l) => l.msg === 'mcp.request' && l.requestId === egressLine.causedBy)!
    expect(inboundLine).toBeDefined()
    expect(inboundLine).toMatchObject({ route: 'orders-mcp', traceId: TRACE_ID, mcp: { method: 'tools/call', target: 'call_api' }, principal: { subject: 'alice', agent: 'demo-agent' } })
    expect(egressLine).toMatchObject({ route: 'egress:orders.example.com', leg: 'egress', status: 200, traceId: TRACE_ID, http: { path: '/orders' }, principal: { subject: 'alice', agent: 'mcp-warden', chain: ['mcp-warden'] }, credential: { strategy: 'token-exchange', tokenId: payload.jti } })
    const text = logs.join('\n')
    for (const t of [agent, mcpToken, apiToken]) expect(text).not.toContain(t.split('.')[2]!)
  })

  it('SSRF / off the allow-list, absolute-form, 169.254.169.254, a private address and loopback not configured are refused; nothing reaches the API', async () => {
    api.reset()
    const agent = await agentToken(`${url}/mcp/orders`)
    const refusals: Record<string, { status: number; code?: string }> = {}
    for (const path of ['/evil.example.com/x', '/metadata/meta-data/iam', '/private/x', '/loopback-not-allowed/orders', '/by-name/orders']) {
      const r = await callApiTool(agent, path)
      refusals[path] = { status: r.status, code: (JSON.parse(r.body) as { error?: string }).error }
    }
    expect(refusals).toEqual({
      '/evil.example.com/x': { status: 403, code: 'GW_EGRESS_TARGET_FORBIDDEN' },
      '/metadata/meta-data/iam': { status: 403, code: 'GW_EGRESS_ADDRESS_FORBIDDEN' },
      '/private/x': { status: 403, code: 'GW_EGRESS_ADDRESS_FORBIDDEN' },
      '/loopback-not-allowed/orders': { status: 403, code: 'GW_EGRESS_ADDRESS_FORBIDDEN' },
      // `localhost` is a name: refused on the address it resolved to, inside the connector.
      '/by-name/orders': { status: 403, code: 'GW_EGRESS_ADDRESS_FORBIDDEN' },
    })
    expect(api.requests).toHaveLength(0)

    const token = await mcpServerToken(agent)
    const absolute = await fetch(egressUrl, { method: 'GET', headers: { authorization: `Bearer ${token}` } })
    expect(absolute.status).toBe(403)
    const audit = audits().filter((l) => l.msg === 'egress.request')
    expect(audit.filter((l) => l.reason === 'egress-address').length).toBeGreaterThanOrEqual(4)
  })

  it('egress / a token not made for the MCP server (the agent token itself) is refused with an RFC 6750 challenge, no JSON-RPC', async () => {
    const agent = await agentToken(`${url}/mcp/orders`)
    const r = await fetch(`${egressUrl}/orders.example.com/orders`, { headers: { authorization: `Bearer ${agent}` } })
    expect(r.status).toBe(401)
    const ch = parseChallenge(r.headers.get('www-authenticate'))
    expect(ch?.scheme).toBe('Bearer')
    expect(ch?.params.error).toBe('invalid_token')
    expect(ch?.params.resource_metadata).toBeUndefined()
    const body = (await r.json()) as Record<string, unknown>
    expect(body.error).toBe('invalid_token')
    expect(body.jsonrpc).toBeUndefined()
    const none = await fetch(`${egressUrl}/orders.example.com/orders`)
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toBe('Bearer')
    const browser = await fetch(`${egressUrl}/orders.example.com/orders`, { headers: { authorization: `Bearer ${await mcpServerToken(agent)}`, origin: 'http://evil.example' } })
    expect(browser.status).toBe(403)
  })
})

describe('egress: cross-domain identity chaining (two real ASes)', () => {
  it('XDOM-06 / a JWT grant for the partner AS, redeemed with jwt-bearer; the partner API sees a partner token with the chain', async () => {
    api.reset()
    const agent = await agentToken(`${url}/mcp/orders`)
    const [homeExchanges, partnerBefore] = [as.counters.tokenExchange, partnerAs.counters.token.byGrantType['urn:ietf:params:oauth:grant-type:jwt-bearer'] ?? 0]
    const r = await callApiTool(agent, '/partner.example.net/orders')
    expect(r.status).toBe(200)
    const seen = JSON.parse(r.body) as { path: string; authorization: string }
    expect(seen.path).toBe('/partner/orders')
    const token = seen.authorization.replace(/^Bearer /, '')
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(partnerAs.jwksUri)), { issuer: partnerAs.issuer, audience: PARTNER_RESOURCE })
    expect(payload).toMatchObject({ sub: 'alice', client_id: 'mcp-warden', act: { sub: 'orders-mcp', act: { sub: 'mcp-warden' } } })
    // One exchange for the inbound leg, one for the grant; one redemption at the partner AS.
    expect(as.counters.tokenExchange - homeExchanges).toBe(2)
    expect((partnerAs.counters.token.byGrantType['urn:ietf:params:oauth:grant-type:jwt-bearer'] ?? 0) - partnerBefore).toBe(1)
    expect(api.sawString(agent.split('.')[2]!)).toBe(false)
    const egressLine = audits().filter((l) => l.msg === 'egress.request').at(-1)!
    expect(egressLine).toMatchObject({ route: 'egress:partner.example.net', credential: { strategy: 'identity-chaining', tokenId: payload.jti } })
  })
})

describe('API routes (kind: api)', () => {
  it('TX-01 / an API route maps prefix → upstream base, exchanges the token, passes bodies and streams untouched', async () => {
    api.reset()
    const agent = await agentToken(`${url}/api/orders`)
    const auth = { authorization: `Bearer ${agent}` }
    const got = await fetch(`${url}/api/orders/items/7?x=1&access_token=leak`, { headers: auth })
    expect(got.status).toBe(200)
    const seen = (await got.json()) as { path: string; query: string; authorization: string }
    expect(seen.path).toBe('/v1/items/7')
    expect(seen.query).toBe('x=1')
    expect(decodeJwt(seen.authorization.replace(/^Bearer /, ''))).toMatchObject({ aud: API_RESOURCE, sub: 'alice', act: { sub: 'mcp-warden' } })
    expect(api.sawString(agent.split('.')[2]!)).toBe(false)

    // A 2 MiB binary body (above the MCP bodyLimit) arrives byte for byte; no JSON requirement.
    const big = randomBytes(2 * 1024 * 1024)
    const echoed = await fetch(`${url}/api/orders/echo`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: big })
    expect(echoed.status).toBe(200)
    expect(echoed.headers.get('x-body-sha256')).toBe(api.requests.at(-1)!.bodyDigest)
    expect(Buffer.from(await echoed.arrayBuffer()).equals(big)).toBe(true)

    // A streamed response arrives chunk by chunk.
    const streamed = await fetch(`${url}/api/orders/stream`, { headers: auth })
    const reader = streamed.body!.getReader()
    const chunks: string[] = []
    for (let c = await reader.read(); !c.done; c = await reader.read()) chunks.push(Buffer.from(c.value).toString())
    expect(chunks.join('')).toBe('chunk 1\nchunk 2\nchunk 3\n')
    expect(chunks.length).toBeGreaterThanOrEqual(2)

    const audit = audits().filter((l) => l.route === 'orders-api')
    expect(audit.at(-1)).toMatchObject({ http: { path: '/stream' }, credential: { strategy: 'token-exchange' } })
    expect(audit.at(-1)!.mcp).toBeUndefined()
  })

  it('CHL / API routes answer 401/403 per RFC 6750 with OAuth JSON, other errors as plain JSON (never JSON-RPC)', async () => {
    const missing = await fetch(`${url}/api/orders/items`)
    expect(missing.status).toBe(401)
    expect(parseChallenge(missing.headers.get('www-authenticate'))?.params.resource_metadata).toBe(`${url}/.well-known/oauth-protected-resource/api/orders`)
    expect(await missing.json()).toMatchObject({ error: 'unauthorized' })
    const wrongAudience = await fetch(`${url}/api/orders/items`, { headers: { authorization: `Bearer ${await agentToken(`${url}/mcp/orders`)}` } })
    expect(wrongAudience.status).toBe(401)
    expect(await wrongAudience.json()).toMatchObject({ error: 'invalid_token' })
    const agent = await agentToken(`${url}/api/orders`)
    const denied = await fetch(`${url}/api/orders/deny`, { headers: { authorization: `Bearer ${agent}` } })
    expect(denied.status).toBe(502)
    const body = (await denied.json()) as Record<string, unknown>
    expect(body.error).toBe('GW_UPSTREAM_INVALID_RESPONSE')
    expect(body.jsonrpc).toBeUndefined()
  })

  it('path rules / dot segments, encoded slashes and duplicate slashes are refused before authentication', async () => {
    api.reset()
    const agent = await agentToken(`${url}/api/orders`)
    const statuses: Record<string, number> = {}
    for (const p of ['/api/orders/a%2Fb', '/api/orders//x', '/api/orders/a%5Cb', '/api/ordersX']) {
      const res = await fetch(`${url}${p}`, { headers: { authorization: `Bearer ${agent}` } })
      statuses[p] = res.status
      await res.body?.cancel()
    }
    expect(statuses).toEqual({ '/api/orders/a%2Fb': 400, '/api/orders//x': 400, '/api/orders/a%5Cb': 400, '/api/ordersX': 404 })
    // fetch resolves dot segments (encoded ones too) before sending: these go over a raw socket.
    for (const p of ['/api/orders/a/../b', '/api/orders/%2e%2e/admin', '/api/orders/./x', '/api/orders/a\\b']) expect(await rawGet(url, p)).toMatch(/^HTTP\/1\.1 400/)
    expect(api.requests).toHaveLength(0)
  })
})

async function rawGet(base: string, path: string): Promise<string> {
  const { connect } = await import('node:net')
  const u = new URL(base)
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname, () => sock.write(`GET ${path} HTTP/1.1\r\nhost: ${u.host}\r\nconnection: close\r\n\r\n`))
    let out = ''
    sock.on('data', (d) => (out += d.toString()))
    sock.on('end', () => resolve(out))
    sock.on('error', reject)
  })
}
