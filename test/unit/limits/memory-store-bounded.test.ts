/**
 * Maps keyed by client input stay bounded (issue 16 item 9, INT-10): the in-memory SharedStore
 * holds introspection refusals under a digest of whatever token a client sent, so entries that
 * expire unread must not pile up.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { MemoryStore } from '../../../gateway/store/shared-store.js'

afterEach(() => {
  vi.useRealTimers()
})

describe('cache/MemoryStore (issue 16 item 9)', () => {
  it('INT-10 / 100 000 junk keys that expire unread leave at most one sweep interval of entries', async () => {
    vi.useFakeTimers({ now: 1_000_000, toFake: ['Date'] })
    const store = new MemoryStore()
    for (let i = 0; i < 100_000; i++) {
      await store.set(`introspect:junk-${i}`, '{"active":false}', 1000)
      vi.setSystemTime(1_000_000 + i * 10)
    }
    // A 1 s TTL at 100 writes a second of fake time: ~100 live entries, plus at most one sweep interval.
    expect(store.size).toBeLessThanOrEqual(1024 + 101)
  })

  it('live entries are never dropped by a sweep (an approval’s single-use marker must survive)', async () => {
    vi.useFakeTimers({ now: 1_000_000, toFake: ['Date'] })
    const store = new MemoryStore()
    expect(await store.setIfAbsent('approval:used:a1', '1', 3_600_000)).toBe(true)
    for (let i = 0; i < 5000; i++) await store.set(`junk-${i}`, 'x', 1)
    vi.setSystemTime(1_000_100)
    for (let i = 0; i < 5000; i++) await store.set(`junk2-${i}`, 'x', 1)
    expect(await store.setIfAbsent('approval:used:a1', '1', 3_600_000)).toBe(false)
  })
})
