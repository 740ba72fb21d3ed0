/**
 * Human approval of risky tool calls (issue 6): a real oidc-provider AS with CIBA (poll mode)
 * and RAR, where the test plays the user's phone through the AS's own request model; a real
 * redis-server shared by two gateway replicas; the real MCP SDK client and servers.
 * Checklist sections 10 (CIBA) and 13 (RAR).
 */
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import * as jose from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../demo/authorization-server.js'
import { bindingDigest } from '../../gateway/approval/binding.js'
import { startStack, type Stack } from '../helpers/stack.js'

const POLICY = `apiVersion: mcp-warden/v1
kind: Policy
name: orders
routes: [alpha]
rules:
  - id: lifecycle
    effect: allow
    methods: [initialize, ping, "notifications/*", tools/list]
  - id: small-orders
    effect: allow
    tools: [transfer_funds]
    arguments: { amount: { lte: 100 } }
  - id: large-orders-need-approval
    effect: require-approval
    tools: [transfer_funds]
    arguments: { amount: { gt: 100 } }
    approval:
      message: "{agent}: transfer {args.amount} to {args.to}"
      wait: 20s
      expiry: 60s
  - id: slow-approval
    effect: require-approval
    tools: [count_slowly]
    approval: { wait: 1s, expiry: 60s }
  - id: short-lived
    effect: require-approval
    tools: [delete_repo]
    approval: { wait: 20s, expiry: 2s }
  - id: searches-for-a-while
    effect: require-approval
    tools: [search]
    approval: { wait: 20s, expiry: 60s, window: 10m }
---
`
const RAR_POLICY = `apiVersion: mcp-warden/v1
kind: Policy
name: payments
routes: [beta]
rules:
  - id: lifecycle
    effect: allow
    methods: [initialize, ping, "notifications/*", tools/list]
  - id: approved-payments
    effect: allow
    tools: [transfer_funds]
    when:
      authorizationDetails:
        type: payment
        fields:
          tool: { equalsTool: true }
          amount: { gteArgument: amount }
          creditor: { equalsArgument: to }
`

let as: AuthorizationServer
let a: Stack
let b: Stack
let dir: string

const issuerExtra = () => `client: { id: ${as.gateway.clientId}, secret: { value: ${as.gateway.clientSecret} } }
# The demo AS enables RAR for mcp-warden, knows the routes as resources and reads any printable message.
approval: { channel: ciba, interval: 200ms, exchangeSubject: approved, authorizationDetails: arguments, resource: route, bindingMessagePattern: "^[ -~]{1,200}$" }`
// The upstream credential is exchanged; for an approved call, from the token the AS issued for the approval.
const UPSTREAM = 'https://upstream.example/alpha'
const ENCRYPTION_KEY = Buffer.alloc(32, 7).toString('base64')

async function connect(url: string, token: string, route = 'alpha'): Promise<Client> {
  const client = new Client({ name: 'approvals-test', version: '1' })
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp/${route}`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }))
  return client
}

const executions = (s: Stack, tool: string, match: (args: Record<string, unknown>) => boolean = () => true) =>
  s.alpha.requests.filter((r) => {
    try {
      const m = JSON.parse(r.body) as { method?: string; params?: { name?: string; arguments?: Record<string, unknown> } }
      return m.method === 'tools/call' && m.params?.name === tool && match(m.params.arguments ?? {})
    } catch {
      return false
    }
  }).length

async function rpcError(p: Promise<unknown>): Promise<{ code: number; data: unknown }> {
  try {
    await p
  } catch (e) {
    if (e instanceof McpError) return { code: e.code, data: e.data }
    throw e
  }
  throw new Error('the call succeeded')
}

const text = (r: unknown) => ((r as { content: { text: string }[] }).content[0]!.text)

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcpw-approvals-'))
  writeFileSync(join(dir, 'orders.yaml'), POLICY.replace(/---\n$/, ''))
  writeFileSync(join(dir, 'payments.yaml'), RAR_POLICY)
  as = await startAuthorizationServer({ ciba: true })
  const extra = `policies: { dir: ${dir}, watch: false }`
  const common = { as, issuerExtra: issuerExtra(), extra, routeExtras: { alpha: `credentials: { strategy: token-exchange, resource: ${UPSTREAM} }` }, redisExtra: `encryptionKey: { value: "${ENCRYPTION_KEY}" }` }
  a = await startStack({ ...common, redis: true })
  b = await startStack({ ...common, redis: a.redis, replicaOf: a })
}, 60_000)

afterAll(async () => {
  if (process.env.DUMP) appendFileSync('/tmp/ciba-dump.log', [...(a?.logs ?? []), ...(b?.logs ?? [])].filter((l) => l.includes('approval') || l.includes('request.error')).join('\n'))
  await b?.close()
  await a?.close()
  await a?.redis?.stop()
  await as?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('require-approval through OpenID CIBA (poll mode)', () => {
  it('CIBA-01 CIBA-09 approved: the user sees a readable binding message and the call runs exactly once', async () => {
    const token = await a.token({ subject: 'carol' })
    const client = await connect(a.url, token)
    const before = executions(a, 'transfer_funds')
    const call = client.callTool({ name: 'transfer_funds', arguments: { amount: 150, to: 'bob' } })
    const req = await as.ciba.next(15_000)
    // Who: the caller token's subject; what: the policy's message, readable on a phone.
    expect(req.accountId).toBe('carol')
    expect(req.bindingMessage).toBe('demo-agent: transfer 150 to bob')
    // RAR describes exactly this call and names its binding digest.
    const [detail] = req.authorizationDetails as Record<string, unknown>[]
    expect(detail).toMatchObject({ type: 'mcp_tool_call', tool: 'transfer_funds', upstream: 'alpha', agent: 'demo-agent', arguments: { amount: 150, to: 'bob' } })
    expect(detail!.arguments_digest).toMatch(/^sha256:/)
    expect(detail!.binding).toBe(bindingDigest({ issuer: as.issuer, subject: 'carol', agent: 'demo-agent', route: 'alpha', tool: 'transfer_funds', argumentsDigest: detail!.arguments_digest as string, policyVersion: detail!.policy_version as string }))
    expect(executions(a, 'transfer_funds')).toBe(before)
    await as.ciba.approve(req.authReqId)
    expect(text(await call)).toBe('transferred 150 to bob')
    expect(executions(a, 'transfer_funds')).toBe(before + 1)
    // The upstream credential was exchanged from the approval's token: it carries the approved call.
    const forwarded = a.alpha.requests.filter((r) => r.body.includes('"transfer_funds"')).at(-1)!
    const upstreamToken = jose.decodeJwt(String(forwarded.headers.authorization).replace(/^Bearer /, ''))
    expect(upstreamToken).toMatchObject({ sub: 'carol', aud: UPSTREAM, act: { sub: 'mcp-warden' } })
    expect((upstreamToken.authorization_details as Record<string, unknown>[])[0]).toMatchObject({ type: 'mcp_tool_call', tool: 'transfer_funds', binding: detail!.binding })
    // A call that needs no approval is exchanged from the caller's token as usual.
    expect(text(await client.callTool({ name: 'transfer_funds', arguments: { amount: 20, to: 'bob' } }))).toBe('transferred 20 to bob')
    const plain = jose.decodeJwt(String(a.alpha.requests.filter((r) => r.body.includes('"transfer_funds"')).at(-1)!.headers.authorization).replace(/^Bearer /, ''))
    expect(plain.sub).toBe('carol')
    expect(plain.authorization_details).toBeUndefined()

    // The approval is used up: the same call again asks the user again (a new request).
    const again = client.callTool({ name: 'transfer_funds', arguments: { amount: 150, to: 'bob' } })
    const second = await as.ciba.next(15_000)
    expect(second.authReqId).not.toBe(req.authReqId)
    await as.ciba.deny(second.authReqId)
    expect((await rpcError(again)).code).toBe(-31460)
    expect(executions(a, 'transfer_funds')).toBe(before + 2)

    // Audit: request and decision, with the binding and the latency; never a token.
    const events = a.logLines().filter((l) => typeof l.event === 'string' && (l.event as string).startsWith('approval.'))
    const decided = events.find((e) => e.event === 'approval.decided' && (e.approval as { outcome: string }).outcome === 'approved')
    expect(decided).toBeDefined()
    expect((decided!.approval as { binding: { tool: string; subject: string }; latencyMs: number }).binding).toMatchObject({ tool: 'transfer_funds', subject: 'carol' })
    expect(typeof (decided!.approval as { latencyMs: number }).latencyMs).toBe('number')
    // The request's audit line names the approval that released it.
    const consumed = events.find((e) => e.event === 'approval.consumed')!
    const released = a.logLines().filter((l) => (l.audit as { mcp?: { target?: string }; approval?: string } | undefined)?.approval === (consumed.approval as { id: string }).id)
    expect(released).toHaveLength(1)
    expect(a.logs.some((l) => l.includes(token))).toBe(false)
    await client.close()
  }, 60_000)

  it('CIBA-03 denied (access_denied): JSON-RPC error that says so, and the upstream sees nothing', async () => {
    const client = await connect(a.url, await a.token({ subject: 'dave' }))
    const before = executions(a, 'transfer_funds', (x) => x.amount === 500)
    const call = client.callTool({ name: 'transfer_funds', arguments: { amount: 500, to: 'mallory' } })
    const req = await as.ciba.next(15_000)
    await as.ciba.deny(req.authReqId)
    const err = await rpcError(call)
    expect(err.code).toBe(-31460)
    expect(err.data).toMatchObject({ code: 'GW_APPROVAL_DENIED' })
    expect(executions(a, 'transfer_funds', (x) => x.amount === 500)).toBe(before)
    await client.close()
  }, 60_000)

  it('CIBA-02 CIBA-03 expired: no decision before the request expires → error, nothing runs', async () => {
    const client = await connect(a.url, await a.token({ subject: 'erin' }))
    const call = client.callTool({ name: 'delete_repo', arguments: { repo: 'prod' } })
    await as.ciba.next(15_000)
    const err = await rpcError(call)
    expect(err.code).toBe(-31462)
    expect(executions(a, 'delete_repo')).toBe(0)
    await client.close()
  }, 60_000)

  it('CIBA-06 an approval is bound to its call: other arguments or another tool are not covered', async () => {
    const client = await connect(a.url, await a.token({ subject: 'frank' }))
    const first = client.callTool({ name: 'transfer_funds', arguments: { amount: 200, to: 'bob' } })
    const approved = await as.ciba.next(15_000)
    // Before the approval arrives, a call with other arguments asks separately.
    const other = client.callTool({ name: 'transfer_funds', arguments: { amount: 2000, to: 'bob' } })
    const otherReq = await as.ciba.next(15_000)
    expect(otherReq.authReqId).not.toBe(approved.authReqId)
    expect((otherReq.authorizationDetails as { binding: string }[])[0]!.binding).not.toBe((approved.authorizationDetails as { binding: string }[])[0]!.binding)
    await as.ciba.approve(approved.authReqId)
    expect(text(await first)).toBe('transferred 200 to bob')
    await as.ciba.deny(otherReq.authReqId)
    expect((await rpcError(other)).code).toBe(-31460)
    expect(executions(a, 'transfer_funds', (x) => x.amount === 2000)).toBe(0)
    await client.close()
  }, 60_000)

  it('CIBA-06 CIBA-07 an AS that approves something else (other authorization_details), or another user, does not release the call', async () => {
    const client = await connect(a.url, await a.token({ subject: 'gina' }))
    const call = client.callTool({ name: 'transfer_funds', arguments: { amount: 300, to: 'bob' } })
    const req = await as.ciba.next(15_000)
    const swapped = (req.authorizationDetails as Record<string, unknown>[]).map((d) => ({ ...d, binding: 'another-call' }))
    await as.ciba.approve(req.authReqId, { authorizationDetails: swapped })
    expect((await rpcError(call)).code).toBe(-31463)
    expect(executions(a, 'transfer_funds', (x) => x.amount === 300)).toBe(0)
    // CIBA-07: approved, but by another user (the ID token's sub is not the caller).
    const again = client.callTool({ name: 'transfer_funds', arguments: { amount: 301, to: 'bob' } })
    await as.ciba.approve((await as.ciba.next(15_000)).authReqId, { accountId: 'mallory' })
    expect((await rpcError(again)).code).toBe(-31463)
    expect(executions(a, 'transfer_funds', (x) => x.amount === 301)).toBe(0)
    await client.close()
  }, 60_000)

  it('CIBA-09 the call pends on one replica and the retry succeeds on the other, running once', async () => {
    const token = await a.token({ subject: 'hank' })
    const onA = await connect(a.url, token)
    const pending = await rpcError(onA.callTool({ name: 'count_slowly', arguments: { n: 1, delayMs: 0 } }))
    expect(pending.code).toBe(-31461)
    expect(pending.data).toMatchObject({ code: 'GW_APPROVAL_PENDING' })
    const req = await as.ciba.next(15_000)
    await as.ciba.approve(req.authReqId)
    const onB = await connect(b.url, token)
    expect(text(await onB.callTool({ name: 'count_slowly', arguments: { n: 1, delayMs: 0 } }))).toBe('counted to 1')
    expect(executions(a, 'count_slowly')).toBe(1)
    const viaB = a.alpha.requests.find((r) => r.body.includes('"count_slowly"'))!
    expect(jose.decodeJwt(String(viaB.headers.authorization).replace(/^Bearer /, '')).authorization_details).toBeDefined()
    // One request to the user for both tries.
    expect(as.ciba.requests.filter((r) => r.accountId === 'hank')).toHaveLength(1)
    await Promise.all([onA.close(), onB.close()])
  }, 60_000)

  it('CIBA-06 (window) a window approval covers the same agent and tool for its duration, and nothing else', async () => {
    const client = await connect(a.url, await a.token({ subject: 'ivy' }))
    const first = client.callTool({ name: 'search', arguments: { query: 'one' } })
    await as.ciba.approve((await as.ciba.next(15_000)).authReqId)
    expect(text(await first)).toContain('"one"')
    const asked = as.ciba.requests.length
    expect(text(await client.callTool({ name: 'search', arguments: { query: 'two' } }))).toContain('"two"')
    expect(as.ciba.requests.length).toBe(asked)
    // Another user with the same agent is not covered.
    const other = await connect(a.url, await a.token({ subject: 'jack' }))
    const call = other.callTool({ name: 'search', arguments: { query: 'three' } })
    await as.ciba.deny((await as.ciba.next(15_000)).authReqId)
    expect((await rpcError(call)).code).toBe(-31460)
    await Promise.all([client.close(), other.close()])
  }, 60_000)

  it('OPS metrics: pending gauge, requests, outcomes and decision latency', async () => {
    const m = await (await fetch(`${a.adminUrl}/metrics`)).text()
    expect(m).toMatch(/^mcp_warden_approvals_pending 0$/m)
    expect(m).toMatch(/^mcp_warden_approval_requests_total\{issuer="demo",channel="ciba"\} [1-9]/m)
    expect(m).toMatch(/^mcp_warden_approvals_total\{issuer="demo",channel="ciba",outcome="approved"\} [1-9]/m)
    expect(m).toMatch(/^mcp_warden_approvals_total\{issuer="demo",channel="ciba",outcome="denied"\} [1-9]/m)
    expect(m).toMatch(/^mcp_warden_approval_decision_seconds_count\{channel="ciba",outcome="approved"\} [1-9]/m)
  })
})

describe('transactional authorization (RAR, RFC 9396)', () => {
  const payment = (amount: string, creditor = 'acme') => [{ type: 'payment', tool: 'transfer_funds', amount, creditor }]

  it('RAR-01 RAR-02 RAR-04 a token whose authorization_details cover the call passes; one that does not is refused', async () => {
    const covered = await as.getToken({ resource: a.resource.beta, scope: 'tools.read', subject: 'kim', authorizationDetails: payment('120.00') })
    expect((jose.decodeJwt(covered.access_token).authorization_details as unknown[])[0]).toMatchObject({ type: 'payment', amount: '120.00' })
    const client = await connect(a.url, covered.access_token, 'beta')
    expect(text(await client.callTool({ name: 'transfer_funds', arguments: { amount: 120, to: 'acme' } }))).toBe('transferred 120 to acme')
    expect(text(await client.callTool({ name: 'transfer_funds', arguments: { amount: 99.5, to: 'acme' } }))).toBe('transferred 99.5 to acme')
    // More than approved, or another creditor: not this transaction.
    expect((await rpcError(client.callTool({ name: 'transfer_funds', arguments: { amount: 121, to: 'acme' } }))).code).toBe(-31403)
    expect((await rpcError(client.callTool({ name: 'transfer_funds', arguments: { amount: 50, to: 'mallory' } }))).code).toBe(-31403)
    await client.close()

    const plain = await connect(a.url, await a.token({ route: 'beta', subject: 'kim' }), 'beta')
    expect((await rpcError(plain.callTool({ name: 'transfer_funds', arguments: { amount: 1, to: 'acme' } }))).code).toBe(-31403)
    await plain.close()
    expect(b.beta.requests.some((r) => r.body.includes('mallory') || r.body.includes('"amount":121'))).toBe(false)

    // RAR-01: a token whose authorization_details is not an array of typed objects is invalid (401).
    for (const bad of [{ type: 'payment' }, [{ amount: 1 }], ['payment']]) {
      const forged = await as.signJwt({ iss: as.issuer, sub: 'kim', aud: a.resource.beta, client_id: 'demo-agent', scope: 'tools.read', exp: Math.floor(Date.now() / 1000) + 300, iat: Math.floor(Date.now() / 1000), jti: crypto.randomUUID(), authorization_details: bad })
      const r = await fetch(`${a.url}/mcp/beta`, { method: 'POST', headers: { authorization: `Bearer ${forged}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': '2025-11-25' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'transfer_funds', arguments: { amount: 1, to: 'acme' } } }) })
      expect(r.status, JSON.stringify(bad)).toBe(401)
      expect(r.headers.get('www-authenticate')).toContain('invalid_token')
    }
  }, 60_000)
})
