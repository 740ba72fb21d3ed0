/**
 * `mcp-warden policy …` commands:
 *   policy test DIR [--config FILE]     run DIR's *_test.yaml suites against DIR's policies
 *   policy explain [--dir DIR] [--config FILE] (--file CASE.yaml | --route R --method M …)
 *                                       the decision, the deciding rule, and why each other rule did not match
 * With --config, routes, issuers and claim names are checked against that gateway.yaml.
 */
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { parse as parseYaml } from 'yaml'
import { loadConfigFile, type RuntimeConfig } from '../config/load.js'
import { ConfigError, formatProblem, type ConfigProblem } from '../errors.js'
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
  mcp-warden policy test|explain --help
`

export type Out = { out: (s: string) => void; err: (s: string) => void }

/** Exported for the usage check: every option here is described in POLICY_USAGE and back. */
export const POLICY_OPTIONS = {
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
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

function context(configFile: string | undefined): { ctx: CompileContext; dir: string | undefined } {
  if (!configFile) return { ctx: { claims: DEFAULT_CLAIMS }, dir: undefined }
  const { config } = loadConfigFile(configFile)
  return { ctx: compileContext(config), dir: config.policies?.dir }
}

export function policyCommand(argv: string[], io: Out): number {
  const [sub, ...rest] = argv
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    ;(sub === undefined ? io.err : io.out)(`usage:\n${POLICY_USAGE}`)
    return sub === undefined ? 2 : 0
  }
  if (sub !== 'test' && sub !== 'explain') {
    io.err(`unknown policy command "${sub}"\nusage:\n${POLICY_USAGE}`)
    return 2
  }
  let parsed
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, strict: true, options: POLICY_OPTIONS })
  } catch (e) {
    // node's parser messages name the option; its error code and stack are no help to an operator.
    io.err(`mcp-warden policy ${sub}: ${(e as Error).message}\nusage:\n${POLICY_USAGE}`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.help) {
    io.out(`usage:\n${POLICY_USAGE}`)
    return 0
  }
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

/**
 * For `mcp-warden check`: every problem of the policies. `config` is the loaded configuration, or
 * undefined when it did not load: the policies are then checked against what the file says (its
 * policies.dir, route and issuer names), so config errors do not hide policy errors.
 */
export function checkPolicies(configFile: string, config: RuntimeConfig | undefined): { problems: ConfigProblem[]; approvalTypes: Set<string> } {
  const target = config ? (config.policies ? { dir: config.policies.dir, ctx: compileContext(config) } : undefined) : rawContext(configFile)
  if (!target) return { problems: [], approvalTypes: new Set() }
  try {
    const { warnings, set } = loadPolicyDir(target.dir, target.ctx)
    // The authorization_details types require-approval rules send (checked against AS metadata).
    const approvalTypes = new Set((set?.rules ?? []).flatMap((r) => (r.approval ? [r.approval.type] : [])))
    return { problems: warnings, approvalTypes }
  } catch (e) {
    if (e instanceof ConfigError) return { problems: e.problems, approvalTypes: new Set() }
    throw e
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [])

/** The policy context a config that failed to load still states; a part that is malformed is not checked. */
function rawContext(configFile: string): { dir: string; ctx: CompileContext } | undefined {
  let doc: unknown
  try {
    doc = parseYaml(readFileSync(configFile, 'utf8'))
  } catch {
    return undefined
  }
  if (!isObject(doc) || !isObject(doc.policies) || typeof doc.policies.dir !== 'string') return undefined
  const claims = isObject(doc.policies.claims) ? doc.policies.claims : {}
  const routes = Array.isArray(doc.routes) && doc.routes.every((r) => isObject(r) && typeof r.name === 'string') ? (doc.routes as Record<string, unknown>[]).map((r) => ({ name: r.name as string, scopesSupported: strings(r.scopesSupported) })) : undefined
  const issuers = isObject(doc.issuers) && Object.values(doc.issuers).every((i) => isObject(i) && typeof i.issuer === 'string') ? Object.entries(doc.issuers).map(([name, i]) => ({ name, issuer: (i as { issuer: string }).issuer })) : undefined
  return {
    dir: resolve(dirname(resolve(configFile)), doc.policies.dir),
    ctx: {
      ...(routes ? { routes } : {}),
      ...(issuers ? { issuers } : {}),
      claims: { groups: typeof claims.groups === 'string' ? claims.groups : DEFAULT_CLAIMS.groups, roles: typeof claims.roles === 'string' ? claims.roles : DEFAULT_CLAIMS.roles },
    },
  }
}
