/**
 * `policies.limits.onRedisDown: local` (issue 23): keep a limit through a Redis outage and an
 * empty restart without refusing everything (closed) or nothing (open).
 *
 * Every decision Redis allows is also counted in a per-replica shadow (MemoryLimiter, no cap),
 * so each replica knows what it allowed in the current window. While Redis cannot answer, a
 * request is decided by the shadow alone with a cap of floor(limit / replicas). After Redis
 * answers again it may have come back empty (no persistence), so for one window of each limit
 * after the last failure the request must fit both Redis and the local share: an empty Redis
 * cannot hand out a fresh full budget on top of what was used before and during the outage.
 *
 * Exact when the balancer spreads each key's requests evenly over the replicas (round robin):
 * each replica's own count is then its share of the window. The worst case is documented in
 * docs/limits.md: a replica that had all of a key's traffic before the outage.
 */
import { MemoryLimiter } from './memory.js'
import { LimiterUnavailable, type Charge, type Limiter, type Verdict } from './window.js'

export interface LocalFallbackOptions {
  replicas: number
  now?: () => number
  /** Called when the limiter starts or stops deciding locally (logs, once per transition). */
  onLocal?: (local: boolean) => void
}

/** A replica's share; floor, so the replicas together never allow more than the limit. */
export const shareOf = (max: number, replicas: number): number => Math.floor(max / replicas)

export class LocalFallbackLimiter implements Limiter {
  readonly kind = 'redis' as const
  readonly #shared: Limiter
  readonly #shadow: MemoryLimiter
  readonly #replicas: number
  readonly #now: () => number
  readonly #onLocal: ((local: boolean) => void) | undefined
  /** When Redis last failed to answer; -Infinity: never. */
  #lastFailure = -Infinity
  #down = false

  constructor(shared: Limiter, o: LocalFallbackOptions) {
    if (!Number.isInteger(o.replicas) || o.replicas < 1) throw new Error('replicas must be a positive integer')
    this.#shared = shared
    this.#replicas = o.replicas
    this.#now = o.now ?? Date.now
    this.#shadow = new MemoryLimiter(this.#now)
    this.#onLocal = o.onLocal
  }

  /** Whether decisions are (partly) local now: Redis down, or back for less than a window. */
  get local(): boolean {
    return this.#down
  }

  async consume(charges: readonly Charge[]): Promise<Verdict> {
    const now = this.#now()
    const capped = (cs: readonly Charge[]) => cs.map((c) => ({ ...c, max: shareOf(c.max, this.#replicas) }))
    // Charges whose window still contains the last failure: Redis may not know their usage.
    const unsure = charges.filter((c) => now - this.#lastFailure < c.perMs)
    if (unsure.length > 0) {
      // Checked and counted locally first (no round trip); if Redis then refuses, the local count
      // is one too high, which errs on the side of the limit.
      const local = await this.#shadow.consume(capped(unsure))
      if (!local.allowed) return local
    }
    let verdict: Verdict
    try {
      verdict = await this.#shared.consume(charges)
    } catch (e) {
      if (!(e instanceof LimiterUnavailable)) throw e
      this.#lastFailure = now
      this.#setDown(true)
      if (unsure.length === charges.length) return { allowed: true }
      // This request's other charges were outside the failure window a moment ago: decide them
      // locally too (already counted above are the unsure ones).
      return this.#shadow.consume(capped(charges.filter((c) => !unsure.includes(c))))
    }
    if (verdict.allowed) {
      // The shadow counts what this replica allowed, uncapped, for a future outage.
      const sure = charges.filter((c) => !unsure.includes(c))
      if (sure.length > 0) await this.#shadow.consume(sure.map((c) => ({ ...c, max: Number.MAX_SAFE_INTEGER })))
    }
    if (unsure.length === 0) this.#setDown(false)
    return verdict
  }

  #setDown(down: boolean): void {
    if (down === this.#down) return
    this.#down = down
    this.#onLocal?.(down)
  }
}
