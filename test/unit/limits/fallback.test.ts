/**
 * `onRedisDown: local` (issue 23) without Redis: a shared limiter whose outage the test switches,
 * three replicas each wrapping it. The limit holds through the outage and through an empty restart.
 */
import { describe, expect, it } from 'vitest'
import { LocalFallbackLimiter, shareOf } from '../../../gateway/limits/fallback.js'
import { MemoryLimiter } from '../../../gateway/limits/memory.js'
import { LimiterUnavailable, type Charge, type Limiter, type Verdict } from '../../../gateway/limits/window.js'

const MIN = 60_000
const charge = (max: number, perMs = MIN): Charge => ({ limit: 'l', key: 'rl:k', max, perMs, cost: 1 })

/** One MemoryLimiter shared by every replica stands in for Redis; `down` makes it unavailable, `empty()` a restart. */
class FakeShared implements Limiter {
  readonly kind = 'redis' as const
  down = false
  inner: MemoryLimiter
  constructor(private readonly now: () => number) {
    this.inner = new MemoryLimiter(now)
  }
  async consume(c: readonly Charge[]): Promise<Verdict> {
    if (this.down) throw new LimiterUnavailable(new Error('down'))
    return this.inner.consume(c)
  }
  empty() {
    this.inner = new MemoryLimiter(this.now)
  }
}

function setup(replicas = 3) {
  let now = 1_800_000_000_000
  const shared = new FakeShared(() => now)
  const events: boolean[] = []
  const rs = Array.from({ length: replicas }, () => new LocalFallbackLimiter(shared, { replicas, now: () => now, onLocal: (l) => events.push(l) }))
  let next = 0
  /** Round robin, as the balancer does; returns how many of n calls were allowed. */
  const run = async (n: number, c: Charge, stepMs = 0) => {
    let ok = 0
    for (let i = 0; i < n; i++) {
      if ((await rs[next++ % rs.length]!.consume([c])).allowed) ok++
      now += stepMs
    }
    return ok
  }
  return { shared, rs, run, events, advance: (ms: number) => (now += ms) }
}

describe('limits/fallback (onRedisDown: local)', () => {
  it('share: floor(limit / replicas), so the replicas together never exceed the limit', () => {
    expect(shareOf(30, 3)).toBe(10)
    expect(shareOf(31, 3)).toBe(10)
    expect(shareOf(2, 3)).toBe(0)
  })

  it('Redis up: decided by Redis alone, exactly the limit over all replicas', async () => {
    const { run } = setup()
    expect(await run(90, charge(30))).toBe(30)
  })

  it('Redis down from the start: each replica allows its share; 3 × 10 of a limit of 30', async () => {
    const { shared, run, events } = setup()
    shared.down = true
    expect(await run(90, charge(30))).toBe(30)
    // One transition per replica, logged once each.
    expect(events).toEqual([true, true, true])
  })

  it('Redis down mid-window: what each replica allowed before counts against its share', async () => {
    const { shared, run } = setup()
    expect(await run(15, charge(30))).toBe(15)
    shared.down = true
    // 5 per replica before, share 10: 15 more in total, never 30 more.
    expect(await run(90, charge(30))).toBe(15)
  })

  it('Redis back empty: for one window the local share still applies, then Redis alone', async () => {
    const { shared, run, advance, events } = setup()
    expect(await run(15, charge(30))).toBe(15)
    shared.down = true
    expect(await run(6, charge(30))).toBe(6)
    shared.empty()
    shared.down = false
    // Without the local share an empty Redis would allow 30 more here (the 60 in a minute).
    expect(await run(90, charge(30))).toBe(9)
    advance(MIN)
    expect(await run(90, charge(30))).toBe(30)
    expect(events).toEqual([true, true, true, false, false, false])
  })

  it('the restart case the issue measured (one call a second, 20 before, 15 during, 25 after an empty restart): never more than 30 in any 60 s', async () => {
    const { shared, rs, advance } = setup()
    const allowedAt: number[] = []
    let t = 0
    let next = 0
    const phase = async (n: number) => {
      for (let i = 0; i < n; i++, t += 1000) {
        if ((await rs[next++ % 3]!.consume([charge(30)])).allowed) allowedAt.push(t)
        advance(1000)
      }
    }
    await phase(20)
    shared.down = true
    await phase(15)
    shared.empty()
    shared.down = false
    await phase(25)
    await phase(60)
    const most = Math.max(...allowedAt.map((a) => allowedAt.filter((b) => b >= a && b < a + MIN).length))
    expect(most).toBeLessThanOrEqual(30)
    // The limit is kept, not replaced by refusing everything: calls resume once budget comes back.
    expect(allowedAt.some((a) => a >= 85_000)).toBe(true)
  })
})
