/**
 * The replica's own copy of session bindings, built to survive a Redis outage (issue 23).
 *
 * Before, a replica kept a binding for a fixed 30 s from when it loaded it and then asked Redis;
 * with Redis down the answer was a miss and the caller's own session became 404. Now:
 * - a local entry lives as long as the binding itself (its absolute expiry), so nothing a replica
 *   has seen is forgotten while the store cannot answer; hits move it to the LRU's young end;
 * - Redis is asked again only every RECHECK_MS and only while it is up, to learn of a session
 *   ended through another replica (a tombstone). A miss never evicts: it means the store lost the
 *   binding (restart, eviction) or could not answer, and the local copy is written back;
 * - when the store comes back after being down, every live entry is written back with SET NX, so
 *   an empty Redis learns the bindings again without overwriting a newer tombstone.
 *
 * Values are stored as the JSON of the whole entry value, so state another module adds to a
 * binding (e.g. the negotiated protocol version) is written back with it.
 */
import { LruCache } from '../store/lru.js'
import type { SharedStore } from '../store/shared-store.js'

export const RECHECK_MS = 30_000
/** Stored value of a session that was ended (DELETE, upstream 404). */
export const ENDED = '-'

export interface LocalEntry<V> {
  /** undefined: the session was ended. */
  value: V | undefined
  expiresAt: number
  checkedAt: number
}

/** An entry lives until the binding's own absolute expiry; LRU beyond `max` (the store/lru.ts policy). */
export class LocalBindings<V> {
  readonly #cache: LruCache<LocalEntry<V>>

  constructor(max = 50_000) {
    this.#cache = new LruCache(max)
  }

  get(key: string, now: number): LocalEntry<V> | undefined {
    return this.#cache.get(key, now)
  }

  set(key: string, value: V | undefined, expiresAt: number, checkedAt: number): void {
    this.#cache.set(key, { value, expiresAt, checkedAt }, expiresAt - checkedAt, checkedAt)
  }

  live(now: number): Generator<[string, LocalEntry<V>]> {
    return this.#cache.live(now)
  }

  get size(): number {
    return this.#cache.size
  }
}

export const serialize = <V>(e: LocalEntry<V>): string => (e.value === undefined ? ENDED : JSON.stringify(e.value))

/**
 * Notices the store coming back (healthy after unhealthy) on the next call and writes every live
 * entry back once. Polled from the request path rather than from store events: SharedStore has no
 * events, and a replica without requests has nobody waiting for its bindings.
 */
export class WriteBack<V> {
  readonly #store: SharedStore
  readonly #local: LocalBindings<V>
  #wasHealthy = true
  #running: Promise<number> | undefined
  /** Bindings written back so far (tests, figures). */
  written = 0

  constructor(store: SharedStore, local: LocalBindings<V>) {
    this.#store = store
    this.#local = local
  }

  /** Call on every registry operation; returns the flush it started, if any. */
  poll(now: number): Promise<number> | undefined {
    const healthy = this.#store.healthy()
    const back = healthy && !this.#wasHealthy
    this.#wasHealthy = healthy
    if (!back || this.#running) return undefined
    this.#running = this.#flush(now).finally(() => (this.#running = undefined))
    return this.#running
  }

  async #flush(now: number): Promise<number> {
    let n = 0
    for (const [key, e] of [...this.#local.live(now)]) {
      if (!this.#store.healthy()) {
        // Down again mid-way: the next recovery starts over.
        this.#wasHealthy = false
        break
      }
      // NX: a tombstone or a fresher binding written since the restart wins over this copy.
      await this.#store.setIfAbsent(key, serialize(e), e.expiresAt - now)
      n++
    }
    this.written += n
    return n
  }
}
