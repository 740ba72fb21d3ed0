/**
 * A bounded in-process cache with per-entry expiry. Map keeps insertion order, so the first
 * key is the least recently used once `get` re-inserts hits.
 */
export class LruCache<V> {
  readonly #max: number
  readonly #entries = new Map<string, { value: V; expiresAt: number }>()

  constructor(max: number) {
    this.#max = max
  }

  get(key: string, now = Date.now()): V | undefined {
    const e = this.#entries.get(key)
    if (!e) return undefined
    if (e.expiresAt <= now) {
      this.#entries.delete(key)
      return undefined
    }
    this.#entries.delete(key)
    this.#entries.set(key, e)
    return e.value
  }

  set(key: string, value: V, ttlMs: number, now = Date.now()): void {
    if (ttlMs <= 0) return
    this.#entries.delete(key)
    this.#entries.set(key, { value, expiresAt: now + ttlMs })
    if (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value
      if (oldest !== undefined) this.#entries.delete(oldest)
    }
  }

  /** Unexpired entries, least recently used first; iterating does not count as use. */
  *live(now = Date.now()): Generator<[string, V]> {
    for (const [k, e] of this.#entries) if (e.expiresAt > now) yield [k, e.value]
  }

  /** Drops the least recently used entry, live or not; false when there is none. */
  evictOldest(): boolean {
    const oldest = this.#entries.keys().next()
    if (oldest.done) return false
    this.#entries.delete(oldest.value)
    return true
  }

  /** Drops every expired entry (for keys nobody reads again). */
  prune(now = Date.now()): void {
    for (const [k, e] of this.#entries) if (e.expiresAt <= now) this.#entries.delete(k)
  }

  delete(key: string): void {
    this.#entries.delete(key)
  }

  clear(): void {
    this.#entries.clear()
  }

  get size(): number {
    return this.#entries.size
  }
}
