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

export class MemoryStore implements SharedStore {
  readonly kind = 'memory' as const
  readonly #data = new Map<string, { value: string; expiresAt: number }>()

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
    if (ttlMs > 0) this.#data.set(key, { value, expiresAt: Date.now() + ttlMs })
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    // Check and set without yielding, so concurrent callers cannot all win (like Redis SET NX).
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
