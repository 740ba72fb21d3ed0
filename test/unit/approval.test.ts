/**
 * Human approval, decision logic only (gateway/approval/): binding and digests, the ledger's
 * once-only transitions, webhook signatures, the gate's CIBA polling discipline (interval,
 * slow_down) against a fake channel, and the RAR condition (policy/rar.ts). Integration tests
 * (test/integration/approvals*.test.ts) run the same code against a real AS and Redis.
 */
import { describe, expect, it } from 'vitest'
import { authorizationDetail, bindingDigest, detailsNameBinding, windowDigest, type ApprovalBinding } from '../../gateway/approval/binding.js'
import { approvedBy, CibaChannel, CibaError, type CibaPoll, type CibaStart } from '../../gateway/approval/ciba.js'
import { ApprovalGate, type CibaChannelConfig, type HeldCall } from '../../gateway/approval/gate.js'
import { OAuthRequestError } from '../../gateway/oauth/client.js'
import { ApprovalLedger, type ApprovalRecord } from '../../gateway/approval/ledger.js'
import { approvalMetrics } from '../../gateway/approval/metrics.js'
import { parseCallback, sign, verify } from '../../gateway/approval/webhook.js'
import { MemoryStore } from '../../gateway/store/shared-store.js'
import { issuersSendingRar, rarTypeProblems } from '../../gateway/approval/check.js'
import type { RuntimeIssuer } from '../../gateway/config/load.js'
import { ConfigError, isGatewayError } from '../../gateway/errors.js'
import { argumentsDigest } from '../../gateway/policy/digest.js'
import { renderMessage } from '../../gateway/policy/approval-message.js'
import { compileRar } from '../../gateway/policy/rar.js'
import { Registry } from 'prom-client'
import { CONFIG_HEAD, configProblems } from '../helpers/config.js'
import { compile } from './policy/helpers.js'

const binding = (over: Partial<ApprovalBinding> = {}): ApprovalBinding => ({
  issuer: 'https://as.example',
  subject: 'alice',
  agent: 'agent-1',
  route: 'orders',
  tool: 'place_order',
  argumentsDigest: argumentsDigest({ amount: 150, sku: 'X' }),
  policyVersion: 'v1',
  ...over,
})

describe('binding', () => {
  it('CIBA-06 every element of the binding changes the digest; member order of arguments does not', () => {
    const base = bindingDigest(binding())
    for (const over of [{ issuer: 'https://other' }, { subject: 'bob' }, { agent: 'agent-2' }, { route: 'payments' }, { tool: 'cancel_order' }, { argumentsDigest: argumentsDigest({ amount: 151, sku: 'X' }) }, { policyVersion: 'v2' }]) {
      expect(bindingDigest(binding(over)), JSON.stringify(over)).not.toBe(base)
    }
    expect(bindingDigest(binding({ argumentsDigest: argumentsDigest({ sku: 'X', amount: 150 }) }))).toBe(base)
  })

  it('a window covers other arguments of the same tool, never another tool, agent or user', () => {
    const w = windowDigest(binding())
    expect(windowDigest(binding({ argumentsDigest: argumentsDigest({ amount: 9999 }) }))).toBe(w)
    expect(windowDigest(binding({ tool: 'cancel_order' }))).not.toBe(w)
    expect(windowDigest(binding({ agent: 'agent-2' }))).not.toBe(w)
    expect(windowDigest(binding({ subject: 'bob' }))).not.toBe(w)
  })

  it('CIBA-08 the binding message shows only what the policy names, bounded and without control characters', () => {
    const args = { amount: 150, to: 'bob\u202e\nevil', password: 'hunter2', note: 'x'.repeat(500) }
    const facts = { agent: 'agent-1', tool: 'transfer', route: 'orders', subject: 'alice', code: 'K7M2QX', arguments: args }
    const bindingMessage = (t: string, f: typeof facts) => renderMessage(t, f, 'text')
    expect(bindingMessage('{agent} wants to call {tool}', facts)).toBe('agent-1 wants to call transfer')
    expect(bindingMessage('{agent} wants to call {tool}', facts)).not.toContain('hunter2')
    expect(bindingMessage('pay {args.amount} to {args.to}', facts)).toBe('pay 150 to bob evil')
    expect(bindingMessage('{args.note}', facts).length).toBeLessThanOrEqual(40)
    expect(bindingMessage('{args.missing} {unknown}', facts)).toBe('? {unknown}')
    expect(bindingMessage('{args.note}{args.note}{args.note}{args.note}{args.note}', facts).length).toBeLessThanOrEqual(160)
  })

  it('RAR authorization_details carry the call and its binding; digest mode omits the arguments', () => {
    const d = authorizationDetail('mcp_tool_call', binding(), { amount: 150 }, 'arguments')
    expect(d).toMatchObject({ type: 'mcp_tool_call', tool: 'place_order', upstream: 'orders', arguments: { amount: 150 }, binding: bindingDigest(binding()) })
    expect(authorizationDetail('mcp_tool_call', binding(), { amount: 150 }, 'digest')).not.toHaveProperty('arguments')
    expect(detailsNameBinding([d], 'mcp_tool_call', bindingDigest(binding()))).toBe(true)
    expect(detailsNameBinding([d], 'mcp_tool_call', bindingDigest(binding({ tool: 'x' })))).toBe(false)
    expect(detailsNameBinding({ ...d }, 'mcp_tool_call', bindingDigest(binding()))).toBe(false)
    expect(detailsNameBinding([{ ...d, type: 'payment' }], 'mcp_tool_call', bindingDigest(binding()))).toBe(false)
  })

  it('CIBA-07 the ID token must name the caller, for mcp-warden, unexpired', () => {
    const now = Date.now()
    const ok = { iss: 'https://as.example', sub: 'alice', aud: 'mcp-warden', exp: Math.floor(now / 1000) + 60 }
    const want = { issuer: 'https://as.example', subject: 'alice', clientId: 'mcp-warden' }
    expect(approvedBy(ok, want, now)).toBe(true)
    expect(approvedBy({ ...ok, aud: ['x', 'mcp-warden'] }, want, now)).toBe(true)
    expect(approvedBy({ ...ok, sub: 'u2' }, want, now)).toBe(false)
    expect(approvedBy({ ...ok, iss: 'https://evil' }, want, now)).toBe(false)
    expect(approvedBy({ ...ok, aud: 'someone-else' }, want, now)).toBe(false)
    expect(approvedBy({ ...ok, exp: Math.floor(now / 1000) - 1 }, want, now)).toBe(false)
    expect(approvedBy(undefined, want, now)).toBe(false)
  })
})

const record = (over: Partial<ApprovalRecord> = {}): ApprovalRecord => {
  const b = binding()
  return { id: 'id-000000000000000000001', issuer: 'demo', channel: 'webhook', binding: b, digest: bindingDigest(b), detailType: 'mcp_tool_call', createdAt: Date.now(), expiresAt: Date.now() + 60_000, windowMs: undefined, intervalMs: 1000, ...over }
}

describe('ledger', () => {
  it('one open request per binding, one decision per request, one use per approval', async () => {
    const ledger = new ApprovalLedger(new MemoryStore())
    const r = record()
    expect(await ledger.open(r)).toBe(true)
    expect(await ledger.open(record({ id: 'id-000000000000000000002' }))).toBe(false)
    expect((await ledger.pendingFor(r.digest))?.id).toBe(r.id)
    expect(await ledger.decide(r, { outcome: 'approved', at: 1, via: 'webhook' })).toBe(true)
    expect(await ledger.decide(r, { outcome: 'denied', at: 2, via: 'webhook' })).toBe(false)
    expect((await ledger.decision(r.id))?.outcome).toBe('approved')
    const uses = await Promise.all([ledger.consume(r), ledger.consume(r), ledger.consume(r)])
    expect(uses.filter(Boolean)).toHaveLength(1)
    await ledger.close(r)
    expect(await ledger.pendingFor(r.digest)).toBeUndefined()
  })

  it('a store that is down opens nothing (the gate fails closed)', async () => {
    const down = new MemoryStore()
    down.setIfAbsent = async () => false
    down.set = async () => undefined
    down.get = async () => undefined
    const ledger = new ApprovalLedger(down)
    expect(await ledger.open(record())).toBe(false)
    expect(await ledger.pendingFor(record().digest)).toBeUndefined()
  })
})

describe('webhook signatures', () => {
  const secret = 's'.repeat(32)
  const body = Buffer.from(JSON.stringify({ id: 'A'.repeat(24), decision: 'approved', binding: 'b' }))
  const now = 1_800_000_000_000

  it('verifies its own signature; refuses other keys, other bodies, old or future timestamps, malformed headers', () => {
    const sig = sign(secret, body, now)
    expect(verify(secret, sig, body, now, 300_000)).toEqual({ ok: true })
    expect(verify('t'.repeat(32), sig, body, now, 300_000)).toEqual({ ok: false, why: 'signature' })
    expect(verify(secret, sig, Buffer.from(body.toString().replace('approved', 'denied')), now, 300_000)).toEqual({ ok: false, why: 'signature' })
    expect(verify(secret, sig, body, now + 301_000, 300_000)).toEqual({ ok: false, why: 'stale' })
    expect(verify(secret, sign(secret, body, now + 301_000), body, now, 300_000)).toEqual({ ok: false, why: 'stale' })
    expect(verify(secret, undefined, body, now, 300_000)).toEqual({ ok: false, why: 'missing' })
    for (const h of ['v1=abc', 't=1,v1=zz', `t=1,v1=${'0'.repeat(63)}`, `${sig},v0=1`]) expect(verify(secret, h, body, now, 300_000).ok, h).toBe(false)
  })

  it('parses only well-formed decisions', () => {
    expect(parseCallback(body)).toEqual({ id: 'A'.repeat(24), decision: 'approved', binding: 'b' })
    for (const bad of ['', 'null', '[]', '{"id":"short","decision":"approved","binding":"b"}', `{"id":"${'A'.repeat(24)}","decision":"yes","binding":"b"}`, `{"id":"${'A'.repeat(24)}","decision":"approved"}`]) {
      expect(parseCallback(Buffer.from(bad)), bad).toBeUndefined()
    }
  })
})

/** A CIBA channel whose AS answers from a script, recording when it was polled. */
function fakeCiba(script: CibaPoll['status'][]) {
  const polls: number[] = []
  const channel = Object.assign(Object.create(CibaChannel.prototype) as CibaChannel, {
    start: async () => ({ authReqId: 'req-1', expiresInSec: 60, intervalSec: undefined }),
    poll: async (): Promise<CibaPoll> => {
      polls.push(Date.now())
      const status = script.shift() ?? 'pending'
      return status === 'approved' ? { status, authorizationDetails: [], accessToken: 'x', expiresInSec: 60, idToken: undefined } : ({ status } as CibaPoll)
    },
  })
  Object.defineProperty(channel, 'clientId', { value: 'mcp-warden' })
  return { channel, polls }
}

const held = (over: Partial<HeldCall['spec']> = {}): HeldCall => ({
  principal: { issuerName: 'demo', issuer: 'https://as.example', subject: 'alice', clientId: 'agent-1', claims: { sub: 'alice' } },
  route: 'orders',
  resource: 'https://gw.example/mcp/orders',
  tool: 'place_order',
  arguments: { amount: 150 },
  argumentsDigest: argumentsDigest({ amount: 150 }),
  policyVersion: 'v1',
  spec: { message: '{tool}', waitMs: 400, expiryMs: 60_000, windowMs: undefined, details: 'arguments', type: 'mcp_tool_call', ...over },
})

const quiet = { info: () => undefined, warn: () => undefined }

describe('gate: CIBA polling discipline', () => {
  it('CIBA-02 CIBA-03 polls no faster than the interval, and slow_down adds 5 s to it for good', async () => {
    const store = new MemoryStore()
    const { channel, polls } = fakeCiba(['slow_down', 'pending', 'pending'])
    const gate = new ApprovalGate({ ledger: new ApprovalLedger(store), channels: new Map([['demo', { channel: 'ciba' as const, ciba: channel, loginHintClaim: 'sub', scope: 'openid', intervalMs: 150 }]]), metrics: approvalMetrics(new Registry()), checkEveryMs: 20 })
    const e = await gate.pass(held({ waitMs: 1000 }), quiet).catch((x: unknown) => x)
    expect(isGatewayError(e) && e.code).toBe('GW_APPROVAL_PENDING')
    // One poll, then slow_down made the interval 5.15 s: no second poll inside the 1 s wait.
    expect(polls).toHaveLength(1)
    const ledger = new ApprovalLedger(store)
    const open = await ledger.pendingFor(bindingDigest(ApprovalGate.binding(held())))
    expect(open?.intervalMs).toBe(5150)
    // Without slow_down, a 150 ms interval over a 1 s wait allows at most 1000/150 + 1 polls.
    const second = fakeCiba([])
    const gate2 = new ApprovalGate({ ledger: new ApprovalLedger(new MemoryStore()), channels: new Map([['demo', { channel: 'ciba' as const, ciba: second.channel, loginHintClaim: 'sub', scope: 'openid', intervalMs: 150 }]]), metrics: approvalMetrics(new Registry()), checkEveryMs: 10 })
    await gate2.pass(held({ waitMs: 1000 }), quiet).catch(() => undefined)
    expect(second.polls.length).toBeGreaterThanOrEqual(1)
    expect(second.polls.length).toBeLessThanOrEqual(8)
    for (let i = 1; i < second.polls.length; i++) expect(second.polls[i]! - second.polls[i - 1]!).toBeGreaterThanOrEqual(140)
  })

  it('an approval without the binding in authorization_details, or without an ID token naming the caller, is unbound', async () => {
    const { channel } = fakeCiba(['approved'])
    const gate = new ApprovalGate({ ledger: new ApprovalLedger(new MemoryStore()), channels: new Map([['demo', { channel: 'ciba' as const, ciba: channel, loginHintClaim: 'sub', scope: 'openid', intervalMs: 50 }]]), metrics: approvalMetrics(new Registry()), checkEveryMs: 10 })
    const e = await gate.pass(held(), quiet).catch((x: unknown) => x)
    expect(isGatewayError(e) && e.code).toBe('GW_APPROVAL_NOT_BOUND')
  })

  it('no channel for the issuer, or no login hint: unavailable, nothing asked', async () => {
    const gate = new ApprovalGate({ ledger: new ApprovalLedger(new MemoryStore()), channels: new Map(), metrics: approvalMetrics(new Registry()) })
    expect(await gate.pass(held(), quiet).catch((x: unknown) => isGatewayError(x) && x.code)).toBe('GW_APPROVAL_UNAVAILABLE')
    const { channel } = fakeCiba([])
    const gate2 = new ApprovalGate({ ledger: new ApprovalLedger(new MemoryStore()), channels: new Map([['demo', { channel: 'ciba' as const, ciba: channel, loginHintClaim: 'email', scope: 'openid', intervalMs: 50 }]]), metrics: approvalMetrics(new Registry()) })
    expect(await gate2.pass(held(), quiet).catch((x: unknown) => isGatewayError(x) && x.code)).toBe('GW_APPROVAL_UNAVAILABLE')
  })
})

describe('gate: the approved token across replicas', () => {
  const setup = (encryptionKey: Buffer | undefined) => {
    const store = new MemoryStore()
    const make = () => {
      const { channel } = fakeCiba([])
      return new ApprovalGate({ ledger: new ApprovalLedger(store), channels: new Map([['demo', { channel: 'ciba' as const, ciba: channel, loginHintClaim: 'sub', scope: 'openid', intervalMs: 50, keepToken: true }]]), metrics: approvalMetrics(new Registry()), checkEveryMs: 10, encryptionKey })
    }
    return { store, one: make(), two: make() }
  }
  const warnings: string[] = []
  const log = { info: () => undefined, warn: (o: object) => void warnings.push((o as { event: string }).event) }

  it('sealed in the shared store, it reaches the replica that consumes the approval; never stored in clear', async () => {
    const { store, one, two } = setup(Buffer.alloc(32, 1))
    expect(await one.pass(held({ waitMs: 50 }), log).catch((e: unknown) => isGatewayError(e) && e.code)).toBe('GW_APPROVAL_PENDING')
    const r = (await new ApprovalLedger(store).pendingFor(bindingDigest(ApprovalGate.binding(held()))))!
    await one.decide(r, 'approved', 'ciba', log, 'the-approved-token')
    const raw = await store.get(`approval:decision:${r.id}`)
    expect(raw).toBeDefined()
    expect(raw).not.toContain('the-approved-token')
    expect(await two.pass(held(), log)).toMatchObject({ via: 'approval', token: 'the-approved-token' })
  })

  it('without an encryption key it stays on its replica; elsewhere the caller token is used (and said)', async () => {
    const { store, one, two } = setup(undefined)
    await one.pass(held({ waitMs: 50 }), log).catch(() => undefined)
    const r = (await new ApprovalLedger(store).pendingFor(bindingDigest(ApprovalGate.binding(held()))))!
    await one.decide(r, 'approved', 'ciba', log, 'the-approved-token')
    expect((await two.pass(held(), log)).token).toBeUndefined()
    expect(warnings).toContain('approval.token_unavailable')
  })
})

describe('RAR condition (policy/rar.ts)', () => {
  const problems: string[] = []
  const rar = compileRar({ type: 'payment', fields: { tool: { equalsTool: true }, 'instructedAmount.amount': { gteArgument: 'amount' }, creditor: { equalsArgument: 'to' }, currency: { in: ['EUR'] } } }, (p, m) => problems.push(`${p.join('.')}: ${m}`))
  const detail = { type: 'payment', tool: 'pay', instructedAmount: { amount: '120.50' }, creditor: 'acme', currency: 'EUR' }
  const input = (args: unknown, details: unknown = [detail], tool = 'pay') => ({ details, tool, arguments: args, listing: false })

  it('RAR-02 RAR-04 covers exactly the approved transaction', () => {
    expect(problems).toEqual([])
    expect(rar.test(input({ amount: 120.5, to: 'acme' }))).toBeUndefined()
    expect(rar.test(input({ amount: 100, to: 'acme' }))).toBeUndefined()
    expect(rar.test(input({ amount: 120.51, to: 'acme' }))).toMatch(/amount/)
    expect(rar.test(input({ amount: '120', to: 'acme' }))).toBeUndefined()
    expect(rar.test(input({ amount: 10, to: 'acme ' }))).toMatch(/creditor/)
    expect(rar.test(input({ amount: 10, to: 'acme' }, [detail], 'refund'))).toMatch(/tool/)
    expect(rar.test(input({ to: 'acme' }))).toMatch(/amount/)
    expect(rar.test(input({ amount: 10, to: 'acme' }, [{ ...detail, currency: 'USD' }]))).toMatch(/currency/)
    expect(rar.test(input({ amount: 10, to: 'acme' }, [{ ...detail, type: 'Payment' }]))).toMatch(/no authorization_details of type/)
    // RAR-01: not an array → nothing is covered.
    expect(rar.test(input({ amount: 10, to: 'acme' }, detail))).toMatch(/no authorization_details/)
    expect(rar.test(input({ amount: 10, to: 'acme' }, null))).toMatch(/no authorization_details/)
    // Any one covering object suffices.
    expect(rar.test(input({ amount: 500, to: 'acme' }, [detail, { ...detail, instructedAmount: { amount: 600 } }]))).toBeUndefined()
    // Numbers only compare as numbers: no "1e3" or hex tricks.
    expect(rar.test(input({ amount: 10, to: 'acme' }, [{ ...detail, instructedAmount: { amount: '1e3' } }]))).toMatch(/amount/)
  })

  it('invalid field paths are reported', () => {
    const found: string[] = []
    compileRar({ type: 'payment', fields: { 'a..b': { present: true }, ok: { gteArgument: '..' } } }, (p) => found.push(p.join('.')))
    expect(found).toEqual(['fields.a..b', 'fields.ok.gteArgument'])
  })
})

describe('approval configuration and policy compilation', () => {
  const gateway = (approval: string, client = '') => `${CONFIG_HEAD}${client}    approval: ${approval}
routes:
  - { name: alpha, path: /mcp/alpha, upstream: { url: http://127.0.0.1:3000/mcp }, issuers: [corp] }
`
  const CLIENT = '    client: { id: mcp-warden, secret: { fromEnv: S } }\n'
  const messages = (yaml: string) => configProblems(yaml, { S: 'x'.repeat(40) }).map((p) => `${p.path}: ${p.message}`)

  it('fails clearly on an approval channel that cannot work', () => {
    expect(messages(gateway('{ channel: ciba }', CLIENT))).toEqual([])
    expect(messages(gateway('{ channel: ciba }'))).toEqual([expect.stringContaining('ciba needs client credentials')])
    expect(messages(gateway('{ channel: ciba, scope: profile }', CLIENT))).toEqual([expect.stringContaining('openid')])
    expect(messages(gateway('{ channel: webhook }'))).toEqual([expect.stringContaining('webhook needs approval.webhook')])
    expect(messages(gateway('{ channel: webhook, webhook: { url: https://a.example/h, secret: { fromEnv: S } } }'))).toEqual([])
    expect(messages(gateway('{ channel: webhook, webhook: { url: https://a.example/h, secret: { value: short } } }'))).toEqual([expect.stringContaining('at least 32 characters')])
    expect(messages(gateway('{ channel: webhook, exchangeSubject: approved, webhook: { url: https://a.example/h, secret: { fromEnv: S } } }'))).toEqual([expect.stringContaining('needs the ciba channel')])
    expect(messages(gateway('{ channel: sms }', CLIENT)).length).toBeGreaterThan(0)
  })

  it('approval: belongs to require-approval rules; defaults apply when it is absent', () => {
    const doc = (rule: string) => `apiVersion: mcp-warden/v1
kind: Policy
name: p
routes: [alpha]
rules:
${rule}`
    const ok = compile({ 'p.yaml': doc('  - { id: r, effect: require-approval, tools: [pay] }\n') })
    expect(ok.set!.rules[0]!.approval).toEqual({ message: '{tool:13}-{code}', waitMs: 30_000, expiryMs: 300_000, windowMs: undefined, details: 'arguments', type: 'mcp_tool_call' })
    const errorsOf = (text: string) => {
      try {
        compile({ 'p.yaml': text })
      } catch (e) {
        if (e instanceof ConfigError) return e.problems.filter((p) => p.severity === 'error').map((p) => p.message)
        throw e
      }
      return []
    }
    expect(errorsOf(doc('  - { id: r, effect: allow, tools: [pay], approval: { wait: 1s } }\n'))).toEqual([expect.stringContaining('only for effect require-approval')])
    expect(errorsOf(doc('  - { id: r, effect: allow, tools: [pay], when: { authorizationDetails: { type: payment, fields: { "a..b": { present: true } } } } }\n'))).toEqual([expect.stringContaining('invalid field path')])
    expect(errorsOf(doc('  - { id: r, effect: require-approval, tools: [pay], approval: { wait: 10s, expiry: 500ms } }\n'))).toEqual([expect.stringContaining('at least 1s')])
  })
})

describe('gate: binding without RAR, and AS refusals (issue 16)', () => {
  const exp = () => Math.floor(Date.now() / 1000) + 60
  const idToken = (over: Record<string, unknown> = {}) => ({ iss: 'https://as.example', sub: 'alice', aud: 'mcp-warden', exp: exp(), ...over })
  /** A channel that records what was asked and answers the first poll from `approve`. */
  function scripted(o: { startError?: OAuthRequestError[]; pollError?: OAuthRequestError; approve?: (asked: CibaStart) => Partial<Extract<CibaPoll, { status: 'approved' }>> }) {
    const asked: CibaStart[] = []
    const channel = Object.assign(Object.create(CibaChannel.prototype) as CibaChannel, {
      start: async (s: CibaStart) => {
        asked.push(s)
        const e = o.startError?.shift()
        if (e) throw new CibaError('refused', e.kind, e.status)
        return { authReqId: 'req-1', expiresInSec: 60, intervalSec: undefined }
      },
      poll: async (): Promise<CibaPoll> => {
        if (o.pollError) throw new CibaError('refused', o.pollError.kind, o.pollError.status)
        return { status: 'approved', authorizationDetails: undefined, accessToken: 'x', expiresInSec: 60, idToken: idToken(), ...o.approve?.(asked.at(-1)!) }
      },
    })
    Object.defineProperty(channel, 'clientId', { value: 'mcp-warden' })
    return { channel, asked }
  }
  const gateFor = (channel: CibaChannel, over: Partial<CibaChannelConfig> = {}) => {
    const registry = new Registry()
    const gate = new ApprovalGate({ ledger: new ApprovalLedger(new MemoryStore()), channels: new Map([['demo', { channel: 'ciba' as const, ciba: channel, loginHintClaim: 'sub', scope: 'openid', intervalMs: 20, bindingRule: /^[a-zA-Z0-9-._+/!?#]{1,20}$/, ...over }]]), metrics: approvalMetrics(registry), checkEveryMs: 5 })
    return { gate, registry }
  }
  const outcome = (p: Promise<unknown>) => p.then(() => 'passed', (e: unknown) => (isGatewayError(e) ? `${e.code}${e.data?.asError ? `:${e.data.asError as string}` : ''}` : String(e)))
  const msg = { message: '{tool:13}-{code}' }

  it('CIBA-07 no RAR: nothing but the call goes out, and the ID token for this auth_req_id naming the caller approves', async () => {
    const { channel, asked } = scripted({})
    expect(await outcome(gateFor(channel).gate.pass(held(msg), quiet))).toBe('passed')
    expect(asked[0]!.authorizationDetails).toBeUndefined()
    expect(asked[0]!.resource).toBeUndefined()
    expect(asked[0]!.bindingMessage).toMatch(/^place_order-[A-Z2-9]{6}$/)
    for (const wrong of [{ sub: 'mallory' }, { aud: 'other-client' }, { iss: 'https://evil.example' }, { 'urn:openid:params:jwt:claim:auth_req_id': 'req-2' }]) {
      const s = scripted({ approve: () => ({ idToken: idToken(wrong) }) })
      expect(await outcome(gateFor(s.channel).gate.pass(held(msg), quiet)), JSON.stringify(wrong)).toBe('GW_APPROVAL_NOT_BOUND')
    }
    const echoedUnasked = scripted({ approve: () => ({ authorizationDetails: [{ type: 'mcp_tool_call' }] }) })
    expect(await outcome(gateFor(echoedUnasked.channel).gate.pass(held(msg), quiet))).toBe('GW_APPROVAL_NOT_BOUND')
  })

  it('RAR: the issuer caps what is sent, a resource only when configured; an echo must name the binding, no echo falls back to the gateway binding', async () => {
    const echo = scripted({ approve: (a) => ({ authorizationDetails: a.authorizationDetails }) })
    expect(await outcome(gateFor(echo.channel, { details: 'digest', resource: { kind: 'route' } }).gate.pass(held(msg), quiet))).toBe('passed')
    expect(echo.asked[0]!.authorizationDetails![0]).not.toHaveProperty('arguments')
    expect(echo.asked[0]!.resource).toBe('https://gw.example/mcp/orders')
    const full = scripted({})
    expect(await outcome(gateFor(full.channel, { details: 'arguments', resource: { kind: 'uri', uri: 'https://api.example/' } }).gate.pass(held(msg), quiet))).toBe('passed')
    expect(full.asked[0]!.authorizationDetails![0]).toMatchObject({ arguments: { amount: 150 } })
    expect(full.asked[0]!.resource).toBe('https://api.example/')
    const swapped = scripted({ approve: (a) => ({ authorizationDetails: [{ ...a.authorizationDetails![0], binding: 'another-call' }] }) })
    expect(await outcome(gateFor(swapped.channel, { details: 'digest' }).gate.pass(held(msg), quiet))).toBe('GW_APPROVAL_NOT_BOUND')
  })

  it('CIBA-08 invalid_binding_message: asked again once with the code alone; refused twice, the refusal names the code', async () => {
    const once = scripted({ startError: [new OAuthRequestError('x', 'invalid_binding_message', 400)] })
    expect(await outcome(gateFor(once.channel).gate.pass(held(msg), quiet))).toBe('passed')
    expect(once.asked.map((a) => a.bindingMessage)).toEqual([expect.stringMatching(/^place_order-/), expect.stringMatching(/^Approve-[A-Z2-9]{6}$/)])
    const twice = scripted({ startError: [1, 2].map(() => new OAuthRequestError('x', 'invalid_binding_message', 400)) })
    expect(await outcome(gateFor(twice.channel).gate.pass(held(msg), quiet))).toBe('GW_APPROVAL_REFUSED:invalid_binding_message')
  })

  it('every 4xx from the AS is GW_APPROVAL_REFUSED with its code (audited, counted); 5xx and timeouts stay unavailable', async () => {
    for (const code of ['invalid_target', 'invalid_authorization_details', 'unauthorized_client', 'unknown_user_id', 'invalid_client']) {
      const { channel } = scripted({ startError: [new OAuthRequestError('x', code, code === 'invalid_client' ? 401 : 400)] })
      const { gate, registry } = gateFor(channel)
      const lines: Record<string, unknown>[] = []
      const log = { info: () => undefined, warn: (o: object) => lines.push(o as Record<string, unknown>) }
      expect(await outcome(gate.pass(held(msg), log))).toBe(`GW_APPROVAL_REFUSED:${code}`)
      expect(lines).toEqual([expect.objectContaining({ event: 'approval.refused', approval: expect.objectContaining({ asError: code, endpoint: 'backchannel' }) })])
      expect(await registry.getSingleMetricAsString('mcp_warden_approval_refusals_total')).toContain(`error="${code}"} 1`)
    }
    const odd = scripted({ startError: [new OAuthRequestError('x', 'made up code', 400)] })
    const g = gateFor(odd.channel)
    expect(await outcome(g.gate.pass(held(msg), quiet))).toBe('GW_APPROVAL_REFUSED:other')
    expect(await g.registry.getSingleMetricAsString('mcp_warden_approval_refusals_total')).toContain('error="other"} 1')
    for (const e of [new OAuthRequestError('x', 'http-502', 502), new OAuthRequestError('x', 'timeout')]) {
      const { channel } = scripted({ startError: [e] })
      expect(await outcome(gateFor(channel).gate.pass(held(msg), quiet))).toBe('GW_APPROVAL_UNAVAILABLE')
    }
  })

  it('a refusal at the token endpoint is decided once: the call is refused with the code, not left pending', async () => {
    const { channel } = scripted({ pollError: new OAuthRequestError('x', 'unauthorized_client', 400) })
    const { gate, registry } = gateFor(channel)
    expect(await outcome(gate.pass(held(msg), quiet))).toBe('GW_APPROVAL_REFUSED:unauthorized_client')
    expect(await registry.getSingleMetricAsString('mcp_warden_approval_refusals_total')).toContain('endpoint="token",error="unauthorized_client"} 1')
    expect(await registry.getSingleMetricAsString('mcp_warden_approval_calls_total')).toContain('result="refused"} 1')
  })
})

describe('check: RAR types against the AS metadata (approval/check.ts)', () => {
  const issuer = (authorizationDetails: 'none' | 'digest' | 'arguments') => ({ name: 'corp', approval: { channel: 'ciba', authorizationDetails } }) as unknown as RuntimeIssuer
  it('every type a rule sends must be listed; no RAR at all, another list, and an unreadable AS are told apart', () => {
    expect(issuersSendingRar([issuer('none'), issuer('digest')])).toHaveLength(1)
    const types = new Set(['mcp_tool_call', 'payment'])
    expect(rarTypeProblems(issuer('digest'), types, { ok: true, metadata: { authorization_details_types_supported: ['mcp_tool_call', 'payment'] } })).toEqual([])
    const none = rarTypeProblems(issuer('digest'), types, { ok: true, metadata: {} })
    expect(none.map((p) => [p.severity, p.path.join('.')])).toEqual([
      ['error', 'issuers.corp.approval.authorizationDetails'],
      ['error', 'issuers.corp.approval.authorizationDetails'],
    ])
    expect(none[0]!.message).toMatch(/does not support RFC 9396.*"mcp_tool_call"/)
    const other = rarTypeProblems(issuer('arguments'), types, { ok: true, metadata: { authorization_details_types_supported: ['payment'] } })
    expect(other).toEqual([expect.objectContaining({ severity: 'error', message: expect.stringContaining('does not list authorization_details type "mcp_tool_call" (it lists "payment")') })])
    expect(rarTypeProblems(issuer('digest'), types, { ok: false, why: 'timeout' })).toEqual([expect.objectContaining({ severity: 'warning' })])
  })
})
