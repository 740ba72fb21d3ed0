import { describe, expect, it } from 'vitest'
import { ConfigError, formatProblem } from '../../../gateway/errors.js'
import { compile } from './helpers.js'

const problems = (files: Record<string, string>): string[] => {
  try {
    return compile(files).warnings.map(formatProblem)
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map(formatProblem)
    throw e
  }
}

const doc = (rules: string, head = 'routes: [alpha]') => `apiVersion: mcp-warden/v1
kind: Policy
name: p
${head}
rules:
${rules}`

describe('policy/compile', () => {
  it('refused / schema errors with file:line:column, all at once', () => {
    const out = problems({
      'p.yaml': doc(`  - id: a
    effect: alow
    methods: [ping]
  - id: b
    effect: allow
    tool: [x]
`),
    })
    expect(out).toContain('p.yaml:7:13  rules[0].effect: must be one of "allow", "deny", "require-scopes", "require-approval"')
    expect(out).toContain('p.yaml:11:5  rules[1].tool: unknown key "tool"')
  })

  it('refused / references: unknown route, issuer, claim names; regex; time zone; duplicates', () => {
    const out = problems({
      'p.yaml': doc(
        `  - id: a
    effect: allow
    tools: [x]
    arguments: { "to": { regex: "([a-z" } }
  - id: a
    effect: allow
    methods: [ping]
    when: { issuers: [nope], time: { timezone: Mars/Olympus } }
  - id: c
    effect: require-scopes
    methods: [ping]
`,
        'routes: [alpha, gamma]',
      ),
      'q.yaml': `apiVersion: mcp-warden/v1
kind: Policy
name: q
routes: [alpha]
rules:
  - id: g
    effect: allow
    methods: [ping]
    when: { roles: { anyOf: [x] } }
`,
    })
    const text = out.join('\n')
    expect(text).toMatch(/p\.yaml:4:17 {2}routes\[1\]: unknown route "gamma" \(known: alpha, beta\)/)
    expect(text).toMatch(/p\.yaml:9:33 {2}rules\[0\]\.arguments\.to\.regex: invalid regular expression/)
    expect(text).toMatch(/p\.yaml:10:9 {2}rules\[1\]\.id: duplicate rule id "a"/)
    expect(text).toMatch(/p\.yaml:13:23 {2}rules\[1\]\.when\.issuers\[0\]: unknown issuer "nope"/)
    expect(text).toMatch(/rules\[1\]\.when\.time\.timezone: unknown time zone "Mars\/Olympus"/)
    expect(text).toMatch(/rules\[2\]\.effect: require-scopes needs scopes/)
    // q.yaml is fine apart from roles, whose claim name is configured in CTX: no error there.
    expect(text).not.toMatch(/q\.yaml/)
  })

  it('refused / groups without a configured claim name', () => {
    expect(() =>
      compile(
        { 'p.yaml': doc(`  - { id: a, effect: allow, methods: [ping], when: { groups: { anyOf: [x] } } }\n`) },
        { claims: {} },
      ),
    ).toThrow(/set policies\.claims\.groups/)
  })

  it('warns / never-matching and shadowed rules', () => {
    const out = problems({
      'p.yaml': doc(`  - id: all-deletes
    effect: deny
    tools: ["delete_*"]
  - id: delete-repo
    effect: allow
    tools: [delete_repo]
  - id: wrong-method
    effect: allow
    methods: [tools/list]
    tools: [x]
  - id: empty-range
    effect: allow
    tools: [t]
    arguments: { n: { gt: 5, lt: 5 } }
  - id: not-in-metadata
    effect: require-scopes
    tools: [y]
    scopes: [payments.admin]
`),
    })
    const text = out.join('\n')
    expect(text).toMatch(/p\.yaml:9:9 {2}warning: rules\[1\]\.id: rule "delete-repo" can never decide: rule "p\/all-deletes" \(p\.yaml:6\)/)
    expect(text).toMatch(/warning: rules\[2\]\.methods: this rule can never match: tools are only named by tools\/call/)
    expect(text).toMatch(/warning: rules\[3\]\.arguments\.n: this numeric range is empty/)
    expect(text).toMatch(/warning: rules\[4\]\.scopes: scope "payments\.admin" is not in scopesSupported of route "alpha"/)
    expect(text).toMatch(/warning: no policy applies to route "beta"/)
  })

  it('a method name that MCP does not define, or a glob matching none, is a warning with its position; known names and globs are not', () => {
    const out = problems({
      'p.yaml': doc(`  - id: lifecycle
    effect: allow
    methods: [initialize, ping, server/discover, logging/setLevel, "notifications/*", tools/list, Tools/List, "tool/*"]
  - id: own
    effect: allow
    methods: [x-company/reindex]
`),
    })
    expect(out.filter((w) => w.includes('MCP method'))).toEqual([
      'p.yaml:8:99  warning: rules[0].methods[6]: "Tools/List" is no MCP method; did you mean "tools/list"?',
      'p.yaml:8:111  warning: rules[0].methods[7]: "tool/*" is no MCP method (the pattern matches none)',
      'p.yaml:11:15  warning: rules[1].methods[0]: "x-company/reindex" is no MCP method',
    ])
  })

  it('limits / methods are checked the same way', () => {
    const out = problems({
      'p.yaml': `${doc(`  - { id: a, effect: allow, methods: [ping] }
`)}limits:
  - { name: l, methods: [tools/cal], key: [subject], limit: 10, per: 1m }
`,
    })
    expect(out.filter((w) => w.includes('MCP method'))).toEqual(['p.yaml:8:26  warning: limits[0].methods[0]: "tools/cal" is no MCP method; did you mean "tools/call"?'])
  })

  it('version / a content hash: same files same version, any byte changes it', () => {
    const files = { 'p.yaml': doc(`  - { id: a, effect: allow, methods: [ping] }\n`) }
    expect(compile(files).set.version).toBe(compile(files).set.version)
    expect(compile({ 'p.yaml': `${files['p.yaml']}# comment\n` }).set.version).not.toBe(compile(files).set.version)
  })

  it('refused / ${ENV} is not interpolated in policies', () => {
    expect(() => compile({ 'p.yaml': doc(`  - { id: a, effect: allow, tools: ["\${TOOL}"] }\n`) })).toThrow(/environment variable TOOL is not set/)
  })
})
