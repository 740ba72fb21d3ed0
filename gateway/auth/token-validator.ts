/**
 * Route + credential → Principal. Picks the issuer from the token's own `iss` among the issuers
 * the route accepts (a foreign issuer's keys are never fetched), verifies, and remembers
 * verified JWTs until they expire so the signature is checked once per token, not per request.
 */
import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import { LruCache } from '../store/lru.js'
import type { SharedStore } from '../store/shared-store.js'
import type { RuntimeConfig, RuntimeIssuer, RuntimeRoute } from '../config/load.js'
import { GatewayError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'
import { IssuerKeys } from './jwks.js'
import { audienceMatches, decodeJwt, looksLikeJwt, verifyAccessToken, type DecodedJwt } from './jwt.js'
import type { Principal } from './principal.js'

/** Opaque (non-JWT) tokens are handed to this, when configured (RFC 7662 introspection). */
export interface OpaqueTokenVerifier {
  verify(token: string, route: RuntimeRoute, issuers: readonly RuntimeIssuer[]): Promise<Principal>
}

interface CachedVerification {
  principal: Principal
  kid: string | undefined
  keyGeneration: number
}

const VERIFIED_CACHE_SIZE = 10_000
/** Upper bound on how long a verification is reused, so a removed key is noticed promptly. */
const VERIFIED_CACHE_MAX_MS = 5 * 60_000

export const tokenDigest = (token: string): string => createHash('sha256').update(token).digest('base64url')

export interface TokenValidatorDeps {
  store: SharedStore
  logger: Logger
  metrics: Metrics
  opaque?: OpaqueTokenVerifier
  now?: () => number
}

export class TokenValidator {
  readonly keys = new Map<string, IssuerKeys>()
  readonly #config: RuntimeConfig
  readonly #deps: TokenValidatorDeps
  readonly #now: () => number
  readonly #verified = new LruCache<CachedVerification>(VERIFIED_CACHE_SIZE)

  constructor(config: RuntimeConfig, deps: TokenValidatorDeps) {
    this.#config = config
    this.#deps = deps
    this.#now = deps.now ?? Date.now
    for (const iss of config.issuers.values()) this.keys.set(iss.name, new IssuerKeys(iss, { ...deps, now: this.#now }))
  }

  /** Key sets of issuers whose JWTs are verified here (introspection-only issuers load none). */
  jwtKeys(): IssuerKeys[] {
    return [...this.keys.values()].filter((k) => this.#config.issuers.get(k.name)!.validation !== 'introspection')
  }

  async init(): Promise<void> {
    await Promise.all(this.jwtKeys().map((k) => k.init()))
  }

  /** The largest token any issuer of the route accepts; longer tokens are refused unread. */
  maxTokenSize(route: RuntimeRoute): number {
    let max = 0
    for (const n of route.issuers) max = Math.max(max, this.#config.issuers.get(n)?.maxTokenSize ?? 0)
    return max
  }

  async authenticate(route: RuntimeRoute, token: string): Promise<Principal> {
    const now = this.#now()
    const nowSec = Math.floor(now / 1000)
    const digest = tokenDigest(token)
    const hit = this.#verified.get(digest, now)
    if (hit && this.#stillValid(hit, route, nowSec)) {
      if (hit.principal.tokenKind === 'jwt') this.keys.get(hit.principal.issuerName)?.refreshIfOld()
      this.#deps.metrics.tokenCacheHits.inc()
      return hit.principal
    }
    // Precedence (docs/introspection.md): a JWS names its issuer, and only that issuer is asked;
    // anything else goes to the route's introspecting issuers in order.
    const issuers = route.issuers.map((n) => this.#config.issuers.get(n)!)
    const decoded = looksLikeJwt(token) ? tryDecodeJwt(token) : undefined
    const iss = decoded?.claims.iss
    if (!decoded || typeof iss !== 'string') return this.#introspect(token, route, issuers.filter((i) => i.validation !== 'jwt'), decoded ? 'JWS without iss' : 'not a JWT')
    const issuer = issuers.find((i) => i.issuer === iss)
    if (!issuer) throw new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'auth-issuer', detail: 'issuer not accepted on this route' })
    if (issuer.validation === 'introspection') return this.#introspect(token, route, [issuer], 'JWS')
    const keys = this.keys.get(issuer.name)!
    const v = await verifyAccessToken(token, decoded, { issuer, keys, resource: route.resource, nowSec })
    const ttl = Math.min((v.principal.expiresAt + issuer.clockSkewSec) * 1000 - now, VERIFIED_CACHE_MAX_MS)
    this.#verified.set(digest, v, ttl, now)
    return v.principal
  }

  #introspect(token: string, route: RuntimeRoute, issuers: RuntimeIssuer[], what: string): Promise<Principal> {
    if (!this.#deps.opaque || issuers.length === 0) throw new GatewayError('GW_AUTH_INVALID_TOKEN', { detail: `${what} and no introspection configured` })
    return this.#deps.opaque.verify(token, route, issuers)
  }

  #stillValid(c: CachedVerification, route: RuntimeRoute, nowSec: number): boolean {
    const p = c.principal
    const issuer = this.#config.issuers.get(p.issuerName)
    if (!issuer || !route.issuers.includes(p.issuerName)) return false
    if (nowSec >= p.expiresAt + issuer.clockSkewSec) return false
    const accepted = [route.resource, ...issuer.extraAudiences]
    if (!p.audience.some((a) => accepted.some((r) => audienceMatches(a, r)))) return false
    if (issuer.strictAudience && p.audience.length > 1) return false
    if (p.tokenKind === 'jwt') {
      const keys = this.keys.get(p.issuerName)!
      if (keys.generation !== c.keyGeneration && !keys.has(c.kid)) return false
    }
    return true
  }

  ready(): { ok: boolean; issuers: Record<string, boolean> } {
    const issuers: Record<string, boolean> = {}
    for (const k of this.jwtKeys()) issuers[k.name] = k.ready()
    return { ok: Object.values(issuers).every(Boolean), issuers }
  }
}

function tryDecodeJwt(token: string): DecodedJwt | undefined {
  try {
    return decodeJwt(token)
  } catch {
    return undefined
  }
}
