/**
 * Opaque access tokens, checked by RFC 7662 introspection at the issuer that minted them.
 *
 * An answer is judged in two parts: what holds for every route (active, iss, exp, nbf, the
 * shape of the members, no sender constraint) is judged once and cached; the audience is
 * checked against the route on every use, cached or not. Results are cached under a SHA-256
 * digest of the token (never the token) in two layers, an in-process LRU in front of the
 * SharedStore, until min(exp, now + maxTtl): maxTtl is the revocation window. Refusals are
 * cached briefly so floods of junk cost the AS little; failures are never cached and never
 * allow (503). See docs/introspection.md.
 */
import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import { LruCache } from '../store/lru.js'
import type { SharedStore } from '../store/shared-store.js'
import type { RuntimeIssuer, RuntimeRoute } from '../config/load.js'
import { GatewayError, isGatewayError, type Reason } from '../errors.js'
import { OAuthClient, OAuthRequestError } from '../oauth/client.js'
import type { Metrics } from '../observability/metrics.js'
import type { IssuerMetadata } from './jwks.js'
import { audienceList, checkAudience, isJktBinding } from './jwt.js'
import { principalFromClaims, type Principal } from './principal.js'
import { tokenDigest, type OpaqueTokenVerifier } from './token-validator.js'

/** What an introspection answer says about a token, independent of the route it is used on. */
export type Introspected =
  | { readonly active: true; readonly claims: Readonly<Record<string, unknown>>; readonly until: number }
  | { readonly active: false; readonly reason: Reason; readonly detail: string; readonly until: number }

type Judgement = { active: true; claims: Record<string, unknown> } | { active: false; reason: Reason; detail: string }

const REFUSAL_REASONS = new Set<Reason>(['auth-invalid', 'auth-expired', 'auth-issuer', 'auth-audience', 'auth-type'])
const LRU_SIZE = 10_000
/** Seconds a client is asked to wait when the AS cannot be asked (down, slow, overloaded). */
export const INTROSPECTION_RETRY_AFTER_SEC = 2

const refuse = (reason: Reason, detail: string): Judgement => ({ active: false, reason, detail })
const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v)

/**
 * RFC 7662 §2.2 and the checklist (INT-03/04/09): only the JSON boolean `true` is active; `iss`
 * must match when present; `exp` is required and in the future; `aud` is required (its value
 * is checked per route); a token bound to a key (`cnf`, `token_type: DPoP`) is refused because
 * no proof of possession is checked here (RFC 9449 §7.1: a bound token used as bearer is a
 * downgrade). Members we later rely on must have the type the principal model expects.
 */
export function judgeIntrospection(body: Record<string, unknown>, issuer: RuntimeIssuer, nowSec: number): Judgement {
  if (body.active !== true) return refuse('auth-invalid', body.active === false ? 'inactive' : 'active is not the boolean true')
  if (body.iss !== undefined && body.iss !== issuer.issuer) return refuse('auth-issuer', 'iss mismatch')
  const skew = issuer.clockSkewSec
  if (typeof body.exp !== 'number') return refuse('auth-invalid', 'exp missing')
  if (nowSec >= body.exp + skew) return refuse('auth-expired', 'token expired')
  if (body.nbf !== undefined && (typeof body.nbf !== 'number' || nowSec < body.nbf - skew)) return refuse('auth-expired', 'token not yet valid')
  if (!audienceList(body.aud)) return refuse('auth-audience', 'aud missing')
  if (typeof body.client_id !== 'string' || body.client_id === '') return refuse('auth-invalid', 'client_id missing')
  if (body.sub !== undefined && (typeof body.sub !== 'string' || body.sub === '')) return refuse('auth-invalid', 'sub is not a string')
  if (body.scope !== undefined && typeof body.scope !== 'string') return refuse('auth-invalid', 'scope is not a string')
  if (body.act !== undefined && !isObject(body.act)) return refuse('auth-invalid', 'act is not an object')
  if (body.authorization_details !== undefined && !Array.isArray(body.authorization_details)) return refuse('auth-invalid', 'authorization_details is not an array')
  const dpopType = typeof body.token_type === 'string' && body.token_type.toLowerCase() === 'dpop'
  // INT-09 (RFC 9449 §6.2): where the issuer accepts DPoP, a jkt binding is enforced by the auth
  // stage with a proof; a token_type of DPoP without one is refused (nothing to check it against).
  if (issuer.dpop) {
    if (body.cnf !== undefined && !isJktBinding(body.cnf)) return refuse('auth-type', 'unsupported sender constraint')
    if (dpopType && body.cnf === undefined) return refuse('auth-type', 'DPoP token without cnf.jkt')
  } else if (body.cnf !== undefined || dpopType) {
    return refuse('auth-type', 'sender-constrained token presented as bearer')
  }
  // A refresh token is "active" too; only access tokens may be used here.
  if (body.token_type !== undefined && (typeof body.token_type !== 'string' || !['bearer', 'dpop'].includes(body.token_type.toLowerCase()))) return refuse('auth-type', 'not a bearer access token')
  return { active: true, claims: body }
}

/** The principal for one route; the audience is checked on every use, cached or not. */
export function principalForRoute(claims: Readonly<Record<string, unknown>>, issuer: RuntimeIssuer, route: RuntimeRoute): Principal {
  checkAudience(audienceList(claims.aud)!, issuer, route.resource)
  return principalFromClaims('opaque', issuer, claims)
}

/** RFC 7662 §4: never past `exp`; at most the revocation window; refusals only briefly. */
export function cacheUntil(j: Judgement, issuer: RuntimeIssuer, now: number): number {
  const c = issuer.introspection.cache
  if (!j.active) return now + c.negativeTtlMs
  return Math.min((j.claims.exp as number) * 1000, now + c.maxTtlMs)
}

/**
 * Bounds the calls in flight to one AS. Callers beyond `max` wait in a bounded queue for at
 * most `waitMs`; beyond the queue, or after the wait, they are shed at once. This, not the
 * negative cache, is what bounds AS load under a flood of distinct junk tokens.
 */
export class Limiter {
  readonly #max: number
  readonly #maxQueued: number
  #active = 0
  readonly #waiting: (() => void)[] = []

  constructor(max: number, maxQueued: number) {
    this.#max = max
    this.#maxQueued = maxQueued
  }

  /** A release function, or undefined when the caller is shed. */
  acquire(waitMs: number): Promise<(() => void) | undefined> {
    if (this.#active < this.#max) {
      this.#active++
      return Promise.resolve(this.#releaser())
    }
    if (this.#waiting.length >= this.#maxQueued) return Promise.resolve(undefined)
    return new Promise((resolve) => {
      const grant = () => {
        clearTimeout(timer)
        resolve(this.#releaser())
      }
      const timer = setTimeout(() => {
        const i = this.#waiting.indexOf(grant)
        if (i !== -1) this.#waiting.splice(i, 1)
        resolve(undefined)
      }, waitMs)
      this.#waiting.push(grant)
    })
  }

  #releaser(): () => void {
    let done = false
    return () => {
      if (done) return
      done = true
      // The slot passes straight to the next waiter, so `active` only drops when none waits.
      const next = this.#waiting.shift()
      if (next) next()
      else this.#active--
    }
  }

  get active(): number {
    return this.#active
  }
}

export interface IntrospectionDeps {
  store: SharedStore
  logger: Logger
  metrics: Metrics
  /** The issuer's RFC 8414 metadata, for `introspection_endpoint` when none is configured. */
  discover(issuerName: string): Promise<IssuerMetadata>
  now?: () => number
}

interface StoredResult {
  v: 1
  active: boolean
  until: number
  claims?: Record<string, unknown>
  reason?: string
  detail?: string
}

export class IntrospectionVerifier implements OpaqueTokenVerifier {
  readonly #deps: IntrospectionDeps
  readonly #now: () => number
  readonly #lru = new LruCache<Introspected>(LRU_SIZE)
  readonly #inflight = new Map<string, Promise<Introspected>>()
  readonly #clients = new Map<string, OAuthClient>()
  readonly #limits = new Map<string, Limiter>()
  readonly #storePrefix = new Map<string, string>()
  readonly #failing = new Set<string>()

  constructor(issuers: Iterable<RuntimeIssuer>, deps: IntrospectionDeps) {
    this.#deps = deps
    this.#now = deps.now ?? Date.now
    for (const iss of issuers) {
      if (iss.validation === 'jwt' || !iss.client) continue
      this.#clients.set(iss.name, new OAuthClient(iss.client))
      this.#limits.set(iss.name, new Limiter(iss.introspection.maxConcurrent, iss.introspection.maxQueued))
      // Keyed by the issuer identifier, not its local name, so every replica shares entries.
      this.#storePrefix.set(iss.name, `introspect:${createHash('sha256').update(iss.issuer).digest('base64url').slice(0, 22)}:`)
    }
  }

  /**
   * Tries the given issuers in order. The first that calls the token active decides (a wrong
   * audience is then final: that issuer minted it for another resource). When none does, an
   * issuer that could not be asked makes the answer 503, since it may have minted the token.
   */
  async verify(token: string, route: RuntimeRoute, issuers: readonly RuntimeIssuer[]): Promise<Principal> {
    const digest = tokenDigest(token)
    let unavailable: GatewayError | undefined
    let refused: GatewayError | undefined
    for (const issuer of issuers) {
      if (!this.#clients.has(issuer.name)) continue
      let r: Introspected
      try {
        r = await this.#lookup(issuer, token, digest)
      } catch (e) {
        if (isGatewayError(e) && e.code === 'GW_AUTH_UNAVAILABLE') {
          unavailable ??= e
          continue
        }
        throw e
      }
      if (r.active) return principalForRoute(r.claims, issuer, route)
      refused ??= new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: r.reason, detail: `introspection: ${r.detail}` })
    }
    throw unavailable ?? refused ?? new GatewayError('GW_AUTH_INVALID_TOKEN', { detail: 'no introspection issuer for this token' })
  }

  #lookup(issuer: RuntimeIssuer, token: string, digest: string): Promise<Introspected> {
    const { metrics } = this.#deps
    const key = `${issuer.name}:${digest}`
    if (issuer.introspection.cache.enabled) {
      const hit = this.#lru.get(key, this.#now())
      if (hit) {
        metrics.introspectionCache.inc({ issuer: issuer.name, layer: 'memory' })
        return Promise.resolve(hit)
      }
    }
    const running = this.#inflight.get(key)
    if (running) {
      metrics.introspectionCache.inc({ issuer: issuer.name, layer: 'coalesced' })
      return running
    }
    const p = this.#resolve(issuer, token, digest, key).finally(() => this.#inflight.delete(key))
    this.#inflight.set(key, p)
    return p
  }

  async #resolve(issuer: RuntimeIssuer, token: string, digest: string, key: string): Promise<Introspected> {
    const { metrics, store } = this.#deps
    const cacheOn = issuer.introspection.cache.enabled
    const storeKey = this.#storePrefix.get(issuer.name)! + digest
    if (cacheOn) {
      const shared = parseStored(await store.get(storeKey), this.#now())
      // Entries are re-judged: the store is shared state, and a bad entry must not become a 500.
      if (shared && (!shared.active || judgeIntrospection({ ...shared.claims }, issuer, Math.floor(this.#now() / 1000)).active)) {
        this.#lru.set(key, shared, shared.until - this.#now(), this.#now())
        metrics.introspectionCache.inc({ issuer: issuer.name, layer: 'redis' })
        return shared
      }
    }
    metrics.introspectionCache.inc({ issuer: issuer.name, layer: 'miss' })
    const j = await this.#introspect(issuer, token)
    const now = this.#now()
    const result: Introspected = { ...j, until: cacheUntil(j, issuer, now) }
    if (cacheOn) {
      this.#lru.set(key, result, result.until - now, now)
      await store.set(storeKey, JSON.stringify({ v: 1, ...result } satisfies StoredResult), result.until - now)
    }
    return result
  }

  async #introspect(issuer: RuntimeIssuer, token: string): Promise<Judgement> {
    const { metrics } = this.#deps
    const cfg = issuer.introspection
    const release = await this.#limits.get(issuer.name)!.acquire(cfg.timeoutMs)
    if (!release) {
      metrics.introspections.inc({ issuer: issuer.name, outcome: 'shed' })
      throw unavailable(issuer, 'too many introspections in flight')
    }
    const stop = metrics.introspectionDuration.startTimer({ issuer: issuer.name })
    let body: Record<string, unknown>
    try {
      const endpoint = await this.#endpoint(issuer)
      body = await this.#clients.get(issuer.name)!.introspect(endpoint, token, cfg.timeoutMs)
    } catch (e) {
      // RFC 7009 §2.2.1 code, used by some ASes (oidc-provider for JWTs): it does not know this token.
      if (e instanceof OAuthRequestError && e.kind === 'unsupported_token_type') body = { active: false }
      else {
        const kind = e instanceof OAuthRequestError ? e.kind : isGatewayError(e) ? 'discovery' : 'unreachable'
        metrics.introspections.inc({ issuer: issuer.name, outcome: kind === 'timeout' ? 'timeout' : 'error' })
        this.#health(issuer, false, kind)
        throw unavailable(issuer, `introspection failed (${kind})`)
      }
    } finally {
      stop()
      release()
    }
    this.#health(issuer, true)
    const j = judgeIntrospection(body, issuer, Math.floor(this.#now() / 1000))
    metrics.introspections.inc({ issuer: issuer.name, outcome: j.active ? 'active' : 'inactive' })
    return j
  }

  async #endpoint(issuer: RuntimeIssuer): Promise<string> {
    if (issuer.introspectionEndpoint) return issuer.introspectionEndpoint
    let md: IssuerMetadata
    try {
      md = await this.#deps.discover(issuer.name)
    } catch {
      throw new GatewayError('GW_AUTH_UNAVAILABLE', { detail: 'discovery failed' })
    }
    if (typeof md.introspection_endpoint !== 'string') throw new GatewayError('GW_AUTH_UNAVAILABLE', { detail: 'metadata has no introspection_endpoint' })
    return md.introspection_endpoint
  }

  /** Logs transitions only: an AS that is down would otherwise log once per request. */
  #health(issuer: RuntimeIssuer, ok: boolean, kind?: string): void {
    if (ok === !this.#failing.has(issuer.name)) return
    if (ok) {
      this.#failing.delete(issuer.name)
      this.#deps.logger.info({ event: 'introspection.recovered', issuer: issuer.name }, 'introspection endpoint answers again')
    } else {
      this.#failing.add(issuer.name)
      this.#deps.logger.warn({ event: 'introspection.failed', issuer: issuer.name, kind }, 'introspection failing: uncached opaque tokens get 503')
    }
  }

  /** Whether the last introspection call to each issuer succeeded (readiness, non-critical). */
  healthy(): boolean {
    return this.#failing.size === 0
  }
}

const unavailable = (issuer: RuntimeIssuer, detail: string): GatewayError =>
  new GatewayError('GW_AUTH_UNAVAILABLE', { detail: `${detail} (issuer ${issuer.name})`, retryAfter: INTROSPECTION_RETRY_AFTER_SEC })

/** A shared-store entry, or undefined when absent, expired or not in the shape we write. */
function parseStored(text: string | undefined, now: number): Introspected | undefined {
  if (!text) return undefined
  let v: StoredResult
  try {
    v = JSON.parse(text) as StoredResult
  } catch {
    return undefined
  }
  if (!isObject(v) || v.v !== 1 || typeof v.until !== 'number' || v.until <= now) return undefined
  if (v.active === true && isObject(v.claims)) return { active: true, claims: v.claims, until: v.until }
  if (v.active === false) {
    const reason = REFUSAL_REASONS.has(v.reason as Reason) ? (v.reason as Reason) : 'auth-invalid'
    return { active: false, reason, detail: typeof v.detail === 'string' ? v.detail : 'inactive', until: v.until }
  }
  return undefined
}
