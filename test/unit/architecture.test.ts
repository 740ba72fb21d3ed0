import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ERROR_CATALOGUE } from '../../gateway/errors.js'
import { checkImports, gatewaySources, parseRules } from '../helpers/import-rules.js'

const root = join(import.meta.dirname, '..', '..', 'gateway')
const guarded = (name: string) => name === 'fastify' || name.startsWith('@fastify/')

describe('architecture (docs/architecture.md)', () => {
  it('every import of every gateway source is allowed by the folder table', () => {
    const doc = readFileSync(join(root, '..', 'docs', 'architecture.md'), 'utf8')
    expect(checkImports(gatewaySources(root), parseRules(doc), guarded)).toEqual([])
  })

  it('every error code is documented in docs/errors.md', () => {
    const doc = readFileSync(join(root, '..', 'docs', 'errors.md'), 'utf8')
    const documented = new Set([...doc.matchAll(/`(GW_[A-Z_]+)`/g)].map((m) => m[1]))
    expect(Object.keys(ERROR_CATALOGUE).filter((c) => !documented.has(c))).toEqual([])
    expect([...documented].filter((c) => !(c! in ERROR_CATALOGUE))).toEqual([])
  })
})
