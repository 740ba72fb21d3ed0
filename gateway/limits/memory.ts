/**
 * Per-replica limiter, used when gateway.yaml has no `cache.redis`: each replica counts on its
 * own, so N replicas allow up to N × limit (docs/limits.md). Single-threaded JavaScript makes
 * check-and-count atomic without locks.
 */
import { addToWindow, checkWindow, releaseOf, sliceOf, type Charge, type Limiter, type Slices, type Verdict } from './window.js'

interface Budget {
  slices: Slices
  /** When every counted unit has left the window. */
  expiresAt: number
}

const SWEEP_EVERY = 1024

export class MemoryLimiter implements Limiter {
  readonly kind = 'memory' as const
  readonly #budgets = new Map<string, Budget>()
  readonly #now: () => number
  #decisions = 0

  constructor(now: () => number = Date.now) {
    this.#now = now
  }

  async consume(charges: readonly Charge[]): Promise<Verdict> {
    const now = this.#now()
    if (++this.#decisions % SWEEP_EVERY === 0) this.#sweep(now)
    for (const c of charges) {
      const b = this.#budgets.get(c.key)
      const wait = checkWindow(b?.slices ?? new Map(), c.max, c.perMs, c.cost, now)
      if (wait !== undefined) return { allowed: false, limit: c.limit, retryAfterMs: Number.isFinite(wait) ? wait : undefined }
    }
    for (const c of charges) {
      let b = this.#budgets.get(c.key)
      if (!b) this.#budgets.set(c.key, (b = { slices: new Map(), expiresAt: 0 }))
      addToWindow(b.slices, c.perMs, c.cost, now)
      b.expiresAt = releaseOf(sliceOf(now, c.perMs), c.perMs)
    }
    return { allowed: true }
  }

  /** Budgets whose every unit is back are forgotten, so memory follows active keys only. */
  #sweep(now: number): void {
    for (const [k, b] of this.#budgets) if (b.expiresAt <= now) this.#budgets.delete(k)
  }

  /** Budgets held (tests). */
  get size(): number {
    return this.#budgets.size
  }
}
