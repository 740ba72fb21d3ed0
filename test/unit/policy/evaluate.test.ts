import { describe, expect, it } from 'vitest'
import { evaluate, visible, type DecisionInput } from '../../../gateway/policy/evaluate.js'
import { compile, FIXTURE, policyDoc, principal } from './helpers.js'

const NOW = Date.parse('2026-01-05T12:00:00Z')
const { set } = compile({ 'fixture.yaml': FIXTURE })
const call = (name: string, args: unknown = {}, p = principal()): DecisionInput => ({ route: 'alpha', method: 'tools/call', name, arguments: args, principal: p, now: NOW })

describe('policy/evaluate', () => {
  const cases: [string, DecisionInput, { effect: string; ruleId?: string; reason?: string; scopes?: string[] }][] = [
    ['allow / lifecycle method', { route: 'alpha', method: 'initialize', principal: principal(), now: NOW }, { effect: 'allow', ruleId: 'lifecycle' }],
    ['allow / notification glob', { route: 'alpha', method: 'notifications/initialized', principal: principal(), now: NOW }, { effect: 'allow', ruleId: 'lifecycle' }],
    ['deny / unknown method (POL-12)', { route: 'alpha', method: 'vendor/secret', principal: principal(), now: NOW }, { effect: 'deny', reason: 'no-rule-matched' }],
    ['allow / SCP-05 search with tools.read', call('search'), { effect: 'allow', ruleId: 'search' }],
    ['deny / search without the scope', call('search', {}, principal({ scopes: [] })), { effect: 'deny', reason: 'no-rule-matched' }],
    ['require-scopes / SCP-01 delete_repo with tools.read', call('delete_repo'), { effect: 'require-scopes', ruleId: 'delete-needs-write', scopes: ['tools.read', 'tools.write'] }],
    ['allow / delete_repo with tools.write', call('delete_repo', {}, principal({ scopes: ['tools.write'] })), { effect: 'allow', ruleId: 'delete-needs-write' }],
    ['require-scopes / SCP-02 every needed scope in one challenge', call('admin_op'), { effect: 'require-scopes', scopes: ['tools.read', 'tools.write', 'admin.read'] }],
    ['deny / SCP-04 scopes are case-sensitive', call('delete_repo', {}, principal({ scopes: ['Tools.Write'] })), { effect: 'require-scopes' }],
    ['deny / SCP-05 unknown tool even with every scope', call('unknown_tool', {}, principal({ scopes: ['tools.read', 'tools.write'] })), { effect: 'deny', reason: 'no-rule-matched' }],
    ['allow / argument in range', call('transfer_funds', { amount: 10, to: 'bob' }), { effect: 'allow', ruleId: 'transfer' }],
    ['deny / argument out of range', call('transfer_funds', { amount: 10000, to: 'bob' }), { effect: 'deny' }],
    ['deny / numeric argument as a string does not satisfy allow', call('transfer_funds', { amount: '10', to: 'bob' }), { effect: 'deny' }],
    ['deny / regex is anchored', call('transfer_funds', { amount: 10, to: 'bob; rm' }), { effect: 'deny' }],
    ['deny / deny rule on a nested argument wins', call('transfer_funds', { amount: 10, to: 'bob', options: { force: true } }), { effect: 'deny', ruleId: 'no-force' }],
    ['deny / fail closed: wrong type matches a deny condition', call('transfer_funds', { amount: 10, to: 'bob', options: { force: 'true' } }), { effect: 'deny', ruleId: 'no-force' }],
    ['deny / POL-06 homoglyph tool name', call('delete_rep\u043e', {}, principal({ scopes: ['tools.write'] })), { effect: 'deny', reason: 'invalid-name' }],
    ['deny / POL-06 case variant', call('SEARCH'), { effect: 'deny' }],
    ['allow / resource under a prefix', { route: 'alpha', method: 'resources/read', name: 'file:///srv/docs/a.md', principal: principal(), now: NOW }, { effect: 'allow', ruleId: 'docs' }],
    ['allow / prompt', { route: 'alpha', method: 'prompts/get', name: 'summarize', principal: principal(), now: NOW }, { effect: 'allow', ruleId: 'summarize' }],
    // Dot segments are resolved (RFC 3986 §5.2.4) before matching, so a traversal is decided on the target it names.
    ...['file:///srv/docs/../secrets/key', 'file:///srv/docs/%2e%2e/secrets/key', 'file:///srv/docs/.%2E/secrets/key', 'file:///srv/docs/a/../../secrets/key'].map(
      (uri): [string, DecisionInput, { effect: string; reason: string }] => [`deny / POL-07 ATK-54 traversal ${uri}`, { route: 'alpha', method: 'resources/read', name: uri, principal: principal(), now: NOW }, { effect: 'deny', reason: 'no-rule-matched' }],
    ),
    ...['file:///srv/docs%2F..%2Fsecrets/key', 'file:///srv/docs/a\\..\\b', 'file:///srv/docs/%252e%252e/x', 'file:///srv/docs/a%00.md', 'file://x@host/srv/docs/a.md', 'file:///srv/docs/a\tb'].map(
      (uri): [string, DecisionInput, { effect: string; reason: string }] => [`deny / POL-07 ATK-54 ambiguous spelling ${JSON.stringify(uri)}`, { route: 'alpha', method: 'resources/read', name: uri, principal: principal(), now: NOW }, { effect: 'deny', reason: 'invalid-name' }],
    ),
    ['allow / POL-07 a dot segment that stays inside the prefix', { route: 'alpha', method: 'resources/read', name: 'file:///srv/docs/./sub/../a.md', principal: principal(), now: NOW }, { effect: 'allow', ruleId: 'docs' }],
    ['deny / POL-07 sibling prefix', { route: 'alpha', method: 'resources/read', name: 'file:///srv/docs-private/x', principal: principal(), now: NOW }, { effect: 'deny', reason: 'no-rule-matched' }],
    ['allow / POL-07 scheme and host compare case-insensitively', { route: 'alpha', method: 'resources/subscribe', name: 'FILE:///srv/docs/a.md', principal: principal(), now: NOW }, { effect: 'allow', ruleId: 'docs' }],
    ['deny / POL-07 paths compare exactly', { route: 'alpha', method: 'resources/read', name: 'file:///SRV/docs/a.md', principal: principal(), now: NOW }, { effect: 'deny' }],
    ['deny / prompt not listed (POL-08)', { route: 'alpha', method: 'prompts/get', name: 'secret', principal: principal(), now: NOW }, { effect: 'deny' }],
    ['deny / route without policy is closed', { route: 'beta', method: 'initialize', principal: principal(), now: NOW }, { effect: 'deny', reason: 'no-policy-for-route' }],
  ]
  for (const [title, input, want] of cases) {
    it(title, () => {
      const d = evaluate(set, input)
      expect(d.effect).toBe(want.effect)
      if (want.ruleId) expect(d.ruleId).toBe(want.ruleId)
      if (want.reason) expect(d.reason).toBe(want.reason)
      if (want.scopes) expect(d.scopes).toEqual(want.scopes)
    })
  }

  it('deny / an empty policy set denies everything', () => {
    const { set: other } = compile({ 'x.yaml': FIXTURE.replace('routes: [alpha]', 'routes: [beta]') })
    expect(evaluate(other, call('search')).effect).toBe('deny')
  })

  it('visible / listing hides what cannot be called, shows argument-constrained allows', () => {
    const v = (name: string, p = principal()) => visible(set, 'alpha', 'tool', name, p, NOW)
    expect(v('search')).toBe(true)
    expect(v('transfer_funds')).toBe(true)
    expect(v('delete_repo')).toBe(false)
    expect(v('delete_repo', principal({ scopes: ['tools.write'] }))).toBe(true)
    expect(v('unknown')).toBe(false)
  })

  it('principal / act.sub only: nested actors are ignored (JWT-17, ATK-24)', () => {
    const { set: s } = compile({
      'a.yaml': policyDoc(`  - id: bot
    effect: allow
    methods: [ping]
    when: { actors: [bot] }
`),
    })
    const p = (actor: string | undefined, claims = {}) => principal({ actor, claims })
    expect(evaluate(s, { route: 'alpha', method: 'ping', principal: p('bot'), now: NOW }).effect).toBe('allow')
    // The chain's earlier actor sits in claims.act.act; it never counts.
    expect(evaluate(s, { route: 'alpha', method: 'ping', principal: p('relay', { act: { sub: 'relay', act: { sub: 'bot' } } }), now: NOW }).effect).toBe('deny')
  })

  it('principal / subject, agent, issuer, userPresent, groups and nested roles claims', () => {
    const { set: s } = compile({
      'a.yaml': policyDoc(`  - id: r
    effect: allow
    methods: [ping]
    when:
      subjects: [u1]
      agents: [c1]
      issuers: [corp]
      userPresent: true
      groups: { anyOf: [eng] }
      roles: { allOf: [ops], noneOf: [intern] }
`),
    })
    const ok = principal({ claims: { groups: ['eng'], realm_access: { roles: ['ops'] } } })
    const d = (p = ok) => evaluate(s, { route: 'alpha', method: 'ping', principal: p, now: NOW }).effect
    expect(d()).toBe('allow')
    expect(d({ ...ok, subject: 'u2' })).toBe('deny')
    expect(d({ ...ok, clientId: 'c2' })).toBe('deny')
    expect(d({ ...ok, issuer: 'https://evil', issuerName: 'evil' })).toBe('deny')
    expect(d({ ...ok, userPresent: false })).toBe('deny')
    expect(d({ ...ok, claims: { groups: 'eng', realm_access: { roles: ['ops', 'intern'] } } })).toBe('deny')
    expect(d({ ...ok, claims: { groups: 'eng admins', realm_access: { roles: ['ops'] } } })).toBe('allow')
    expect(evaluate(s, { route: 'alpha', method: 'ping', principal: undefined, now: NOW }).effect).toBe('deny')
  })

  it('time / windows in a time zone, across midnight', () => {
    const { set: s } = compile({
      'a.yaml': policyDoc(`  - id: night
    effect: allow
    methods: [ping]
    when: { time: { days: [mon], from: "22:00", to: "06:00", timezone: America/New_York } }
`),
    })
    const at = (iso: string) => evaluate(s, { route: 'alpha', method: 'ping', principal: principal(), now: Date.parse(iso) }).effect
    expect(at('2026-01-06T03:30:00Z')).toBe('allow') // Mon 22:30 in New York
    expect(at('2026-01-05T16:00:00Z')).toBe('deny') // Mon 11:00
    expect(at('2026-01-07T03:30:00Z')).toBe('deny') // Tue 22:30
  })

  it('shadow / a shadow deny is reported, not enforced', () => {
    const { set: s } = compile({
      'a.yaml': policyDoc(`  - { id: allow-ping, effect: allow, methods: [ping] }
  - { id: new-deny, effect: deny, methods: [ping], mode: shadow }
`),
    })
    const d = evaluate(s, { route: 'alpha', method: 'ping', principal: principal(), now: NOW })
    expect(d).toMatchObject({ effect: 'allow', ruleId: 'allow-ping', shadow: { effect: 'deny', ruleId: 'new-deny' } })
  })

  it('require-approval / held, and never allowed by an allow rule alongside', () => {
    const { set: s } = compile({
      'a.yaml': policyDoc(`  - { id: all-tools, effect: allow, tools: ["*"] }
  - { id: close, effect: require-approval, tools: [close_ticket] }
`),
    })
    expect(evaluate(s, call('close_ticket'))).toMatchObject({ effect: 'require-approval', ruleId: 'close', reason: 'approval-required' })
    expect(evaluate(s, call('other')).effect).toBe('allow')
  })
})
