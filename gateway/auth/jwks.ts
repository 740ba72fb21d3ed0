/**
 * One issuer's signing keys. Keys come only from the issuer's JWKS (configured, or found by
 * discovery whose `issuer` must equal the configured one, RFC 8414 §3.3); `jku`, `x5u` and
 * `jwk` headers are never consulted. An unknown `kid` causes at most one fetch per cooldown,
 * across replicas when the store is Redis, so a flood of made-up kids cannot hammer the AS.
 */
import { createHash } from 'node:crypto'
import type { JWK } from 'jose'
import type { Logger } from 'pino'
import type { SharedStore } from '../store/shared-store.js'
import type { RuntimeIssuer } from '../config/load.js'
import { GatewayError } from '../errors.js'
import { fetchJson, FetchError } from '../lib/fetch-json.js'
import type { Metrics } from '../observability/metrics.js'
import { importVerifyKey, type JwsVerifyKey } from './jws-verify.js'

interface KeySet {
  keys: Map<string, JWK>
  /** Keys without a kid, usable only when they are the single candidate for an alg. */
  anonymous: JWK[]
  fetchedAt: number
}

interface StoredKeySet {
  fetchedAt: number
  jwks: { keys: JWK[] }
}

export interface IssuerMetadata {
  issuer: string
  jwks_uri?: string
  token_endpoint?: string
  introspection_endpoint?: string
  backchannel_authentication_endpoint?: string
  [k: string]: unknown
}

const FAMILY: Record<string, (jwk: JWK) => boolean> = {
  RS: (k) => k.kty === 'RSA',
  PS: (k) => k.kty === 'RSA',
  ES256: (k) => k.kty === 'EC' && k.crv === 'P-256',
  ES384: (k) => k.kty === 'EC' && k.crv === 'P-384',
  ES512: (k) => k.kty === 'EC' && k.crv === 'P-521',
  EdDSA: (k) => k.kty === 'OKP' && (k.crv === 'Ed25519' || k.crv === 'Ed448'),
}

/** RFC 8725 §3.1: the key found by kid must be one meant for the header's algorithm. */
export function keyMatchesAlg(jwk: JWK, alg: string): boolean {
  if (jwk.use !== undefined && jwk.use !== 'sig') return false
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return false
  if (jwk.alg !== undefined) return jwk.alg === alg
  const check = FAMILY[alg] ?? FAMILY[alg.slice(0, 2)]
  return check ? check(jwk) : false
}

export interface IssuerKeysDeps {
  store: SharedStore
  logger: Logger
  metrics: Metrics
  now?: () => number
}

export class IssuerKeys {
  readonly #cfg: RuntimeIssuer
  readonly #deps: IssuerKeysDeps
  readonly #now: () => number
  readonly #storeKey: string
  readonly #lockKey: string
  readonly #imported = new Map<string, JwsVerifyKey>()
  #set: KeySet | undefined
  #metadata: IssuerMetadata | undefined
  #lastOriginAttempt = -Infinity
  #inflight: Promise<void> | undefined
  /** Bumped whenever the key set changes, so cached verifications can be rechecked cheaply. */
  generation = 0

  constructor(cfg: RuntimeIssuer, deps: IssuerKeysDeps) {
    this.#cfg = cfg
    this.#deps = deps
    this.#now = deps.now ?? Date.now
    const id = createHash('sha256').update(cfg.issuer).digest('base64url').slice(0, 22)
    this.#storeKey = `jwks:${id}`
    this.#lockKey = `jwks-lock:${id}`
  }

  get name(): string {
    return this.#cfg.name
  }

  /** Loaded and not older than maxStale. */
  ready(): boolean {
    return this.#set !== undefined && this.#now() - this.#set.fetchedAt <= this.#cfg.jwks.maxStaleMs
  }

  metadata(): IssuerMetadata | undefined {
    return this.#metadata
  }

  has(kid: string | undefined): boolean {
    return kid === undefined ? (this.#set?.anonymous.length ?? 0) > 0 : (this.#set?.keys.has(kid) ?? false)
  }

  /** Initial load at start-up. Never throws: a gateway can start while its AS is down (readyz says so). */
  async init(): Promise<void> {
    await this.#refresh('startup').catch(() => undefined)
  }

  /**
   * The verification key for a token header. Throws GW_AUTH_INVALID_TOKEN for keys that do
   * not exist or do not fit the algorithm, GW_AUTH_UNAVAILABLE when no usable key set exists.
   */
  async keyFor(kid: string | undefined, alg: string): Promise<JwsVerifyKey> {
    if (!this.ready()) {
      // Stale or never loaded: try the origin now (once per cooldown), so service resumes on the
      // first request after the AS recovers instead of waiting for a background refresh.
      await this.#refresh('stale').catch(() => undefined)
    } else {
      this.refreshIfOld()
    }
    let jwk = this.#find(kid, alg)
    if (!jwk) {
      await this.#refresh('unknown-kid').catch(() => undefined)
      jwk = this.#find(kid, alg)
    }
    if (!this.ready()) {
      throw new GatewayError('GW_AUTH_UNAVAILABLE', { detail: `no usable key set for issuer ${this.#cfg.name}`, retryAfter: Math.ceil(this.#cfg.jwks.cooldownMs / 1000) })
    }
    if (!jwk) throw new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'auth-unknown-key', detail: 'no key for kid/alg' })
    const cacheKey = `${jwk.kid ?? ''}|${alg}|${this.generation}`
    let key = this.#imported.get(cacheKey)
    if (!key) {
      try {
        key = importVerifyKey(jwk, alg)
      } catch {
        throw new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'auth-unknown-key', detail: 'key cannot be imported for alg' })
      }
      this.#imported.set(cacheKey, key)
    }
    return key
  }

  /**
   * Background refresh once the set is older than maxAge. Called for cached verifications too:
   * otherwise steady traffic with known tokens never looks at the JWKS, and a key the AS removed
   * stays trusted for as long as its tokens keep hitting the verification cache.
   */
  refreshIfOld(): void {
    if (this.#set && this.#now() - this.#set.fetchedAt > this.#cfg.jwks.maxAgeMs) void this.#refresh('max-age').catch(() => undefined)
  }

  #find(kid: string | undefined, alg: string): JWK | undefined {
    const set = this.#set
    if (!set) return undefined
    if (kid !== undefined) {
      const k = set.keys.get(kid)
      return k && keyMatchesAlg(k, alg) ? k : undefined
    }
    const candidates = [...set.keys.values(), ...set.anonymous].filter((k) => keyMatchesAlg(k, alg))
    return candidates.length === 1 ? candidates[0] : undefined
  }

  /** Single flight: concurrent callers share one refresh. */
  #refresh(why: 'startup' | 'unknown-kid' | 'max-age' | 'stale'): Promise<void> {
    this.#inflight ??= this.#doRefresh(why).finally(() => {
      this.#inflight = undefined
    })
    return this.#inflight
  }

  async #doRefresh(why: string): Promise<void> {
    const { store, metrics } = this.#deps
    // Another replica may already hold a newer set (for example after a rotation).
    const shared = await store.get(this.#storeKey)
    if (shared) {
      try {
        const parsed = JSON.parse(shared) as StoredKeySet
        if (!this.#set || parsed.fetchedAt > this.#set.fetchedAt) {
          this.#install(parsed.jwks, parsed.fetchedAt)
          metrics.jwksFetches.inc({ issuer: this.#cfg.name, source: 'redis', outcome: 'ok' })
          if (why !== 'unknown-kid' || this.#now() - parsed.fetchedAt < this.#cfg.jwks.cooldownMs) return
        }
      } catch {
        /* a corrupt entry is ignored and overwritten below */
      }
    }
    const now = this.#now()
    if (why !== 'startup' && now - this.#lastOriginAttempt < this.#cfg.jwks.cooldownMs) return
    this.#lastOriginAttempt = now
    if (why !== 'startup' && !(await store.setIfAbsent(this.#lockKey, '1', this.#cfg.jwks.cooldownMs)) && store.healthy()) return
    try {
      const jwksUri = await this.#jwksUri()
      const { status, body } = await fetchJson(jwksUri, { timeoutMs: this.#cfg.jwks.timeoutMs })
      if (status !== 200 || !isJwks(body)) throw new FetchError('not a JWKS document', status)
      const fetchedAt = this.#now()
      this.#install(body, fetchedAt)
      metrics.jwksFetches.inc({ issuer: this.#cfg.name, source: 'origin', outcome: 'ok' })
      await store.set(this.#storeKey, JSON.stringify({ fetchedAt, jwks: body } satisfies StoredKeySet), this.#cfg.jwks.maxStaleMs)
    } catch (e) {
      metrics.jwksFetches.inc({ issuer: this.#cfg.name, source: 'origin', outcome: 'error' })
      this.#deps.logger.warn({ event: 'jwks.fetch_failed', issuer: this.#cfg.name, why, error: (e as Error).message }, 'JWKS fetch failed; keeping the last good key set')
      throw e
    }
  }

  async #jwksUri(): Promise<string> {
    if (this.#cfg.jwksUri) return this.#cfg.jwksUri
    const md = await this.#discover()
    if (!md.jwks_uri) throw new FetchError('metadata has no jwks_uri')
    return md.jwks_uri
  }

  async #discover(): Promise<IssuerMetadata> {
    if (this.#metadata) return this.#metadata
    const base = this.#cfg.issuer.replace(/\/$/, '')
    const u = new URL(this.#cfg.issuer)
    // RFC 8414 §3.1 inserts the well-known segment before the issuer's path; OIDC appends it.
    const candidates = [
      `${u.origin}/.well-known/oauth-authorization-server${u.pathname === '/' ? '' : u.pathname}`,
      `${base}/.well-known/openid-configuration`,
    ]
    let lastError: unknown
    for (const url of candidates) {
      try {
        const { status, body } = await fetchJson(url, { timeoutMs: this.#cfg.jwks.timeoutMs })
        if (status !== 200 || !body || typeof body !== 'object') continue
        const md = body as IssuerMetadata
        if (md.issuer !== this.#cfg.issuer) {
          this.#deps.logger.error({ event: 'jwks.issuer_mismatch', issuer: this.#cfg.name }, 'authorization server metadata names a different issuer; keys not loaded')
          throw new FetchError('metadata issuer mismatch')
        }
        this.#metadata = md
        return md
      } catch (e) {
        lastError = e
        if (e instanceof FetchError && e.message === 'metadata issuer mismatch') throw e
      }
    }
    throw lastError instanceof Error ? lastError : new FetchError('no metadata')
  }

  /** Discovery for other modules (introspection, token exchange) sharing this issuer. */
  async discover(): Promise<IssuerMetadata> {
    return this.#discover()
  }

  #install(jwks: { keys: JWK[] }, fetchedAt: number): void {
    const keys = new Map<string, JWK>()
    const anonymous: JWK[] = []
    for (const k of jwks.keys) {
      if (!k || typeof k !== 'object' || typeof k.kty !== 'string') continue
      // Private or symmetric material in a JWKS is a misconfiguration; never use it.
      if (k.kty === 'oct' || 'd' in k) continue
      if (typeof k.kid === 'string') keys.set(k.kid, k)
      else anonymous.push(k)
    }
    const changed = !this.#set || !sameKeys(this.#set, keys, anonymous)
    this.#set = { keys, anonymous, fetchedAt }
    if (changed) {
      this.generation++
      this.#imported.clear()
    }
    this.#deps.metrics.jwksKeys.set({ issuer: this.#cfg.name }, keys.size + anonymous.length)
  }

  ageSeconds(): number | undefined {
    return this.#set ? (this.#now() - this.#set.fetchedAt) / 1000 : undefined
  }
}

function isJwks(body: unknown): body is { keys: JWK[] } {
  return !!body && typeof body === 'object' && Array.isArray((body as { keys?: unknown }).keys)
}

function sameKeys(a: KeySet, keys: Map<string, JWK>, anonymous: JWK[]): boolean {
  if (a.keys.size !== keys.size || a.anonymous.length !== anonymous.length) return false
  for (const [kid, k] of keys) {
    const o = a.keys.get(kid)
    if (!o || JSON.stringify(o) !== JSON.stringify(k)) return false
  }
  return JSON.stringify(a.anonymous) === JSON.stringify(anonymous)
}
