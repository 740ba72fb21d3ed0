import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { policyCommand } from '../../../gateway/policy/cli.js'

const POLICY = `apiVersion: mcp-warden/v1
kind: Policy
name: p
routes: [r]
rules:
  - { id: ping, effect: allow, methods: [ping] }
  - { id: search, effect: allow, tools: [search], when: { scopes: { allOf: [read] } } }
`
function dir(suite: string): string {
  const d = mkdtempSync(join(tmpdir(), 'mcpw-suite-'))
  writeFileSync(join(d, 'p.yaml'), POLICY)
  writeFileSync(join(d, 'p_test.yaml'), suite)
  return d
}
const run = (argv: string[]) => {
  let out = ''
  let err = ''
  const code = policyCommand(argv, { out: (s) => (out += s), err: (s) => (err += s) })
  return { code, out, err }
}

describe('policy/cli', () => {
  it('test / passes with exit 0 and a report', () => {
    const d = dir(`name: s
principals: { reader: { scopes: [read] } }
requests: { search: { route: r, method: tools/call, name: search } }
expect: [{ principal: reader, request: search, effect: allow, rule: p/search }]
`)
    const r = run(['test', d])
    expect(r.code).toBe(0)
    expect(r.out).toContain('ok    reader → search: allow by p/search')
    expect(r.out).toContain('1 passed, 0 failed')
  })

  it('test / a wrong expectation fails with exit 1 and says what differed', () => {
    const d = dir(`name: s
principals: { anon: {} }
requests: { search: { route: r, method: tools/call, name: search } }
expect: [{ principal: anon, request: search, effect: allow }]
`)
    const r = run(['test', d])
    expect(r.code).toBe(1)
    expect(r.out).toContain('FAIL  anon → search: expected allow, got deny by default')
  })

  it('test / an invalid suite is reported with its position', () => {
    const d = dir(`name: s
principals: { anon: {} }
requests: { search: { route: r, method: tools/call, nam: search } }
expect: [{ principal: anon, request: search, effect: allow }]
`)
    const r = run(['test', d])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/p_test\.yaml:3:\d+ {2}requests\.search\.nam: unknown key "nam"/)
  })

  it('explain / the decision and why each other rule did not match', () => {
    const d = dir('name: s\nprincipals: {a: {}}\nrequests: {b: {route: r, method: ping}}\nexpect: [{principal: a, request: b, effect: allow}]\n')
    const r = run(['explain', '--dir', d, '--route', 'r', '--method', 'tools/call', '--name', 'search', '--scopes', 'write'])
    expect(r.code).toBe(0)
    expect(r.out).toContain('decision  deny (no-rule-matched)')
    expect(r.out).toMatch(/✗ p\/ping \[allow\] .*p\.yaml:6 {2}no: method tools\/call is not in \[ping\]/)
    expect(r.out).toMatch(/✗ p\/search \[allow\] .*no: scopes: missing read \(allOf\)/)
  })
})

describe('mcp-warden check (policies)', () => {
  const gatewayYaml = (policyDir: string) => `server: { publicUrl: "http://127.0.0.1:8080", listen: { port: 8080 } }
admin: { listen: { port: 9090 } }
issuers: { corp: { issuer: "https://as.example.com", jwksUri: "https://as.example.com/jwks" } }
routes:
  - { name: r, path: /mcp/r, upstream: { url: "http://127.0.0.1:9000/mcp" }, issuers: [corp] }
policies: { dir: ${policyDir} }
`
  it('check / policies are compiled against the config: an unknown route is an error with its position', async () => {
    const { checkPolicies } = await import('../../../gateway/policy/cli.js')
    const d = mkdtempSync(join(tmpdir(), 'mcpw-check-'))
    mkdirSync(join(d, 'policies'))
    writeFileSync(join(d, 'gateway.yaml'), gatewayYaml('./policies'))
    writeFileSync(join(d, 'policies', 'p.yaml'), POLICY)
    const { loadConfigFile } = await import('../../../gateway/config/load.js')
    const { formatProblem } = await import('../../../gateway/errors.js')
    const file = join(d, 'gateway.yaml')
    expect(checkPolicies(file, loadConfigFile(file).config).problems).toEqual([])
    writeFileSync(join(d, 'policies', 'p.yaml'), POLICY.replace('routes: [r]', 'routes: [r, nope]'))
    expect(checkPolicies(file, loadConfigFile(file).config).problems.map(formatProblem)).toEqual([expect.stringMatching(/p\.yaml:4:13 {2}routes\[1\]: unknown route "nope" \(known: r\)/)])
    // A config that did not load: the policies are still checked against the routes it names.
    expect(checkPolicies(file, undefined).problems.map(formatProblem)).toEqual([expect.stringMatching(/p\.yaml:4:13 {2}routes\[1\]: unknown route "nope" \(known: r\)/)])
  })

  it('check / policy test: a method name that is no MCP method is a warning at its file:line:column (issue 16 item 3)', async () => {
    const { checkPolicies } = await import('../../../gateway/policy/cli.js')
    const d = mkdtempSync(join(tmpdir(), 'mcpw-check-'))
    mkdirSync(join(d, 'policies'))
    writeFileSync(join(d, 'gateway.yaml'), gatewayYaml('./policies'))
    const typo = POLICY.replace('methods: [ping]', 'methods: [ping, logging/setLevl]')
    writeFileSync(join(d, 'policies', 'p.yaml'), typo)
    const file = join(d, 'policies', 'p.yaml')
    const { loadConfigFile } = await import('../../../gateway/config/load.js')
    const { formatProblem } = await import('../../../gateway/errors.js')
    expect(checkPolicies(join(d, 'gateway.yaml'), loadConfigFile(join(d, 'gateway.yaml')).config).problems.map(formatProblem)).toEqual([`${file}:6:48  warning: rules[0].methods[1]: "logging/setLevl" is no MCP method; did you mean "logging/setLevel"?`])
    writeFileSync(join(d, 'policies', 'p_test.yaml'), `name: s
principals: { anon: {} }
requests: { ping: { route: r, method: ping } }
expect: [{ principal: anon, request: ping, effect: allow }]
`)
    const r = run(['test', join(d, 'policies')])
    expect(r.code).toBe(0)
    expect(r.out).toContain(`${file}:6:48  warning: rules[0].methods[1]: "logging/setLevl" is no MCP method`)
  })
})
