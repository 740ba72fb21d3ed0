/**
 * `mcp-warden audit verify FILE… [--key PUBLIC] [--allow-truncated-start]`: exit 0 when every
 * chain in the files is intact and every checkpoint verifies, 1 on any finding, 2 on usage errors.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { auditVerifyKey } from './audit-key.js'
import { verifyAudit } from './audit-verify.js'

export const AUDIT_USAGE = `  mcp-warden audit verify FILE… [-k|--key PUBLIC] [--allow-truncated-start]
                                    check the hash chains and signed checkpoints of audit lines
                                    (rotated files oldest first); exit 1 on any tampering
`

/** The options of `audit verify`; exported for the usage check (test/unit/cli.test.ts). */
export const AUDIT_OPTIONS = { key: { type: 'string', short: 'k' }, 'allow-truncated-start': { type: 'boolean' } } as const

interface Io {
  out: (s: string) => void
  err: (s: string) => void
}

export function auditCommand(argv: string[], io: Io): number {
  const [sub, ...rest] = argv
  if (sub !== 'verify') {
    io.err(`unknown audit command "${sub ?? ''}"\nusage:\n${AUDIT_USAGE}`)
    return 2
  }
  let parsed
  try {
    parsed = parseArgs({ args: rest, options: AUDIT_OPTIONS, allowPositionals: true, strict: true })
  } catch (e) {
    io.err(`${(e as Error).message}\nusage:\n${AUDIT_USAGE}`)
    return 2
  }
  const { values, positionals } = parsed
  if (positionals.length === 0) {
    io.err(`audit verify needs at least one FILE\nusage:\n${AUDIT_USAGE}`)
    return 2
  }
  let key
  if (values.key) {
    try {
      key = auditVerifyKey(readFileSync(values.key, 'utf8'))
    } catch (e) {
      io.err(`${values.key}: ${(e as NodeJS.ErrnoException).code ? 'cannot read the key file' : (e as Error).message}\n`)
      return 2
    }
  }
  const files = []
  for (const name of positionals) {
    try {
      files.push({ name, text: readFileSync(name, 'utf8') })
    } catch {
      io.err(`${name}: cannot read file\n`)
      return 2
    }
  }
  const r = verifyAudit(files, { key, allowTruncatedStart: values['allow-truncated-start'] === true })
  for (const f of r.findings) (f.warning ? io.out : io.err)(`${f.at}: ${f.warning ? 'warning' : 'error'}: ${f.kind}: ${f.message}\n`)
  const summary = `${r.records} records in ${r.chains} chain(s), ${r.checkpoints} checkpoint(s)${key ? '' : ' (signatures not checked: no --key)'}`
  if (r.ok) io.out(`ok: ${summary}\n`)
  else io.err(`FAILED: ${r.findings.filter((f) => !f.warning).length} problem(s); ${summary}\n`)
  return r.ok ? 0 : 1
}
