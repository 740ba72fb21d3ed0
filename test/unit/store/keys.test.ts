import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { fieldsDigest, keyDigest } from '../../../gateway/store/keys.js'

// The encoding the session, limit and modern-session keys used before the helper existed: a key
// written by an older replica must still be found by a newer one during a rolling upgrade.
const before = (fields: readonly string[]) => {
  const h = createHash('sha256')
  for (const f of fields) h.update(`${Buffer.byteLength(f)}:${f}`)
  return h.digest('base64url')
}

describe('store key digests (store/keys.ts)', () => {
  it('are byte-identical to the encoding the stores used before, for any fields', () => {
    fc.assert(fc.property(fc.array(fc.string({ unit: 'grapheme' })), (fields) => fieldsDigest(fields) === before(fields)))
  })

  it('never collide when field boundaries move (length prefixes)', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme' }), { minLength: 1 }), fc.array(fc.string({ unit: 'grapheme' }), { minLength: 1 }), (a, b) => {
        fc.pre(a.length !== b.length || a.some((f, i) => f !== b[i]))
        return fieldsDigest(a) !== fieldsDigest(b)
      }),
    )
    expect(keyDigest('sess', ['ab', 'c'])).not.toBe(keyDigest('sess', ['a', 'bc']))
  })

  it('keep the field values out of the key name and honour the prefix and truncation', () => {
    const k = keyDigest('rl', ['subject=alice', 'secret-token'], 32)
    expect(k).toMatch(/^rl:[A-Za-z0-9_-]{32}$/)
    expect(k).not.toContain('alice')
    expect(k).not.toContain('secret')
  })
})
