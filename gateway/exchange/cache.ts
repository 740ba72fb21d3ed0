/**
 * Two-layer cache of issued upstream tokens: in process (LRU) and, when Redis is configured with
 * an encryption key, shared by replicas. Keys are digests of length-prefixed inputs, so no raw
 * token ever becomes a key; values in Redis are sealed with AES-256-GCM, bound to their key (AAD),
 * because they are bearer tokens. Concurrent misses for one key share one request (single flight).
 */
import { LruCache } from '../store/lru.js'
import type { SharedStore } from '../store/shared-store.js'
import type { Metrics } from '../observability/metrics.js'
import type { IssuedToken } from './issued.js'
import { keyDigest } from '../store/keys.js'
import { seal, unseal } from '../store/seal.js'

/**
 * SHA-256 over each part prefixed by its length, so ("ab","c") and ("a","bc") differ and no part
 * (a subject token digest, a scope list) can be forged into another by concatenation.
 */
export function cacheKey(parts: readonly string[]): string {
  return keyDigest('cred', parts)
}

export interface Cached {
  issued: IssuedToken
  /** Reuse deadline (ms): expiry less the safety margin, capped by the caller token's exp. */
  reuseUntil: number
}

export type CacheSource = 'issued' | 'memory' | 'shared'

export interface CredentialCacheDeps {
  store: SharedStore
  /** Without it (or with an in-memory store) only the in-process layer is used. */
  encryptionKey: Buffer | undefined
  metrics: Metrics
  now: () => number
  maxEntries?: number
}

export class CredentialCache {
  readonly #memory: LruCache<Cached>
  readonly #deps: CredentialCacheDeps
  readonly #inflight = new Map<string, Promise<{ cached: Cached; source: CacheSource }>>()

  constructor(deps: CredentialCacheDeps) {
    this.#deps = deps
    this.#memory = new LruCache(deps.maxEntries ?? 10_000)
  }

  get #shared(): boolean {
    return this.#deps.store.kind === 'redis' && this.#deps.encryptionKey !== undefined
  }

  /**
   * The token for `key` if the in-process layer holds it, without a promise (the hot path); a hit
   * is counted as `get` counts it, a miss is left for `get` to count.
   */
  peek(key: string): Cached | undefined {
    const hit = this.#memory.get(key, this.#deps.now())
    if (hit) this.#deps.metrics.credentialCache.inc({ layer: 'memory', result: 'hit' })
    return hit
  }

  /** The cached token for `key`, or the result of `issue()` (called once for concurrent misses). */
  async get(key: string, issue: () => Promise<Cached>): Promise<{ cached: Cached; source: CacheSource }> {
    const hit = this.peek(key)
    if (hit) return { cached: hit, source: 'memory' }
    this.#deps.metrics.credentialCache.inc({ layer: 'memory', result: 'miss' })
    let pending = this.#inflight.get(key)
    if (!pending) {
      pending = this.#load(key, issue).finally(() => this.#inflight.delete(key))
      this.#inflight.set(key, pending)
    }
    return pending
  }

  async #load(key: string, issue: () => Promise<Cached>): Promise<{ cached: Cached; source: CacheSource }> {
    const { metrics, now, store, encryptionKey } = this.#deps
    if (this.#shared) {
      const sealed = await store.get(key)
      const text = sealed === undefined ? undefined : unseal(encryptionKey!, key, sealed)
      const shared = text === undefined ? undefined : parseCached(text)
      const fresh = shared && shared.reuseUntil > now()
      metrics.credentialCache.inc({ layer: 'shared', result: fresh ? 'hit' : 'miss' })
      if (fresh) {
        this.#memory.set(key, shared, shared.reuseUntil - now(), now())
        return { cached: shared, source: 'shared' }
      }
    }
    const cached = await issue()
    const ttl = cached.reuseUntil - now()
    this.#memory.set(key, cached, ttl, now())
    if (this.#shared && ttl > 0) await store.set(key, seal(encryptionKey!, key, JSON.stringify(cached)), ttl)
    return { cached, source: 'issued' }
  }
}

function parseCached(text: string): Cached | undefined {
  try {
    const c = JSON.parse(text) as Cached
    const i = c?.issued
    if (typeof c.reuseUntil !== 'number' || typeof i?.token !== 'string' || typeof i.expiresAt !== 'number' || typeof i.digest !== 'string') return undefined
    return c
  } catch {
    return undefined
  }
}
