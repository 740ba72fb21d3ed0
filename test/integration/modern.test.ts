/**
 * MCP 2026-07-28 clients (issue 10 item 3, checklist §17 V26): stateless requests with
 * `Mcp-Method`/`Mcp-Name` and per-request `_meta`, sent as raw HTTP (the MCP SDK 1.32 client only
 * speaks up to 2025-11-25) through the real gateway to real SDK upstreams of every transport:
 * Streamable HTTP (SSE and JSON responses), a legacy HTTP+SSE server and a stdio program, with
 * tokens from the real authorization server and a real policy set.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { ListRootsResultSchema } from '@modelcontextprotocol/sdk/types.js'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startMcpServer, type McpUpstream } from '../../demo/mcp-server.js'
import { startLegacySseServer, type LegacySseServer } from '../helpers/legacy-sse-server.js'
import { listenerYaml, parseChallenge, type Stack, startStack } from '../helpers/stack.js'
import { schemaErrors } from '../helpers/mcp-schema.js'

/**
 * A real SDK Streamable HTTP server whose one tool asks the client for its roots mid-call (a
 * server → client request), recording how that request ended.
 */
async function startAskingServer(): Promise<{ url: string; outcomes: string[]; close(): Promise<void> }> {
  const transports = new Map<string, StreamableHTTPServerTransport>()
  const outcomes: string[] = []
  const http: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const body = chunks.length > 0 ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { method?: string }) : undefined
    const sid = req.headers['mcp-session-id']
    let t = typeof sid === 'string' ? transports.get(sid) : undefined
    if (!t) {
      if (req.method !== 'POST' || body?.method !== 'initialize') {
        res.writeHead(404).end()
        return
      }
      const created: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (id) => void transports.set(id, created) })
      const server = new McpServer({ name: 'asker', version: '1.0.0' })
      server.registerTool('ask_roots', { description: 'Asks the client for its roots' }, async (extra) => {
        try {
          const r = await extra.sendRequest({ method: 'roots/list' }, ListRootsResultSchema)
          outcomes.push('answered')
          return { content: [{ type: 'text' as const, text: JSON.stringify(r) }] }
        } catch (e) {
          outcomes.push(`error ${(e as { code?: number }).code}`)
          return { content: [{ type: 'text' as const, text: 'the client could not be asked' }], isError: true }
        }
      })
      await server.connect(created)
      t = created
    }
    await t.handleRequest(req, res, body)
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    outcomes,
    close: () => new Promise<void>((resolve) => { http.closeAllConnections(); http.close(() => resolve()) }),
  }
}

const ROOT = join(import.meta.dirname, '..', '..')
const STDIO_SERVER = join(ROOT, 'demo', 'mcp-stdio-server.ts')
const V = '2026-07-28'
const BRIDGED = ['alpha', 'json', 'legacy', 'local'] as const

const POLICY = `apiVersion: mcp-warden/v1
kind: Policy
name: modern
routes: [alpha, json, legacy, local, perreq, native, refuse, asker, slow]
rules:
  - id: lifecycle
    effect: allow
    methods: [initialize, ping, server/discover, "notifications/*", tools/list, prompts/list, resources/list]
  - id: read-tools
    effect: allow
    tools: [search, add, whoami, count_slowly, ask_roots]
  - id: no-deletes
    effect: deny
    tools: ["delete_*"]
`

let s: Stack
let json: McpUpstream
let plain: McpUpstream
let legacy: LegacySseServer
let asker: Awaited<ReturnType<typeof startAskingServer>>
let dir: string
let alice: Record<string, string> = {}
let bob: Record<string, string> = {}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcpw-modern-'))
  writeFileSync(join(dir, 'modern.yaml'), POLICY)
  process.env.MCPW_TEST_DEMO_API_KEY = 'demo-key-modern'
  ;[json, plain, legacy, asker] = await Promise.all([startMcpServer({ name: 'json', enableJsonResponse: true }), startMcpServer({ name: 'plain' }), startLegacySseServer(), startAskingServer()])
  s = await startStack({
    yaml: (c) => `${listenerYaml({ publicUrl: c.publicUrl, port: c.port, adminPort: c.adminPort, shutdownGrace: '1s' })}issuers:
  demo:
    issuer: ${c.issuer}
routes:
  - { name: alpha, path: /mcp/alpha, upstream: { url: ${c.alpha}, timeout: 20s }, issuers: [demo], scopesSupported: [tools.read] }
  - { name: json, path: /mcp/json, upstream: { url: ${json.url}, timeout: 20s }, issuers: [demo] }
  - { name: perreq, path: /mcp/perreq, upstream: { url: ${c.beta}, timeout: 20s }, issuers: [demo], modernClients: request }
  - { name: native, path: /mcp/native, upstream: { url: ${plain.url}, timeout: 20s }, issuers: [demo], modernClients: native }
  - { name: refuse, path: /mcp/refuse, upstream: { url: ${plain.url}, timeout: 20s }, issuers: [demo], modernClients: refuse }
  - { name: slow, path: /mcp/slow, upstream: { url: ${c.alpha}, timeout: 20s, idleTimeout: 1s }, issuers: [demo] }
  - { name: asker, path: /mcp/asker, upstream: { url: ${asker.url}, timeout: 20s }, issuers: [demo] }
  - { name: legacy, path: /mcp/legacy, upstream: { sse: ${legacy.url}, timeout: 20s }, issuers: [demo] }
  - name: local
    path: /mcp/local
    upstream:
      timeout: 20s
      stdio:
        command: ${JSON.stringify(process.execPath)}
        args: [--import, tsx, ${JSON.stringify(STDIO_SERVER)}]
        env: { DEMO_API_KEY: { fromEnv: MCPW_TEST_DEMO_API_KEY }, MCP_DEMO_NAME: local }
        cwd: ${JSON.stringify(ROOT)}
        restart: { backoff: 100ms, maxBackoff: 1s }
    issuers: [demo]
policies:
  dir: ${dir}
logging: { level: debug }
`,
  })
  const routes = ['alpha', 'json', 'perreq', 'native', 'refuse', 'legacy', 'local', 'asker', 'slow']
  const origin = new URL(s.url).origin
  const tokens = async (subject: string) =>
    Object.fromEntries(await Promise.all(routes.map(async (r) => [r, (await s.as.getToken({ resource: `${origin}/mcp/${r}`, scope: 'tools.read', subject })).access_token] as const)))
  ;[alice, bob] = await Promise.all([tokens('alice'), tokens('bob')])
}, 60_000)

afterAll(async () => {
  await s?.close()
  await Promise.all([json?.close(), plain?.close(), legacy?.close(), asker?.close()])
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const META = { 'io.modelcontextprotocol/protocolVersion': V, 'io.modelcontextprotocol/clientInfo': { name: 'modern-test', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': {} }

type Params = Record<string, unknown> & { _meta?: Record<string, unknown> }
const request = (id: number | string, method: string, params: Params = {}) => ({ jsonrpc: '2.0', id, method, params: { ...params, _meta: { ...META, ...params._meta } } })

interface Sent {
  status: number
  headers: Headers
  contentType: string
  /** Every JSON-RPC message of the body (one for JSON, each event for SSE). */
  messages: Record<string, unknown>[]
  /** The last message: the response. */
  final: Record<string, unknown>
}

/** A 2026-07-28 POST with the standard headers derived from the body unless given. */
async function send(route: string, body: Record<string, unknown>, o: { bearer?: string | null; headers?: Record<string, string | null> } = {}): Promise<Sent> {
  const params = (body.params ?? {}) as Record<string, unknown>
  const name = body.method === 'resources/read' ? params.uri : body.method === 'tools/call' || body.method === 'prompts/get' ? params.name : undefined
  const headers: Record<string, string | null> = {
    accept: 'application/json, text/event-stream',
    'content-type': 'application/json',
    'mcp-protocol-version': V,
    'mcp-method': typeof body.method === 'string' ? body.method : null,
    'mcp-name': typeof name === 'string' ? name : null,
    authorization: o.bearer === null ? null : `Bearer ${o.bearer ?? alice[route]}`,
    ...o.headers,
  }
  const res = await fetch(`${s.url}/mcp/${route}`, { method: 'POST', headers: Object.fromEntries(Object.entries(headers).filter((e): e is [string, string] => e[1] !== null)), body: JSON.stringify(body) })
  const text = await res.text()
  const contentType = res.headers.get('content-type') ?? ''
  const messages = contentType.startsWith('text/event-stream')
    ? text
        .split(/\r?\n\r?\n/)
        .map((e) => e.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n'))
        .filter(Boolean)
        .map((d) => JSON.parse(d) as Record<string, unknown>)
    : text
      ? [JSON.parse(text) as Record<string, unknown>]
      : []
  return { status: res.status, headers: res.headers, contentType, messages, final: messages[messages.length - 1] ?? {} }
}

const toolNames = (r: Sent) => ((r.final.result as { tools: { name: string }[] }).tools ?? []).map((t) => t.name).sort()
const textOf = (r: Sent) => ((r.final.result as { content: { text: string }[] }).content[0]!.text)
const errorOf = (r: Sent) => r.final.error as { code: number; message: string; data?: Record<string, unknown> }
/** Upstream session ids of the POSTs whose body contains `needle`, in order. */
const sessionsUsed = (u: McpUpstream, needle: string) => u.requests.filter((r) => r.method === 'POST' && r.body.includes(needle)).map((r) => r.headers['mcp-session-id'])

describe('2026-07-28 clients through every upstream transport', () => {
  it.each(BRIDGED)('V26-10 / V26-11 / %s: every bridged answer is valid against the published 2026-07-28 schema; filtered lists are private', async (route) => {
    const cases: Array<[string, Params, string]> = [
      ['server/discover', {}, 'DiscoverResultResponse'],
      ['tools/list', {}, 'ListToolsResultResponse'],
      ['tools/call', { name: 'add', arguments: { a: 1, b: 2 } }, 'CallToolResultResponse'],
      ['prompts/list', {}, 'ListPromptsResultResponse'],
      ['resources/list', {}, 'ListResourcesResultResponse'],
      ['ping', {}, 'JSONRPCResultResponse'],
    ]
    for (const [method, params, def] of cases) {
      const r = await send(route, request(`${method}-1`, method, params))
      expect([method, r.status]).toEqual([method, 200])
      for (const m of r.messages) expect([method, schemaErrors(m.id === undefined ? 'JSONRPCNotification' : def, m)]).toEqual([method, []])
      if (method.endsWith('/list')) expect(r.final.result).toMatchObject({ cacheScope: 'private', ttlMs: 0 })
    }
  })

  it.each(BRIDGED)('V26-01 / V26-02 / %s: tools/list is filtered by policy and tools/call is decided on the body', async (route) => {
    const list = await send(route, request(1, 'tools/list'))
    expect(list.status).toBe(200)
    expect(list.final.id).toBe(1)
    // delete_repo is denied and transfer_funds has no rule: neither is listed.
    expect(toolNames(list)).toEqual(['add', 'count_slowly', 'search', 'whoami'])
    expect(list.headers.get('mcp-session-id')).toBeNull()

    const call = await send(route, request('call-1', 'tools/call', { name: 'search', arguments: { query: 'modern' } }))
    expect(call.status).toBe(200)
    expect(call.final.id).toBe('call-1')
    expect(textOf(call)).toContain('results for "modern"')

    const denied = await send(route, request(3, 'tools/call', { name: 'delete_repo', arguments: { repo: 'x' } }))
    expect(denied.final).toMatchObject({ id: 3, error: { code: -31403 } })
  }, 60_000)

  it('V26-01 / ATK / header and body disagree → 400 -32020 with the request id, nothing reaches the upstream', async () => {
    s.alpha.reset()
    const cases: [Record<string, unknown>, Record<string, string | null>][] = [
      [request(11, 'tools/call', { name: 'delete_repo', arguments: { repo: 'x' } }), { 'mcp-name': 'search' }],
      [request(12, 'tools/call', { name: 'search', arguments: { query: 'q' } }), { 'mcp-name': null }],
      [request(13, 'tools/list'), { 'mcp-method': null }],
      [request(14, 'tools/list'), { 'mcp-method': 'tools/call' }],
      [request(15, 'tools/list'), { 'mcp-method': 'Tools/List' }],
      [request(16, 'tools/call', { name: 'search', arguments: { query: 'q' } }), { 'mcp-name': '=?base64?not*base64?=' }],
      [request(17, 'tools/call', { name: 'search', arguments: { query: 'q' } }), { 'mcp-name': `=?base64?${Buffer.from('delete_repo').toString('base64')}?=` }],
      [request(18, 'resources/read', { uri: 'demo://a' }), { 'mcp-name': 'demo://b' }],
      // V26-05: the version header and the body's _meta must agree.
      [request(19, 'tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': '2025-11-25' } }), {}],
      [{ jsonrpc: '2.0', id: 20, method: 'tools/list' }, {}],
    ]
    for (const [body, headers] of cases) {
      const r = await send('alpha', body, { headers })
      expect(r.status, JSON.stringify(headers)).toBe(400)
      expect(r.final, JSON.stringify(headers)).toMatchObject({ jsonrpc: '2.0', id: body.id, error: { code: -32020 } })
    }
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('V26-01 / a base64-encoded Mcp-Name (non-ASCII names) is decoded and compared', async () => {
    const ok = await send('alpha', request(21, 'tools/call', { name: 'search', arguments: { query: 'b64' } }), { headers: { 'mcp-name': `=?base64?${Buffer.from('search').toString('base64')}?=` } })
    expect(ok.status).toBe(200)
    expect(textOf(ok)).toContain('"b64"')
  })

  it('V26-03 / a legacy request whose body claims 2026-07-28 is a mismatch, not legacy traffic', async () => {
    const r = await send('alpha', request(22, 'tools/list'), { headers: { 'mcp-protocol-version': '2025-11-25' } })
    expect(r.status).toBe(400)
    expect(errorOf(r).code).toBe(-32020)
  })

  it('V26-05 / an unknown version → 400 -32022 listing data.supported and data.requested', async () => {
    const r = await send('alpha', request(23, 'tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } }), { headers: { 'mcp-protocol-version': '2099-01-01' } })
    expect(r.status).toBe(400)
    expect(r.final).toMatchObject({ id: 23, error: { code: -32022, data: { requested: '2099-01-01' } } })
    expect(errorOf(r).data!.supported).toEqual(['2026-07-28', '2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05', '2024-10-07'])
  })

  it('V26-05 / modernClients: refuse → -32022 whose list omits 2026-07-28; legacy clients still served', async () => {
    plain.reset()
    const r = await send('refuse', request(24, 'tools/list'))
    expect(r.status).toBe(400)
    expect(r.final).toMatchObject({ id: 24, error: { code: -32022, data: { requested: V } } })
    expect(errorOf(r).data!.supported).not.toContain(V)
    expect(plain.requests).toHaveLength(0)
    const client = new Client({ name: 'legacy', version: '1' })
    await client.connect(new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/refuse`), { requestInit: { headers: { authorization: `Bearer ${alice.refuse}` } } }))
    expect((await client.listTools()).tools.length).toBeGreaterThan(0)
    await client.close()
  })

  it('V26-06 / GET and DELETE → 405 Allow: POST; a client session id is ignored and none is minted', async () => {
    for (const method of ['GET', 'DELETE']) {
      const r = await fetch(`${s.url}/mcp/alpha`, { method, headers: { accept: 'text/event-stream', 'mcp-protocol-version': V, authorization: `Bearer ${alice.alpha}` } })
      expect(r.status, method).toBe(405)
      expect(r.headers.get('allow')).toBe('POST')
      expect(((await r.json()) as { error: { code: number } }).error.code).toBe(-32600)
    }
    s.alpha.reset()
    const r = await send('alpha', request(25, 'tools/list'), { headers: { 'mcp-session-id': 'client-chosen-session', 'last-event-id': '7' } })
    expect(r.status).toBe(200)
    expect(r.headers.get('mcp-session-id')).toBeNull()
    expect(s.alpha.sawString('client-chosen-session')).toBe(false)
  })

  it('a 2026-07-28 client notification is accepted (202, no body) and not forwarded: there is no session to relate it to', async () => {
    s.alpha.reset()
    const r = await send('alpha', { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1, _meta: META } })
    expect(r.status).toBe(202)
    expect(r.messages).toEqual([])
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('V26-07 / a JSON-RPC response from a 2026-07-28 client → 400', async () => {
    const r = await send('alpha', { jsonrpc: '2.0', id: 26, result: {} }, { headers: { 'mcp-method': null } })
    expect(r.status).toBe(400)
  })

  it('401 with a challenge before anything else (no token); initialize is not a 2026-07-28 method (404 -32601)', async () => {
    const r = await send('alpha', request(27, 'tools/list'), { bearer: null })
    expect(r.status).toBe(401)
    expect(parseChallenge(r.headers.get('www-authenticate'))?.params.resource_metadata).toContain('/.well-known/oauth-protected-resource/mcp/alpha')
    const init = await send('alpha', request(28, 'initialize', { protocolVersion: V, capabilities: {}, clientInfo: { name: 'x', version: '1' } }))
    expect(init.status).toBe(404)
    expect(init.final).toMatchObject({ id: 28, error: { code: -32601 } })
  })

  it('V26-11 / server/discover is answered with the route versions and the upstream capabilities', async () => {
    const r = await send('alpha', request(29, 'server/discover'))
    expect(r.status).toBe(200)
    const result = r.final.result as { supportedVersions: string[]; _meta: Record<string, { name: string }>; capabilities: Record<string, unknown> }
    expect(result.supportedVersions[0]).toBe(V)
    expect(result._meta['io.modelcontextprotocol/serverInfo']!.name).toBe('alpha')
    expect(result.capabilities).toHaveProperty('tools')
  })

  it('progress goes back with the client token; concurrent requests reusing one id get their own answers', async () => {
    const progress = await send('alpha', request(30, 'tools/call', { name: 'count_slowly', arguments: { n: 3, delayMs: 10 }, _meta: { progressToken: 'tok-1' } }))
    expect(progress.contentType).toContain('text/event-stream')
    expect(progress.headers.get('x-accel-buffering')).toBe('no')
    const notes = progress.messages.filter((m) => m.method === 'notifications/progress')
    expect(notes.map((n) => (n.params as { progressToken: unknown; progress: number }).progressToken)).toEqual(['tok-1', 'tok-1', 'tok-1'])
    expect(progress.final).toMatchObject({ id: 30, result: { content: [{ text: 'counted to 3' }] } })

    const sums = await Promise.all([1, 2, 3, 4].map((i) => send('alpha', request(1, 'tools/call', { name: 'add', arguments: { a: i, b: 100 } }))))
    expect(sums.map((r) => [r.final.id, textOf(r)])).toEqual([[1, '101'], [1, '102'], [1, '103'], [1, '104']])
  })
})

describe('upstream sessions: per caller, never shared', () => {
  it('SHTTP-27 / caller mode: one upstream session per caller, reused; two callers never share one', async () => {
    s.alpha.reset()
    await send('alpha', request(40, 'tools/call', { name: 'search', arguments: { query: 'alice-1' } }))
    await send('alpha', request(41, 'tools/call', { name: 'search', arguments: { query: 'alice-2' } }))
    await send('alpha', request(42, 'tools/call', { name: 'search', arguments: { query: 'bob-1' } }), { bearer: bob.alpha })
    await send('alpha', request(43, 'tools/call', { name: 'search', arguments: { query: 'bob-2' } }), { bearer: bob.alpha })
    const [a1, a2, b1, b2] = ['alice-1', 'alice-2', 'bob-1', 'bob-2'].map((q) => sessionsUsed(s.alpha, q)[0])
    expect(a1).toBeTruthy()
    expect(a1).toBe(a2)
    expect(b1).toBe(b2)
    expect(b1).not.toBe(a1)
    // Bob got his own session with its own handshake (alice's already existed).
    expect(s.alpha.requests.filter((r) => r.body.includes('"initialize"'))).toHaveLength(1)
    // The callers' tokens never reach the upstream (no credentials are configured for it).
    expect(s.alpha.sawString(alice.alpha!) || s.alpha.sawString(bob.alpha!)).toBe(false)
  })

  it('a session the upstream forgot (404) is reopened transparently', async () => {
    await send('alpha', request(44, 'tools/call', { name: 'search', arguments: { query: 'before-forget' } }))
    const old = String(sessionsUsed(s.alpha, 'before-forget')[0])
    const del = await fetch(s.alpha.url, { method: 'DELETE', headers: { 'mcp-session-id': old, 'mcp-protocol-version': '2025-11-25' } })
    expect(del.status).toBe(200)
    const r = await send('alpha', request(45, 'tools/call', { name: 'search', arguments: { query: 'after-forget' } }))
    expect(r.status).toBe(200)
    expect(textOf(r)).toContain('after-forget')
    const now = sessionsUsed(s.alpha, 'after-forget')
    expect(now[now.length - 1]).not.toBe(old)
  })

  it('request mode: a fresh upstream session per request, ended after it', async () => {
    s.beta.reset()
    await send('perreq', request(46, 'tools/call', { name: 'search', arguments: { query: 'pr-1' } }))
    await send('perreq', request(47, 'tools/call', { name: 'search', arguments: { query: 'pr-2' } }))
    const [x, y] = [sessionsUsed(s.beta, 'pr-1')[0], sessionsUsed(s.beta, 'pr-2')[0]]
    expect(x).toBeTruthy()
    expect(x).not.toBe(y)
    // The DELETE is sent once the answer has gone out; wait for it rather than sleep.
    await expect.poll(() => s.beta.requests.filter((r) => r.method === 'DELETE').map((r) => r.headers['mcp-session-id']), { timeout: 10_000 }).toEqual([x, y])
  })

  it('dual-era: an SDK (2025-11-25) client and 2026-07-28 requests use the same route side by side', async () => {
    const client = new Client({ name: 'legacy', version: '1' })
    await client.connect(new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${alice.alpha}` } } }))
    const tools = (await client.listTools()).tools.map((t) => t.name)
    expect(tools).not.toContain('delete_repo')
    const modern = await send('alpha', request(48, 'tools/list'))
    expect(toolNames(modern)).toEqual([...tools].sort())
    await client.close()
  })
})

describe('modernClients: native', () => {
  it('V26-01 / checked at the gateway, then forwarded as is (no session id), and the upstream answers for itself', async () => {
    plain.reset()
    const bad = await send('native', request(50, 'tools/call', { name: 'delete_repo', arguments: {} }), { headers: { 'mcp-name': 'search' } })
    expect(bad.status).toBe(400)
    expect(errorOf(bad).code).toBe(-32020)
    expect(plain.requests).toHaveLength(0)
    const r = await send('native', request(51, 'tools/list'), { headers: { 'mcp-session-id': 'ignored-session' } })
    expect(plain.requests).toHaveLength(1)
    const seen = plain.requests[0]!
    expect(seen.headers['mcp-method']).toBe('tools/list')
    expect(seen.headers['mcp-protocol-version']).toBe(V)
    expect(seen.headers['mcp-session-id']).toBeUndefined()
    // The demo upstream (SDK 1.32) does not speak 2026-07-28: its own 400 is what the client sees.
    expect(r.status).toBe(400)
  })
})

/** A 2026-07-28 POST read event by event as it arrives; `onMessage` sees each message. */
async function stream(route: string, body: Record<string, unknown>, bearer: string, onMessage: (m: Record<string, unknown>) => void): Promise<Record<string, unknown>[]> {
  const params = body.params as { name?: string }
  const res = await fetch(`${s.url}/mcp/${route}`, {
    method: 'POST',
    headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': V, 'mcp-method': String(body.method), ...(params.name ? { 'mcp-name': params.name } : {}), authorization: `Bearer ${bearer}` } as Record<string, string>,
    body: JSON.stringify(body),
  })
  expect(res.headers.get('content-type')).toContain('text/event-stream')
  const out: Record<string, unknown>[] = []
  const decoder = new TextDecoder()
  let buf = ''
  for await (const chunk of res.body!) {
    buf += decoder.decode(chunk, { stream: true })
    let i: number
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const data = buf.slice(0, i).split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n')
      buf = buf.slice(i + 2)
      if (!data) continue
      const m = JSON.parse(data) as Record<string, unknown>
      out.push(m)
      onMessage(m)
    }
  }
  return out
}

describe('what cannot be bridged faithfully gets a clean answer', () => {
  it('V26-07 / a server → client request (roots/list) never reaches the 2026-07-28 client; the upstream gets -32601 and the call ends', async () => {
    const r = await send('asker', request(60, 'tools/call', { name: 'ask_roots', arguments: {} }))
    expect(r.status).toBe(200)
    expect(r.messages.filter((m) => 'method' in m && 'id' in m)).toEqual([])
    expect(r.final).toMatchObject({ id: 60, result: { isError: true } })
    expect(asker.outcomes).toEqual(['error -32601'])
  })

  it('V26-08 / closing the response stream cancels the call: the upstream session is sent notifications/cancelled', async () => {
    s.alpha.reset()
    const ac = new AbortController()
    const res = await fetch(`${s.url}/mcp/alpha`, {
      method: 'POST',
      signal: ac.signal,
      headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': V, 'mcp-method': 'tools/call', 'mcp-name': 'count_slowly', authorization: `Bearer ${alice.alpha}` },
      body: JSON.stringify(request(65, 'tools/call', { name: 'count_slowly', arguments: { n: 600, delayMs: 50 }, _meta: { progressToken: 'c' } })),
    })
    const reader = res.body!.getReader()
    let seen = ''
    while (!seen.includes('notifications/progress')) seen += new TextDecoder().decode((await reader.read()).value)
    ac.abort()
    await expect.poll(() => s.alpha.requests.some((r) => r.body.includes('notifications/cancelled')), { timeout: 10_000 }).toBe(true)
    const call = s.alpha.requests.find((r) => r.body.includes('count_slowly'))!
    const cancel = s.alpha.requests.find((r) => r.body.includes('notifications/cancelled'))!
    expect(JSON.parse(cancel.body).params.requestId).toBe(JSON.parse(call.body).id)
    expect(cancel.headers['mcp-session-id']).toBe(call.headers['mcp-session-id'])
  }, 20_000)

  it('an upstream stream silent past idleTimeout is cut: the client gets -32603 for its id, not a hang', async () => {
    const started = Date.now()
    // The tool's first event would come after 5 s; the route allows 1 s of silence.
    const r = await send('slow', request(64, 'tools/call', { name: 'count_slowly', arguments: { n: 2, delayMs: 5000 }, _meta: { progressToken: 'p' } }), { bearer: alice.slow })
    expect(r.final).toMatchObject({ id: 64, error: { code: -32603 } })
    expect(Date.now() - started).toBeLessThan(5000)
  }, 20_000)

  it('subscriptions/listen (no legacy equivalent) → 404 -32601, nothing forwarded', async () => {
    s.alpha.reset()
    const r = await send('alpha', request(61, 'subscriptions/listen', { notifications: { toolsListChanged: true } }))
    expect(r.status).toBe(404)
    expect(r.final).toMatchObject({ id: 61, error: { code: -32601 } })
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('a stdio server that crashes mid-call: the 2026-07-28 client gets a JSON-RPC error for its id, no hang; the next call works', async () => {
    const bridge = s.gateway.bridges.get('local')!
    const before = new Set(bridge.pids())
    let killed: number | undefined
    const messages = await stream('local', request(62, 'tools/call', { name: 'count_slowly', arguments: { n: 200, delayMs: 50 }, _meta: { progressToken: 'crash' } }), bob.local!, (m) => {
      if (m.method === 'notifications/progress' && killed === undefined) {
        killed = bridge.pids().find((p) => !before.has(p))!
        process.kill(killed, 'SIGKILL')
      }
    })
    expect(killed).toBeDefined()
    expect(messages[messages.length - 1]).toMatchObject({ id: 62, error: { code: -32603 } })
    // The bridge restarts the program with back-off and replays the handshake; the caller's session goes on.
    await expect
      .poll(async () => (await send('local', request(63, 'tools/call', { name: 'add', arguments: { a: 2, b: 3 } }), { bearer: bob.local })).final.result, { timeout: 15_000, interval: 200 })
      .toMatchObject({ content: [{ text: '5' }] })
  }, 30_000)
})
