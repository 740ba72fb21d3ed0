/**
 * Sessions bound to their owner (MCP security best practices, "Session Hijacking"): when an
 * upstream issues an `Mcp-Session-Id`, the gateway records who opened it (issuer, subject, agent,
 * route). A session id presented by anyone else, or unknown to the gateway, is treated as
 * unknown (404) and never reaches the upstream. The binding lives in the SharedStore so every
 * replica enforces it; an in-process layer keeps the hot path off Redis.
 */
import { createHash } from 'node:crypto'
import type { Principal } from '../auth/principal.js'
import { LruCache } from '../cache/lru.js'
import type { SharedStore } from '../cache/store.js'

export interface SessionOwner {
  route: string
  issuer: string
  subject: string
  clientId: string
}

export type SessionCheck = 'owner' | 'unknown' | 'foreign'

const LOCAL_CACHE_MS = 30_000

/** Length-prefixed fields so ("ab","c") and ("a","bc") can never collide. */
export function sessionKey(route: string, sessionId: string): string {
  const h = createHash('sha256')
  for (const f of [route, sessionId]) h.update(`${Buffer.byteLength(f)}:${f}`)
  return `sess:${h.digest('base64url')}`
}

const ownerOf = (route: string, p: Principal): SessionOwner => ({ route, issuer: p.issuer, subject: p.subject, clientId: p.clientId })

const sameOwner = (a: SessionOwner, b: SessionOwner): boolean => a.route === b.route && a.issuer === b.issuer && a.subject === b.subject && a.clientId === b.clientId

export class SessionRegistry {
  readonly #store: SharedStore
  readonly #ttlMs: number
  readonly #local = new LruCache<SessionOwner>(50_000)

  constructor(store: SharedStore, ttlMs: number) {
    this.#store = store
    this.#ttlMs = ttlMs
  }

  async record(route: string, sessionId: string, principal: Principal): Promise<void> {
    const key = sessionKey(route, sessionId)
    const owner = ownerOf(route, principal)
    this.#local.set(key, owner, Math.min(LOCAL_CACHE_MS, this.#ttlMs))
    await this.#store.set(key, JSON.stringify(owner), this.#ttlMs)
  }

  async check(route: string, sessionId: string, principal: Principal): Promise<SessionCheck> {
    const key = sessionKey(route, sessionId)
    let owner = this.#local.get(key)
    if (!owner) {
      const raw = await this.#store.get(key)
      if (!raw) return 'unknown'
      try {
        owner = JSON.parse(raw) as SessionOwner
      } catch {
        return 'unknown'
      }
      this.#local.set(key, owner, Math.min(LOCAL_CACHE_MS, this.#ttlMs))
    }
    return sameOwner(owner, ownerOf(route, principal)) ? 'owner' : 'foreign'
  }

  async forget(route: string, sessionId: string): Promise<void> {
    const key = sessionKey(route, sessionId)
    this.#local.delete(key)
    await this.#store.delete(key)
  }
}
