/**
 * 2026-07-28 clients across replicas (issue 10 item 3): the upstream session the gateway holds
 * for a caller lives in Redis, so every replica reuses it (one handshake per caller for the whole
 * deployment) and callers still never share one. Real redis-server, AS and SDK upstream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRedis, type RedisInstance } from '../helpers/redis.js'
import { startStack, type Stack } from '../helpers/stack.js'

let redis: RedisInstance
let a: Stack
let b: Stack

beforeAll(async () => {
  redis = await startRedis()
  a = await startStack({ redis })
  b = await startStack({ redis, as: a.as, replicaOf: a })
}, 60_000)
afterAll(async () => {
  await b?.close()
  await a?.close()
  await redis?.stop()
})

const V = '2026-07-28'
const search = (st: Stack, token: string, query: string) =>
  fetch(`${st.url}/mcp/alpha`, {
    method: 'POST',
    headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': V, 'mcp-method': 'tools/call', 'mcp-name': 'search', authorization: `Bearer ${token}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search', arguments: { query }, _meta: { 'io.modelcontextprotocol/protocolVersion': V } } }),
  }).then(async (r) => ({ status: r.status, text: await r.text() }))

const sessionOf = (query: string) => a.alpha.requests.find((r) => r.method === 'POST' && r.body.includes(query))?.headers['mcp-session-id']

describe('2026-07-28 upstream sessions shared through Redis', () => {
  it('SHTTP-27 / one upstream session per caller for every replica; another caller gets its own', async () => {
    const alice = await a.token({ subject: 'alice' })
    const bob = await a.token({ subject: 'bob' })
    a.alpha.reset()
    for (const [st, token, q] of [[a, alice, 'on-a'], [b, alice, 'on-b'], [b, bob, 'bob-on-b'], [a, bob, 'bob-on-a']] as const) {
      const r = await search(st, token, q)
      expect(r.status, q).toBe(200)
      expect(r.text, q).toContain(`results for \\"${q}\\"`)
    }
    expect(sessionOf('on-a')).toBeTruthy()
    expect(sessionOf('on-b')).toBe(sessionOf('on-a'))
    expect(sessionOf('bob-on-a')).toBe(sessionOf('bob-on-b'))
    expect(sessionOf('bob-on-b')).not.toBe(sessionOf('on-a'))
    expect(a.alpha.requests.filter((r) => r.body.includes('"method":"initialize"'))).toHaveLength(2)
  })
})
