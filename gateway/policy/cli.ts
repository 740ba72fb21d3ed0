/**
 * `mcp-warden policy …` commands:
 *   policy test DIR [--config FILE]     run DIR's *_test.yaml suites against DIR's policies
 *   policy explain [--dir DIR] [--config FILE] (--file CASE.yaml | --route R --method M …)
 *                                       the decision, the deciding rule, and why each other rule did not match
 * With --config, routes, issuers and claim names are checked against that gateway.yaml.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { parse as parseYaml } from 'yaml'
import { loadConfigFile } from '../config/load.js'
import { ConfigError, formatProblem } from '../errors.js'
import type { CompileContext } from './compile.js'
import { compileContext } from './engine.js'
import { loadPolicyDir } from './load.js'
import { DEFAULT_CLAIMS, formatExplanation, formatSuiteRun, runSuites, suiteInput, type SuitePrincipalInput, type SuiteRequestInput } from './suite.js'

export const POLICY_USAGE = `  mcp-warden policy test DIR [--config FILE]
                                    run the *_test.yaml suites in DIR; exit 1 on any failure
  mcp-warden policy explain [--dir DIR] [--config FILE] --file CASE.yaml
  mcp-warden policy explain [--dir DIR] [--config FILE] --route R --method M [--name N] [--args JSON]
        [--subject S] [--agent A] [--issuer I] [--scopes "a b"] [--actor X] [--app-only] [--claims JSON] [--at ISO-TIME]
                                    print the decision and why each rule did or did not match
`

type Out = { out: (s: string) => void; err: (s: string) => void }

function context(configFile: string | undefined): { ctx: CompileContext; dir: string | undefined } {
  if (!configFile) return { ctx: { claims: DEFAULT_CLAIMS }, dir: undefined }
  const { config } = loadConfigFile(configFile)
  return { ctx: compileContext(config), dir: config.policies?.dir }
}

export function policyCommand(argv: string[], io: Out): number {
  const [sub, ...rest] = argv
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      dir: { type: 'string' },
      file: { type: 'string' },
      route: { type: 'string' },
      method: { type: 'string' },
      name: { type: 'string' },
      args: { type: 'string' },
      subject: { type: 'string' },
      agent: { type: 'string' },
      issuer: { type: 'string' },
      scopes: { type: 'string' },
      actor: { type: 'string' },
      'app-only': { type: 'boolean' },
      claims: { type: 'string' },
      at: { type: 'string' },
    },
  })
  try {
    const { ctx, dir: configured } = context(values.config)
    const dir = positionals[0] ?? values.dir ?? configured
    if (!dir) {
      io.err(`policy ${sub ?? ''} needs a policy directory (DIR, --dir, or --config with a policies: section)\n${POLICY_USAGE}`)
      return 2
    }
    if (sub === 'test') {
      const run = runSuites(dir, ctx)
      io.out(formatSuiteRun(run))
      if (run.results.length === 0) {
        io.err(`no *_test.yaml suites in ${dir}\n`)
        return 1
      }
      return run.results.every((r) => r.pass) ? 0 : 1
    }
    if (sub === 'explain') {
      const { set } = loadPolicyDir(dir, ctx)
      let principal: Partial<SuitePrincipalInput>
      let request: Partial<SuiteRequestInput>
      if (values.file) {
        const doc = (parseYaml(readFileSync(values.file, 'utf8')) ?? {}) as { principal?: Partial<SuitePrincipalInput>; request?: Partial<SuiteRequestInput> }
        principal = doc.principal ?? {}
        request = doc.request ?? {}
      } else {
        principal = {
          ...(values.subject ? { subject: values.subject } : {}),
          ...(values.agent ? { agent: values.agent } : {}),
          ...(values.issuer ? { issuer: values.issuer } : {}),
          ...(values.actor ? { actor: values.actor } : {}),
          scopes: values.scopes?.split(' ').filter(Boolean) ?? [],
          userPresent: !values['app-only'],
          claims: values.claims ? (JSON.parse(values.claims) as Record<string, unknown>) : {},
        }
        request = { route: values.route, method: values.method, name: values.name, arguments: values.args ? (JSON.parse(values.args) as Record<string, unknown>) : undefined, at: values.at }
      }
      if (!request.route || !request.method) {
        io.err(`explain needs a route and a method\n${POLICY_USAGE}`)
        return 2
      }
      const p: SuitePrincipalInput = { subject: 'user', agent: 'agent', issuer: 'default', scopes: [], userPresent: true, claims: {}, ...principal }
      io.out(formatExplanation(set, suiteInput(request as SuiteRequestInput, p)))
      return 0
    }
    io.err(`unknown policy command "${sub ?? ''}"\n${POLICY_USAGE}`)
    return 2
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const p of e.problems) io.err(`${formatProblem(p)}\n`)
      return 1
    }
    if (e instanceof SyntaxError) {
      io.err(`invalid JSON in an option: ${e.message}\n`)
      return 2
    }
    throw e
  }
}

/** For `mcp-warden check`: the policies of a loaded config, with every problem. */
export function checkPolicies(configFile: string): { warnings: string[]; approvalTypes: Set<string> } {
  const { config } = loadConfigFile(configFile)
  if (!config.policies) return { warnings: [], approvalTypes: new Set() }
  const { warnings, set } = loadPolicyDir(config.policies.dir, compileContext(config))
  // The authorization_details types require-approval rules send (checked against AS metadata).
  const approvalTypes = new Set((set?.rules ?? []).flatMap((r) => (r.approval ? [r.approval.type] : [])))
  return { warnings: warnings.map(formatProblem), approvalTypes }
}
