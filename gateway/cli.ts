#!/usr/bin/env node
/**
 * mcp-warden CLI.
 *   mcp-warden serve --config FILE    run the gateway
 *   mcp-warden check --config FILE    validate the config (and policies); exit 1 on any error
 *   mcp-warden policy test|explain …  policy suites and decisions (gateway/policy/cli.ts)
 *   mcp-warden audit verify FILE…     audit chain and checkpoints (gateway/observability/audit-cli.ts)
 */
import { parseArgs } from 'node:util'
import { loadConfigFile } from './config/load.js'
import { ConfigError, formatProblem } from './errors.js'
import { handleSignals, serve } from './main.js'
import { AUDIT_USAGE, auditCommand } from './observability/audit-cli.js'
import { checkPolicies, policyCommand, POLICY_USAGE } from './policy/cli.js'

const USAGE = `usage:
  mcp-warden serve --config FILE    run the gateway
  mcp-warden check --config FILE    validate gateway.yaml and its policies, print every problem
${POLICY_USAGE}${AUDIT_USAGE}`

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === 'audit') return auditCommand(rest, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) })
  if (command === 'policy') return policyCommand(rest, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) })
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
        const { warnings } = loadConfigFile(configFile)
        for (const w of warnings) process.stdout.write(`${formatProblem(w)}\n`)
        for (const w of checkPolicies(configFile).warnings) process.stdout.write(`${w}\n`)
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
