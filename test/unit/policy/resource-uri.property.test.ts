/**
 * Resource rules cannot be escaped by spelling (issue 16 item 7, POL-07, ATK-54): URIs are
 * canonicalised before matching, in requests and in patterns, so two spellings of one target
 * get one decision.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { evaluate } from '../../../gateway/policy/evaluate.js'
import { canonicalResourcePattern, canonicalResourceUri } from '../../../gateway/policy/matchers.js'
import { compile, principal } from './helpers.js'

const NOW = Date.parse('2026-01-05T12:00:00Z')
// The patterns are spelled oddly on purpose: they are canonicalised at compile time too.
const { set } = compile({
  'uris.yaml': `apiVersion: mcp-warden/v1
kind: Policy
name: uris
routes: [alpha]
rules:
  - { id: srv, effect: allow, resources: ["file:///srv/*"] }
  - { id: no-secret, effect: deny, resources: ["FILE:///srv//secret/*"] }
  - { id: web, effect: allow, resources: ["https://*"] }
  - { id: no-internal, effect: deny, resources: ["https://Internal.Example.com.:443/*"] }
`,
})
const decide = (uri: string) => {
  const d = evaluate(set, { route: 'alpha', method: 'resources/read', name: uri, principal: principal(), now: NOW })
  return `${d.effect}/${d.ruleId ?? d.reason}`
}

const segment = fc.constantFrom('srv', 'secret', 'key', 'admin', 'docs', 'a.md', 'x~y', 'Q')
const base = fc.record({
  kind: fc.constantFrom('file', 'https', 'custom'),
  host: fc.constantFrom('internal.example.com', 'public.example.com', 'h'),
  path: fc.array(segment, { minLength: 0, maxLength: 4 }),
})
type Base = typeof base extends fc.Arbitrary<infer T> ? T : never

const plain = (b: Base) => (b.kind === 'file' ? `file:///${b.path.join('/')}` : `${b.kind}://${b.host}/${b.path.join('/')}`)

/** Random case of every letter. */
const recase = (s: string, bits: boolean[]) => [...s].map((c, i) => (bits[i % bits.length] ? c.toUpperCase() : c.toLowerCase())).join('')
/** Percent-encode some unreserved characters (RFC 3986 §6.2.2.2: equivalent). */
const encode = (s: string, bits: boolean[]) => [...s].map((c, i) => (bits[i % bits.length] ? `%${c.charCodeAt(0).toString(16).padStart(2, '0')}` : c)).join('')

/** A spelling of the same target: the transformations a WHATWG parser resolves (or RFC 3986 calls equivalent). */
const spelling = (b: Base) =>
  fc
    .record({
      schemeCase: fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
      hostCase: fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
      port: fc.boolean(),
      trailingDot: fc.boolean(),
      encodeBits: fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }),
      dots: fc.array(fc.constantFrom('', '.', '%2e', 'zz/..', 'zz/%2E%2e', 'zz/.%2e', '/'), { minLength: 0, maxLength: 6 }),
    })
    .map((o) => {
      const segs: string[] = []
      b.path.forEach((p, i) => {
        const extra = o.dots[i]
        if (extra) segs.push(extra === '/' ? '' : extra)
        segs.push(encode(p, o.encodeBits))
      })
      const path = segs.join('/')
      const scheme = recase(b.kind, o.schemeCase)
      if (b.kind === 'file') return `${scheme}:///${path}`
      const host = recase(b.host, o.hostCase) + (o.trailingDot && b.kind === 'https' ? '.' : '') + (o.port && b.kind === 'https' ? ':443' : '')
      return `${scheme}://${host}/${path}`
    })

describe('policy/canonicalResourceUri (issue 16 item 7, ATK-54)', () => {
  it.each([
    ['https://Internal.Example.com.:443/*', 'https://internal.example.com/*'],
    ['FILE:///srv//secret/*', 'file:///srv/secret/*'],
    ['https://*', 'https://*'],
    ['https://*.example.com/%7Eusers/*', 'https://*.example.com/~users/*'],
  ])('patterns are canonicalised like URIs, globs kept: %s → %s', (pattern, want) => {
    expect(canonicalResourcePattern(pattern)).toBe(want)
  })

  it('property / ATK-54: two URIs a WHATWG parser resolves to the same href get the same decision', () => {
    fc.assert(
      fc.property(
        base.chain((b) => fc.tuple(spelling(b), spelling(b))),
        ([a, b]) => {
          if (new URL(a).href !== new URL(b).href) return
          expect(decide(a)).toBe(decide(b))
        },
      ),
      { numRuns: 2000 },
    )
  })

  it('property / ATK-54: every spelling (also duplicate slashes, trailing dots, encoded unreserved characters) gets the decision of the plain URI', () => {
    fc.assert(
      fc.property(
        base.chain((b) => fc.tuple(fc.constant(b), spelling(b))),
        ([b, s]) => {
          expect(canonicalResourceUri(s)).toBe(canonicalResourceUri(plain(b)))
          expect(decide(s)).toBe(decide(plain(b)))
        },
      ),
      { numRuns: 2000 },
    )
  })

  it.each([
    ['file:///srv//secret/key', 'deny/no-secret'],
    ['file:///srv/./secret/key', 'deny/no-secret'],
    ['file:///srv/public/../secret/key', 'deny/no-secret'],
    ['file:///srv/%73ecret/key', 'deny/no-secret'],
    ['file:///srv/public/key', 'allow/srv'],
    ['https://internal.example.com./admin', 'deny/no-internal'],
    ['https://internal.example.com:443/admin', 'deny/no-internal'],
    ['https://INTERNAL.example.com/admin', 'deny/no-internal'],
    ['https://internal%2Eexample.com/admin', 'deny/no-internal'],
    ['https://public.example.com/admin', 'allow/web'],
  ])('issue 16 item 7: %s → %s', (uri, want) => {
    expect(decide(uri)).toBe(want)
  })

  it.each([
    'https://x@internal.example.com/admin',
    'https://x:y@public.example.com/',
    'file:///srv/%2Fsecret/key',
    'file:///srv/secret%2fkey',
    'file:///srv/%5csecret',
    'file:///srv/%252e%252e/secret/key',
    'file:///srv/a%00',
    'file:///srv/a\u0000',
    'file:///srv/a%zz',
    'file:///srv\\secret\\key',
    ' file:///srv/secret/key',
    'file:///srv/se\ncret/key',
    'relative/path',
    '//host/path',
  ])('ATK-54: refuses %j (userinfo, NUL, ambiguous encodings, not a URI)', (uri) => {
    expect(canonicalResourceUri(uri)).toBeUndefined()
    expect(decide(uri)).toBe('deny/invalid-name')
  })

  it('patterns with userinfo, dot segments or ambiguous encodings are refused at compile time', () => {
    for (const pattern of ['https://x@internal.example.com/*', 'file:///srv/../etc/*', 'file:///srv/%2e%2e/*', 'file:///srv%2F*', 'file:///srv/%252e/*']) {
      const text = `apiVersion: mcp-warden/v1\nkind: Policy\nname: bad\nroutes: [alpha]\nrules:\n  - { id: r, effect: deny, resources: ["${pattern}"] }\n`
      expect(() => compile({ 'bad.yaml': text }), pattern).toThrow(/resource pattern must be an absolute URI/)
    }
  })
})
