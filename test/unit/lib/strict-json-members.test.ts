import { afterEach, describe, expect, it } from 'vitest'
import { parseStrictJson } from '../../../gateway/lib/strict-json.js'

// Members are assigned on the fast path and defined when the prototype chain has the name; both
// must give the same own, enumerable, writable data property and never touch the prototype.
describe('strict JSON members', () => {
  afterEach(() => {
    delete (Object.prototype as Record<string, unknown>).polluted
  })

  it('keeps __proto__ as an own member when prototype keys are allowed (JWT claims)', () => {
    const v = parseStrictJson('{"__proto__":{"admin":true},"a":1}', { rejectProtoKeys: false }) as Record<string, unknown>
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype)
    expect(Object.getOwnPropertyDescriptor(v, '__proto__')).toEqual({ value: { admin: true }, enumerable: true, writable: true, configurable: true })
    expect(({} as Record<string, unknown>).admin).toBeUndefined()
    expect(Object.keys(v)).toEqual(['__proto__', 'a'])
  })

  it('defines a member whose name a polluted prototype carries as a setter, without calling it', () => {
    let called = false
    Object.defineProperty(Object.prototype, 'polluted', { set: () => (called = true), configurable: true })
    const v = parseStrictJson('{"polluted":"x","toString":"y"}') as Record<string, unknown>
    expect(called).toBe(false)
    expect(Object.getOwnPropertyDescriptor(v, 'polluted')).toEqual({ value: 'x', enumerable: true, writable: true, configurable: true })
    expect(Object.getOwnPropertyDescriptor(v, 'toString')?.value).toBe('y')
  })

  it('still refuses duplicate members on the fast path', () => {
    expect(() => parseStrictJson('{"method":"tools/list","method":"tools/call"}')).toThrow(/duplicate member name "method"/)
  })
})
