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

export class MemoryStore implements SharedStore {
  readonly kind = 'memory' as const
  readonly #data = new Map<string, { value: string; expiresAt: number }>()
  #writes = 0

  /**
   * Some keys come from client input (introspection refusals are cached under a digest of any junk
   * token), and an entry nobody reads again would otherwise stay forever: expired entries are
   * dropped every SWEEP_EVERY writes, so the map holds what its TTLs allow and no more. Nothing
   * live is evicted: a dropped single-use marker (an approval's `used`) would allow a replay.
   */
  #sweep(): void {
    if (++this.#writes % SWEEP_EVERY !== 0) return
    const now = Date.now()
    for (const [k, e] of this.#data) if (e.expiresAt <= now) this.#data.delete(k)
  }

  /** Entries held, expired ones not yet swept included (tests). */
  get size(): number {
    return this.#data.size
  }

  async get(key: string): Promise<string | undefined> {
    const e = this.#data.get(key)
    if (!e) return undefined
    if (e.expiresAt <= Date.now()) {
      this.#data.delete(key)
      return undefined
    }
    return e.value
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.#sweep()
    if (ttlMs > 0) this.#data.set(key, { value, expiresAt: Date.now() + ttlMs })
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    // Check and set without yielding, so concurrent callers cannot all win (like Redis SET NX).
    this.#sweep()
    const e = this.#data.get(key)
    if (e && e.expiresAt > Date.now()) return false
    if (ttlMs > 0) this.#data.set(key, { value, expiresAt: Date.now() + ttlMs })
    return true
  }

  async delete(key: string): Promise<void> {
    this.#data.delete(key)
  }

  healthy(): boolean {
    return true
  }

  async close(): Promise<void> {
    this.#data.clear()
  }
}
