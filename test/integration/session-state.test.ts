/**
 * Protocol state comes from the session (issue 16 items 4, 5, 8): the negotiated version decides
 * batching (SHTTP-14, SHTTP-33, SHTTP-34, ATK-42, ATK-43), client responses answer only what the
 * server asked on the session's streams (SHTTP-36, ATK-51), and a list replayed on a resumed GET
 * stream is filtered like the POST that asked for it (ATK-59). Real AS, real MCP SDK upstream
 * (with an event store, and a tool that elicits), token exchange toward the upstream so "no
 * credential was minted" can be counted at the AS.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer } from '../../demo/authorization-server.js'
import { MCP_HEADERS, startStack, type Stack } from '../helpers/stack.js'

const UPSTREAM = 'http://upstream-a.internal/mcp'

let s: Stack
let token: string

function policyDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mcpw-state-'))
  writeFileSync(
    join(dir, 'main.yaml'),
    `apiVersion: mcp-warden/v1
kind: Policy
name: main
routes: [alpha, beta]
rules:
  - { id: lifecycle, effect: allow, methods: [initialize, ping, "notifications/*", tools/list] }
  - { id: read, effect: allow, tools: [search, confirm] }
  - { id: write, effect: require-scopes, scopes: [tools.write], tools: [delete_repo] }
`,
  )
  return dir
}

beforeAll(async () => {
  const as = await startAuthorizationServer()
  s = await startStack({
    as,
    upstream: { resumable: true },
    issuerExtra: `client: { id: mcp-warden, auth: client_secret_basic, secret: { value: "${as.gateway.clientSecret}" } }`,
    routeExtras: { alpha: `credentials: { strategy: token-exchange, resource: ${UPSTREAM} }` },
    // Sealed session ids (issue 23): the client's id is not the upstream's, and the state must still be found.
    extra: `policies:\n  dir: ${policyDir()}\nsessions:\n  signingKey: { value: "${randomBytes(32).toString('base64')}" }`,
  })
  token = await s.token({ scope: 'tools.read' })
}, 60_000)
afterAll(async () => {
  await s?.close()
  await s?.as.close()
})

const init = (version: string) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 't', version: '1' } } })
const post = (body: string, headers: Record<string, string | undefined>) => {
  const h: Record<string, string> = { ...MCP_HEADERS, authorization: `Bearer ${token}` }
  for (const [k, v] of Object.entries(headers)) if (v === undefined) delete h[k]
  else h[k] = v
  return fetch(`${s.url}/mcp/alpha`, { method: 'POST', headers: h, body })
}

/** A raw session at `version`: initialize and initialized, as a client of that revision sends them. */
async function session(version: string): Promise<string> {
  const header = version >= '2025-06-18' ? version : undefined
  const res = await post(init(version), { 'mcp-protocol-version': header })
  expect(res.status).toBe(200)
  const sid = res.headers.get('mcp-session-id')!
  // The gateway's sealed id, not the upstream's: the state is keyed by what the upstream knows.
  expect(sid).toMatch(/^s1\./)
  expect(await res.text()).toContain(`"protocolVersion":"${version}"`)
  expect((await post('{"jsonrpc":"2.0","method":"notifications/initialized"}', { 'mcp-session-id': sid, 'mcp-protocol-version': header })).status).toBe(202)
  return sid
}

const rpcError = async (res: Response) => (await res.json()) as { id: unknown; error: { code: number; data?: { code?: string } } }
const upstreamBodies = () => s.alpha.requests.map((r) => r.body)
const exchanges = () => s.as.counters.tokenExchange

const BATCH = '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search","arguments":{"query":"x"}}}]'

describe('item 4: the negotiated version decides, not the request header', () => {
  it('ATK-42 / SHTTP-34 / a 2025-11-25 session saying 2025-03-26 with a batch is 400 -32600 without an id; nothing reaches the upstream', async () => {
    const sid = await session('2025-11-25')
    const before = s.alpha.requests.length
    const minted = exchanges()
    // The request: a downgrade header and a batch that hides a call.
    const attack = await post('[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo","arguments":{}}}]', { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-03-26' })
    expect(attack.status).toBe(400)
    const e = await rpcError(attack)
    expect(e.error.code).toBe(-32600)
    expect(e.id).toBeNull()
    // The same with only allowed elements: refused for the version, not for policy.
    const allowed = await post(BATCH, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-03-26' })
    expect(allowed.status).toBe(400)
    expect(s.alpha.requests.length).toBe(before)
    expect(exchanges()).toBe(minted)
  })

  it('SHTTP-33 / SHTTP-14 / without a header the session version still applies: a batch is 400', async () => {
    const sid = await session('2025-11-25')
    const before = s.alpha.requests.length
    const res = await post(BATCH, { 'mcp-session-id': sid, 'mcp-protocol-version': undefined })
    expect(res.status).toBe(400)
    expect((await rpcError(res)).error.code).toBe(-32600)
    expect(s.alpha.requests.length).toBe(before)
  })

  it('SHTTP-34 / a header contradicting the session is 400 with the request id (POST) and 400 on GET; the right header works', async () => {
    const sid = await session('2025-11-25')
    const before = s.alpha.requests.length
    const call = JSON.stringify({ jsonrpc: '2.0', id: 41, method: 'tools/call', params: { name: 'search', arguments: { query: 'x' } } })
    const res = await post(call, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' })
    expect(res.status).toBe(400)
    const e = await rpcError(res)
    expect(e.id).toBe(41)
    expect(e.error.code).toBe(-32600)
    const get = await fetch(`${s.url}/mcp/alpha`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${token}`, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-03-26' } })
    expect(get.status).toBe(400)
    await get.body?.cancel()
    expect(s.alpha.requests.length).toBe(before)
    const ok = await post(call, { 'mcp-session-id': sid })
    expect(ok.status).toBe(200)
    expect(await ok.text()).toContain('3 results')
  })

  it('SHTTP-14 / a session negotiated at 2025-03-26 may batch (the rule follows the session both ways)', async () => {
    const sid = await session('2025-03-26')
    const res = await post(BATCH, { 'mcp-session-id': sid, 'mcp-protocol-version': undefined })
    expect(res.status).toBe(200)
    const text = await res.text()
    expect(text).toContain('3 results')
    // And that session cannot be upgraded by a header either.
    const up = await post(BATCH, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' })
    expect(up.status).toBe(400)
  })
})

describe('item 5: client responses only answer what the server asked', () => {
  it('SHTTP-36 / ATK-51 / a response to no server request is 400, not forwarded, no upstream token minted', async () => {
    const sid = await session('2025-11-25')
    const before = s.alpha.requests.length
    const minted = exchanges()
    for (const body of ['{"jsonrpc":"2.0","id":"srv-1","result":{"content":[]}}', '{"jsonrpc":"2.0","id":0,"result":{"action":"accept","content":{"ok":true}}}']) {
      const res = await post(body, { 'mcp-session-id': sid })
      expect(res.status, body).toBe(400)
      const e = await rpcError(res)
      expect(e.error.code).toBe(-32600)
      expect(e.id).toBeNull()
    }
    expect(s.alpha.requests.length).toBe(before)
    expect(exchanges()).toBe(minted)
  })

  it('SHTTP-36 / an elicitation the server sent is answered once; a replay of that answer and the same id on another session are refused', async () => {
    const client = new Client({ name: 'asker', version: '1' }, { capabilities: { elicitation: {} } })
    let elicitationId: string | number | undefined
    const transport = new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${token}` } } })
    await client.connect(transport)
    client.setRequestHandler(ElicitRequestSchema, async (_request, extra) => {
      elicitationId = extra.requestId
      return { action: 'accept', content: { ok: true } }
    })
    const result = await client.callTool({ name: 'confirm', arguments: { question: 'go?' } })
    expect(JSON.stringify(result.content)).toContain('user said accept')
    expect(elicitationId).toBeDefined()

    const other = await session('2025-11-25')
    // The SDK client's own GET stream may reach the upstream at any time: count POSTs only.
    const posts = () => s.alpha.requests.filter((r) => r.method === 'POST').length
    const before = posts()
    const answer = JSON.stringify({ jsonrpc: '2.0', id: elicitationId, result: { action: 'accept', content: { ok: true } } })
    const replay = await post(answer, { 'mcp-session-id': transport.sessionId! })
    expect(replay.status).toBe(400)
    expect((await post(answer, { 'mcp-session-id': other })).status).toBe(400)
    expect(posts()).toBe(before)
    // The SDK client's own answer reached the upstream exactly once (its id, its result).
    expect(upstreamBodies().filter((b) => b.includes(`"id":${JSON.stringify(elicitationId)}`) && b.includes('"action":"accept"'))).toHaveLength(1)
    await client.close()
  })
})

/** The events of an SSE body: id and data of each. */
function events(text: string): Array<{ id: string | undefined; data: string }> {
  return text
    .split(/\n\n/)
    .filter((e) => e.trim() !== '')
    .map((e) => {
      const lines = e.split('\n')
      return { id: lines.find((l) => l.startsWith('id:'))?.slice(3).trim(), data: lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n') }
    })
}

describe('item 8: filtering holds on every path a list can travel', () => {
  it('ATK-59 / a tools/list replayed on a GET resumption (Last-Event-ID) is filtered', async () => {
    const sid = await session('2025-11-25')
    const list = await post('{"jsonrpc":"2.0","id":9,"method":"tools/list"}', { 'mcp-session-id': sid })
    expect(list.headers.get('content-type')).toMatch(/text\/event-stream/)
    const evs = events(await list.text())
    const priming = evs.find((e) => e.id !== undefined && e.data === '')
    expect(priming, 'the upstream keeps events (priming event)').toBeDefined()
    const answered = evs.find((e) => e.data.includes('"tools"'))!
    expect(answered.data).toContain('"search"')
    expect(answered.data).not.toContain('delete_repo')

    // The attacker's request: resume the closed POST stream from its priming event.
    const resumed = await fetch(`${s.url}/mcp/alpha`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${token}`, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'last-event-id': priming!.id! } })
    expect(resumed.status).toBe(200)
    const reader = resumed.body!.getReader()
    let text = ''
    while (!text.includes('"tools"')) {
      const { value, done } = await reader.read()
      if (done) break
      text += new TextDecoder().decode(value)
    }
    await reader.cancel()
    // The upstream really replayed the list (the resumption reached it) ...
    expect(s.alpha.requests.some((r) => r.method === 'GET' && r.headers['last-event-id'] === priming!.id)).toBe(true)
    expect(text).toContain('"search"')
    // ... and what the client read is the filtered list.
    expect(text).not.toContain('delete_repo')
  })

  it('ATK-59 / POST JSON and POST SSE lists are filtered (control for the paths above)', async () => {
    const sid = await session('2025-11-25')
    const res = await post('{"jsonrpc":"2.0","id":10,"method":"tools/list"}', { 'mcp-session-id': sid, accept: 'application/json, text/event-stream' })
    const text = await res.text()
    expect(text).toContain('"search"')
    expect(text).not.toContain('delete_repo')
  })
})
