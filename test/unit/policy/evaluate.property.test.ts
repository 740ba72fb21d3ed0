/**
 * Property tests: the decision path (strict parse → target → evaluate) on hostile input.
 * ATK-46..50 and ATK-52 in spec-checklist.md §19.3.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../../gateway/errors.js'
import { parseMcpBody, targetName } from '../../../gateway/mcp/jsonrpc.js'
import { evaluate } from '../../../gateway/policy/evaluate.js'
import { compile, FIXTURE, principal } from './helpers.js'

const NOW = Date.parse('2026-01-05T12:00:00Z')
const { set: fixture } = compile({ 'fixture.yaml': FIXTURE })
// Open by default, one explicit deny: the shape where a spelling variant would hurt most.
const { set: denyList } = compile({
  'open.yaml': `apiVersion: mcp-warden/v1
kind: Policy
name: open
routes: [alpha]
rules:
  - { id: any-method, effect: allow, methods: ["*"] }
  - { id: no-delete, effect: deny, tools: [delete_repo] }
  - { id: no-admin-method, effect: deny, methods: [admin/reset] }
`,
})

/** Decide a raw body the way the gateway does; 'rejected' when the body never reaches policy. */
function decideBody(set: typeof fixture, body: string, version = '2025-11-25'): 'rejected' | 'allow' | 'denied' {
  let parsed
  try {
    parsed = parseMcpBody(Buffer.from(body), version)
    for (const m of parsed.messages) targetName(m)
  } catch (e) {
    expect(e).toBeInstanceOf(GatewayError)
    return 'rejected'
  }
  for (const m of parsed.messages) {
    if (m.kind === 'response') continue
    const d = evaluate(set, { route: 'alpha', method: m.method, name: targetName(m), arguments: m.kind === 'request' && m.method === 'tools/call' ? m.params?.arguments : undefined, principal: principal(), now: NOW })
    if (d.effect !== 'allow') return 'denied'
  }
  return 'allow'
}

/** How an upstream (plain JSON.parse, last duplicate wins) would read the body. */
const upstreamReads = (body: string): unknown => {
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}

const escapeChar = (c: string, how: number) => (how === 0 ? c : how === 1 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c === '/' ? '\\/' : c)
const encodedString = (s: string) => fc.array(fc.integer({ min: 0, max: 2 }), { minLength: s.length, maxLength: s.length }).map((hows) => `"${[...s].map((c, i) => escapeChar(c, hows[i]!)).join('')}"`)
const ws = fc.constantFrom('', ' ', '\n', '\t', '\r\n  ')

const HOMOGLYPHS: Record<string, string[]> = { o: ['\u043e', '\u03bf', '\uff4f'], e: ['\u0435'], a: ['\u0430'], p: ['\u0440'], l: ['\u04cf', 'I'], '/': ['\uff0f', '\u2215'], _: ['\uff3f'] }
/** Spelling variants: case flips, surrounding or inner whitespace, NUL and other controls, look-alikes. */
const variant = (s: string) =>
  fc
    .array(fc.tuple(fc.nat(s.length), fc.integer({ min: 0, max: 5 }), fc.nat(2)), { minLength: 1, maxLength: 3 })
    .map((edits) => {
      let out = [...s]
      for (const [pos, kind, pick] of edits) {
        const i = Math.min(pos, out.length - 1)
        const c = out[i]!
        if (kind === 0) out[i] = c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()
        else if (kind === 1) out.splice(pos, 0, ' ')
        else if (kind === 2) out.splice(pos, 0, '\u0000')
        else if (kind === 3) out[i] = HOMOGLYPHS[c]?.[pick % (HOMOGLYPHS[c]?.length ?? 1)] ?? c
        else if (kind === 4) out.splice(pos, 0, '\u200b')
        else out = [...out, '\t']
      }
      return out.join('')
    })
    .filter((v) => v !== s)

describe('policy/evaluate (properties)', () => {
  it('parser / random bodies never crash: only GatewayErrors, and decisions never throw', () => {
    const anyBody = fc.oneof(
      fc.string(),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.record({ jsonrpc: fc.constantFrom('2.0', '1.0', 2), id: fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.double()), method: fc.oneof(fc.string(), fc.constantFrom('tools/call', 'prompts/get', 'resources/read')), params: fc.jsonValue() }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      fc.array(fc.record({ jsonrpc: fc.constant('2.0'), id: fc.integer(), method: fc.constantFrom('ping', 'tools/call'), params: fc.record({ name: fc.jsonValue(), arguments: fc.jsonValue() }) })).map((v) => JSON.stringify(v)),
    )
    fc.assert(
      fc.property(anyBody, fc.constantFrom('2025-03-26', '2025-11-25'), (body, version) => {
        decideBody(fixture, body, version)
        decideBody(denyList, body, version)
      }),
      { numRuns: 1000 },
    )
  })

  it('ATK-47 / encodings of a denied call (escapes, \\/ , whitespace, key order) are still denied', () => {
    fc.assert(
      fc.property(encodedString('tools/call'), encodedString('delete_repo'), ws, ws, fc.boolean(), fc.jsonValue(), (method, name, w1, w2, paramsFirst, meta) => {
        const params = `"params":${w1}{"_meta":${JSON.stringify({ x: meta })},"name":${w2}${name},"arguments":{}}`
        const members = [`"jsonrpc":"2.0"`, `"id":7`, `"method":${w1}${method}`]
        const body = `{${paramsFirst ? [params, ...members].join(',') : [...members, params].join(',')}}`
        const seen = upstreamReads(body) as { method: string; params: { name: string } }
        expect(seen.method === 'tools/call' && seen.params.name === 'delete_repo').toBe(true)
        expect(decideBody(denyList, body)).not.toBe('allow')
      }),
      { numRuns: 500 },
    )
  })

  it('ATK-46 / duplicate keys that an upstream would read as the denied call are rejected', () => {
    fc.assert(
      fc.property(fc.constantFrom('search', 'add', 'x'), fc.boolean(), (decoy, atMethod) => {
        const body = atMethod
          ? `{"jsonrpc":"2.0","id":7,"method":"tools/list","method":"tools/call","params":{"name":"delete_repo","arguments":{}}}`
          : `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"${decoy}","name":"delete_repo","arguments":{}}}`
        expect(decideBody(denyList, body)).toBe('rejected')
      }),
    )
  })

  it('ATK-47/48 / spelling variants of allowed names are never allowed by an allow-list', () => {
    fc.assert(
      fc.property(variant('search'), variant('tools/call'), (tool, method) => {
        expect(evaluate(fixture, { route: 'alpha', method: 'tools/call', name: tool, principal: principal(), now: NOW }).effect).toBe('deny')
        expect(evaluate(fixture, { route: 'alpha', method, name: 'search', principal: principal(), now: NOW }).effect).toBe('deny')
      }),
      { numRuns: 500 },
    )
  })

  it('ATK-47/48 / a variant of a denied name is either denied or a different, well-formed name', () => {
    fc.assert(
      fc.property(variant('delete_repo'), variant('admin/reset'), (tool, method) => {
        const t = evaluate(denyList, { route: 'alpha', method: 'tools/call', name: tool, principal: principal(), now: NOW })
        // Case variants like DELETE_REPO are different tools to a case-sensitive server; anything
        // with spaces, controls or look-alikes is refused outright.
        if (t.effect === 'allow') expect(tool).toMatch(/^[A-Za-z0-9_.-]+$/)
        expect(tool === 'delete_repo').toBe(false)
        const m = evaluate(denyList, { route: 'alpha', method, principal: principal(), now: NOW })
        if (m.effect === 'allow') expect(method).not.toBe('admin/reset')
      }),
      { numRuns: 500 },
    )
  })

  it('ATK-49 / a tools/call shaped as a notification never reaches policy', () => {
    expect(decideBody(denyList, '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_repo","arguments":{}}}')).toBe('rejected')
  })

  it('ATK-44 / POL-10 a batch is denied as a whole if any element is', () => {
    const batch = '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo","arguments":{}}}]'
    expect(decideBody(denyList, batch, '2025-03-26')).toBe('denied')
    expect(decideBody(denyList, batch, '2025-11-25')).toBe('rejected')
  })

  it('ATK-52 / POL-13 _meta and other client annotations never change a decision', () => {
    fc.assert(
      fc.property(fc.constantFrom('search', 'delete_repo', 'transfer_funds'), fc.dictionary(fc.string(), fc.jsonValue()), (name, meta) => {
        const plain = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"${name}","arguments":{"amount":10,"to":"bob"}}}`
        const annotated = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"${name}","arguments":{"amount":10,"to":"bob"},"_meta":${JSON.stringify({ approved: true, role: 'admin', ...meta })},"task":{"ttl":60000}}}`
        const a = decideBody(fixture, plain)
        const b = decideBody(fixture, annotated)
        if (b !== 'rejected') expect(b).toBe(a)
      }),
      { numRuns: 300 },
    )
  })

  it('deny-overrides / rule order across files never changes the effect', () => {
    const rules = FIXTURE.split('\n  - ').slice(1).map((r) => `  - ${r.trimEnd()}`)
    const head = FIXTURE.split('\n  - ')[0]!
    const inputs = ['search', 'delete_repo', 'transfer_funds', 'admin_op', 'x'].map((name) => ({ route: 'alpha', method: 'tools/call', name, arguments: { amount: 10, to: 'bob', options: { force: true } }, principal: principal(), now: NOW }))
    const want = inputs.map((i) => evaluate(fixture, i).effect)
    fc.assert(
      fc.property(fc.shuffledSubarray(rules, { minLength: rules.length, maxLength: rules.length }), (shuffled) => {
        const { set } = compile({ 'f.yaml': `${head}\n${shuffled.join('\n')}\n` })
        expect(inputs.map((i) => evaluate(set, i).effect)).toEqual(want)
      }),
      { numRuns: 50 },
    )
  })
})
