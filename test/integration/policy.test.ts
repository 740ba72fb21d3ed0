/**
 * Declarative policies end to end (issue 5): the real MCP SDK client and servers through
 * mcp-warden with a policy directory. Checklist sections 8 (SCP) and 15 (POL), attacks 19.3.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { OAuthClientInformationMixed, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import * as jose from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AGENT_CLIENT_ID, AGENT_REDIRECT_URI, followAuthorizationRedirects } from '../../demo/authorization-server.js'
import { startMcpServer, type McpUpstream } from '../../demo/mcp-server.js'
import { listenerYaml, MCP_HEADERS, parseChallenge, type Stack, startStack } from '../helpers/stack.js'

const policy = (extraRules = '') => `apiVersion: mcp-warden/v1
kind: Policy
name: main
routes: [alpha, json]
rules:
  - id: lifecycle
    effect: allow
    methods: [initialize, ping, "notifications/*", tools/list, prompts/list, resources/list]
  - id: read-tools
    effect: allow
    tools: [search, add, whoami, count_slowly]
    when: { scopes: { allOf: [tools.read] } }
  - id: small-transfers
    effect: allow
    tools: [transfer_funds]
    arguments: { amount: { gt: 0, lte: 100 } }
  - id: large-transfers
    effect: require-scopes
    scopes: [tools.write]
    tools: [transfer_funds]
    arguments: { amount: { gt: 100, lte: 100000 } }
  - id: no-deletes
    effect: deny
    tools: ["delete_*"]
${extraRules}`

let s: Stack
let json: McpUpstream
let dir: string
let token: string

/** A Kubernetes ConfigMap volume: files are symlinks into ..data, which is swapped atomically. */
let generation = 0
function publish(files: Record<string, string>): void {
  const gen = `..gen${++generation}`
  mkdirSync(join(dir, gen))
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, gen, name), text)
  symlinkSync(gen, join(dir, '..data_tmp'))
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
  for (const name of Object.keys(files)) {
    try {
      symlinkSync(join('..data', name), join(dir, name))
    } catch {
      /* the link already exists and now points into the new generation */
    }
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcpw-policies-'))
  publish({ 'main.yaml': policy() })
  json = await startMcpServer({ name: 'json', enableJsonResponse: true })
  s = await startStack({
    yaml: (c) => `${listenerYaml({ publicUrl: c.publicUrl, port: c.port, adminPort: c.adminPort })}issuers:
  demo:
    issuer: ${c.issuer}
routes:
  - { name: alpha, path: /mcp/alpha, upstream: { url: ${c.alpha} }, issuers: [demo], scopesSupported: [tools.read] }
  - { name: json, path: /mcp/json, upstream: { url: ${json.url} }, issuers: [demo], scopesSupported: [tools.read] }
  - { name: beta, path: /mcp/beta, upstream: { url: ${c.beta} }, issuers: [demo], scopesSupported: [tools.read] }
policies:
  dir: ${dir}
logging: { level: info }
`,
  })
  token = await s.token({ scope: 'tools.read' })
})
afterAll(async () => {
  await s?.close()
  await json?.close()
  rmSync(dir, { recursive: true, force: true })
})

async function connect(path: string, bearer = token): Promise<Client> {
  const client = new Client({ name: 'policy-test', version: '1.0.0' })
  await client.connect(new StreamableHTTPClientTransport(new URL(`${s.url}${path}`), { requestInit: { headers: { authorization: `Bearer ${bearer}` } } }))
  return client
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${s.url}${path}`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) })
const CALL = (name: string, args: unknown = {}, id: number | string = 7) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } })
const upstreamSaw = (u: McpUpstream, text: string) => u.requests.some((r) => r.body.includes(text))

describe('policy: discovery and calls through the SDK', () => {
  it('POL-09 / ATK-59 / a denied tool is absent from tools/list, for SSE and JSON upstreams', async () => {
    for (const path of ['/mcp/alpha', '/mcp/json']) {
      const client = await connect(path, (await s.as.getToken({ resource: `${s.url}${path}`, scope: 'tools.read' })).access_token)
      const names = (await client.listTools()).tools.map((t) => t.name).sort()
      expect(names, path).toEqual(['add', 'count_slowly', 'search', 'transfer_funds', 'whoami'])
      // No rule names a prompt or resource: the upstream has some, the caller sees none.
      expect((await client.listPrompts()).prompts, path).toEqual([])
      expect((await client.listResources()).resources, path).toEqual([])
      await client.close()
    }
  })

  it('POL-12 / a denied tool is refused on tools/call with a JSON-RPC error, never forwarded', async () => {
    const client = await connect('/mcp/alpha')
    s.alpha.reset()
    const err = await client.callTool({ name: 'delete_repo', arguments: { repo: 'x' } }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(McpError)
    expect(err).toMatchObject({ code: -31403 })
    expect((err as McpError).message).toContain('Forbidden by gateway policy')
    expect((err as McpError).message).not.toContain('no-deletes')
    expect(upstreamSaw(s.alpha, 'delete_repo')).toBe(false)
    await client.close()
  })

  it('arguments / transfer_funds amount 10 is allowed, amount 10000 refused (step-up needed)', async () => {
    const client = await connect('/mcp/alpha')
    expect(await client.callTool({ name: 'transfer_funds', arguments: { amount: 10, to: 'bob' } })).toMatchObject({ content: [{ type: 'text', text: 'transferred 10 to bob' }] })
    s.alpha.reset()
    await expect(client.callTool({ name: 'transfer_funds', arguments: { amount: 10000, to: 'bob' } })).rejects.toThrow(/insufficient_scope/)
    expect(upstreamSaw(s.alpha, '10000')).toBe(false)
    await client.close()
  })

  it('SCP-01 / SCP-02 / SCP-06 / require-scopes answers 403 insufficient_scope naming every needed scope', async () => {
    s.alpha.reset()
    const res = await post('/mcp/alpha', CALL('transfer_funds', { amount: 5000, to: 'bob' }))
    expect(res.status).toBe(403)
    const c = parseChallenge(res.headers.get('www-authenticate'))
    expect(c?.params).toMatchObject({ error: 'insufficient_scope', resource_metadata: `${s.url}/.well-known/oauth-protected-resource/mcp/alpha` })
    expect(c?.params.scope?.split(' ').sort()).toEqual(['tools.read', 'tools.write'])
    expect(c?.params.scope).not.toContain('offline_access')
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('SCP-01 / the SDK client steps up (re-authorizes with more scope) and then succeeds', async () => {
    // A pre-registered public client (demo-agent). With dynamic registration the SDK registers the
    // scope of the first challenge, and an AS that enforces registered scopes (oidc-provider does)
    // then refuses the step-up with invalid_scope: see docs/policies.md "Step-up".
    let clientInfo: OAuthClientInformationMixed | undefined = { client_id: AGENT_CLIENT_ID }
    let tokens: OAuthTokens | undefined
    let verifier = ''
    let callback: URL | undefined
    const provider: OAuthClientProvider = {
      redirectUrl: AGENT_REDIRECT_URI,
      clientMetadata: { client_name: 'step-up test', redirect_uris: [AGENT_REDIRECT_URI], grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'none' },
      clientInformation: () => clientInfo,
      saveClientInformation: (i) => void (clientInfo = i),
      tokens: () => tokens,
      saveTokens: (t) => void (tokens = t),
      redirectToAuthorization: async (url) => void (callback = await followAuthorizationRedirects(url)),
      saveCodeVerifier: (v) => void (verifier = v),
      codeVerifier: () => verifier,
    }
    const url = new URL(`${s.url}/mcp/alpha`)
    // First contact: 401 → discovery → authorization (headless) → code.
    const first = new StreamableHTTPClientTransport(url, { authProvider: provider })
    await expect(new Client({ name: 'step-up', version: '1.0.0' }).connect(first)).rejects.toThrow(/Unauthorized/)
    await first.finishAuth(callback!.searchParams.get('code')!)
    const transport = new StreamableHTTPClientTransport(url, { authProvider: provider })
    const client = new Client({ name: 'step-up', version: '1.0.0' })
    await client.connect(transport)
    expect(jose.decodeJwt(tokens!.access_token).scope).toBe('tools.read')

    // The large transfer: 403 insufficient_scope → the SDK re-authorizes with the challenge scope.
    callback = undefined as URL | undefined
    await expect(client.callTool({ name: 'transfer_funds', arguments: { amount: 5000, to: 'bob' } })).rejects.toThrow(/Unauthorized/)
    expect(callback?.searchParams.get('error'), callback?.href).toBeNull()
    await transport.finishAuth(callback!.searchParams.get('code')!)
    expect(String(jose.decodeJwt(tokens!.access_token).scope).split(' ').sort()).toEqual(['tools.read', 'tools.write'])
    expect(await client.callTool({ name: 'transfer_funds', arguments: { amount: 5000, to: 'bob' } })).toMatchObject({ content: [{ text: 'transferred 5000 to bob' }] })
    await client.close()
  })
})

describe('policy: refusals on the wire', () => {
  it('POL-05 / POL-12 / ATK-47 / method variants and unknown methods are -32601, not forwarded', async () => {
    s.alpha.reset()
    for (const method of ['Tools/Call', 'TOOLS/CALL', 'tools/call ', 'tools/call\u0000', 'tools\uff0fcall', 'vendor/secret']) {
      const res = await post('/mcp/alpha', { jsonrpc: '2.0', id: 8, method, params: { name: 'search', arguments: {} } })
      expect(res.status, method).toBe(200)
      expect(await res.json(), method).toMatchObject({ jsonrpc: '2.0', id: 8, error: { code: -32601 } })
    }
    expect(s.alpha.requests.map((r) => r.body)).toEqual([])
  })

  it('POL-06 / ATK-48 / unknown tools and homoglyphs are -31403 with the request id', async () => {
    s.alpha.reset()
    for (const name of ['unknown_tool', 'delete_rep\u043e', 'DELETE_REPO', 'search ']) {
      const res = await post('/mcp/alpha', CALL(name, {}, 'req-1'))
      expect(res.status).toBe(200)
      const body = (await res.json()) as { id: unknown; error: { code: number; data: { requestId: string } } }
      expect(body).toMatchObject({ id: 'req-1', error: { code: -31403, message: 'Forbidden by gateway policy' } })
      expect(body.error.data.requestId).toBe(res.headers.get('x-request-id'))
    }
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('ATK-47 / an escaped solidus is the same method: tools\\/call delete_repo is denied', async () => {
    s.alpha.reset()
    const res = await post('/mcp/alpha', '{"jsonrpc":"2.0","id":7,"method":"tools\\/call","params":{"name":"delete\\u005frepo","arguments":{}}}')
    expect(await res.json()).toMatchObject({ error: { code: -31403 } })
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('POL-13 / ATK-52 / _meta authority claims are ignored', async () => {
    const res = await post('/mcp/alpha', { ...CALL('delete_repo'), params: { name: 'delete_repo', arguments: {}, _meta: { approved: true, role: 'admin' }, task: { ttl: 60000 } } })
    expect(await res.json()).toMatchObject({ error: { code: -31403 } })
  })

  it('POL-10 / ATK-44 / a 2025-03-26 batch with one denied element is refused whole', async () => {
    s.alpha.reset()
    const batch = [{ jsonrpc: '2.0', id: 1, method: 'ping' }, CALL('delete_repo', {}, 2)]
    const res = await post('/mcp/alpha', batch, { 'mcp-protocol-version': '2025-03-26' })
    expect(await res.json()).toMatchObject({ error: { code: -31403 } })
    // A step-up element next to a denied one: the denial answers (no pointless re-authorization).
    const mixed = [CALL('transfer_funds', { amount: 5000, to: 'bob' }, 1), CALL('delete_repo', {}, 2)]
    const res2 = await post('/mcp/alpha', mixed, { 'mcp-protocol-version': '2025-03-26' })
    expect(res2.status).toBe(200)
    expect(await res2.json()).toMatchObject({ error: { code: -31403 } })
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('closed / a route without any applicable policy refuses everything, initialize included', async () => {
    s.beta.reset()
    const res = await post('/mcp/beta', { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }, { authorization: `Bearer ${await s.token({ route: 'beta' })}` })
    expect(await res.json()).toMatchObject({ id: 1, error: { code: -32601 } })
    expect(s.beta.requests).toHaveLength(0)
  })

  it('SCP-07 / POL-16 / audit lines carry decision, rule, policy version and an argument digest, never values or tokens', async () => {
    await post('/mcp/alpha', CALL('delete_repo', { repo: 'secret-repo-name' }, 'audit-1'))
    await post('/mcp/alpha', CALL('transfer_funds', { amount: 777, to: 'bob' }, 'audit-2'))
    const audits = s.logLines().filter((l) => l.audit).map((l) => l.audit as Record<string, any>)
    const deny = audits.find((a) => a.mcp?.rpcId === 'audit-1')!
    expect(deny).toMatchObject({ status: 200, code: 'GW_POLICY_DENIED', mcp: { method: 'tools/call', target: 'delete_repo' }, decision: { effect: 'deny', policy: 'main', rule: 'no-deletes', reason: 'explicit-deny', policyVersion: s.gateway.policies!.current.version } })
    expect(deny.decision.argumentsDigest).toMatch(/^sha256:[A-Za-z0-9_-]{43}$/)
    expect(deny.decision.arguments).toBeUndefined()
    expect(deny.principal).toMatchObject({ subject: 'alice', agent: 'demo-agent' })
    const step = audits.find((a) => a.mcp?.rpcId === 'audit-2')!
    expect(step).toMatchObject({ status: 403, code: 'GW_AUTH_INSUFFICIENT_SCOPE', decision: { effect: 'require-scopes', rule: 'large-transfers' } })
    const all = s.logs.join('\n')
    expect(all).not.toContain('secret-repo-name')
    expect(all).not.toMatch(/eyJ[A-Za-z0-9_-]+\./)
  })
})

describe('policy: hot reload and shadow mode', () => {
  const metric = async (name: string) => {
    const text = await (await fetch(`${s.adminUrl}/metrics`)).text()
    return text.split('\n').filter((l) => l.startsWith(name))
  }
  const waitFor = async (cond: () => Promise<boolean> | boolean, ms = 5000) => {
    const end = Date.now() + ms
    while (!(await cond())) {
      if (Date.now() > end) throw new Error('timed out waiting for a reload')
      await new Promise((r) => setTimeout(r, 25))
    }
  }

  it('reload / ConfigMap swaps under load: no request fails; an invalid set is refused and the old one stays', async () => {
    const client = await connect('/mcp/alpha')
    const v1 = s.gateway.policies!.current.version
    let stop = false
    let calls = 0
    const failures: unknown[] = []
    // Three callers keep calling until the swaps are done (and at least 30 calls were made).
    const load = Promise.all([0, 1, 2].map(async () => {
      while (!stop || calls < 30) {
        const r = await client.callTool({ name: 'search', arguments: { query: 'q' } }).catch((e: unknown) => e)
        if (r instanceof Error) failures.push(r)
        calls++
      }
    }))

    // 1. A valid change (ConfigMap swap): `add` becomes denied, `search` stays allowed.
    publish({ 'main.yaml': policy('  - { id: no-add, effect: deny, tools: [add] }\n') })
    await waitFor(() => s.gateway.policies!.current.version !== v1)
    const v2 = s.gateway.policies!.current.version
    await expect(client.callTool({ name: 'add', arguments: { a: 1, b: 2 } })).rejects.toMatchObject({ code: -31403 })
    expect(await metric('mcp_warden_policy_info')).toContain(`mcp_warden_policy_info{version="${v2}"} 1`)

    // 2. An invalid file: refused, v2 stays in force, logged and counted.
    publish({ 'main.yaml': policy('  - { id: broken, effect: alow, tools: [add] }\n') })
    await waitFor(async () => (await metric('mcp_warden_policy_last_reload_failed')).includes('mcp_warden_policy_last_reload_failed 1'))
    expect(s.gateway.policies!.current.version).toBe(v2)
    await expect(client.callTool({ name: 'add', arguments: { a: 1, b: 2 } })).rejects.toMatchObject({ code: -31403 })
    const failed = s.logLines().find((l) => l.event === 'policy.reload_failed') as { problems: string[]; version: string }
    expect(failed.version).toBe(v2)
    expect(failed.problems.join('\n')).toMatch(/main\.yaml:\d+:\d+ {2}rules\[5\]\.effect: must be one of/)

    // 3. SIGHUP path (same reload entry point): nothing changed on disk → unchanged, still v2.
    expect(s.gateway.policies!.reload('SIGHUP')).toBe(false)

    stop = true
    await load
    await client.close()
    expect(failures).toEqual([])
    publish({ 'main.yaml': policy() })
    await waitFor(() => s.gateway.policies!.current.version === v1)
  })

  it('shadow / a shadow deny is logged as would-deny and not enforced', async () => {
    const v = s.gateway.policies!.current.version
    publish({ 'main.yaml': policy('  - { id: maybe-no-search, effect: deny, tools: [search], mode: shadow }\n') })
    await waitFor(() => s.gateway.policies!.current.version !== v)
    const client = await connect('/mcp/alpha')
    expect(await client.callTool({ name: 'search', arguments: { query: 'q' } })).toMatchObject({ content: [{ type: 'text' }] })
    await client.close()
    const shadow = s.logLines().filter((l) => l.event === 'policy.shadow').at(-1) as { decision: Record<string, unknown> }
    expect(shadow.decision).toMatchObject({ effect: 'allow', rule: 'read-tools', shadow: { effect: 'deny', rule: 'maybe-no-search' } })
    expect((await metric('mcp_warden_policy_shadow_divergences_total')).join('\n')).toMatch(/route="alpha",effect="deny"} [1-9]/)
  })
})
