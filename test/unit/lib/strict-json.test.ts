import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeUtf8Strict, parseStrictJson, StrictJsonError } from '../../../gateway/lib/strict-json.js'

const fails = (text: string, o?: Parameters<typeof parseStrictJson>[1]): string => {
  try {
    parseStrictJson(text, o)
  } catch (e) {
    expect(e).toBeInstanceOf(StrictJsonError)
    return (e as Error).message
  }
  throw new Error(`parsed: ${text}`)
}

describe('parseStrictJson', () => {
  it('parses what JSON.parse parses, for RFC 8259 documents', () => {
    for (const t of ['{}', '[]', '0', '-1.5e+3', '"a\\u00e9\\n"', 'true', 'null', ' { "a" : [1, {"b": null}] } ', '"\\ud83d\\ude00"']) {
      expect(parseStrictJson(t)).toEqual(JSON.parse(t))
    }
  })

  it('JWT-13 / ATK-18 / refuses duplicate member names, at any depth and in any spelling', () => {
    expect(fails('{"a":1,"a":2}')).toMatch(/duplicate/)
    expect(fails('{"x":{"a":1,"a":1}}')).toMatch(/duplicate/)
    expect(fails('[{"a":1,"b":2,"a":3}]')).toMatch(/duplicate/)
    expect(fails('{"aud":"x","\\u0061ud":"y"}')).toMatch(/duplicate/)
    expect(parseStrictJson('[{"a":1},{"a":2}]')).toEqual([{ a: 1 }, { a: 2 }])
  })

  it('refuses prototype keys by default, in any spelling; when allowed they stay plain own data', () => {
    for (const k of ['__proto__', '\\u005f_proto__', 'constructor', 'prototype']) expect(fails(`{"${k}":{"polluted":true}}`)).toMatch(/forbidden/)
    const v = parseStrictJson('{"__proto__":{"polluted":true}}', { rejectProtoKeys: false }) as Record<string, unknown>
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype)
    expect(Object.keys(v)).toEqual(['__proto__'])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect((v as { polluted?: unknown }).polluted).toBeUndefined()
  })

  it('limits nesting, and deep input fails cleanly instead of overflowing the stack', () => {
    expect(parseStrictJson('[[[1]]]', { maxDepth: 3 })).toEqual([[[1]]])
    expect(fails('[[[[1]]]]', { maxDepth: 3 })).toMatch(/deep/)
    expect(fails('{"a":{"b":{"c":{}}}}', { maxDepth: 3 })).toMatch(/deep/)
    expect(fails('['.repeat(100_000))).toMatch(/deep/)
    expect(fails('{"a":'.repeat(100_000))).toMatch(/deep/)
  })

  it('refuses what RFC 8259 does not allow', () => {
    for (const t of ['', ' ', '{', '{"a"}', '{"a":1,}', '[1,]', '01', '1.', '.5', '+1', 'NaN', 'Infinity', '1e400', "'a'", '"a', '"\\x41"', '"\u0001"', '{"a":1}x', '{"a":1}{"b":2}', 'nul', 'true false', '\ufeff{}', '{a:1}', '/*c*/{}', '"\\']) {
      fails(t)
    }
  })

  it('round-trips arbitrary JSON values like JSON.parse', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), (v) => {
        const text = JSON.stringify(v)
        expect(parseStrictJson(text, { rejectProtoKeys: false })).toEqual(JSON.parse(text))
      }),
    )
  })

  it('throws nothing but StrictJsonError on arbitrary text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 64 }).map((b) => String.fromCharCode(...b)), fc.json().map((j) => j.slice(0, -1) + j.slice(1))), (t) => {
        try {
          parseStrictJson(t)
        } catch (e) {
          expect(e).toBeInstanceOf(StrictJsonError)
        }
      }),
      { numRuns: 1000 },
    )
  })
})

describe('decodeUtf8Strict', () => {
  it('accepts UTF-8, refuses a BOM and every malformed sequence (JWT-16, RFC 8259 §8.1)', () => {
    expect(decodeUtf8Strict(Buffer.from('{"a":"é😀"}'))).toBe('{"a":"é😀"}')
    for (const bytes of [
      [0xef, 0xbb, 0xbf, 0x7b, 0x7d], // BOM
      [0xff],
      [0xc0, 0xaf], // overlong '/'
      [0xe0, 0x80, 0xaf], // overlong
      [0xed, 0xa0, 0x80], // UTF-16 surrogate half
      [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
      [0x22, 0xe2, 0x82], // truncated
      [...Buffer.from('{}', 'utf16le')].slice(0, 1).concat([0x00, 0xd8]), // UTF-16 lone surrogate bytes
    ]) {
      expect(() => decodeUtf8Strict(Uint8Array.from(bytes)), bytes.join(',')).toThrow(StrictJsonError)
    }
  })
})
