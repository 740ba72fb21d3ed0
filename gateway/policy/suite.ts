/**
 * Policy tests like code: `*_test.yaml` suites next to the policies name principals and
 * requests and the expected effect (and deciding rule) of each pairing. Used by
 * `mcp-warden policy test`, `mcp-warden policy explain` and the vitest file that runs every suite
 * in policies/.
 */
import { ConfigError, formatProblem, type ConfigProblem } from '../errors.js'
import { parseYamlSource, validateAgainst } from '../config/yaml-source.js'
import type { CompileContext, PolicyPrincipal, PolicySet } from './compile.js'
import { evaluate, explain, type Decision, type DecisionInput } from './evaluate.js'
import { compilePolicyFiles, isSuiteFile, readPolicyDir } from './load.js'
import { PolicySuiteSchema, type PolicySuite } from './schema.js'

/** Monday noon UTC: suites are reproducible whatever day they run. */
export const DEFAULT_SUITE_TIME = '2026-01-05T12:00:00Z'

/** Without a gateway.yaml, claim names default to the common ones. */
export const DEFAULT_CLAIMS = { groups: 'groups', roles: 'roles' } as const

export type SuitePrincipalInput = PolicySuite['principals'][string]
export type SuiteRequestInput = PolicySuite['requests'][string]

export function suitePrincipal(p: SuitePrincipalInput): PolicyPrincipal {
  return { issuer: p.issuer, issuerName: p.issuer, subject: p.subject, clientId: p.agent, scopes: new Set(p.scopes), actor: p.actor, userPresent: p.userPresent, claims: p.claims }
}

export function suiteInput(r: SuiteRequestInput, p: SuitePrincipalInput): DecisionInput {
  return { route: r.route, method: r.method, name: r.name, arguments: r.arguments, principal: suitePrincipal(p), now: Date.parse(r.at ?? DEFAULT_SUITE_TIME) }
}

export interface CaseResult {
  suite: string
  file: string
  principal: string
  request: string
  expected: { effect: string; rule: string | undefined; shadow: string | undefined }
  actual: Decision
  pass: boolean
}

export interface SuiteRun {
  version: string
  results: CaseResult[]
  /** Policy and suite warnings. */
  warnings: ConfigProblem[]
}

const ruleName = (d: Decision) => (d.ruleId ? `${d.policy}/${d.ruleId}` : 'default')

/** Runs every suite in `dir` against the policies in `dir`. Throws ConfigError for invalid files. */
export function runSuites(dir: string, ctx: CompileContext = { claims: DEFAULT_CLAIMS }): SuiteRun {
  const { set, warnings } = compilePolicyFiles(readPolicyDir(dir), ctx)
  const problems: ConfigProblem[] = []
  const results: CaseResult[] = []
  for (const f of readPolicyDir(dir, isSuiteFile)) {
    const src = parseYamlSource(f.file, f.text, {}, problems)
    if (!src || !validateAgainst(src, PolicySuiteSchema, problems)) continue
    const suite = src.value as PolicySuite
    suite.expect.forEach((e) => {
      const p = suite.principals[e.principal]
      const r = suite.requests[e.request]
      if (!p || !r) {
        problems.push({ file: f.file, line: 1, column: 1, path: 'expect', message: `unknown ${p ? 'request' : 'principal'} "${p ? e.request : e.principal}"`, severity: 'error' })
        return
      }
      results.push(runCase(set, suite.name, f.file, e, r, p))
    })
  }
  if (problems.some((p) => p.severity === 'error')) throw new ConfigError(problems)
  return { version: set.version, results, warnings }
}

function runCase(set: PolicySet, suite: string, file: string, e: PolicySuite['expect'][number], r: SuiteRequestInput, p: SuitePrincipalInput): CaseResult {
  const actual = evaluate(set, suiteInput(r, p))
  const ruleOk = e.rule === undefined || e.rule === ruleName(actual) || e.rule === actual.ruleId
  const shadowOk = e.shadow === undefined || e.shadow === (actual.shadow?.effect ?? actual.effect)
  return { suite, file, principal: e.principal, request: e.request, expected: { effect: e.effect, rule: e.rule, shadow: e.shadow }, actual, pass: actual.effect === e.effect && ruleOk && shadowOk }
}

export function formatSuiteRun(run: SuiteRun): string {
  const lines: string[] = [`policy version ${run.version}`]
  for (const w of run.warnings) lines.push(formatProblem(w))
  let suite = ''
  for (const r of run.results) {
    if (r.suite !== suite) {
      suite = r.suite
      lines.push(`\n${r.suite} (${r.file})`)
    }
    const got = `${r.actual.effect} by ${ruleName(r.actual)}${r.actual.shadow && r.actual.shadow.effect !== r.actual.effect ? `, shadow would ${r.actual.shadow.effect}` : ''}`
    const want = `${r.expected.effect}${r.expected.rule ? ` by ${r.expected.rule}` : ''}${r.expected.shadow ? `, shadow ${r.expected.shadow}` : ''}`
    lines.push(r.pass ? `  ok    ${r.principal} → ${r.request}: ${got}` : `  FAIL  ${r.principal} → ${r.request}: expected ${want}, got ${got}`)
  }
  const failed = run.results.filter((r) => !r.pass).length
  lines.push(`\n${run.results.length - failed} passed, ${failed} failed`)
  return `${lines.join('\n')}\n`
}

export function formatExplanation(set: PolicySet, input: DecisionInput): string {
  const { decision, rules } = explain(set, input)
  const lines = [
    `request   route ${input.route}, ${input.method}${input.name !== undefined ? ` ${JSON.stringify(input.name)}` : ''}`,
    `decision  ${decision.effect} (${decision.reason})${decision.ruleId ? ` by ${ruleName(decision)}` : ''}${decision.scopes ? `, challenge scope "${decision.scopes.join(' ')}"` : ''}`,
  ]
  if (decision.shadow) lines.push(`shadow    ${decision.shadow.effect}${decision.shadow.ruleId ? ` by ${decision.shadow.policy}/${decision.shadow.ruleId}` : ' (default)'}`)
  lines.push(`policy    version ${set.version}`, 'rules (file order):')
  if (rules.length === 0) lines.push('  (no policy applies to this route: closed)')
  for (const { rule, matched, why } of rules) {
    const mark = decision.ruleId === rule.id && decision.policy === rule.policy ? '→' : matched ? '✓' : '✗'
    lines.push(`  ${mark} ${rule.policy}/${rule.id} [${rule.effect}${rule.shadow ? ', shadow' : ''}] ${rule.file}:${rule.line}  ${matched ? 'matches' : `no: ${why}`}`)
  }
  return `${lines.join('\n')}\n`
}
