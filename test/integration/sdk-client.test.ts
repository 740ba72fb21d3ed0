/**
 * The real MCP SDK client through mcp-warden: with a token, and with the SDK's own OAuth flow
 * discovering everything from the gateway's 401 (issue 2 "Done when").
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { headlessOAuth } from '../helpers/sdk-oauth.js'
import { startStack, type Stack } from '../helpers/stack.js'

let s: Stack
beforeAll(async () => {
  s = await startStack()
})
afterAll(async () => s?.close())

async function connect(token: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'sdk-test', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${token}` } } })
  await client.connect(transport)
  return { client, transport }
}

describe('MCP SDK client through the gateway', () => {
  it('initializes, lists and calls tools with a valid token; the upstream never sees the token (ATK-31)', async () => {
    const token = await s.token()
    s.alpha.reset()
    const { client, transport } = await connect(token)
    expect(transport.sessionId).toEqual(expect.any(String))
    const { tools } = await client.listTools()
    expect(tools.map((t) => t.name)).toContain('search')
    const r = await client.callTool({ name: 'add', arguments: { a: 20, b: 22 } })
    expect(r.content).toEqual([{ type: 'text', text: '42' }])
    expect((await client.listPrompts()).prompts.length).toBeGreaterThan(0)
    expect((await client.listResources()).resources.length).toBeGreaterThan(0)
    // DELETE ends the session through the gateway (SHTTP-30).
    await transport.terminateSession()
    await client.close()
    const methods = s.alpha.requests.map((q) => q.method)
    expect(methods).toContain('POST')
    expect(methods).toContain('DELETE')
    expect(s.alpha.requests.every((q) => q.headers.authorization === undefined)).toBe(true)
    expect(s.alpha.sawString(token)).toBe(false)
  })

  it('SHTTP-16/17 / progress notifications reach the client as they are sent, not when the call ends', async () => {
    const { client } = await connect(await s.token())
    const events: { kind: string; at: number }[] = []
    const started = Date.now()
    await client.callTool({ name: 'count_slowly', arguments: { n: 4, delayMs: 250 } }, undefined, {
      onprogress: () => events.push({ kind: 'progress', at: Date.now() - started }),
    })
    events.push({ kind: 'result', at: Date.now() - started })
    await client.close()
    expect(events.map((e) => e.kind)).toEqual(['progress', 'progress', 'progress', 'progress', 'result'])
    // Buffered relaying would deliver every progress event together with the result.
    const first = events[0]!.at
    const result = events[4]!.at
    expect(result - first).toBeGreaterThanOrEqual(500)
    for (let i = 1; i < 4; i++) expect(events[i]!.at - events[i - 1]!.at).toBeGreaterThanOrEqual(150)
  })

  it('the SDK OAuth flow runs headlessly through the gateway: 401 → metadata → AS discovery → registration → PKCE with resource → token → retry', async () => {
    const oauth = headlessOAuth()
    const url = new URL(`${s.url}/mcp/alpha`)
    const first = new Client({ name: 'sdk-oauth', version: '1.0.0' })
    const transport = new StreamableHTTPClientTransport(url, { authProvider: oauth.provider })
    await expect(first.connect(transport)).rejects.toBeInstanceOf(UnauthorizedError)
    // The authorization request carried the route resource (RFC 8707) the client found in the PRM.
    expect(oauth.authorizationUrls[0]?.searchParams.get('resource')).toBe(s.resource.alpha)
    expect(oauth.authorizationUrls[0]?.searchParams.get('scope')).toBe('tools.read')
    await transport.finishAuth(oauth.code()!)
    const access = oauth.tokens()!.access_token
    expect(decodeJwt(access)).toMatchObject({ aud: s.resource.alpha, sub: 'alice' })

    const client = new Client({ name: 'sdk-oauth', version: '1.0.0' })
    await client.connect(new StreamableHTTPClientTransport(url, { authProvider: oauth.provider }))
    expect((await client.listTools()).tools.length).toBeGreaterThan(0)
    await client.close()
    expect(s.logs.join('\n')).not.toContain(access.split('.')[2]!)
  })
})
