/**
 * Issue 16 item 1, without an AS: the binding_message language (plain rendering, the per-call
 * code, the check of a template against the issuer's rule) and the configuration and policy
 * problems the new per-issuer approval options report (file:line:column). Checklist CIBA-08.
 */
import { describe, expect, it } from 'vitest'
import { Value } from '@sinclair/typebox/value'
import { loadConfigText } from '../../gateway/config/load.js'
import { IssuerSchema } from '../../gateway/config/schema.js'
import { ConfigError } from '../../gateway/errors.js'
import { approvalCode, CODE_ALPHABET, DEFAULT_APPROVAL_MESSAGE, DEFAULT_BINDING_MESSAGE_PATTERN, renderMessage, templateProblem } from '../../gateway/policy/approval-message.js'
import { CONFIG_HEAD, configProblems } from '../helpers/config.js'
import { compile, CTX } from './policy/helpers.js'

const OIDC_DEFAULT = new RegExp(DEFAULT_BINDING_MESSAGE_PATTERN)
const facts = (over: Record<string, unknown> = {}) => ({ agent: 'shop assistant ✓', tool: 'place_order', route: 'orders', subject: 'alice@example.com', code: 'K7M2QX', arguments: { sku: 'TV 55"', total: 899, note: 'a\u202e\nb' }, ...over })

/** A small deterministic generator: the property tests must be reproducible. */
function* strings(seed: number, n: number): Generator<string> {
  let x = seed
  const next = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff), x)
  const pool = 'aZ09 ._-?#+/!é✓\u202e\n\t{}:"\'<>%&=' + 'x'.repeat(10)
  for (let i = 0; i < n; i++) {
    const len = next() % 60
    let s = ''
    for (let j = 0; j < len; j++) s += pool[next() % pool.length]
    yield s
  }
}

describe('binding_message templates (CIBA-08)', () => {
  it("the default template and the retry text pass oidc-provider's default rule, whatever the tool is called", () => {
    expect(templateProblem(DEFAULT_APPROVAL_MESSAGE, OIDC_DEFAULT)).toBeUndefined()
    expect(templateProblem('Approve-{code}', OIDC_DEFAULT)).toBeUndefined()
    for (const tool of strings(1, 200)) {
      const m = renderMessage(DEFAULT_APPROVAL_MESSAGE, facts({ tool }), 'plain')
      expect(m, JSON.stringify(tool)).toMatch(OIDC_DEFAULT)
    }
    expect(renderMessage(DEFAULT_APPROVAL_MESSAGE, facts(), 'plain')).toBe('place_order-K7M2QX')
  })

  it('a template accepted for a rule renders inside it for any facts (property, 300 cases)', () => {
    const rules = [OIDC_DEFAULT, /^[ -~]{1,60}$/, /^[A-Za-z0-9 ._?-]{1,100}$/]
    const templates = ['{tool:13}-{code}', '{code}', '{args.sku:8}/{args.total:6}#{code}', 'pay {args.total} to {args.sku}', '{agent}:{tool}', '{subject:5}-{args.missing}']
    const values = [...strings(7, 300)]
    let checked = 0
    for (const rule of rules) {
      for (const t of templates) {
        if (templateProblem(t, rule)) continue
        for (const [i, v] of values.entries()) {
          const f = facts({ agent: v, tool: values[(i + 1) % values.length]!, subject: v, arguments: { sku: v, total: values[(i + 2) % values.length] } })
          expect(renderMessage(t, f, 'plain'), `${t} with ${JSON.stringify(v)}`).toMatch(rule)
          checked++
        }
      }
    }
    // The property must have exercised accepted templates for every rule, not vacuously passed.
    expect(checked).toBeGreaterThanOrEqual(300 * 6)
  })

  it('refuses a template that can render outside the rule, saying what it would render', () => {
    expect(templateProblem('{agent} wants to call {tool}', OIDC_DEFAULT)).toMatch(/can render as ".* wants to call .*"/)
    // {tool} alone is 20 wide; with the code it can reach 27 characters.
    expect(templateProblem('{tool}', OIDC_DEFAULT)).toBeUndefined()
    expect(templateProblem('{tool}-{code}', OIDC_DEFAULT)).toMatch(/refuses/)
    expect(templateProblem('Approve {code}', OIDC_DEFAULT)).toMatch(/refuses/)
    // An unknown placeholder stays literal, and braces are outside the rule.
    expect(templateProblem('{amount}', OIDC_DEFAULT)).toMatch(/\{amount\}/)
    // A rule that allows spaces accepts the readable template.
    expect(templateProblem('{agent} wants to call {tool}', /^[ -~]{1,60}$/)).toBeUndefined()
    // A rule shorter than the code itself refuses everything but literals that fit.
    expect(templateProblem('{code}', /^.{1,5}$/)).toMatch(/refuses/)
  })

  it('placeholders render in the plain alphabet: no argument value leaks past its width, missing ones are "?"', () => {
    const m = renderMessage('{args.sku:6}/{args.nope}/{args.note}', facts({ arguments: { sku: 'hunter2-and-more', note: 'a\u202e\nb' } }), 'plain')
    expect(m).toBe('hunter/?/a-b')
    expect(renderMessage('{args.total}', facts(), 'text')).toBe('899')
  })

  it('the code is 6 symbols of an unambiguous alphabet, stable for one approval id', () => {
    const id = Buffer.from('0123456789abcdefgh').toString('base64url')
    expect(approvalCode(id)).toBe(approvalCode(id))
    expect(approvalCode(id)).toMatch(new RegExp(`^[${CODE_ALPHABET}]{6}$`))
    expect(approvalCode(id)).not.toBe(approvalCode(Buffer.from('1123456789abcdefgh').toString('base64url')))
  })

  it("the schema's default rule is oidc-provider's, spelled once in the policy module", () => {
    const cfg = Value.Default(IssuerSchema, { issuer: 'https://a.example', approval: { channel: 'ciba' } }) as { approval: { bindingMessagePattern: string; authorizationDetails: string } }
    expect(cfg.approval.bindingMessagePattern).toBe(DEFAULT_BINDING_MESSAGE_PATTERN)
    expect(cfg.approval.authorizationDetails).toBe('none')
  })
})

describe('per-issuer approval options: configuration problems with positions', () => {
  const CLIENT = '    client: { id: mcp-warden, secret: { fromEnv: S } }\n'
  const gateway = (approval: string) => `${CONFIG_HEAD}${CLIENT}    approval: ${approval}
routes:
  - { name: alpha, path: /mcp/alpha, upstream: { url: http://127.0.0.1:3000/mcp }, issuers: [corp] }
`
  const problems = (approval: string) => configProblems(gateway(approval), { S: 'x'.repeat(40) })

  it('defaults: no RAR, no resource, the oidc-provider rule', () => {
    const { config } = loadConfigText('gw.yaml', gateway('{ channel: ciba }'), { env: { S: 'x'.repeat(40) } })
    const a = config.issuers.get('corp')!.approval!
    expect(a.authorizationDetails).toBe('none')
    expect(a.resource).toBeUndefined()
    expect(a.bindingMessagePattern.source).toBe(new RegExp(DEFAULT_BINDING_MESSAGE_PATTERN).source)
  })

  it('resource is `route` or an absolute URI; the rule must compile; both reported at their node', () => {
    expect(problems('{ channel: ciba, resource: route, authorizationDetails: digest }')).toEqual([])
    expect(problems('{ channel: ciba, resource: "https://api.example.com/" }')).toEqual([])
    const [r] = problems('{ channel: ciba, resource: not-a-uri }')
    expect(r).toMatchObject({ file: 'gw.yaml', line: 10, path: 'issuers.corp.approval.resource' })
    expect(r!.column).toBeGreaterThan(1)
    const [p] = problems('{ channel: ciba, bindingMessagePattern: "^[a-z" }')
    expect(p).toMatchObject({ file: 'gw.yaml', line: 10, path: 'issuers.corp.approval.bindingMessagePattern' })
    expect(p!.message).toMatch(/not a valid regular expression/)
    expect(problems('{ channel: ciba, authorizationDetails: everything }').length).toBeGreaterThan(0)
  })

  it("a require-approval message outside a CIBA issuer's rule is a policy error at the message's line", () => {
    const doc = (approval: string) => `apiVersion: mcp-warden/v1
kind: Policy
name: p
routes: [alpha]
rules:
  - id: ok
    effect: require-approval
    tools: [pay]
  - id: chatty
    effect: require-approval
    tools: [refund]
    approval:
${approval}`
    const ctx = { ...CTX, bindingMessageRules: [{ issuer: 'corp', rule: OIDC_DEFAULT }] }
    const errors = (text: string) => {
      try {
        compile({ 'p.yaml': text }, ctx)
      } catch (e) {
        if (e instanceof ConfigError) return e.problems.filter((x) => x.severity === 'error')
        throw e
      }
      return []
    }
    const [e] = errors(doc('      message: "{agent} wants to call {tool}"\n'))
    expect(e).toMatchObject({ file: 'p.yaml', line: 13, path: 'rules[1].approval.message' })
    expect(e!.message).toMatch(/issuers\.corp\.approval\.bindingMessagePattern/)
    expect(errors(doc('      message: "{tool:12}#{code}"\n'))).toEqual([])
    // Without a CIBA issuer (webhook only) any readable message is fine.
    expect(() => compile({ 'p.yaml': doc('      message: "{agent} wants to call {tool}"\n') })).not.toThrow()
  })
})
