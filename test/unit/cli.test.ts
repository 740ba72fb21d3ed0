/** The CLI's argument handling (issue 16 item 11): help, version, parser errors, `check` in one run, `--no-secrets`. */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { COMMAND_OPTIONS, main, USAGE } from '../../gateway/cli.js'
import { POLICY_OPTIONS } from '../../gateway/policy/cli.js'
import { AUDIT_OPTIONS } from '../../gateway/observability/audit-cli.js'

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) })
  return { code, out, err }
}

describe('help and version', () => {
  it.each([['--help'], ['-h'], ['help'], ['check', '--help'], ['serve', '-h'], ['policy', '--help'], ['policy', 'test', '--help'], ['policy', 'explain', '--help'], ['policy', 'explain', '-h']])('%j prints usage on stdout, exit 0', async (...argv) => {
    const r = await run(...argv)
    expect(r).toMatchObject({ code: 0, err: '' })
    expect(r.out).toMatch(/^usage/)
    expect(r.out).toContain('mcp-warden policy explain')
  })
  it.each([['--version'], ['-v'], ['version']])('%j prints the package version', async (flag) => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    expect(await run(flag)).toEqual({ code: 0, out: `mcp-warden ${version}\n`, err: '' })
  })
  it('no command, an unknown command or option: usage on stderr, exit 2, no stack trace', async () => {
    for (const argv of [[], ['chek'], ['check', '--confg', 'x.yaml'], ['serve', '--no-secrets'], ['policy', 'explain', '--bogus'], ['policy', 'tset'], ['policy', 'test', '--dir']]) {
      const r = await run(...argv)
      expect(r.code, argv.join(' ')).toBe(2)
      expect(r.out, argv.join(' ')).toBe('')
      expect(r.err, argv.join(' ')).toContain('usage')
      expect(r.err, argv.join(' ')).not.toMatch(/\n\s+at |ERR_PARSE_ARGS/)
    }
    expect((await run('check', '--confg', 'x.yaml')).err).toMatch(/^mcp-warden check: Unknown option '--confg'/)
  })
  it('every option in the usage text is parsed, and every parsed option is in the usage text', () => {
    const described = new Set([...USAGE.matchAll(/(?<![\w-])--([a-z][a-z-]*)/g)].map((m) => m[1]!))
    const shorts = new Set([...USAGE.matchAll(/(?<![\w-])-([a-zA-Z])\b/g)].map((m) => m[1]!))
    const parsed = new Map<string, string | undefined>()
    // pins (gateway/pinning/cli.ts) parses --config/-c, --out, --file and --kind.
    const PINS_OPTIONS = { config: { short: 'c' }, out: {}, file: {}, kind: {} }
    for (const o of [...Object.values(COMMAND_OPTIONS), POLICY_OPTIONS, PINS_OPTIONS, AUDIT_OPTIONS]) for (const [k, v] of Object.entries(o)) parsed.set(k, (v as { short?: string }).short)
    // --version and -v are handled before any parser runs.
    expect([...described].sort()).toEqual([...parsed.keys(), 'version'].filter((k, i, a) => a.indexOf(k) === i).sort())
    expect([...shorts].sort()).toEqual([...new Set([...parsed.values()].filter(Boolean)), 'v'].sort())
  })
})

const CONFIG = (extra = '') => `server:
  publicUrl: https://gw.example.com
  listen: { port: 8080 }
admin:
  listen: { port: 9090 }
issuers:
  corp:
    issuer: https://as.example.com
routes:
  - { name: r, path: /mcp/r, upstream: { url: "http://127.0.0.1:9000/mcp" }, issuers: [corp] }
policies: { dir: ./policies }
${extra}`
const POLICY = (name: string, rules: string) => `apiVersion: mcp-warden/v1
kind: Policy
name: ${name}
routes: [r]
rules:
${rules}`

function workspace(config: string, policies: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'mcpw-cli-unit-'))
  mkdirSync(join(d, 'policies'))
  writeFileSync(join(d, 'gateway.yaml'), config)
  for (const [n, t] of Object.entries(policies)) writeFileSync(join(d, 'policies', n), t)
  return join(d, 'gateway.yaml')
}

describe('mcp-warden check', () => {
  it('reports config errors, policy schema errors and invalid regexes in one run, sorted by file and line', async () => {
    const file = workspace(CONFIG('logging: { colour: red }\n'), {
      'a.yaml': POLICY('a', `  - { id: bad-key, effect: allow, tools: [x], colour: red }
  - { id: bad-re, effect: allow, tools: [x], arguments: { q: { regex: "(" } } }
`),
      'b.yaml': POLICY('b', `  - { id: re, effect: allow, tools: [y], arguments: { q: { regex: "[" } } }
  - { id: route, effect: allow, tools: [y], routes: [nope] }
`),
    })
    const r = await run('check', '--config', file)
    expect(r.code).toBe(1)
    const lines = r.err.trim().split('\n')
    const where = lines.map((l) => /^(.*?):(\d+):\d+ /.exec(l)!.slice(1, 3) as [string, string])
    expect(lines.join('\n')).toMatch(/gateway\.yaml:12:\d+ {2}logging\.colour: unknown key/)
    expect(lines.join('\n')).toMatch(/a\.yaml:6:\d+ {2}rules\[0\]\.colour: unknown key/)
    expect(lines.join('\n')).toMatch(/a\.yaml:7:\d+ {2}rules\[1\]\.arguments\.q\.regex: invalid regular expression/)
    expect(lines.join('\n')).toMatch(/b\.yaml:6:\d+ {2}rules\[0\]\.arguments\.q\.regex: invalid regular expression/)
    expect(where).toEqual([...where].sort(([f, l], [g, m]) => (f < g ? -1 : f > g ? 1 : Number(l) - Number(m))))
    expect(new Set(where.map(([f]) => f.replace(/^.*\//, '')))).toEqual(new Set(['a.yaml', 'b.yaml', 'gateway.yaml']))
  })

  it('--no-secrets: fromEnv and fromFile references that do not resolve count as present; without it they are errors', async () => {
    const secrets = `cache:
  redis: { url: { fromEnv: MCPW_TEST_UNSET_REDIS_URL }, encryptionKey: { fromFile: /nonexistent/mcpw-key } }
`
    const file = workspace(CONFIG(secrets), { 'p.yaml': POLICY('p', '  - { id: ok, effect: allow, tools: [x] }\n') })
    const strict = await run('check', '--config', file)
    expect(strict.code).toBe(1)
    expect(strict.err).toMatch(/environment variable MCPW_TEST_UNSET_REDIS_URL is not set/)
    expect(strict.err).toMatch(/cannot read secret file \/nonexistent\/mcpw-key/)
    const lenient = await run('check', '--config', file, '--no-secrets')
    expect(lenient.err).toBe('')
    expect(lenient.code).toBe(0)
    expect(lenient.out).toMatch(/ok \(secret references not resolved\)\n$/)
    // Everything else is still checked.
    const broken = workspace(CONFIG(secrets.replace('encryptionKey', 'encryptionKye')), { 'p.yaml': POLICY('p', '  - { id: ok, effect: allow, tools: [x] }\n') })
    expect((await run('check', '--config', broken, '--no-secrets')).code).toBe(1)
  })
})
