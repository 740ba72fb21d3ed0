import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ERROR_CATALOGUE } from '../../gateway/errors.js'

const root = join(import.meta.dirname, '..', '..', 'gateway')
const files = (dir: string): string[] =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : []
  })
const sources = files(root).map((p) => ({ path: relative(root, p), text: readFileSync(p, 'utf8') }))
// Type-only imports vanish at compile time and do not couple a module to a runtime dependency.
const imports = (text: string) => [...text.matchAll(/^import (?!type ).* from '([^']+)'/gm)].map((m) => m[1]!)

describe('architecture (docs/architecture.md)', () => {
  it('only plugins and composition import fastify', () => {
    const allowed = /(^|\/)plugin\.ts$|^server\.ts$|^error-handler\.ts$|^context\.ts$|^observability\/admin\.ts$/
    const offenders = sources.filter((s) => imports(s.text).some((i) => i === 'fastify' || i.startsWith('@fastify/')) && !allowed.test(s.path)).map((s) => s.path)
    expect(offenders).toEqual([])
  })

  it('errors.ts and lib/ import nothing from the gateway; config/ only errors and itself', () => {
    for (const s of sources) {
      const local = imports(s.text).filter((i) => i.startsWith('.'))
      if (s.path === 'errors.ts' || s.path.startsWith('lib/')) expect(local.filter((i) => !i.startsWith('./')), s.path).toEqual([])
      // The one exception: the schema registry publishes the policy document schema (pure TypeBox).
      const allowed = (i: string) => i === '../errors.js' || (s.path === 'config/schemas.ts' && i === '../policy/schema.js')
      if (s.path.startsWith('config/')) expect(local.filter((i) => !i.startsWith('./') && !allowed(i)), s.path).toEqual([])
    }
  })

  it('every error code is documented in docs/errors.md', () => {
    const doc = readFileSync(join(root, '..', 'docs', 'errors.md'), 'utf8')
    const documented = new Set([...doc.matchAll(/`(GW_[A-Z_]+)`/g)].map((m) => m[1]))
    expect(Object.keys(ERROR_CATALOGUE).filter((c) => !documented.has(c))).toEqual([])
    expect([...documented].filter((c) => !(c! in ERROR_CATALOGUE))).toEqual([])
  })
})
