/**
 * Property-based fuzzing of the gateway.yaml and policy loaders (issue 9): whatever the text, the
 * loader either returns a configuration or throws a ConfigError whose every problem has a file,
 * a line and a column inside the text — never a TypeError, a ReferenceError or a raw Error.
 * Regressions found this way: an alias without an anchor (ReferenceError), a `__proto__` key,
 * issuer names outside the pattern (skipped by validation, crashed normalisation), and an
 * upstream URL like `https://:host` (accepted, crashed the proxy at start).
 */
import fc from 'fast-check'
import { stringify } from 'yaml'
import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../../gateway/config/load.js'
import { ConfigError } from '../../../gateway/errors.js'
import { compile } from '../policy/helpers.js'

const RUNS = Number(process.env.FUZZ_RUNS ?? 400)

const BASE = {
  server: { publicUrl: 'https://gw.example.com', listen: { host: '0.0.0.0', port: 8080 } },
  admin: { listen: { port: 9090 } },
  issuers: { corp: { issuer: 'https://as.example.com', jwks: { cooldown: '5s' }, client: { id: 'gw', auth: 'client_secret_basic', secret: { fromEnv: 'GW_SECRET' } } } },
  routes: [
    {
      name: 'alpha',
      path: '/mcp/alpha',
      upstream: { url: 'http://127.0.0.1:3000/mcp', timeout: '5s' },
      issuers: ['corp'],
      scopesSupported: ['tools.read'],
      credentials: { strategy: 'token-exchange', resource: 'https://up.example/', scopes: { 'tools.read': ['read'] } },
    },
  ],
  cache: { redis: { url: 'redis://127.0.0.1:6379' } },
}
const BASE_TEXT = stringify(BASE)

const POLICY = `apiVersion: mcp-warden/v1
kind: Policy
name: main
routes: [alpha]
rules:
  - { id: lifecycle, effect: allow, methods: [initialize, "notifications/*", tools/list] }
  - { id: read, effect: allow, tools: [search], when: { scopes: { allOf: [tools.read] } }, arguments: { query: { maxLength: 10 } } }
  - { id: no-deletes, effect: deny, tools: ["delete_*"] }
`

/** Values that broke loaders before, plus generic hostile ones. */
const hostile = fc.oneof(
  fc.constantFrom('https://:host', 'http://[::1', '*nope', '&a', '!!binary x', '__proto__', 'constructor', '', ' ', '0x10', '1e309', '-1', 'NaN', '${UNSET}', '5', '5ms', '99999999999d', 'redis://:6379', 'file:///etc/passwd'),
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.constantFrom('__proto__', '', 'a', 'Demo', 'x y', 'url', 'issuer'), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
)

/** Every path to a node of a JSON value. */
function paths(v: unknown, at: (string | number)[] = []): (string | number)[][] {
  const out = [at]
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])))
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]))
  return out
}
const ALL_PATHS = paths(BASE).filter((p) => p.length > 0)

function replaceAt(v: unknown, path: (string | number)[], value: unknown, renameKey: boolean): unknown {
  const copy = structuredClone(v) as Record<string | number, unknown>
  let node = copy
  for (const seg of path.slice(0, -1)) node = node[seg] as Record<string | number, unknown>
  const last = path.at(-1)!
  if (renameKey && !Array.isArray(node) && typeof value === 'string') {
    const x = node[last]
    delete node[last]
    Object.defineProperty(node, value, { value: x, enumerable: true, configurable: true, writable: true })
  } else node[last] = value
  return copy
}

/** The loader's contract: a config, or a ConfigError with positions inside the text. */
function expectCleanOutcome(file: string, text: string, run: () => unknown): void {
  try {
    run()
  } catch (e) {
    if (!(e instanceof ConfigError)) throw new Error(`loader crashed on:\n${text}\n→ ${(e as Error)?.stack ?? String(e)}`)
    const lines = text.split('\n').length
    for (const p of e.problems) {
      expect(p.file).toBe(file)
      expect(p.line).toBeGreaterThanOrEqual(1)
      expect(p.line).toBeLessThanOrEqual(lines + 1)
      expect(p.column).toBeGreaterThanOrEqual(1)
      expect(p.message.length).toBeGreaterThan(0)
    }
    expect(e.message).toContain(`${file}:`)
  }
}

const load = (text: string) => loadConfigText('gw.yaml', text, { env: { GW_SECRET: 's3cret-s3cret' } })

describe('config loader fuzz', { timeout: 120_000 }, () => {
  it('the base document is valid (the fuzz starts from a working config)', () => {
    expect(load(BASE_TEXT).config.routes).toHaveLength(1)
  })

  it('regressions: alias without anchor, __proto__ key, issuer name outside the pattern, https://:host', () => {
    const cases = [
      BASE_TEXT.replace('issuers:\n  corp:', 'issuers:\n  corp: *missing\n  other:'),
      BASE_TEXT.replace('issuers:\n  corp:', 'issuers:\n  __proto__: { issuer: https://x.example }\n  corp:'),
      BASE_TEXT.replace('issuers:\n  corp:', 'issuers:\n  "": { issuer: https://x.example }\n  Corp-UPPER: { issuer: https://x.example }\n  corp:'),
      BASE_TEXT.replace('http://127.0.0.1:3000/mcp', '"https://:host"'),
    ]
    for (const text of cases) {
      let err: unknown
      try {
        load(text)
      } catch (e) {
        err = e
      }
      expect(err, text).toBeInstanceOf(ConfigError)
      expectCleanOutcome('gw.yaml', text, () => load(text))
    }
  })

  it(`structured: any node replaced or renamed with hostile values (${RUNS} cases)`, () => {
    fc.assert(
      fc.property(fc.constantFrom(...ALL_PATHS), hostile, fc.boolean(), (path, value, rename) => {
        const text = stringify(replaceAt(BASE, path, value, rename))
        expectCleanOutcome('gw.yaml', text, () => load(text))
      }),
      { numRuns: RUNS },
    )
  })

  it(`textual: characters inserted, deleted or replaced anywhere (${RUNS} cases)`, () => {
    const token = fc.constantFrom('*a', '&a ', ':', '- ', '{', '}', '[', ']', '"', "'", '\t', '\n', ' ', '#', '!!str ', '<<: ', '%YAML 1.2\n', '---\n', '\u0000', '\uFEFF', '${X}', '__proto__: 1\n')
    fc.assert(
      fc.property(fc.nat(BASE_TEXT.length), fc.nat(5), fc.oneof(token, fc.string({ maxLength: 4 })), (pos, del, insert) => {
        const text = BASE_TEXT.slice(0, pos) + insert + BASE_TEXT.slice(pos + del)
        expectCleanOutcome('gw.yaml', text, () => load(text))
      }),
      { numRuns: RUNS },
    )
  })

  it(`arbitrary text (${RUNS} cases)`, () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => expectCleanOutcome('gw.yaml', text, () => load(text))),
      { numRuns: RUNS },
    )
  })
})

describe('policy loader fuzz', { timeout: 120_000 }, () => {
  it(`policy text mutated anywhere (${RUNS} cases): a policy set or a positioned ConfigError`, () => {
    const token = fc.constantFrom('*a', '&a ', ':', '- ', '{', '}', '[', ']', '"', '\n', ' ', '__proto__', '""', '[]', '{}', 'null', '-1', '1e999', 'gt: x', '.*', '(', '\u0000')
    fc.assert(
      fc.property(fc.nat(POLICY.length), fc.nat(5), fc.oneof(token, fc.string({ maxLength: 4 })), (pos, del, insert) => {
        const text = POLICY.slice(0, pos) + insert + POLICY.slice(pos + del)
        expectCleanOutcome('p.yaml', text, () => compile({ 'p.yaml': text }))
      }),
      { numRuns: RUNS },
    )
  })
})
