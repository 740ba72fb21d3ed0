/**
 * Checklist §19 attack cases not covered by the other attack files (issue 9), against a real
 * gateway, AS and MCP SDK upstream. Each case also proves nothing reached the upstream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { INIT, MCP_HEADERS, startStack, type Stack } from '../helpers/stack.js'

let s: Stack
let token: string

beforeAll(async () => {
  s = await startStack({
    extra: `policies:
  dir: ${await policyDir()}`,
  })
  token = await s.token({ scope: 'tools.read' })
}, 60_000)
afterAll(async () => {
  await s?.close()
})

async function policyDir(): Promise<string> {
  const { mkdtempSync, writeFileSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dir = mkdtempSync(join(tmpdir(), 'mcpw-atk-'))
  writeFileSync(
    join(dir, 'main.yaml'),
    `apiVersion: mcp-warden/v1
kind: Policy
name: main
routes: [alpha, beta]
rules:
  - { id: lifecycle, effect: allow, methods: [initialize, ping, "notifications/*", tools/list] }
  - { id: read, effect: allow, tools: [search] }
  - { id: write, effect: require-scopes, scopes: [tools.write], tools: [delete_repo] }
`,
  )
  return dir
}

const post = (body: string, headers: Record<string, string> = {}, bearer: string | null = token) =>
  fetch(`${s.url}/mcp/alpha`, { method: 'POST', headers: { ...MCP_HEADERS, ...(bearer !== null ? { authorization: `Bearer ${bearer}` } : {}), ...headers }, body })
const call = (name: string, params: Record<string, unknown> = {}) => JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name, arguments: {}, ...params } })
const nothingUpstream = (before: number) => expect(s.alpha.requests.length).toBe(before)

describe('attack cases (checklist §19)', () => {
  it('ATK-23 / scope spoofing in _meta or headers does not grant tools.write', async () => {
    const before = s.alpha.requests.length
    for (const res of [await post(call('delete_repo', { _meta: { scope: 'tools.write' } })), await post(call('delete_repo'), { 'x-scope': 'tools.write', 'x-mcp-scopes': 'tools.write' })]) {
      expect(res.status).toBe(403)
      expect(res.headers.get('www-authenticate')).toMatch(/insufficient_scope/)
    }
    nothingUpstream(before)
  })

  it('ATK-34 / Origin evil or null is 403; a foreign Host is 4xx', async () => {
    const before = s.alpha.requests.length
    expect((await post(INIT, { origin: 'https://evil.example' })).status).toBe(403)
    expect((await post(INIT, { origin: 'null' })).status).toBe(403)
    const { request } = await import('node:http')
    const status = await new Promise<number>((resolve, reject) => {
      const u = new URL(`${s.url}/mcp/alpha`)
      const r = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { ...MCP_HEADERS, host: 'attacker.example', authorization: `Bearer ${token}` } }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      r.on('error', reject)
      r.end(INIT)
    })
    expect(status).toBeGreaterThanOrEqual(400)
    expect(status).toBeLessThan(500)
    nothingUpstream(before)
  })

  it('ATK-45 / ATK-50 / ATK-55 / nested or empty batch, odd ids, prototype keys: 400, nothing forwarded', async () => {
    const before = s.alpha.requests.length
    const bodies = [
      '[[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"}}]]',
      '[]',
      '{"jsonrpc":"2.0","id":null,"method":"tools/list"}',
      '{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}',
      '{"jsonrpc":"2.0","id":true,"method":"tools/list"}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"__proto__":{"allow":true}}}}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","constructor":{"prototype":{"allow":true}}}}',
    ]
    for (const b of bodies) {
      const n = s.alpha.requests.length
      expect((await post(b)).status, b).toBe(400)
      expect(s.alpha.requests.length - n, b).toBe(0)
    }
    nothingUpstream(before)
  })

  it('ATK-51 / a fake response with no outstanding server request gets 400 from the gateway, with or without a session; nothing forwarded', async () => {
    const init = await post(INIT)
    const sid = init.headers.get('mcp-session-id')!
    await init.body?.cancel()
    const before = s.alpha.requests.length
    for (const headers of [{}, { 'mcp-session-id': sid }] as Record<string, string>[]) {
      const res = await post('{"jsonrpc":"2.0","id":"srv-1","result":{"content":[]}}', headers)
      expect(res.status).toBe(400)
      // The gateway's refusal (SHTTP-36), not the upstream's: it carries the gateway's error code.
      expect(((await res.json()) as { error: { data?: { code?: string } } }).error.data?.code).toBe('GW_MCP_INVALID_REQUEST')
    }
    nothingUpstream(before)
  })

  it('ATK-56 / parser DoS: deep nesting and huge arrays are refused quickly and the gateway stays healthy', async () => {
    const before = s.alpha.requests.length
    const t = Date.now()
    const deep = await post('['.repeat(100_000) + ']'.repeat(100_000))
    const wide = await post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":[${'1,'.repeat(999_999)}1]}}}`)
    const elapsed = Date.now() - t
    expect([400, 413]).toContain(deep.status)
    expect([400, 413]).toContain(wide.status)
    // Generous on a loaded CI machine; the point is seconds, not minutes.
    expect(elapsed).toBeLessThan(5_000)
    expect((await fetch(`${s.adminUrl}/healthz`)).status).toBe(200)
    nothingUpstream(before)
  })

  it('ATK-62 / a session id is no credential: no token or a garbage token is 401', async () => {
    const init = await post(INIT)
    const sid = init.headers.get('mcp-session-id')!
    const before = s.alpha.requests.length
    expect((await post(call('search', { arguments: { query: 'x' } }), { 'mcp-session-id': sid }, null)).status).toBe(401)
    expect((await post(call('search', { arguments: { query: 'x' } }), { 'mcp-session-id': sid }, 'garbage')).status).toBe(401)
    nothingUpstream(before)
  })

  it('ATK-63 / session fixation: an attacker-chosen id on initialize is never the session id', async () => {
    const res = await post(INIT, { 'mcp-session-id': 'chosen-by-attacker' })
    // Either refused (an initialize carries no session) or a fresh id from the upstream.
    if (res.status === 200) expect(res.headers.get('mcp-session-id')).not.toBe('chosen-by-attacker')
    else expect(res.status).toBeGreaterThanOrEqual(400)
    const reuse = await post(call('search', { arguments: { query: 'x' } }), { 'mcp-session-id': 'chosen-by-attacker' })
    expect(reuse.status).toBe(404)
  })

  it('ATK-42 / version downgrade with a batch body on a 2025-11-25 session is 400', async () => {
    const init = await post(INIT)
    const sid = init.headers.get('mcp-session-id')!
    await init.body?.cancel()
    const before = s.alpha.requests.length
    const res = await post('[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo"}}]', { 'mcp-protocol-version': '2025-03-26', 'mcp-session-id': sid })
    // Refused for the version (SHTTP-34), before policy could even see the hidden call.
    expect(res.status).toBe(400)
    nothingUpstream(before)
  })
})
