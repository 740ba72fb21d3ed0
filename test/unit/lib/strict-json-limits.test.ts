import { describe, expect, it } from 'vitest'
import { jsonLimitOf, parseStrictJson, StrictJsonError } from '../../../gateway/lib/strict-json.js'

const limitOf = (text: string, o: Parameters<typeof parseStrictJson>[1]) => {
  try {
    parseStrictJson(text, o)
    return 'ok'
  } catch (e) {
    return e instanceof StrictJsonError ? (jsonLimitOf(e) ?? e.message) : 'crash'
  }
}

describe('lib/strict-json structural limits', () => {
  it('arrays, objects and nesting up to the limit parse; one more is refused with its own label', () => {
    expect(limitOf('[1,2,3]', { maxArrayLength: 3 })).toBe('ok')
    expect(limitOf('[1,2,3,4]', { maxArrayLength: 3 })).toBe('json-array')
    expect(limitOf('[[1,2],[3,4,5,6]]', { maxArrayLength: 3 })).toBe('json-array')
    expect(limitOf('{"a":1,"b":2}', { maxMembers: 2 })).toBe('ok')
    expect(limitOf('{"a":1,"b":2,"c":3}', { maxMembers: 2 })).toBe('json-members')
    expect(limitOf('[[[1]]]', { maxDepth: 2 })).toBe('json-depth')
    // Refused as soon as the limit is passed, before the rest of a huge input is read.
    expect(limitOf(`[${'0,'.repeat(1_000_000)}0]`, { maxArrayLength: 10_000 })).toBe('json-array')
    expect(limitOf('[1,2', { maxArrayLength: 3 })).toBe('expected "," or "]"')
  })
})
