/**
 * Rate-limit semantics without Redis or Fastify: window math (window.ts), budgets and keys
 * (charges.ts), the in-memory limiter, and the compiled `limits:` section. The Redis script is a
 * transcription of the same math; test/integration/rate-limits.test.ts checks it on a real Redis.
 */
import { describe, expect, it } from 'vitest'
import { ConfigError, formatProblem } from '../../../gateway/errors.js'
import { chargesFor, keyValue } from '../../../gateway/limits/charges.js'
import { MemoryLimiter } from '../../../gateway/limits/memory.js'
import { LIMIT_SCRIPT } from '../../../gateway/limits/redis.js'
import { addToWindow, budgetKey, checkWindow, releaseOf, sliceOf, SLICES, usedInWindow, type Slices } from '../../../gateway/limits/window.js'
import { compile } from '../policy/helpers.js'

const MIN = 60_000
const T0 = 1_800_000_000_000 // a slice boundary for per = 1m (divisible by 1000)

describe('limits/window', () => {
  it('60 slices cover exactly one window, also when per/60 is not a whole number of ms', () => {
    expect(releaseOf(sliceOf(T0, MIN), MIN) - T0).toBe(MIN)
    const per = 2000
    const s = sliceOf(T0 + 5, per)
    expect(releaseOf(s, per) - Math.floor((s * per) / SLICES)).toBeLessThanOrEqual(per + 1)
    expect(releaseOf(s, per) - (T0 + 5)).toBeLessThanOrEqual(per)
  })

  it('allows exactly `limit` in a window, then says when the oldest unit comes back', () => {
    const w: Slices = new Map()
    for (let i = 0; i < 5; i++) {
      expect(checkWindow(w, 5, MIN, 1, T0 + i * 1000)).toBeUndefined()
      addToWindow(w, MIN, 1, T0 + i * 1000)
    }
    expect(usedInWindow(w, MIN, T0 + 5000)).toBe(5)
    // The first unit was used at T0 (slice start): it is back at T0 + 60 s.
    expect(checkWindow(w, 5, MIN, 1, T0 + 5000)).toBe(MIN - 5000)
    expect(checkWindow(w, 5, MIN, 1, T0 + MIN - 1)).toBe(1)
    expect(checkWindow(w, 5, MIN, 1, T0 + MIN)).toBeUndefined()
  })

  it('a unit comes back between 59/60·per and per after use, never earlier (no boundary burst)', () => {
    for (const offset of [0, 1, 500, 999]) {
      const w: Slices = new Map()
      const used = T0 + offset
      addToWindow(w, MIN, 1, used)
      const wait = checkWindow(w, 1, MIN, 1, used)!
      expect(wait).toBeGreaterThan((MIN * 59) / 60 - 1)
      expect(wait).toBeLessThanOrEqual(MIN)
    }
  })

  it('a cost that needs several units waits for enough of them; a cost above the limit never fits', () => {
    const w: Slices = new Map()
    addToWindow(w, MIN, 2, T0)
    addToWindow(w, MIN, 2, T0 + 10_000)
    expect(checkWindow(w, 5, MIN, 1, T0 + 20_000)).toBeUndefined()
    // 4 used, 3 wanted of 5: the 2 of T0 must leave (T0 + 60 s); 5 wanted: the 2 of T0 + 10 s too.
    expect(checkWindow(w, 5, MIN, 3, T0 + 20_000)).toBe(MIN - 20_000)
    expect(checkWindow(w, 5, MIN, 5, T0 + 20_000)).toBe(MIN + 10_000 - 20_000)
    expect(checkWindow(w, 5, MIN, 6, T0 + 20_000)).toBe(Infinity)
  })

  it('budget keys are hashed, length-prefixed, and change with the window but not the limit', () => {
    const k = budgetKey('l', MIN, ['subject=alice'])
    expect(k).toMatch(/^rl:[A-Za-z0-9_-]{32}$/)
    expect(k).not.toContain('alice')
    expect(budgetKey('ab', MIN, ['c'])).not.toBe(budgetKey('a', MIN, ['bc']))
    expect(budgetKey('l', 2 * MIN, ['subject=alice'])).not.toBe(k)
  })

  it('the Redis script uses the same slice count', () => {
    expect(LIMIT_SCRIPT).toContain(`local slices = ${SLICES}`)
  })
})

describe('limits/memory', () => {
  it('checks every limit first: a refused request consumes nothing from the others', async () => {
    let now = T0
    const m = new MemoryLimiter(() => now)
    const small = { limit: 'small', key: 'k1', max: 1, perMs: MIN, cost: 1 }
    const big = { limit: 'big', key: 'k2', max: 100, perMs: MIN, cost: 1 }
    expect(await m.consume([big, small])).toEqual({ allowed: true })
    expect(await m.consume([big, small])).toEqual({ allowed: false, limit: 'small', retryAfterMs: MIN })
    expect(await m.consume([big])).toEqual({ allowed: true })
    // big has 2, not 3: the refused request did not count.
    const probe = { ...big, max: 2 }
    expect((await m.consume([probe])).allowed).toBe(false)
    now += MIN
    expect(await m.consume([big, small])).toEqual({ allowed: true })
  })

  it('forgets budgets whose units are all back', async () => {
    let now = T0
    const m = new MemoryLimiter(() => now)
    for (let i = 0; i < 1023; i++) await m.consume([{ limit: 'l', key: `k${i}`, max: 1, perMs: 1000, cost: 1 }])
    expect(m.size).toBe(1023)
    now += 2000
    await m.consume([{ limit: 'l', key: 'fresh', max: 1, perMs: 1000, cost: 1 }])
    expect(m.size).toBe(1)
  })
})

describe('limits/charges', () => {
  const set = compile({
    'p.yaml': `apiVersion: mcp-warden/v1
kind: Policy
name: p
routes: [alpha]
rules:
  - { id: all, effect: allow, methods: ["*"] }
limits:
  - { name: per-agent-tool, methods: [tools/call], key: [agent, tool], limit: 60, per: 1m }
  - { name: deploys, tools: [deploy], key: [agent], limit: 5, per: 1h }
  - { name: per-user-day, key: [subject, issuer], limit: 10000, per: 24h }
  - { name: global, key: [], limit: 100, per: 1s }
`,
  }).set
  const principal = { subject: 'alice', clientId: 'agent-1', issuer: 'https://as' }
  const req = (messages: { method: string; name?: string }[], p = principal) => ({ route: 'alpha', upstream: 'http://u', principal: p, messages: messages.map((m) => ({ method: m.method, name: m.name })) })

  it('compiles limits per route, with windows in ms', () => {
    expect(set.limitsFor('alpha').map((l) => [l.name, l.limit, l.perMs])).toEqual([
      ['per-agent-tool', 60, MIN],
      ['deploys', 5, 3_600_000],
      ['per-user-day', 10_000, 86_400_000],
      ['global', 100, 1000],
    ])
    expect(set.limitsFor('beta')).toEqual([])
  })

  it('charges each matching message once per limit; a batch sums per budget', () => {
    const c = chargesFor(set.limitsFor('alpha'), req([{ method: 'tools/call', name: 'deploy' }, { method: 'tools/call', name: 'deploy' }, { method: 'tools/call', name: 'search' }, { method: 'ping' }]))
    const by = (name: string) => c.filter((x) => x.limit === name).map((x) => x.cost).sort()
    expect(by('per-agent-tool')).toEqual([1, 2])
    expect(by('deploys')).toEqual([2])
    expect(by('per-user-day')).toEqual([4])
    expect(by('global')).toEqual([4])
  })

  it('keys separate what they name and share what they do not', () => {
    const one = (p: typeof principal, name = 'deploy') => chargesFor(set.limitsFor('alpha'), req([{ method: 'tools/call', name }], p))
    const key = (cs: ReturnType<typeof one>, l: string) => cs.find((x) => x.limit === l)!.key
    const alice = one(principal)
    const bob = one({ ...principal, subject: 'bob' })
    const other = one({ ...principal, clientId: 'agent-2' })
    expect(key(bob, 'deploys')).toBe(key(alice, 'deploys'))
    expect(key(other, 'deploys')).not.toBe(key(alice, 'deploys'))
    expect(key(bob, 'per-user-day')).not.toBe(key(alice, 'per-user-day'))
    expect(key(other, 'global')).toBe(key(alice, 'global'))
    expect(key(one(principal, 'search'), 'per-agent-tool')).not.toBe(key(alice, 'per-agent-tool'))
    expect(keyValue('upstream', req([]), { method: 'x', name: undefined })).toBe('http://u')
  })

  it('refuses duplicate names and windows under a second, with positions', () => {
    try {
      compile({
        'p.yaml': `apiVersion: mcp-warden/v1
kind: Policy
name: p
routes: [alpha]
rules:
  - { id: all, effect: allow, methods: ["*"] }
limits:
  - { name: a, key: [agent], limit: 1, per: 500ms }
  - { name: a, key: [agent], limit: 1, per: 1m }
`,
      })
      expect.unreachable()
    } catch (e) {
      const text = (e as ConfigError).problems.map(formatProblem).join('\n')
      expect(text).toMatch(/p\.yaml:8:\d+ .*shorter than 1s/)
      expect(text).toMatch(/p\.yaml:9:\d+ .*duplicate limit name "a"/)
    }
    expect(() => compile({ 'p.yaml': `apiVersion: mcp-warden/v1\nkind: Policy\nname: p\nroutes: [alpha]\nrules: [{ id: all, effect: allow }]\nlimits: [{ name: b, key: [nobody], limit: 1, per: 1m }]\n` })).toThrow(/p\.yaml:6:\d+ .*limits\[0\]\.key\[0\]/)
  })
})

describe('limits/failures (per address)', () => {
  it('holds a unit while authenticating, gives it back on success, keeps it on failure', async () => {
    const { AddressFailures } = await import('../../../gateway/limits/failures.js')
    let now = T0
    const f = new AddressFailures(2, MIN, () => now)
    for (let i = 0; i < 10; i++) {
      const r = f.acquire('1.2.3.4')
      expect('slice' in r).toBe(true)
      if ('slice' in r) f.release('1.2.3.4', r.slice)
    }
    expect('slice' in f.acquire('1.2.3.4')).toBe(true) // a failure: not released
    f.record('1.2.3.4') // an unknown session
    expect(f.acquire('1.2.3.4')).toEqual({ retryAfterMs: MIN })
    expect('slice' in f.acquire('5.6.7.8')).toBe(true)
    now += MIN
    expect('slice' in f.acquire('1.2.3.4')).toBe(true)
  })
})
