/**
 * Upstream sessions the gateway holds on behalf of 2026-07-28 callers (mode `caller`): one per
 * (route, issuer, subject, client id), never shared between callers, so one caller's upstream
 * state (subscriptions, logging level, anything a legacy server keys on its session) is never
 * another's. Kept in the SharedStore so every replica reuses the same session; a session the
 * upstream no longer knows (404) is dropped and opened again. Opening is single-flight per
 * caller in a process, so a burst of first requests performs one handshake.
 */
import { keyDigest } from '../../store/keys.js'
import type { Principal } from '../../auth/principal.js'
import { LruCache } from '../../store/lru.js'
import type { SharedStore } from '../../store/shared-store.js'
import type { UpstreamSession } from './translate.js'

const LOCAL_CACHE_MS = 30_000

/** Length-prefixed fields: ("ab","c") and ("a","bc") never collide. */
export function modernSessionKey(route: string, p: Pick<Principal, 'issuer' | 'subject' | 'clientId'>): string {
  return keyDigest('modern', [route, p.issuer, p.subject, p.clientId])
}

export class UpstreamSessions {
  readonly #store: SharedStore
  readonly #ttlMs: number
  readonly #local = new LruCache<UpstreamSession>(50_000)
  readonly #opening = new Map<string, Promise<UpstreamSession>>()

  constructor(store: SharedStore, ttlMs: number) {
    this.#store = store
    this.#ttlMs = ttlMs
  }

  async get(key: string): Promise<UpstreamSession | undefined> {
    const local = this.#local.get(key)
    if (local) return local
    const raw = await this.#store.get(key)
    if (!raw) return undefined
    try {
      const s = JSON.parse(raw) as UpstreamSession
      if (typeof s.protocolVersion !== 'string') return undefined
      this.#local.set(key, s, Math.min(LOCAL_CACHE_MS, this.#ttlMs))
      return s
    } catch {
      return undefined
    }
  }

  /** The caller's session, opened with `open` when there is none (one handshake at a time per caller). */
  async getOrOpen(key: string, open: () => Promise<UpstreamSession>): Promise<{ session: UpstreamSession; reused: boolean }> {
    const existing = await this.get(key)
    if (existing) return { session: existing, reused: true }
    let pending = this.#opening.get(key)
    if (!pending) {
      pending = open().then(
        async (s) => {
          this.#local.set(key, s, Math.min(LOCAL_CACHE_MS, this.#ttlMs))
          await this.#store.set(key, JSON.stringify(s), this.#ttlMs)
          return s
        },
      )
      const p = pending
      this.#opening.set(key, p)
      void p.finally(() => this.#opening.delete(key)).catch(() => undefined)
    }
    return { session: await pending, reused: false }
  }

  /** Forget a session the upstream refused, unless another request already replaced it. */
  async drop(key: string, session: UpstreamSession): Promise<void> {
    const current = await this.get(key)
    if (current && current.id !== session.id) return
    this.#local.delete(key)
    await this.#store.delete(key)
  }
}
