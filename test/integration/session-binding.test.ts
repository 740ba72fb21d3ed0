/**
 * Sessions bound to their owner across replicas (issue 7; checklist SHTTP-27/28, ATK-60..67).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { OTHER_AGENT_CLIENT_ID } from '../../demo/authorization-server.js'
import type { RedisInstance } from '../helpers/redis.js'
import { MCP_HEADERS, type ReplicaPair, type Stack, startReplicaPair } from '../helpers/stack.js'

let pair: ReplicaPair
let redis: RedisInstance
let a: Stack
let b: Stack
beforeAll(async () => {
  pair = await startReplicaPair()
  ;({ redis, a, b } = pair)
})
afterAll(() => pair?.close())

const CALL = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'search', arguments: { query: 'x' } } })

async function open(st: Stack, token: string) {
  const client = new Client({ name: 'owner', version: '1' })
  const transport = new StreamableHTTPClientTransport(new URL(`${st.url}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${token}` } } })
  await client.connect(transport)
  return { client, transport, sessionId: transport.sessionId! }
}

const as = (st: Stack, token: string, sessionId: string, method = 'POST') =>
  fetch(`${st.url}/mcp/alpha`, {
    method,
    headers: { ...MCP_HEADERS, ...(method === 'GET' ? { accept: 'text/event-stream' } : {}), authorization: `Bearer ${token}`, 'mcp-session-id': sessionId },
    ...(method === 'POST' ? { body: CALL } : {}),
  })

describe('session binding', () => {
  it('SHTTP-27 / ATK-60 / ATK-65 / another user cannot use, stream or delete a session; the owner keeps it', async () => {
    const alice = await a.token({ subject: 'alice' })
    const bob = await a.token({ subject: 'bob' })
    const { client, sessionId } = await open(a, alice)
    // Let the SDK client's own background GET stream reach the upstream before counting.
    await new Promise((r) => setTimeout(r, 300))
    a.alpha.reset()
    for (const method of ['POST', 'GET', 'DELETE']) {
      const res = await as(a, bob, sessionId, method)
      expect(res.status, method).toBe(404)
      if (method === 'POST') expect(((await res.json()) as { error: { code: number } }).error.code).toBe(-32001)
    }
    expect(a.alpha.requests).toHaveLength(0)
    expect((await client.listTools()).tools.length).toBeGreaterThan(0)
    await client.close()
  })

  it('SHTTP-23 / SHTTP-27 / ATK-65 / resumption with Last-Event-ID is refused to anyone but the owner, on every replica', async () => {
    const alice = await a.token({ subject: 'alice' })
    const bob = await a.token({ subject: 'bob' })
    const { client, sessionId } = await open(a, alice)
    await new Promise((r) => setTimeout(r, 300))
    a.alpha.reset()
    for (const st of [a, b]) {
      const res = await fetch(`${st.url}/mcp/alpha`, {
        headers: { ...MCP_HEADERS, accept: 'text/event-stream', authorization: `Bearer ${bob}`, 'mcp-session-id': sessionId, 'last-event-id': `${sessionId}_0` },
      })
      expect(res.status).toBe(404)
      await res.body?.cancel()
    }
    expect(a.alpha.requests).toHaveLength(0)
    expect((await client.listTools()).tools.length).toBeGreaterThan(0)
    await client.close()
  })

  it('ATK-61 / the same user through another agent is another owner', async () => {
    const alice = await a.token({ subject: 'alice' })
    const aliceOther = await a.token({ subject: 'alice', clientId: OTHER_AGENT_CLIENT_ID })
    const { client, sessionId } = await open(a, alice)
    expect((await as(a, aliceOther, sessionId)).status).toBe(404)
    await client.close()
  })

  it('ATK-64 / unknown or guessed session ids are 404 and never forwarded', async () => {
    const alice = await a.token({ subject: 'alice' })
    a.alpha.reset()
    expect((await as(a, alice, 'guess-123')).status).toBe(404)
    expect(a.alpha.requests).toHaveLength(0)
  })

  it('ATK-67 / the binding holds on every replica (shared through Redis)', async () => {
    const alice = await a.token({ subject: 'alice' })
    const bob = await a.token({ subject: 'bob' })
    const { client, sessionId } = await open(a, alice)
    // Replica B has never seen this session in memory; the owner gets through, the other caller does not.
    expect((await as(b, bob, sessionId)).status).toBe(404)
    expect((await as(b, alice, sessionId)).status).toBe(200)
    await client.close()
  })

  it('SHTTP-34 / ATK-42 / the negotiated version holds on every replica: a downgrade batch through replica B is 400, nothing forwarded', async () => {
    const alice = await a.token({ subject: 'alice' })
    const { client, sessionId } = await open(a, alice)
    await new Promise((r) => setTimeout(r, 300))
    const posts = () => a.alpha.requests.filter((r) => r.method === 'POST').length
    const before = posts()
    const batch = '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search","arguments":{"query":"x"}}}]'
    const res = await fetch(`${b.url}/mcp/alpha`, { method: 'POST', headers: { ...MCP_HEADERS, 'mcp-protocol-version': '2025-03-26', authorization: `Bearer ${alice}`, 'mcp-session-id': sessionId }, body: batch })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { code: number } }).error.code).toBe(-32600)
    // A client response nobody asked for is refused through B as well (SHTTP-36).
    const fake = await fetch(`${b.url}/mcp/alpha`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${alice}`, 'mcp-session-id': sessionId }, body: '{"jsonrpc":"2.0","id":"srv-9","result":{}}' })
    expect(fake.status).toBe(400)
    expect(posts()).toBe(before)
    await client.close()
  })

  it('SHTTP-28 / after DELETE the session is gone', async () => {
    const alice = await a.token({ subject: 'alice' })
    const { client, transport, sessionId } = await open(a, alice)
    await transport.terminateSession()
    await client.close()
    expect((await as(a, alice, sessionId)).status).toBe(404)
  })
})
