import type { CompileContext, PolicyPrincipal } from '../../../gateway/policy/compile.js'
import { compilePolicyFiles } from '../../../gateway/policy/load.js'

export const CTX: CompileContext = {
  routes: [
    { name: 'alpha', scopesSupported: ['tools.read', 'tools.write', 'admin.read'] },
    { name: 'beta', scopesSupported: ['tools.read'] },
  ],
  issuers: [{ name: 'corp', issuer: 'https://as.example.com' }],
  claims: { groups: 'groups', roles: 'realm_access.roles' },
}

export const compile = (files: Record<string, string>, ctx: CompileContext = CTX) => compilePolicyFiles(Object.entries(files).map(([file, text]) => ({ file, text })), ctx)

export const principal = (o: Partial<Omit<PolicyPrincipal, 'scopes'>> & { scopes?: string[] } = {}): PolicyPrincipal => ({
  issuer: 'https://as.example.com',
  issuerName: 'corp',
  subject: 'u1',
  clientId: 'c1',
  actor: undefined,
  userPresent: true,
  claims: {},
  ...o,
  scopes: new Set(o.scopes ?? ['tools.read']),
})

/** The checklist fixture policy (spec-checklist.md §0.2). */
export const FIXTURE = `apiVersion: mcp-warden/v1
kind: Policy
name: fixture
routes: [alpha]
rules:
  - id: lifecycle
    effect: allow
    methods: [initialize, ping, "notifications/*", tools/list, prompts/list, resources/list, "tasks/*"]
  - id: search
    effect: allow
    tools: [search]
    when: { scopes: { allOf: [tools.read] } }
  - id: delete-needs-write
    effect: require-scopes
    tools: [delete_repo]
    scopes: [tools.write]
  - id: admin-op
    effect: require-scopes
    tools: [admin_op]
    scopes: [tools.write, admin.read]
  - id: transfer
    effect: allow
    tools: [transfer_funds]
    arguments: { amount: { gt: 0, lte: 100 }, to: { regex: "[a-z]+" } }
  - id: no-force
    effect: deny
    tools: [transfer_funds]
    arguments: { options.force: { equals: true } }
  - id: docs
    effect: allow
    resources: ["file:///srv/docs/*"]
  - id: summarize
    effect: allow
    prompts: [summarize]
`

/** One policy document named `a` over the given rules (YAML, indented by two). */
export const policyDoc = (rules: string, routes = "['*']") => `apiVersion: mcp-warden/v1
kind: Policy
name: a
routes: ${routes}
rules:
${rules}`
