/**
 * Long-lived SSE streams are bounded: they end when their token expires (CHL-10 / ATK-69) or
 * after the route's maximum duration, and one caller cannot hold more than its share (issue 7).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../demo/authorization-server.js'
import { INIT, MCP_HEADERS, startStack, type Stack } from '../helpers/stack.js'

let shortAs: AuthorizationServer
let s: Stack
beforeAll(async () => {
  shortAs = await startAuthorizationServer({ accessTokenTTL: 3 })
  s = await startStack({ as: shortAs, routeExtra: 'streams: { maxPerCaller: 1, maxDuration: 20s }' })
})
afterAll(async () => {
  await s?.close()
  await shortAs?.close()
})

async function session(token: string): Promise<string> {
  const res = await fetch(`${s.url}/mcp/alpha`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: INIT })
  await res.text()
  const id = res.headers.get('mcp-session-id')
  if (!id) throw new Error(`no session (${res.status})`)
  await fetch(`${s.url}/mcp/alpha`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, 'mcp-session-id': id }, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })
  return id
}

const openStream = (token: string, id: string, signal?: AbortSignal) =>
  fetch(`${s.url}/mcp/alpha`, { headers: { accept: 'text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}`, 'mcp-session-id': id }, ...(signal ? { signal } : {}) })

describe('stream limits', () => {
  it('CHL-10 / ATK-69 / a GET stream ends when the token that opened it expires', async () => {
    const token = await s.token()
    const id = await session(token)
    const opened = Date.now()
    const res = await openStream(token, id)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/)
    // Reading to the end only returns because the gateway ends the stream at the token's exp (3 s).
    await res.text()
    const lived = Date.now() - opened
    expect(lived).toBeLessThan(10_000)
  })

  it('a caller may hold streams.maxPerCaller GET streams; the next one gets 429 until one closes', async () => {
    const token = await s.token()
    const id = await session(token)
    const first = new AbortController()
    const a = await openStream(token, id, first.signal)
    expect(a.status).toBe(200)
    const b = await openStream(token, id)
    expect(b.status).toBe(429)
    expect(b.headers.get('retry-after')).toBe('5')
    expect(((await b.json()) as { error: { data: { code: string } } }).error.data.code).toBe('GW_HTTP_TOO_MANY_STREAMS')
    // Another caller is not affected.
    const other = await s.token({ subject: 'bob' })
    const c = new AbortController()
    expect((await openStream(other, await session(other), c.signal)).status).toBe(200)
    c.abort()
    first.abort()
    await new Promise((r) => setTimeout(r, 200))
    const again = new AbortController()
    expect((await openStream(token, id, again.signal)).status).toBe(200)
    again.abort()
  })
})
