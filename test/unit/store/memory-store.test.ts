/**
 * The in-memory SharedStore is bounded (issue 19 item 1): keys are chosen by clients (token
 * digests, session ids, DPoP jti), so live entries with long TTLs must not grow the process
 * without limit either. Cache entries are evicted least recently used first; markers written by
 * setIfAbsent (replay markers, approvals' `used`) are never evicted while live, and a full store
 * refuses a new marker (fail closed) instead of forgetting an old one.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../../gateway/config/load.js'
import { DEFAULT_MEMORY_MAX_ENTRIES, MemoryStore, type MemoryStoreOutcome } from '../../../gateway/store/shared-store.js'
import { CONFIG_HEAD, configProblems } from '../../helpers/config.js'

const HOUR = 3_600_000

describe('store/MemoryStore bounded (issue 19)', () => {
  it('an attacker writing 50 000 live keys never takes the store past maxEntries', async () => {
    const outcomes: MemoryStoreOutcome[] = []
    const store = new MemoryStore({ maxEntries: 1000, onFull: (o) => outcomes.push(o) })
    for (let i = 0; i < 50_000; i++) await store.set(`introspect:junk-${i}`, '{"active":false}', HOUR)
    expect(store.size).toBe(1000)
    expect(outcomes.filter((o) => o === 'evicted')).toHaveLength(49_000)
    expect(await store.get('introspect:junk-0')).toBeUndefined()
    expect(await store.get('introspect:junk-49999')).toBe('{"active":false}')
  })

  it('evicts the least recently used cache entry: a read keeps an entry', async () => {
    const store = new MemoryStore({ maxEntries: 3 })
    await store.set('a', '1', HOUR)
    await store.set('b', '2', HOUR)
    await store.set('c', '3', HOUR)
    expect(await store.get('a')).toBe('1')
    await store.set('d', '4', HOUR)
    expect(await store.get('b')).toBeUndefined()
    expect(await store.get('a')).toBe('1')
    expect(await store.get('c')).toBe('3')
    expect(await store.get('d')).toBe('4')
  })

  it('a flood of cache writes never evicts a live single-use marker (no replay after the flood)', async () => {
    const store = new MemoryStore({ maxEntries: 100 })
    expect(await store.setIfAbsent('approval:used:a1', '1', HOUR)).toBe(true)
    for (let i = 0; i < 10_000; i++) await store.set(`junk-${i}`, 'x', HOUR)
    expect(await store.setIfAbsent('approval:used:a1', '1', HOUR)).toBe(false)
    expect(await store.get('approval:used:a1')).toBe('1')
  })

  it('when live markers fill the store, a new marker is refused (fail closed) and an old one kept', async () => {
    const outcomes: MemoryStoreOutcome[] = []
    const store = new MemoryStore({ maxEntries: 10, onFull: (o) => outcomes.push(o) })
    for (let i = 0; i < 10; i++) expect(await store.setIfAbsent(`dpop:jti:${i}`, '1', HOUR)).toBe(true)
    expect(await store.setIfAbsent('dpop:jti:new', '1', HOUR)).toBe(false)
    expect(outcomes).toEqual(['refused'])
    expect(await store.setIfAbsent('dpop:jti:0', '1', HOUR)).toBe(false)
    // A cache write is dropped rather than evicting a marker.
    await store.set('cache:x', 'v', HOUR)
    expect(await store.get('cache:x')).toBeUndefined()
    expect(outcomes).toEqual(['refused', 'dropped'])
    expect(store.size).toBe(10)
  })

  it('expired markers make room again', async () => {
    let now = 1_000_000
    const realNow = Date.now
    Date.now = () => now
    try {
      const store = new MemoryStore({ maxEntries: 2 })
      expect(await store.setIfAbsent('m1', '1', 1000)).toBe(true)
      expect(await store.setIfAbsent('m2', '1', 1000)).toBe(true)
      expect(await store.setIfAbsent('m3', '1', 1000)).toBe(false)
      now += 1001
      expect(await store.setIfAbsent('m3', '1', 1000)).toBe(true)
    } finally {
      Date.now = realNow
    }
  })

  it('property: any sequence of writes keeps size ≤ maxEntries and a won marker stays until it expires or is deleted', async () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('set' as const), key: fc.integer({ min: 0, max: 30 }) }),
      fc.record({ k: fc.constant('mark' as const), key: fc.integer({ min: 0, max: 30 }) }),
      fc.record({ k: fc.constant('del' as const), key: fc.integer({ min: 0, max: 30 }) }),
      fc.record({ k: fc.constant('get' as const), key: fc.integer({ min: 0, max: 30 }) }),
    )
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 12 }), fc.array(op, { maxLength: 200 }), async (max, ops) => {
        const store = new MemoryStore({ maxEntries: max })
        const won = new Set<string>()
        for (const o of ops) {
          const key = `k${o.key}`
          if (o.k === 'set') {
            await store.set(key, 'v', HOUR)
            won.delete(key)
          } else if (o.k === 'mark') {
            const ok = await store.setIfAbsent(key, 'm', HOUR)
            if (ok) won.add(key)
            else expect(won.has(key) || store.size >= max || (await store.get(key)) !== undefined).toBe(true)
          } else if (o.k === 'del') {
            await store.delete(key)
            won.delete(key)
          } else await store.get(key)
          expect(store.size).toBeLessThanOrEqual(max)
          for (const m of won) expect(await store.get(m)).toBe('m')
        }
      }),
      { numRuns: 300 },
    )
  })
})

describe('config cache.memory.maxEntries (issue 19)', () => {
  const head = `${CONFIG_HEAD}routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: http://127.0.0.1:3000/mcp }
    issuers: [corp]
`
  it('defaults to 100 000 with no cache section at all', () => {
    expect(loadConfigText('gw.yaml', head).config.cache.memoryMaxEntries).toBe(DEFAULT_MEMORY_MAX_ENTRIES)
  })
  it('takes a configured bound and refuses one below 1000 with its position', () => {
    expect(loadConfigText('gw.yaml', `${head}cache:\n  memory: { maxEntries: 5000 }\n`).config.cache.memoryMaxEntries).toBe(5000)
    const [p, ...more] = configProblems(`${head}cache:\n  memory: { maxEntries: 10 }\n`)
    expect(more).toEqual([])
    expect(p).toMatchObject({ line: head.split('\n').length + 1, path: expect.stringMatching(/maxEntries/) })
    expect(p!.column).toBeGreaterThan(0)
  })
})
