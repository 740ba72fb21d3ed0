/**
 * Sessions bound to their owner (MCP security best practices, "Session Hijacking"): when an
 * upstream issues an `Mcp-Session-Id`, the gateway records who opened it (issuer, subject, agent,
 * route). A session id presented by anyone else, or unknown to the gateway, is treated as
 * unknown (404) and never reaches the upstream. The binding lives in the SharedStore so every
 * replica enforces it; an in-process layer keeps the hot path off Redis.
 */
import { keyDigest } from '../store/keys.js'
import type { Principal } from '../auth/principal.js'
import type { SharedStore } from '../store/shared-store.js'
import { ENDED, LocalBindings, RECHECK_MS, WriteBack, type LocalEntry } from './local-bindings.js'
import type { SessionSealer } from './sealed-id.js'

export interface SessionOwner {
  route: string
  issuer: string
  subject: string
  clientId: string
}

export type SessionCheck = 'owner' | 'unknown' | 'foreign'

/** What is stored per binding: the owner and when the binding ends (so a copy written back keeps it). */
type StoredBinding = SessionOwner & { expiresAt?: number }

/** Length-prefixed fields so ("ab","c") and ("a","bc") can never collide. */
export function sessionKey(route: string, sessionId: string): string {
  return keyDigest('sess', [route, sessionId])
}

const ownerOf = (route: string, p: Principal): SessionOwner => ({ route, issuer: p.issuer, subject: p.subject, clientId: p.clientId })

const sameOwner = (a: SessionOwner, b: SessionOwner): boolean => a.route === b.route && a.issuer === b.issuer && a.subject === b.subject && a.clientId === b.clientId

export class SessionRegistry {
  readonly #store: SharedStore
  readonly #ttlMs: number
  readonly #local = new LocalBindings<StoredBinding>()
  readonly #writeBack: WriteBack<StoredBinding>
  readonly #sealer: SessionSealer | undefined
  readonly #now: () => number

  constructor(store: SharedStore, ttlMs: number, o: { sealer?: SessionSealer | undefined; now?: () => number } = {}) {
    this.#store = store
    this.#ttlMs = ttlMs
    this.#sealer = o.sealer
    this.#now = o.now ?? Date.now
    this.#writeBack = new WriteBack(store, this.#local)
  }

  /** Bindings written back to the store after it came back (figures). */
  get writtenBack(): number {
    return this.#writeBack.written
  }

  async record(route: string, sessionId: string, principal: Principal): Promise<void> {
    const now = this.#now()
    this.#writeBack.poll(now)
    const key = sessionKey(route, sessionId)
    const binding: StoredBinding = { ...ownerOf(route, principal), expiresAt: now + this.#ttlMs }
    this.#local.set(key, binding, now + this.#ttlMs, now)
    await this.#store.set(key, JSON.stringify(binding), this.#ttlMs)
  }

  /**
   * Records an upstream-issued session and returns the id the client gets: sealed
   * (sealed-id.ts) when `sessions.signingKey` is set, so any replica can decide it without the store.
   */
  async issue(route: string, upstreamId: string, principal: Principal): Promise<string> {
    await this.record(route, upstreamId, principal)
    return this.#sealer?.seal(ownerOf(route, principal), upstreamId, this.#now() + this.#ttlMs) ?? upstreamId
  }

  /** The id a client presented: the verdict and the upstream's own id to forward. */
  async resolve(route: string, presented: string, principal: Principal): Promise<{ verdict: SessionCheck; upstreamId: string }> {
    const u = this.#sealer?.unseal(ownerOf(route, principal), presented, this.#now())
    if (!u || u.kind === 'plain') return { verdict: await this.check(route, presented, principal), upstreamId: presented }
    // Another caller's id, an altered one or an expired one: no store lookup, refused as unknown.
    if (u.kind === 'invalid') return { verdict: 'unknown', upstreamId: presented }
    return { verdict: await this.#decide(route, u.upstreamId, principal, u.expiresAt), upstreamId: u.upstreamId }
  }

  check(route: string, sessionId: string, principal: Principal): Promise<SessionCheck> {
    return this.#decide(route, sessionId, principal, undefined)
  }

  /**
   * `sealedUntil`: the caller proved ownership with a sealed id valid until then, so a binding
   * the store does not have (down, restarted empty) is this caller's; only a tombstone refuses it.
   */
  async #decide(route: string, sessionId: string, principal: Principal, sealedUntil: number | undefined): Promise<SessionCheck> {
    const now = this.#now()
    this.#writeBack.poll(now)
    const key = sessionKey(route, sessionId)
    const caller = ownerOf(route, principal)
    let e = this.#local.get(key, now)
    if (!e || (now - e.checkedAt >= RECHECK_MS && this.#store.healthy())) {
      const raw = this.#store.healthy() ? await this.#store.get(key) : undefined
      if (raw === ENDED) {
        this.#local.set(key, undefined, e?.expiresAt ?? sealedUntil ?? now + this.#ttlMs, now)
        return 'unknown'
      }
      const stored = raw === undefined ? undefined : parseBinding(raw)
      if (stored) {
        const until = stored.expiresAt ?? e?.expiresAt ?? now + this.#ttlMs
        this.#local.set(key, stored, until, now)
        e = this.#local.get(key, now)
      } else if (e || sealedUntil !== undefined) {
        // A miss is never a reason to forget: Redis is down, restarted empty or evicted the key.
        const entry: LocalEntry<StoredBinding> = e ?? { value: { ...caller, expiresAt: sealedUntil! }, expiresAt: sealedUntil!, checkedAt: now }
        this.#local.set(key, entry.value, entry.expiresAt, now)
        if (this.#store.healthy()) await this.#store.setIfAbsent(key, JSON.stringify(entry.value), entry.expiresAt - now)
        e = this.#local.get(key, now)
      } else {
        return 'unknown'
      }
    }
    if (!e?.value) return 'unknown'
    return sameOwner(e.value, caller) ? 'owner' : 'foreign'
  }

  async forget(route: string, sessionId: string): Promise<void> {
    const now = this.#now()
    const key = sessionKey(route, sessionId)
    const e = this.#local.get(key, now)
    // A tombstone, not a delete: replicas still holding the binding must learn that it ended, and
    // a missing key now means "lost by the store" (written back), not "ended".
    const until = e?.expiresAt ?? now + this.#ttlMs
    this.#local.set(key, undefined, until, now)
    await this.#store.set(key, ENDED, until - now)
  }
}

function parseBinding(raw: string): StoredBinding | undefined {
  try {
    const v = JSON.parse(raw) as StoredBinding
    return typeof v?.route === 'string' && typeof v.issuer === 'string' && typeof v.subject === 'string' && typeof v.clientId === 'string' ? v : undefined
  } catch {
    return undefined
  }
}
