/**
 * Numbers mean what the upstream will read (issue 16 item 10, POL-04 argument matchers, ATK-71
 * approval binding): a number whose text is not exactly the double it parses to is refused, so the
 * doubles that policies compare and digests cover stand for exactly the decimals the client wrote.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../../gateway/errors.js'
import { decimalKey, parseStrictJson, readsExactly } from '../../../gateway/lib/strict-json.js'
import { parseMcpBody } from '../../../gateway/mcp/jsonrpc.js'
import { argumentsDigest } from '../../../gateway/policy/digest.js'
import { evaluate } from '../../../gateway/policy/evaluate.js'
import { compile, principal } from '../policy/helpers.js'

const NOW = Date.parse('2026-01-05T12:00:00Z')
const { set } = compile({
  'spend.yaml': `apiVersion: mcp-warden/v1
kind: Policy
name: spend
routes: [alpha]
rules:
  - { id: small, effect: allow, tools: [transfer_funds], arguments: { amount: { lte: 100 } } }
`,
})

/** What the gateway does with a tools/call whose `amount` is written as `text`. */
function decide(text: string): { refused: true } | { refused: false; effect: string; digest: string } {
  const body = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"transfer_funds","arguments":{"amount":${text}}}}`
  const parsed = parseMcpBody(Buffer.from(body), '2025-11-25')
  if (parsed.inexactNumber) return { refused: true }
  const m = parsed.messages[0]!
  if (m.kind !== 'request') throw new Error('not a request')
  const args = m.params!.arguments
  return { refused: false, effect: evaluate(set, { route: 'alpha', method: 'tools/call', name: 'transfer_funds', arguments: args, principal: principal(), now: NOW }).effect, digest: argumentsDigest(args) }
}

/** Exact decimal comparison of a JSON number text with an integer bound (the test's own oracle). */
function atMost(text: string, bound: bigint): boolean {
  const k = decimalKey(text)
  if (k === '0') return 0n <= bound
  const [d, e] = k.split('e') as [string, string]
  const exp = Number(e)
  const digits = BigInt(d)
  return exp >= 0 ? digits * 10n ** BigInt(exp) <= bound : digits <= bound * 10n ** BigInt(-exp)
}

/** Other JSON spellings of the decimal `String(v)` prints: exponent forms, padding zeros, E, +. */
function spellings(v: number): fc.Arbitrary<string> {
  const k = decimalKey(String(v))
  if (k === '0') return fc.constantFrom('0', '-0', '0.0', '0e5', '-0.000E-3')
  const [d, e] = k.split('e') as [string, string]
  const neg = d.startsWith('-')
  const digits = neg ? d.slice(1) : d
  const exp = Number(e)
  return fc.record({ pad: fc.nat(4), shift: fc.integer({ min: -3, max: 3 }), upper: fc.boolean(), plus: fc.boolean(), frac: fc.boolean() }).map(({ pad, shift, upper, plus, frac }) => {
    // digits·10^exp written as  int.frac e (exp + shift') with `pad` trailing zeros
    const all = digits + '0'.repeat(pad)
    const point = frac ? Math.max(1, all.length + shift) : all.length
    const mantissa = point >= all.length ? all : `${all.slice(0, point)}.${all.slice(point)}`
    const e2 = exp - pad + (all.length - Math.min(point, all.length))
    const E = upper ? 'E' : 'e'
    return `${neg ? '-' : ''}${mantissa}${e2 === 0 && !plus ? '' : `${E}${e2 >= 0 && plus ? '+' : ''}${e2}`}`
  })
}

describe('strict-json exact numbers (issue 16 item 10)', () => {
  it.each([
    ['100', true],
    ['1e2', true],
    ['1E+2', true],
    ['100.0', true],
    ['-0', true],
    ['0.1', true],
    ['19.99', true],
    ['1.5e-7', true],
    ['100.00000000000000001', false],
    ['12345678901234567891', false],
    ['12345678901234567892', false],
    ['9007199254740993', false],
    ['1e-400', false],
  ])('readsExactly(%s) = %s', (text, want) => {
    expect(readsExactly(text, Number(text))).toBe(want)
  })

  it('the parser reports inexact numbers only when asked, and still parses', () => {
    const seen: string[] = []
    expect(parseStrictJson('[1, 100.00000000000000001, 0.1]', { onInexactNumber: (t) => seen.push(t) })).toEqual([1, 100, 0.1])
    expect(seen).toEqual(['100.00000000000000001'])
    expect(parseStrictJson('100.00000000000000001')).toBe(100)
  })

  it('issue 16 item 10: "amount": 100.00000000000000001 is refused, not allowed by lte: 100', () => {
    expect(decide('100.00000000000000001')).toEqual({ refused: true })
    expect(decide('100')).toMatchObject({ refused: false, effect: 'allow' })
  })

  it('issue 16 item 10 / ATK-71: two different 20-digit account numbers never share a digest', () => {
    expect(decide('12345678901234567891')).toEqual({ refused: true })
    expect(decide('12345678901234567892')).toEqual({ refused: true })
  })

  it('property: every spelling of one number gets one decision and one digest; the decision is the exact decimal one', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.constantFrom(100, 99.99, 100.01, 1e-7, 0, -0)).chain((v) => fc.tuple(fc.constant(v), spellings(v), spellings(v))),
        ([v, a, b]) => {
          const da = decide(a)
          const db = decide(b)
          expect(da.refused, a).toBe(false)
          expect(db).toEqual(da)
          if (!da.refused) {
            expect(decide(String(v))).toEqual(da)
            expect(da.effect).toBe(atMost(a, 100n) ? 'allow' : 'deny')
          }
        },
      ),
      { numRuns: 1000 },
    )
  })

  it('property: a number with more digits than its double holds is refused; huge integers are refused or have distinct digests', () => {
    fc.assert(
      fc.property(fc.double({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true }), fc.integer({ min: 1, max: 9 }), (v, tail) => {
        const k = decimalKey(String(v))
        if (k === '0') return
        // Appending a non-zero digit far beyond 17 significant digits changes the decimal, not the double.
        const text = String(v).includes('e') ? undefined : `${String(v)}${String(v).includes('.') ? '' : '.'}${'0'.repeat(20)}${tail}`
        if (text === undefined) return
        expect(decide(text)).toEqual({ refused: true })
      }),
      { numRuns: 500 },
    )
    fc.assert(
      fc.property(fc.bigInt({ min: 10n ** 15n, max: 10n ** 25n }), fc.bigInt({ min: 10n ** 15n, max: 10n ** 25n }), (x, y) => {
        fc.pre(x !== y)
        const dx = decide(String(x))
        const dy = decide(String(y))
        if (!dx.refused && !dy.refused) expect(dx.digest).not.toBe(dy.digest)
      }),
      { numRuns: 1000 },
    )
  })

  it('a number out of range is a parse error; an inexact one is flagged, so the refusal can carry the id', () => {
    expect(() => parseMcpBody(Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":1e400}}'), '2025-11-25')).toThrow(GatewayError)
    expect(parseMcpBody(Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":0.30000000000000000001}}'), '2025-11-25').inexactNumber).toBe(true)
  })
})
