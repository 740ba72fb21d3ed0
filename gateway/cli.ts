#!/usr/bin/env node
/**
 * mcp-warden CLI.
 *   mcp-warden serve --config FILE    run the gateway
 *   mcp-warden check --config FILE    validate the config (and policies); exit 1 on any error
 *   mcp-warden policy test|explain …  policy suites and decisions (gateway/policy/cli.ts)
 *   mcp-warden pins record|diff|approve …  tool-definition pins (gateway/pinning/cli.ts)
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { issuersSendingRar, rarTypeProblems, type IssuerMetadataResult } from './approval/check.js'
import { loadConfigFile, type RuntimeConfig } from './config/load.js'
import { parseYamlSource, problemAt } from './config/yaml-source.js'
import { ConfigError, formatProblem, type ConfigProblem } from './errors.js'
import { fetchJson } from './lib/fetch-json.js'
import { handleSignals, serve } from './main.js'
import { checkPolicies, policyCommand, POLICY_USAGE } from './policy/cli.js'
import { pinsCommand, PINS_USAGE } from './pinning/cli.js'

const USAGE = `usage:
  mcp-warden serve --config FILE    run the gateway
  mcp-warden check --config FILE    validate gateway.yaml and its policies, print every problem
${POLICY_USAGE}${PINS_USAGE}`

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === 'policy') return policyCommand(rest, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) })
  if (command === 'pins') return pinsCommand(rest, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) })
  const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: false })
  const configFile = typeof values.config === 'string' ? values.config : process.env.MCP_WARDEN_CONFIG
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE)
    return command === undefined ? 2 : 0
  }
  switch (command) {
    case 'check': {
      if (!configFile) return usage('check needs --config FILE')
      try {
        const { config, warnings } = loadConfigFile(configFile)
        for (const w of warnings) process.stdout.write(`${formatProblem(w)}\n`)
        const policies = checkPolicies(configFile)
        for (const w of policies.warnings) process.stdout.write(`${w}\n`)
        const rar = await rarProblems(configFile, config, policies.approvalTypes)
        for (const p of rar.filter((x) => x.severity === 'warning')) process.stdout.write(`${formatProblem(p)}\n`)
        if (rar.some((p) => p.severity === 'error')) throw new ConfigError(rar)
        process.stdout.write(`${configFile}: ok\n`)
        return 0
      } catch (e) {
        if (e instanceof ConfigError) {
          for (const p of e.problems) process.stderr.write(`${formatProblem(p)}\n`)
          return 1
        }
        throw e
      }
    }
    case 'serve': {
      if (!configFile) return usage('serve needs --config FILE')
      try {
        const gateway = await serve(configFile)
        handleSignals(gateway)
        return -1
      } catch (e) {
        if (e instanceof ConfigError) {
          for (const p of e.problems) process.stderr.write(`${formatProblem(p)}\n`)
          process.stderr.write('refusing to start with an invalid configuration\n')
          return 1
        }
        throw e
      }
    }
    default:
      return usage(`unknown command "${command}"`)
  }
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

function usage(message: string): number {
  process.stderr.write(`${message}\n${USAGE}`)
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
