/**
 * Least privilege on first login (issue 16 item 11, CHL-02, PRM-05, SCP-01, SCP-02): the 401
 * challenge names what a first token needs (`challengeScopes`), the metadata every scope
 * (`scopesSupported`), and a call that needs more gets 403 insufficient_scope; the real MCP SDK
 * client's own OAuth flow (PKCE, resource) then steps up.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AGENT_CLIENT_ID, AGENT_REDIRECT_URI } from '../../demo/authorization-server.js'
import { headlessOAuth } from '../helpers/sdk-oauth.js'
import { INIT, listenerYaml, MCP_HEADERS, parseChallenge, type Stack, startStack } from '../helpers/stack.js'

const POLICY = `apiVersion: mcp-warden/v1
kind: Policy
name: main
routes: [alpha, one, two]
rules:
  - id: lifecycle
    effect: allow
    methods: [initialize, ping, "notifications/*", tools/list]
  - id: read
    effect: allow
    tools: [search, add]
    when: { scopes: { allOf: [tools.read] } }
  - id: transfers
    effect: require-scopes
    scopes: [tools.write]
    tools: [transfer_funds]
`

let s: Stack
let dir: string
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcpw-scopes-'))
  writeFileSync(join(dir, 'main.yaml'), POLICY)
  s = await startStack({
    yaml: (c) => `${listenerYaml({ publicUrl: c.publicUrl, port: c.port, adminPort: c.adminPort })}issuers:
  demo: { issuer: ${c.issuer} }
routes:
  - { name: alpha, path: /mcp/alpha, upstream: { url: ${c.alpha} }, issuers: [demo], scopesSupported: [tools.read, tools.write], challengeScopes: [tools.read] }
  - { name: one, path: /mcp/one, upstream: { url: ${c.alpha} }, issuers: [demo], resource: '${c.publicUrl}/mcp', sharedResource: true, scopesSupported: [tools.read] }
  - { name: two, path: /mcp/two, upstream: { url: ${c.beta} }, issuers: [demo], resource: '${c.publicUrl}/mcp', sharedResource: true, scopesSupported: [tools.read] }
policies:
  dir: ${dir}
logging: { level: info }
`,
  })
})
afterAll(async () => {
  await s?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('challengeScopes: least privilege on first login', () => {
  it('CHL-02 / PRM-05 / the 401 names the first-request scopes, the metadata all of them', async () => {
    const res = await fetch(`${s.url}/mcp/alpha`, { method: 'POST', headers: MCP_HEADERS, body: '{}' })
    expect(res.status).toBe(401)
    expect(parseChallenge(res.headers.get('www-authenticate'))?.params.scope).toBe('tools.read')
    const prm = (await (await fetch(`${s.url}/.well-known/oauth-protected-resource/mcp/alpha`)).json()) as { scopes_supported: string[] }
    expect(prm.scopes_supported).toEqual(['tools.read', 'tools.write'])
  })

  it('SCP-01 / SCP-02 / the SDK OAuth flow: first token tools.read, 403 names the missing tools.write, the SDK steps up and the call succeeds', async () => {
    // Pre-registered: with dynamic registration the SDK registers only the first challenge's scope
    // and oidc-provider refuses the step-up (invalid_scope; docs/policies.md "Step-up").
    const oauth = headlessOAuth(undefined, { clientId: AGENT_CLIENT_ID, redirectUri: AGENT_REDIRECT_URI })
    const url = new URL(`${s.url}/mcp/alpha`)
    const first = new StreamableHTTPClientTransport(url, { authProvider: oauth.provider })
    await expect(new Client({ name: 'scopes', version: '1' }).connect(first)).rejects.toBeInstanceOf(UnauthorizedError)
    expect(oauth.authorizationUrls[0]?.searchParams.get('scope')).toBe('tools.read')
    await first.finishAuth(oauth.code()!)
    expect(decodeJwt(oauth.tokens()!.access_token).scope).toBe('tools.read')

    // What the SDK sees on the refused call: captured through its fetch.
    const refusals: { status: number; challenge: string | null }[] = []
    const transport = new StreamableHTTPClientTransport(url, {
      authProvider: oauth.provider,
      fetch: async (input, init) => {
        const r = await fetch(input, init)
        if (r.status === 403) refusals.push({ status: r.status, challenge: r.headers.get('www-authenticate') })
        return r
      },
    })
    const client = new Client({ name: 'scopes', version: '1' })
    await client.connect(transport)
    expect((await client.callTool({ name: 'add', arguments: { a: 1, b: 2 } })).content).toEqual([{ type: 'text', text: '3' }])
    s.alpha.reset()
    await expect(client.callTool({ name: 'transfer_funds', arguments: { amount: 5000, to: 'bob' } })).rejects.toBeInstanceOf(UnauthorizedError)
    // Refused before the upstream: nothing of the call reached it.
    expect(s.alpha.requests.filter((q) => q.body.includes('transfer_funds'))).toEqual([])
    expect(refusals).toHaveLength(1)
    const c = parseChallenge(refusals[0]!.challenge)!.params
    expect(c.error).toBe('insufficient_scope')
    expect(c.error_description).toBe('missing scope tools.write')
    // The granted scope stays in `scope`: the SDK replaces its scope with the challenge's.
    expect(c.scope?.split(' ').sort()).toEqual(['tools.read', 'tools.write'])
    expect(oauth.authorizationUrls.at(-1)?.searchParams.get('scope')?.split(' ').sort()).toEqual(['tools.read', 'tools.write'])
    await transport.finishAuth(oauth.code()!)
    expect(String(decodeJwt(oauth.tokens()!.access_token).scope).split(' ').sort()).toEqual(['tools.read', 'tools.write'])
    expect(await client.callTool({ name: 'transfer_funds', arguments: { amount: 5000, to: 'bob' } })).toMatchObject({ content: [{ text: 'transferred 5000 to bob' }] })
    await client.close()
  })
})

describe('sharedResource: one API registration for several routes', () => {
  const post = (path: string, token: string, headers: Record<string, string> = {}, body = INIT) =>
    fetch(`${s.url}${path}`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, ...headers }, body })

  it('PRM-01 / PRM-02 / each route serves its own metadata (named by its own challenge) with the shared resource', async () => {
    const shared = `${new URL(s.url).origin}/mcp`
    for (const name of ['one', 'two']) {
      const res = await fetch(`${s.url}/mcp/${name}`, { method: 'POST', headers: MCP_HEADERS, body: INIT })
      const metadata = parseChallenge(res.headers.get('www-authenticate'))?.params.resource_metadata
      expect(metadata).toBe(`${s.url}/.well-known/oauth-protected-resource/mcp/${name}`)
      expect(await (await fetch(metadata!)).json()).toMatchObject({ resource: shared, scopes_supported: ['tools.read'] })
    }
  })

  it('AUD / a token for the shared resource is valid on every sharing route, not elsewhere; sessions stay bound to their route', async () => {
    const token = (await s.as.getToken({ resource: `${new URL(s.url).origin}/mcp`, scope: 'tools.read' })).access_token
    const one = await post('/mcp/one', token)
    expect(one.status).toBe(200)
    expect((await post('/mcp/two', token)).status).toBe(200)
    expect((await post('/mcp/alpha', token)).status).toBe(401)
    // The session id route one's upstream issued means nothing on route two: the gateway refuses it.
    const session = one.headers.get('mcp-session-id')!
    s.beta.reset()
    const replay = await post('/mcp/two', token, { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' }, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }))
    expect(replay.status).toBe(404)
    expect(s.beta.requests).toEqual([])
  })
})
