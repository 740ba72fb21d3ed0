#!/usr/bin/env node
/**
 * mcp-warden CLI: `serve`, `check`, and the `policy` commands (gateway/policy/cli.ts).
 * Every option in USAGE is one the parsers below accept (test/unit/cli.test.ts checks it).
 *   mcp-warden pins record|diff|approve …  tool-definition pins (gateway/pinning/cli.ts)
 *   mcp-warden audit verify FILE…     audit chain and checkpoints (gateway/observability/audit-cli.ts)
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { issuersSendingRar, rarTypeProblems, type IssuerMetadataResult } from './approval/check.js'
import { loadConfigFile, type RuntimeConfig } from './config/load.js'
import { referencesOnly } from './config/secrets.js'
import { parseYamlSource, problemAt } from './config/yaml-source.js'
import { ConfigError, formatProblem, type ConfigProblem } from './errors.js'
import { fetchJson } from './lib/fetch-json.js'
import { handleSignals, serve } from './main.js'
import { AUDIT_USAGE, auditCommand } from './observability/audit-cli.js'
import { checkPolicies, policyCommand, POLICY_USAGE, type Out } from './policy/cli.js'
import { pinsCommand, PINS_USAGE } from './pinning/cli.js'

export const USAGE = `usage: mcp-warden COMMAND [options]
  mcp-warden serve --config FILE    run the gateway
  mcp-warden check --config FILE [--no-secrets]
                                    validate gateway.yaml and its policies; print every problem,
                                    sorted by file and line; exit 1 on any error
        --no-secrets                count fromEnv/fromFile secret references as present even when
                                    unset/unreadable (a config rendered in CI or by Helm)
${POLICY_USAGE}${PINS_USAGE}${AUDIT_USAGE}  mcp-warden --help | -h              this text (also: mcp-warden COMMAND --help)
  mcp-warden --version | -v         print the version
options:
  -c, --config FILE                 gateway.yaml (default: $MCP_WARDEN_CONFIG)
`

const COMMON = { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } as const
/** Options per command; exported for the usage check. */
export const COMMAND_OPTIONS = {
  serve: COMMON,
  check: { ...COMMON, 'no-secrets': { type: 'boolean' } },
} as const satisfies Record<string, ParseArgsConfig['options']>

const stdio: Out = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }

export function version(): string {
  // dist/gateway/cli.js and gateway/cli.ts both sit below the package root.
  for (let dir = dirname(fileURLToPath(import.meta.url)), i = 0; i < 4; i++, dir = dirname(dir)) {
    const file = join(dir, 'package.json')
    if (!existsSync(file)) continue
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string }
    if (pkg.name === 'mcp-warden' && pkg.version) return pkg.version
  }
  return 'unknown'
}

export async function main(argv: string[], io: Out = stdio): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined) {
    io.err(USAGE)
    return 2
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    io.out(USAGE)
    return 0
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    io.out(`mcp-warden ${version()}\n`)
    return 0
  }
  if (command === 'policy') return policyCommand(rest, io)
  if (command === 'pins') {
    if (rest.some((a) => a === '--help' || a === '-h')) {
      io.out(`usage:\n${PINS_USAGE}`)
      return 0
    }
    return pinsCommand(rest, io)
  }
  if (command === 'audit') {
    if (rest.some((a) => a === '--help' || a === '-h')) {
      io.out(`usage:\n${AUDIT_USAGE}`)
      return 0
    }
    return auditCommand(rest, io)
  }
  if (command !== 'serve' && command !== 'check') return usage(io, `unknown command "${command}"`)

  let values: { config?: string | undefined; help?: boolean | undefined; 'no-secrets'?: unknown }
  try {
    ;({ values } = parseArgs({ args: rest, options: COMMAND_OPTIONS[command], strict: true, allowPositionals: false }))
  } catch (e) {
    return usage(io, `mcp-warden ${command}: ${(e as Error).message}`)
  }
  if (values.help) {
    io.out(USAGE)
    return 0
  }
  const configFile = values.config ?? process.env.MCP_WARDEN_CONFIG
  if (!configFile) return usage(io, `${command} needs --config FILE`)
  if (command === 'check') return await check(configFile, values['no-secrets'] === true, io)
  try {
    const gateway = await serve(configFile)
    handleSignals(gateway)
    return -1
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const p of e.problems) io.err(`${formatProblem(p)}\n`)
      io.err('refusing to start with an invalid configuration\n')
      return 1
    }
    throw e
  }
}

/** `check`: the config's and the policies' problems from one run, in file and line order. */
async function check(configFile: string, noSecrets: boolean, io: Out): Promise<number> {
  const problems: ConfigProblem[] = []
  let config: RuntimeConfig | undefined
  try {
    const loaded = loadConfigFile(configFile, noSecrets ? { env: referencesOnly(process.env) } : {})
    config = loaded.config
    problems.push(...loaded.warnings)
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    problems.push(...e.problems)
  }
  const policies = checkPolicies(configFile, config)
  problems.push(...policies.problems)
  if (config) problems.push(...(await rarProblems(configFile, config, policies.approvalTypes)))
  problems.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.column - b.column))
  const failed = problems.some((p) => p.severity === 'error')
  for (const p of problems) (failed ? io.err : io.out)(`${formatProblem(p)}\n`)
  if (failed) return 1
  io.out(`${configFile}: ok${noSecrets ? ' (secret references not resolved)' : ''}\n`)
  return 0
}

/** CIBA issuers sending RAR: the AS metadata must list every type the approval rules use. */
async function rarProblems(configFile: string, config: RuntimeConfig, types: ReadonlySet<string>): Promise<ConfigProblem[]> {
  const issuers = issuersSendingRar(config.issuers.values())
  if (issuers.length === 0 || types.size === 0) return []
  const src = parseYamlSource(configFile, readFileSync(configFile, 'utf8'), process.env, [])
  const out: ConfigProblem[] = []
  for (const issuer of issuers) {
    const md = await metadataOf(issuer.issuer, issuer.jwks.timeoutMs)
    for (const p of rarTypeProblems(issuer, types, md)) {
      out.push(src ? problemAt(src, p.path, p.message, p.severity) : { file: configFile, line: 1, column: 1, path: p.path.join('.'), message: p.message, severity: p.severity })
    }
  }
  return out
}

/** RFC 8414 metadata, else OIDC discovery (as the JWKS loader looks for it); it must name the issuer. */
async function metadataOf(issuer: string, timeoutMs: number): Promise<IssuerMetadataResult> {
  const u = new URL(issuer)
  const candidates = [`${u.origin}/.well-known/oauth-authorization-server${u.pathname === '/' ? '' : u.pathname}`, `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`]
  let why = 'no metadata'
  for (const url of candidates) {
    try {
      const { status, body } = await fetchJson(url, { timeoutMs })
      if (status !== 200 || !body || typeof body !== 'object' || Array.isArray(body)) continue
      if ((body as Record<string, unknown>).issuer !== issuer) return { ok: false, why: 'metadata names another issuer' }
      return { ok: true, metadata: body as Record<string, unknown> }
    } catch (e) {
      why = (e as Error).message
    }
  }
  return { ok: false, why }
}

function usage(io: Out, message: string): number {
  io.err(`${message}\n${USAGE}`)
  return 2
}

const isEntry = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href
if (isEntry || process.argv[1]?.endsWith('/mcp-warden')) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exitCode = code
    },
    (e: unknown) => {
      process.stderr.write(`mcp-warden: ${(e as Error).message}\n`)
      process.exitCode = 1
    },
  )
}
