import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { dpopProofs, extractCredential } from '../../../gateway/auth/bearer.js'
import { GatewayError } from '../../../gateway/errors.js'

const MAX = 8192
const extract = (...pairs: Array<[string, string]>) => extractCredential(pairs.flat(), MAX)
const codeOf = (f: () => unknown): string => {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(GatewayError)
    return `${(e as GatewayError).code}/${(e as GatewayError).reason}`
  }
  return 'none thrown'
}

describe('extractCredential', () => {
  it('CHL-04 / finds the token under any case of the header name and scheme', () => {
    for (const [name, scheme] of [['Authorization', 'Bearer'], ['authorization', 'bearer'], ['AUTHORIZATION', 'BEARER'], ['aUtHoRiZaTiOn', 'bEaReR']] as const) {
      expect(extract(['Host', 'x'], [name, `${scheme} abc.def-_~+/==`])).toEqual({ kind: 'bearer', token: 'abc.def-_~+/==' })
    }
    expect(extract(['authorization', '  Bearer   tok  '])).toEqual({ kind: 'bearer', token: 'tok' })
  })

  it('CHL-01/07 / no header, or another scheme, is no credential (401 without error)', () => {
    expect(extract()).toEqual({ kind: 'none' })
    expect(extract(['x-authorization', 'Bearer tok'], ['authorization-x', 'Bearer tok'])).toEqual({ kind: 'none' })
    for (const v of ['Basic dTE6cA==', 'Negotiate abc', 'DPoPtok', 'Bearertok', 'Bearer\ttok', '']) expect(extract(['authorization', v])).toEqual({ kind: 'none' })
  })

  it('DPOP-01: the DPoP scheme (any case) yields its token; the auth stage decides whether the route accepts it', () => {
    expect(extract(['authorization', 'DPoP tok'])).toEqual({ kind: 'dpop', token: 'tok' })
    expect(extract(['authorization', 'dpop tok'])).toEqual({ kind: 'dpop', token: 'tok' })
    expect(dpopProofs(['DPoP', 'a.b.c', 'dpop', ' d.e.f ', 'x-dpop', 'g'])).toEqual(['a.b.c', 'd.e.f'])
  })

  it('CHL-06 / ATK-28 / two headers, an empty token or a non-token68 value → 400 invalid_request', () => {
    expect(codeOf(() => extract(['Authorization', 'Bearer a'], ['authorization', 'Bearer a']))).toBe('GW_AUTH_INVALID_REQUEST/auth-malformed')
    expect(codeOf(() => extract(['authorization', 'Basic x'], ['authorization', 'Bearer a']))).toBe('GW_AUTH_INVALID_REQUEST/auth-malformed')
    for (const v of ['Bearer', 'Bearer ', 'Bearer a, Bearer b', 'Bearer a b', 'Bearer {"payload":"x"}', 'Bearer a=b', 'Bearer =', 'Bearer tok\u00e9', 'Bearer a\u0000b']) {
      expect(codeOf(() => extract(['authorization', v])), v).toBe('GW_AUTH_INVALID_REQUEST/auth-malformed')
    }
  })

  it('JWT-19 / a token over the limit is refused before anything reads it', () => {
    expect(codeOf(() => extract(['authorization', `Bearer ${'a'.repeat(MAX + 1)}`]))).toBe('GW_AUTH_INVALID_TOKEN/auth-too-large')
    expect(extract(['authorization', `Bearer ${'a'.repeat(MAX)}`])).toMatchObject({ kind: 'bearer' })
  })

  it('never throws anything but GatewayError, whatever the header list', () => {
    const name = fc.oneof(fc.constantFrom('authorization', 'Authorization', 'host', 'x'), fc.string())
    const value = fc.oneof(fc.string().map((s) => `Bearer ${s}`), fc.uint8Array({ maxLength: 64 }).map((b) => String.fromCharCode(...b)), fc.constantFrom('Bearer', 'bearer  a', 'Basic a'))
    fc.assert(
      fc.property(fc.array(fc.tuple(name, value), { maxLength: 6 }), fc.integer({ min: 0, max: 64 }), (pairs, max) => {
        try {
          const c = extractCredential(pairs.flat(), max)
          if (c.kind === 'bearer') expect(c.token.length).toBeLessThanOrEqual(max)
        } catch (e) {
          expect(e).toBeInstanceOf(GatewayError)
        }
      }),
      { numRuns: 1000 },
    )
  })
})
