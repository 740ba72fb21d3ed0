/**
 * Issue 16 item 1: human approval against an authorization server nobody here wrote, configured
 * as its documentation says (test/helpers/stock-as.ts: oidc-provider 9, CIBA poll, no RAR, the
 * default binding_message rule, unknown resources refused). The user decides through the
 * provider's own `backchannelResult()`. The real MCP SDK client and upstream; the gateway in
 * process. Checklist CIBA-01, CIBA-03, CIBA-06, CIBA-07, CIBA-08, CIBA-09, ATK-71.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { AuthorizationServer } from '../../demo/authorization-server.js'
import { main } from '../../gateway/cli.js'
import { DEFAULT_BINDING_MESSAGE_PATTERN } from '../../gateway/policy/approval-message.js'
import { listenerYaml, startStack, type Stack } from '../helpers/stack.js'
import { startStockAs, type StockAs } from '../helpers/stock-as.js'

const POLICY = (message?: string) => `apiVersion: mcp-warden/v1
kind: Policy
name: orders
routes: [alpha]
rules:
  - id: lifecycle
    effect: allow
    methods: [initialize, ping, "notifications/*", tools/list]
  - id: transfers-need-approval
    effect: require-approval
    tools: [transfer_funds]
    approval:${message ? `\n      message: "${message}"` : ''}
      wait: 20s
      expiry: 60s
`

let stock: StockAs
let plain: Stack
let dir: string
let chattyDir: string
const stacks: Stack[] = []

/** gateway.yaml for one issuer, `stock`, as an operator would write it for this AS. */
const yamlFor = (approval: string, o: { client?: { id: string; secret: string }; policies?: string } = {}) => (ctx: { publicUrl: string; port: number; adminPort: number; alpha: string }) => {
  const client = o.client ?? stock.client
  return `${listenerYaml({ publicUrl: ctx.publicUrl, port: ctx.port, adminPort: ctx.adminPort, serverExtra: `allowedHosts: [${new URL(ctx.publicUrl).host}, 127.0.0.1:${ctx.port}]` })}issuers:
  stock:
    issuer: ${stock.issuer}
    client: { id: ${client.id}, secret: { value: ${client.secret} } }
    approval: ${approval}
routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: ${ctx.alpha}, timeout: 5s }
    issuers: [stock]
    scopesSupported: [tools.read]
policies: { dir: ${o.policies ?? dir}, watch: false }
logging: { level: info }
`
}

/** The stack helper wants a demo AS only for its `token()`; these tests mint tokens from the stock AS. */
const noDemoAs = () => ({ issuer: stock.issuer, close: async () => undefined }) as unknown as AuthorizationServer

async function replica(approval: string, o: { client?: { id: string; secret: string }; policies?: string } = {}): Promise<Stack> {
  const s = await startStack({ as: noDemoAs(), replicaOf: plain, yaml: yamlFor(approval, o) })
  stacks.push(s)
  return s
}

async function connect(s: Stack, subject: string): Promise<Client> {
  const token = await stock.accessToken({ subject, audience: plain.resource.alpha, clientId: 'shop-agent' })
  const client = new Client({ name: 'stock-as-test', version: '1' })
  await client.connect(new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }))
  return client
}

const executions = (match: (args: Record<string, unknown>) => boolean = () => true) =>
  plain.alpha.requests.filter((r) => {
    try {
      const m = JSON.parse(r.body) as { method?: string; params?: { name?: string; arguments?: Record<string, unknown> } }
      return m.method === 'tools/call' && m.params?.name === 'transfer_funds' && match(m.params.arguments ?? {})
    } catch {
      return false
    }
  }).length

async function rpcError(p: Promise<unknown>): Promise<{ code: number; data: Record<string, unknown> }> {
  try {
    await p
  } catch (e) {
    if (e instanceof McpError) return { code: e.code, data: e.data as Record<string, unknown> }
    throw e
  }
  throw new Error('the call succeeded')
}

const text = (r: unknown) => (r as { content: { text: string }[] }).content[0]!.text
const audit = (s: Stack, event: string) => s.logLines().filter((l) => l.event === event)
const metric = async (s: Stack, line: RegExp) => (await (await fetch(`${s.adminUrl}/metrics`)).text()).split('\n').find((l) => line.test(l))

beforeAll(async () => {
  stock = await startStockAs()
  dir = mkdtempSync(join(tmpdir(), 'mcpw-stock-'))
  chattyDir = mkdtempSync(join(tmpdir(), 'mcpw-stock-chatty-'))
  writeFileSync(join(dir, 'orders.yaml'), POLICY())
  writeFileSync(join(chattyDir, 'orders.yaml'), POLICY('{tool} to {args.to}'))
  // Exactly what the docs' quick start writes for CIBA: the channel, and a faster poll for the test.
  plain = await startStack({ as: noDemoAs(), yaml: yamlFor('{ channel: ciba, interval: 200ms }') })
}, 60_000)

afterAll(async () => {
  for (const s of stacks) await s.close()
  await plain?.close()
  await stock?.close()
  rmSync(dir, { recursive: true, force: true })
  rmSync(chattyDir, { recursive: true, force: true })
})

describe('require-approval with a stock oidc-provider (CIBA poll, no RAR)', () => {
  it('CIBA-01 CIBA-08 CIBA-09 approved: no authorization_details, no resource, a binding message inside the default rule; the call runs exactly once', async () => {
    const client = await connect(plain, 'carol')
    const before = executions()
    const call = client.callTool({ name: 'transfer_funds', arguments: { amount: 150, to: 'bob' } })
    const req = await stock.next(15_000)
    expect(req.accountId).toBe('carol')
    expect(req.clientId).toBe(stock.client.id)
    expect(req.params).not.toHaveProperty('authorization_details')
    expect(req.params).not.toHaveProperty('resource')
    expect(req.params.binding_message).toMatch(new RegExp(DEFAULT_BINDING_MESSAGE_PATTERN))
    // The default {tool:13}-{code}: the tool name cut to fit the 20 characters of the default rule.
    expect(req.params.binding_message).toMatch(/^transfer_fund-[A-Z2-9]{6}$/)
    expect(executions()).toBe(before)
    await stock.approve(req.authReqId)
    expect(text(await call)).toBe('transferred 150 to bob')
    expect(executions()).toBe(before + 1)
    // The code the user saw on the phone is the one in the audit line.
    const requested = audit(plain, 'approval.requested').at(-1)!.approval as Record<string, unknown>
    expect(`transfer_fund-${requested.code}`).toBe(req.params.binding_message)
    expect(requested.rar).toBe(false)
    expect(audit(plain, 'approval.consumed').length).toBeGreaterThanOrEqual(1)
    await client.close()
  }, 30_000)

  it('CIBA-03 denied: a JSON-RPC error, and the upstream saw nothing', async () => {
    const client = await connect(plain, 'carol')
    const before = executions()
    const call = rpcError(client.callTool({ name: 'transfer_funds', arguments: { amount: 300, to: 'dave' } }))
    const req = await stock.next(15_000)
    await stock.deny(req.authReqId)
    const e = await call
    expect(e.code).toBe(-31460)
    expect(e.data.code).toBe('GW_APPROVAL_DENIED')
    expect(executions()).toBe(before)
    await client.close()
  }, 30_000)

  it('CIBA-06 ATK-71 an approval never covers other arguments, nor a second run of the same call', async () => {
    const client = await connect(plain, 'erin')
    const first = client.callTool({ name: 'transfer_funds', arguments: { amount: 120, to: 'bob' } })
    const approved = await stock.next(15_000)
    await stock.approve(approved.authReqId)
    expect(text(await first)).toBe('transferred 120 to bob')
    const ranForMallory = () => executions((a) => a.to === 'mallory')
    // The same user and agent, other arguments, straight after the approval: a new request to the user.
    const other = rpcError(client.callTool({ name: 'transfer_funds', arguments: { amount: 120, to: 'mallory' } }))
    const asked = await stock.next(15_000)
    expect(asked.authReqId).not.toBe(approved.authReqId)
    expect(ranForMallory()).toBe(0)
    await stock.deny(asked.authReqId)
    expect((await other).data.code).toBe('GW_APPROVAL_DENIED')
    expect(ranForMallory()).toBe(0)
    // The approved call again: its approval was used once; this asks again.
    const runs = executions((a) => a.to === 'bob' && a.amount === 120)
    const again = rpcError(client.callTool({ name: 'transfer_funds', arguments: { amount: 120, to: 'bob' } }))
    const reasked = await stock.next(15_000)
    expect(reasked.authReqId).not.toBe(approved.authReqId)
    await stock.deny(reasked.authReqId)
    expect((await again).data.code).toBe('GW_APPROVAL_DENIED')
    expect(executions((a) => a.to === 'bob' && a.amount === 120)).toBe(runs)
    await client.close()
  }, 45_000)

  it('CIBA-08 a configured rule looser than the AS: the AS refuses the message, the gateway asks once more with the code alone', async () => {
    const s = await replica(`{ channel: ciba, interval: 200ms, bindingMessagePattern: "^[ -~]{1,60}$" }`, { policies: chattyDir })
    const client = await connect(s, 'frank')
    const refusedBefore = stock.errors.filter((c) => c === 'invalid_binding_message').length
    const call = rpcError(client.callTool({ name: 'transfer_funds', arguments: { amount: 500, to: 'bob' } }))
    const req = await stock.next(15_000)
    expect(stock.errors.filter((c) => c === 'invalid_binding_message').length).toBe(refusedBefore + 1)
    expect(req.params.binding_message).toMatch(/^Approve-[A-Z2-9]{6}$/)
    await stock.deny(req.authReqId)
    expect((await call).data.code).toBe('GW_APPROVAL_DENIED')
    await client.close()
  }, 30_000)

  // [the AS's code, why, the issuer's approval config, the client the gateway authenticates as]
  const refusals: [string, string, string, () => { id: string; secret: string }][] = [
    ['invalid_target', 'a resource the AS does not know', '{ channel: ciba, interval: 200ms, resource: route }', () => stock.client],
    // oidc-provider answers invalid_request ("… is not allowed for this client") where CIBA §13 says unauthorized_client.
    ['invalid_request', 'a client not registered for CIBA', '{ channel: ciba, interval: 200ms }', () => stock.otherClient],
    ['invalid_client', 'a wrong client secret', '{ channel: ciba, interval: 200ms }', () => ({ id: stock.client.id, secret: 'not-the-secret-0123456789' })],
  ]
  for (const [code, why, approval, clientOf] of refusals) {
    it(`an AS refusal (${code}: ${why}) is GW_APPROVAL_REFUSED naming the code, audited and counted; nothing runs`, async () => {
      const s = await replica(approval, { client: clientOf() })
      const client = await connect(s, 'grace')
      const before = executions()
      const e = await rpcError(client.callTool({ name: 'transfer_funds', arguments: { amount: 700, to: 'bob' } }))
      expect(e.code).toBe(-31464)
      expect(e.data).toMatchObject({ code: 'GW_APPROVAL_REFUSED', asError: code })
      // Not the AS's description, not the client secret, not the request.
      const body = JSON.stringify(e)
      expect(body).not.toContain(stock.client.secret)
      expect(body).not.toContain(stock.otherClient.secret)
      expect(body).not.toMatch(/description|transfer_funds-/)
      expect(executions()).toBe(before)
      const [line] = audit(s, 'approval.refused')
      expect(line!.approval).toMatchObject({ endpoint: 'backchannel', asError: code })
      expect(s.logs.join('\n')).not.toContain(clientOf().secret)
      expect(await metric(s, new RegExp(`^mcp_warden_approval_refusals_total\\{.*error="${code}".*\\} 1$`))).toBeDefined()
      expect(await metric(s, /^mcp_warden_approval_calls_total\{.*result="refused".*\} 1$/)).toBeDefined()
      await client.close()
    }, 30_000)
  }

  it('RAR requested of an AS that ignores it: no echo, so the gateway binding decides and the call runs once', async () => {
    const s = await replica('{ channel: ciba, interval: 200ms, authorizationDetails: digest }')
    const client = await connect(s, 'heidi')
    const before = executions()
    const call = client.callTool({ name: 'transfer_funds', arguments: { amount: 99, to: 'ivan' } })
    const req = await stock.next(15_000)
    // oidc-provider without RAR drops the parameter it does not support; the gateway did send it.
    expect(req.params.authorization_details).toBeUndefined()
    // The AS answers the gateway after it triggered the device: the audit line follows that answer.
    await vi.waitFor(() => expect(audit(s, 'approval.requested')).toHaveLength(1), { timeout: 10_000 })
    expect((audit(s, 'approval.requested')[0]!.approval as Record<string, unknown>).rar).toBe(true)
    await stock.approve(req.authReqId)
    expect(text(await call)).toBe('transferred 99 to ivan')
    expect(executions()).toBe(before + 1)
    await client.close()
  }, 30_000)

  it('check: an issuer sending authorization_details to an AS whose metadata lists no such type is an error at its config line', async () => {
    const file = join(dir, '..', `stock-check-${process.pid}.yaml`)
    writeFileSync(file, yamlFor('\n      channel: ciba\n      authorizationDetails: digest')({ publicUrl: plain.url, port: 18080, adminPort: 18081, alpha: 'http://127.0.0.1:1/mcp' }))
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true)
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
    try {
      expect(await main(['check', '--config', file])).toBe(1)
      const printed = err.mock.calls.map((c) => String(c[0])).join('')
      expect(printed).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+:\\d+  issuers\\.stock\\.approval\\.authorizationDetails: the AS does not support RFC 9396`))
      expect(printed).toContain('"mcp_tool_call"')
      err.mockClear()
      writeFileSync(file, yamlFor('{ channel: ciba }')({ publicUrl: plain.url, port: 18080, adminPort: 18081, alpha: 'http://127.0.0.1:1/mcp' }))
      expect(await main(['check', '--config', file])).toBe(0)
    } finally {
      err.mockRestore()
      out.mockRestore()
      rmSync(file, { force: true })
    }
  }, 30_000)
})
