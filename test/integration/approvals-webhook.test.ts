/**
 * The webhook approval channel (issue 6), for organisations without CIBA: the approval request is
 * POSTed, signed, to a receiver; the decision comes back signed to the gateway's callback
 * endpoint. Forged, stale, re-targeted and replayed callbacks are refused. Real AS, real Redis,
 * real MCP SDK client and server; the receiver is a plain HTTP server standing in for the
 * organisation's approval app.
 */
import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startStack, type Stack } from '../helpers/stack.js'

const SECRET = 'approval-webhook-secret-0123456789abcdef'

const POLICY = `apiVersion: mcp-warden/v1
kind: Policy
name: orders
routes: [alpha]
rules:
  - id: lifecycle
    effect: allow
    methods: [initialize, ping, "notifications/*", tools/list]
  - id: large-orders-need-approval
    effect: require-approval
    tools: [transfer_funds]
    arguments: { amount: { gt: 100 } }
    approval: { message: "transfer {args.amount} to {args.to}", wait: 20s, expiry: 60s, details: digest }
`

interface Delivered {
  headers: Record<string, string | string[] | undefined>
  raw: string
  body: { id: string; binding_digest: string; message: string; callback: string; authorization_details: Record<string, unknown>[]; binding: Record<string, string> }
}

let s: Stack
let dir: string
let receiver: Server
const delivered: Delivered[] = []
const waiters: ((d: Delivered) => void)[] = []

const nextDelivery = () =>
  new Promise<Delivered>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no webhook delivery')), 15_000)
    waiters.push((d) => {
      clearTimeout(t)
      resolve(d)
    })
  })

const signed = (body: string, secret = SECRET, at = Date.now()) => {
  const t = Math.floor(at / 1000)
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`
}

const callback = (body: string, signature: string | undefined) =>
  fetch(`${s.url}/mcp-warden/approvals/demo`, { method: 'POST', headers: { 'content-type': 'application/json', ...(signature ? { 'x-mcp-warden-signature': signature } : {}) }, body })

async function rpcError(p: Promise<unknown>): Promise<number> {
  try {
    await p
  } catch (e) {
    if (e instanceof McpError) return e.code
    throw e
  }
  throw new Error('the call succeeded')
}

const executions = (amount: number) => s.alpha.requests.filter((r) => r.body.includes('"transfer_funds"') && r.body.includes(`"amount":${amount}`)).length

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcpw-approvals-webhook-'))
  writeFileSync(join(dir, 'orders.yaml'), POLICY)
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8')
      const d = { headers: req.headers, raw, body: JSON.parse(raw) as Delivered['body'] }
      delivered.push(d)
      waiters.shift()?.(d)
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
  const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/approvals`
  s = await startStack({
    redis: true,
    issuerExtra: `approval: { channel: webhook, webhook: { url: ${hook}, secret: { value: ${SECRET} } } }`,
    extra: `policies: { dir: ${dir}, watch: false }`,
  })
}, 60_000)

afterAll(async () => {
  await s?.close()
  await new Promise((r) => receiver?.close(r))
  rmSync(dir, { recursive: true, force: true })
})

describe('require-approval through a signed webhook', () => {
  it('WEBHOOK-01 CIBA-06 the request is signed and bound; a forged, stale or re-targeted callback is refused; a signed approval runs the call once; a replay changes nothing', async () => {
    const token = await s.token({ subject: 'alice' })
    const client = new Client({ name: 'webhook-test', version: '1' })
    await client.connect(new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }))
    const call = client.callTool({ name: 'transfer_funds', arguments: { amount: 250, to: 'bob' } })
    const d = await nextDelivery()

    // The receiver can check who sent it.
    expect(d.headers['x-mcp-warden-signature']).toBe(signed(d.raw, SECRET, Number(/t=(\d+)/.exec(String(d.headers['x-mcp-warden-signature']))![1]) * 1000))
    expect(d.body.message).toBe('transfer 250 to bob')
    expect(d.body.callback).toBe(`${new URL(s.url).origin}/mcp-warden/approvals/demo`)
    expect(d.body.binding).toMatchObject({ subject: 'alice', agent: 'demo-agent', route: 'alpha', tool: 'transfer_funds' })
    // details: digest → the arguments themselves are not in authorization_details.
    expect(d.body.authorization_details[0]).not.toHaveProperty('arguments')
    expect(d.body.authorization_details[0]).toMatchObject({ binding: d.body.binding_digest })

    const approve = JSON.stringify({ id: d.body.id, decision: 'approved', binding: d.body.binding_digest })
    // Forged: wrong key, no signature, tampered body under a valid signature.
    expect((await callback(approve, signed(approve, 'not-the-secret-not-the-secret-000000'))).status).toBe(401)
    expect((await callback(approve, undefined)).status).toBe(401)
    expect((await callback(approve.replace('approved', 'denied'), signed(approve))).status).toBe(401)
    // Stale: correctly signed, but ten minutes old.
    expect((await callback(approve, signed(approve, SECRET, Date.now() - 10 * 60_000))).status).toBe(401)
    // Re-targeted: a correctly signed decision naming another call's binding.
    const other = JSON.stringify({ id: d.body.id, decision: 'approved', binding: 'binding-of-another-call' })
    const r = await callback(other, signed(other))
    expect(r.status).toBe(400)
    expect(await r.json()).toMatchObject({ error: 'GW_APPROVAL_CALLBACK_INVALID' })
    expect(executions(250)).toBe(0)

    const ok = await callback(approve, signed(approve))
    expect(ok.status).toBe(200)
    expect(((await call) as { content: { text: string }[] }).content[0]!.text).toBe('transferred 250 to bob')
    expect(executions(250)).toBe(1)

    // Replayed (same bytes, same signature) or re-signed: already decided.
    const replay = await callback(approve, signed(approve))
    expect(replay.status).toBe(409)
    expect(await replay.json()).toMatchObject({ error: 'GW_APPROVAL_CALLBACK_REPLAYED' })
    expect(executions(250)).toBe(1)
    expect(s.logs.some((l) => l.includes(SECRET))).toBe(false)
    await client.close()
  }, 60_000)

  it('WEBHOOK-02 a signed denial refuses the call with a JSON-RPC error; the upstream sees nothing', async () => {
    const client = new Client({ name: 'webhook-test', version: '1' })
    await client.connect(new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${await s.token({ subject: 'bob' })}` } } }))
    const call = client.callTool({ name: 'transfer_funds', arguments: { amount: 777, to: 'mallory' } })
    const d = await nextDelivery()
    const deny = JSON.stringify({ id: d.body.id, decision: 'denied', binding: d.body.binding_digest })
    expect((await callback(deny, signed(deny))).status).toBe(200)
    expect(await rpcError(call)).toBe(-31460)
    expect(executions(777)).toBe(0)
    await client.close()
  }, 60_000)

  it('WEBHOOK-03 malformed callbacks get a JSON 400/401, never a 500', async () => {
    for (const body of ['not json', '[]', '{"id":"x","decision":"approved","binding":"b"}', JSON.stringify({ id: 'A'.repeat(24), decision: 'maybe', binding: 'b' })]) {
      const r = await callback(body, signed(body))
      expect(r.status).toBe(400)
    }
    const unknown = JSON.stringify({ id: 'B'.repeat(24), decision: 'approved', binding: 'b' })
    expect((await callback(unknown, signed(unknown))).status).toBe(400)
    expect((await callback('{}', 't=1,v1=zz')).status).toBe(401)
  })
})
