import { LruCache } from './lru.js'

/**
 * The shared state every replica sees. Redis in production, memory otherwise. A store never
 * throws: an unreachable Redis reads as a miss and writes are dropped, so callers fall back to
 * their in-process layer and never treat "could not ask" as "allowed".
 */
export interface SharedStore {
  readonly kind: 'memory' | 'redis'
  get(key: string): Promise<string | undefined>
  set(key: string, value: string, ttlMs: number): Promise<void>
  /** Set only if absent; true when this caller won. A down store answers false. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>
  delete(key: string): Promise<void>
  /** Whether the last command succeeded (readiness, metrics). */
  healthy(): boolean
  close(): Promise<void>
}

/** Writes between sweeps of expired entries. */
const SWEEP_EVERY = 1024

/** Entries the in-memory store holds at most unless configured (`cache.memory.maxEntries`). */
export const DEFAULT_MEMORY_MAX_ENTRIES = 100_000

/** What a full store did: evicted a cache entry, dropped a write, or refused a marker. */
export type MemoryStoreOutcome = 'evicted' | 'dropped' | 'refused'

export interface MemoryStoreOptions {
  readonly maxEntries?: number
  readonly onFull?: (outcome: MemoryStoreOutcome) => void
}

/**
 * Keys come from client input (a digest of any junk token, a session id, a DPoP proof's jti), so
 * the store is bounded: at most maxEntries, whatever the TTLs say. Two kinds of entry are held
 * apart. What `set` writes is a cache: at capacity the least recently used one is evicted, and the
 * caller sees a miss later, which every caller already handles (Redis evicts too). What
 * `setIfAbsent` writes is a marker someone relies on being there (an approval's `used`, a DPoP
 * replay marker, a single-flight lock): evicting one would allow a replay, so markers are never
 * evicted while live, and when live markers fill the store a new one is refused (`false`, the
 * answer a down Redis gives), which every caller treats as "not yours": fail closed.
 */
export class MemoryStore implements SharedStore {
  readonly kind = 'memory' as const
  // The bound is on both together; the cache's own bound (the same number) is never reached,
  // because room is made before every insert.
  readonly #cache: LruCache<string>
  readonly #markers = new Map<string, { value: string; expiresAt: number }>()
  readonly #max: number
  readonly #onFull: ((outcome: MemoryStoreOutcome) => void) | undefined
  #writes = 0

  constructor(opts: MemoryStoreOptions = {}) {
    this.#max = Math.max(1, opts.maxEntries ?? DEFAULT_MEMORY_MAX_ENTRIES)
    this.#cache = new LruCache<string>(this.#max)
    this.#onFull = opts.onFull
  }

  /** Expired entries are dropped every SWEEP_EVERY writes, so the store holds what TTLs allow. */
  #sweep(now: number): void {
    if (++this.#writes % SWEEP_EVERY !== 0) return
    this.#cache.prune(now)
    for (const [k, e] of this.#markers) if (e.expiresAt <= now) this.#markers.delete(k)
  }

  /** Makes room for one entry; false when only live markers are left. */
  #room(now: number): boolean {
    if (this.size < this.#max) return true
    if (this.#cache.evictOldest()) {
      this.#onFull?.('evicted')
      return true
    }
    // Markers of one kind share a TTL, so insertion order is close to expiry order: drop the
    // expired ones at the front, stop at the first live one.
    for (const [k, e] of this.#markers) {
      if (e.expiresAt > now) break
      this.#markers.delete(k)
    }
    return this.size < this.#max
  }

  /** Entries held, expired ones not yet swept included. */
  get size(): number {
    return this.#cache.size + this.#markers.size
  }

  async get(key: string): Promise<string | undefined> {
    const now = Date.now()
    const cached = this.#cache.get(key, now)
    if (cached !== undefined) return cached
    const m = this.#markers.get(key)
    if (!m) return undefined
    if (m.expiresAt <= now) {
      this.#markers.delete(key)
      return undefined
    }
    return m.value
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    const now = Date.now()
    this.#sweep(now)
    this.#cache.delete(key)
    this.#markers.delete(key)
    if (ttlMs <= 0) return
    if (!this.#room(now)) {
      this.#onFull?.('dropped')
      return
    }
    this.#cache.set(key, value, ttlMs, now)
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    // Check and set without yielding, so concurrent callers cannot all win (like Redis SET NX).
    const now = Date.now()
    this.#sweep(now)
    const m = this.#markers.get(key)
    if ((m !== undefined && m.expiresAt > now) || this.#cache.get(key, now) !== undefined) return false
    this.#cache.delete(key)
    this.#markers.delete(key)
    if (ttlMs <= 0) return true
    if (!this.#room(now)) {
      this.#onFull?.('refused')
      return false
    }
    this.#markers.set(key, { value, expiresAt: now + ttlMs })
    return true
  }

  async delete(key: string): Promise<void> {
    this.#cache.delete(key)
    this.#markers.delete(key)
  }

  healthy(): boolean {
    return true
  }

  async close(): Promise<void> {
    this.#cache.clear()
    this.#markers.clear()
  }
}
