/**
 * The downstream credential for one request: picks the route's strategy for this caller and
 * produces the headers the upstream receives. The caller's token leaves the gateway only as the
 * `subject_token` of an exchange at its own AS, or under the explicit `passthrough` + `unsafe`
 * configuration. A failed token request is an error, never a reason to fall back to another
 * strategy or to the caller's token.
 */
import { randomUUID } from 'node:crypto'
import { SignJWT } from 'jose'
import type { Logger } from 'pino'
import type { IssuerMetadata } from '../auth/jwks.js'
import type { Principal } from '../auth/principal.js'
import type { SharedStore } from '../store/shared-store.js'
import type {
  ClientCredentialsStrategy,
  CredentialStrategy,
  IdentityChainingStrategy,
  IdentityHeadersStrategy,
  RuntimeCredentials,
  TokenExchangeStrategy,
} from '../config/credentials.js'
import type { RuntimeIssuer, RuntimeRoute } from '../config/load.js'
import { LruCache } from '../store/lru.js'
import { GatewayError } from '../errors.js'
import { importPrivateKey, OAuthClient, OAuthRequestError, type SigningKey } from '../oauth/client.js'
import type { Metrics } from '../observability/metrics.js'
import { cacheKey, CredentialCache, type Cached, type CacheSource } from './cache.js'
import { acceptTokenResponse, InvalidTokenResponse, TOKEN_TYPE_URN, digestOf, type Expectation, type IssuedToken } from './issued.js'

const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'

/** What the credential stage did, for the audit line. Never the credential itself. */
export interface CredentialRecord {
  strategy: string
  /** `jti` of the downstream token, else its SHA-256 digest (base64url). */
  tokenId?: string
  tokenDigest?: string
  /** issued (by the AS for this request), memory or shared (cache layer that had it). */
  source?: 'issued' | 'memory' | 'shared'
}

/** RFC 7523 §2.1: an assertion as an authorization grant. */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer'

type TokenRequestStrategy = TokenExchangeStrategy | IdentityChainingStrategy | ClientCredentialsStrategy

export interface Caller {
  principal: Principal
  /** The inbound bearer token, as verified by the auth stage. */
  token: string
}

export interface UpstreamCredential {
  headers: Record<string, string>
  record: CredentialRecord
}

export interface CredentialBrokerDeps {
  issuers: ReadonlyMap<string, RuntimeIssuer>
  /** RFC 8414 metadata of an issuer, for its token endpoint (auth/jwks.ts IssuerKeys.discover). */
  discover: (issuerName: string) => Promise<IssuerMetadata>
  store: SharedStore
  encryptionKey: Buffer | undefined
  metrics: Metrics
  logger: Logger
  /** Issuer (`iss`) of identity JWTs: the gateway's public URL. */
  publicUrl: string
  now?: () => number
}

type Outcome = 'ok' | 'unavailable' | 'refused' | 'forbidden' | 'invalid-response' | 'error'

function credentialOf(s: TokenRequestStrategy, { issued }: Cached, source: CacheSource): UpstreamCredential {
  return {
    headers: { authorization: `Bearer ${issued.token}` },
    record: { strategy: s.kind, ...(issued.tokenId ? { tokenId: issued.tokenId } : { tokenDigest: issued.digest }), source },
  }
}

const isLoopback = (host: string) => host === 'localhost' || host === '[::1]' || /^127\./.test(host)

export class CredentialBroker {
  readonly #deps: CredentialBrokerDeps
  readonly #now: () => number
  readonly #cache: CredentialCache
  readonly #clients = new Map<string, OAuthClient>()
  readonly #identityKeys = new Map<IdentityHeadersStrategy, Promise<SigningKey>>()
  readonly #keys = new WeakMap<TokenRequestStrategy, LruCache<string>>()

  constructor(deps: CredentialBrokerDeps) {
    this.#deps = deps
    this.#now = deps.now ?? Date.now
    this.#cache = new CredentialCache({ store: deps.store, encryptionKey: deps.encryptionKey, metrics: deps.metrics, now: this.#now })
  }

  /** The first strategy whose `when` fits; none fitting is a refusal, not "send nothing". */
  static select(credentials: RuntimeCredentials, principal: Principal): CredentialStrategy | undefined {
    return credentials.strategies.find((s) => s.when === 'any' || (s.when === 'user') === principal.userPresent)
  }

  async obtain(route: RuntimeRoute, caller: Caller): Promise<UpstreamCredential | undefined> {
    if (!route.credentials) return undefined
    const strategy = CredentialBroker.select(route.credentials, caller.principal)
    if (!strategy) {
      throw new GatewayError('GW_EXCHANGE_FORBIDDEN', { detail: `no credential strategy for a caller with userPresent=${caller.principal.userPresent}` })
    }
    switch (strategy.kind) {
      case 'token-exchange':
        return this.#exchange(route, strategy, caller)
      case 'identity-chaining':
        return this.#chain(route, strategy, caller)
      case 'client-credentials':
        return this.#clientCredentials(route, strategy, caller)
      case 'static':
      case 'passthrough':
        return this.#fixed(strategy, caller)
      case 'identity-headers':
        return this.#identity(route, strategy, caller.principal)
    }
  }

  /**
   * The credential without a promise when it needs no token request: a token exchange whose
   * result is in the in-process cache, or a static/passthrough header. `undefined` means "ask
   * `obtain`", which then counts the cache miss and does the rest exactly as before. Refusals
   * (no strategy, may_act, scopes) throw here as they would there.
   */
  cachedSync(route: RuntimeRoute, caller: Caller): UpstreamCredential | undefined {
    if (!route.credentials) return undefined
    const strategy = CredentialBroker.select(route.credentials, caller.principal)
    if (!strategy) return undefined
    switch (strategy.kind) {
      case 'token-exchange': {
        const { key } = this.#exchangeRequest(strategy, caller)
        const hit = this.#cache.peek(key)
        return hit && credentialOf(strategy, hit, 'memory')
      }
      case 'static':
      case 'passthrough':
        return this.#fixed(strategy, caller)
      default:
        return undefined
    }
  }

  #fixed(strategy: Extract<CredentialStrategy, { kind: 'static' | 'passthrough' }>, caller: Caller): UpstreamCredential {
    return strategy.kind === 'static'
      ? { headers: { [strategy.header]: strategy.scheme ? `${strategy.scheme} ${strategy.value.reveal()}` : strategy.value.reveal() }, record: { strategy: 'static' } }
      : { headers: { authorization: `Bearer ${caller.token}` }, record: { strategy: 'passthrough' } }
  }

  /** The checks and the cache key of a token exchange; synchronous, shared by both paths. */
  #exchangeRequest(s: TokenExchangeStrategy, caller: Caller) {
    const { principal } = caller
    const client = this.#client(s.issuer)
    // RFC 8693 §4.4: a subject token that names who may act for it and does not name us is not ours to exchange (TX-10).
    const mayAct = principal.claims.may_act as { sub?: unknown } | undefined
    if (mayAct && typeof mayAct === 'object' && mayAct.sub !== client.clientId) {
      throw new GatewayError('GW_EXCHANGE_FORBIDDEN', { detail: 'subject token may_act does not name mcp-warden' })
    }
    const scope = s.scopeMap ? narrowScope(s.scopeMap, principal.scopes) : undefined
    if (scope !== undefined && scope.length === 0) {
      throw new GatewayError('GW_EXCHANGE_FORBIDDEN', { detail: 'none of the caller scopes maps to an upstream scope' })
    }
    const key = this.#memoKey(s, caller, () =>
      cacheKey([
        s.kind,
        principal.issuer,
        principal.subject,
        client.clientId,
        s.resource ?? '',
        s.audience ?? '',
        scope?.join(' ') ?? '',
        s.requestedTokenType,
        s.actorToken ? 'actor' : '',
        digestOf(caller.token),
      ]),
    )
    return { client, scope, key }
  }

  async #exchange(route: RuntimeRoute, s: TokenExchangeStrategy, caller: Caller): Promise<UpstreamCredential> {
    const { principal } = caller
    const { client, scope, key } = this.#exchangeRequest(s, caller)
    const subjectTokenType = principal.tokenKind === 'jwt' ? s.subjectTokenType : 'access_token'
    return this.#cached(route, s, key, principal.expiresAt * 1000, async () => {
      const endpoint = await this.#tokenEndpoint(s.issuer)
      const fields: Record<string, string> = {
        grant_type: TOKEN_EXCHANGE_GRANT,
        subject_token: caller.token,
        subject_token_type: TOKEN_TYPE_URN[subjectTokenType],
        requested_token_type: TOKEN_TYPE_URN[s.requestedTokenType],
      }
      if (s.resource) fields.resource = s.resource
      if (s.audience) fields.audience = s.audience
      if (scope) fields.scope = scope.join(' ')
      if (s.actorToken) {
        // actor_token_type goes with actor_token and never alone (RFC 8693 §2.1, TX-03).
        fields.actor_token = await client.signAssertion(this.#deps.issuers.get(s.issuer)!.issuer)
        fields.actor_token_type = TOKEN_TYPE_URN.jwt
      }
      return this.#request(s.issuer, endpoint, fields, s, { requestedTokenType: s.requestedTokenType, subjectToken: caller.token, subject: principal.subject, audiences: audiencesOf(s) })
    })
  }

  /**
   * Identity chaining across trust domains (draft-ietf-oauth-identity-chaining, XDOM-06): the
   * home AS trades the caller's token for a JWT authorization grant whose audience is the target
   * AS; the target AS redeems it (RFC 7523 jwt-bearer) for a token to the target API. The grant is
   * used once and never cached; the final token is cached like an exchanged one.
   */
  async #chain(route: RuntimeRoute, s: IdentityChainingStrategy, caller: Caller): Promise<UpstreamCredential> {
    const { principal } = caller
    const target = this.#deps.issuers.get(s.targetIssuer)!
    const subjectTokenType = principal.tokenKind === 'jwt' ? s.subjectTokenType : 'access_token'
    const scope = [...s.scope].sort().join(' ')
    const key = cacheKey([s.kind, principal.issuer, principal.subject, this.#client(s.issuer).clientId, target.issuer, this.#client(s.targetIssuer).clientId, s.resource ?? '', s.audience ?? '', scope, digestOf(caller.token)])
    return this.#cached(route, s, key, principal.expiresAt * 1000, async () => {
      const grant = await this.#request(
        s.issuer,
        await this.#tokenEndpoint(s.issuer),
        {
          grant_type: TOKEN_EXCHANGE_GRANT,
          subject_token: caller.token,
          subject_token_type: TOKEN_TYPE_URN[subjectTokenType],
          requested_token_type: TOKEN_TYPE_URN.jwt,
          // The grant is for the target AS, not the API: its audience is that AS's issuer.
          audience: target.issuer,
          ...(scope ? { scope } : {}),
        },
        s,
        { requestedTokenType: 'jwt', subjectToken: caller.token, subject: principal.subject, audiences: [target.issuer] },
      )
      const fields: Record<string, string> = { grant_type: JWT_BEARER_GRANT, assertion: grant.token }
      if (s.resource) fields.resource = s.resource
      if (s.audience) fields.audience = s.audience
      if (scope) fields.scope = scope
      try {
        // The target domain may map the subject to its own identifier: sub is not compared.
        return await this.#request(s.targetIssuer, await this.#tokenEndpoint(s.targetIssuer), fields, s, { subjectToken: caller.token, audiences: audiencesOf(s) })
      } catch (e) {
        // A refused grant is a trust set-up problem between the domains, not the caller's token.
        if (e instanceof OAuthRequestError && (e.kind === 'invalid_grant' || e.kind === 'invalid_request' || e.kind === 'unsupported_grant_type' || e.kind === 'unauthorized_client')) {
          throw new GatewayError('GW_EXCHANGE_FAILED', { detail: `jwt-bearer at issuer ${s.targetIssuer}: ${e.kind}` })
        }
        throw e
      }
    })
  }

  async #request(issuerName: string, endpoint: string, fields: Record<string, string>, s: TokenRequestStrategy, expect: Omit<Expectation, 'now'>): Promise<IssuedToken> {
    const body = await this.#client(issuerName).postForm(endpoint, fields, s.timeoutMs)
    const issued = acceptTokenResponse(body, { ...expect, now: this.#now() })
    // The other domain's token must not be the one we presented either.
    if (fields.assertion !== undefined && issued.token === fields.assertion) throw new InvalidTokenResponse('the AS returned the assertion itself')
    return issued
  }

  async #clientCredentials(route: RuntimeRoute, s: ClientCredentialsStrategy, caller: Caller): Promise<UpstreamCredential> {
    const client = this.#client(s.issuer)
    const key = cacheKey([s.kind, client.clientId, s.resource ?? '', s.audience ?? '', [...s.scope].sort().join(' ')])
    return this.#cached(route, s, key, Infinity, async () => {
      const endpoint = await this.#tokenEndpoint(s.issuer)
      const fields: Record<string, string> = { grant_type: 'client_credentials' }
      if (s.resource) fields.resource = s.resource
      if (s.audience) fields.audience = s.audience
      if (s.scope.length > 0) fields.scope = s.scope.join(' ')
      // The caller's token is not sent, but it must not come back either.
      return this.#request(s.issuer, endpoint, fields, s, { subjectToken: caller.token, audiences: audiencesOf(s) })
    })
  }

  /**
   * The cache key of (strategy, caller token), computed once per token: every input of the key is
   * fixed by the strategy and the verified token, and two digests per request were a measurable
   * share of the hot path. Keyed by the exact token string, so a different token never hits; held
   * in process only, never longer than the token is valid.
   */
  #memoKey(s: TokenRequestStrategy, caller: Caller, compute: () => string): string {
    let keys = this.#keys.get(s)
    if (!keys) this.#keys.set(s, (keys = new LruCache<string>(10_000)))
    const now = this.#now()
    const known = keys.get(caller.token, now)
    if (known !== undefined) return known
    const key = compute()
    keys.set(caller.token, key, caller.principal.expiresAt * 1000 - now, now)
    return key
  }

  async #cached(route: RuntimeRoute, s: TokenRequestStrategy, key: string, notAfter: number, obtain: () => Promise<IssuedToken>): Promise<UpstreamCredential> {
    const { cached, source } = await this.#cache.get(key, async (): Promise<Cached> => {
      const started = performance.now()
      let outcome: Outcome = 'error'
      try {
        const issued = await obtain()
        outcome = 'ok'
        return { issued, reuseUntil: Math.min(issued.expiresAt - s.safetyMarginMs, notAfter) }
      } catch (e) {
        const err = this.#toGatewayError(e, s)
        outcome = outcomeOf(err, e)
        this.#deps.logger.warn({ event: 'credentials.failed', route: route.name, strategy: s.kind, issuer: s.issuer, outcome, detail: err.detail }, 'could not obtain an upstream credential')
        throw err
      } finally {
        const labels = { route: route.name, strategy: s.kind, outcome }
        this.#deps.metrics.credentialRequests.inc(labels)
        this.#deps.metrics.credentialRequestDuration.observe(labels, (performance.now() - started) / 1000)
      }
    })
    return credentialOf(s, cached, source)
  }

  #toGatewayError(e: unknown, s: TokenRequestStrategy): GatewayError {
    if (e instanceof GatewayError) return e
    if (e instanceof InvalidTokenResponse) return new GatewayError('GW_EXCHANGE_FAILED', { detail: `exchange_invalid_response: ${e.why}` })
    if (!(e instanceof OAuthRequestError)) return new GatewayError('GW_EXCHANGE_FAILED', { detail: 'token request failed', cause: e })
    const detail = `${s.kind} at issuer ${s.issuer}: ${e.kind}`
    if (e.kind === 'unreachable' || e.kind === 'timeout' || e.kind === 'temporarily_unavailable' || e.kind === 'server_error' || /^http-5/.test(e.kind)) {
      return new GatewayError('GW_EXCHANGE_UNAVAILABLE', { detail, retryAfter: 5 })
    }
    // RFC 8693 §2.2.2: the subject token was refused, so the caller must authenticate again (TX-07).
    if (s.kind !== 'client-credentials' && (e.kind === 'invalid_grant' || e.kind === 'invalid_request')) {
      return new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'exchange-refused', detail, description: 'The access token cannot be used for this upstream' })
    }
    if (e.kind === 'invalid_target' || e.kind === 'invalid_scope') return new GatewayError('GW_EXCHANGE_FORBIDDEN', { detail })
    return new GatewayError('GW_EXCHANGE_FAILED', { detail })
  }

  #client(issuerName: string): OAuthClient {
    let c = this.#clients.get(issuerName)
    if (!c) {
      // config/credentials.ts only accepts issuers that have a client registration.
      c = new OAuthClient(this.#deps.issuers.get(issuerName)!.client!)
      this.#clients.set(issuerName, c)
    }
    return c
  }

  /** From config or validated discovery only, never from a token or upstream (TX-12). */
  async #tokenEndpoint(issuerName: string): Promise<string> {
    const configured = this.#deps.issuers.get(issuerName)!.tokenEndpoint
    let endpoint = configured
    if (!endpoint) {
      try {
        endpoint = (await this.#deps.discover(issuerName)).token_endpoint
      } catch {
        throw new OAuthRequestError('discovery failed', 'unreachable')
      }
    }
    const u = endpoint ? URL.parse(endpoint) : null
    if (!u || (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopback(u.hostname)))) {
      throw new GatewayError('GW_EXCHANGE_FAILED', { detail: `issuer ${issuerName} has no usable https token endpoint` })
    }
    return u.href
  }

  async #identity(route: RuntimeRoute, s: IdentityHeadersStrategy, p: Principal): Promise<UpstreamCredential> {
    const facts: Record<string, string | undefined> = {
      subject: p.subject,
      agent: p.clientId,
      scopes: [...p.scopes].map(encodeURIComponent).join(' '),
      issuer: p.issuer,
      actor: p.actor,
    }
    const headers: Record<string, string> = {}
    for (const [fact, name] of Object.entries(s.headers)) {
      const v = facts[fact]
      // Always percent-encoded (scopes per item): unambiguous, and never a header injection.
      if (v !== undefined && name) headers[name] = fact === 'scopes' ? v : encodeURIComponent(v)
    }
    if (!s.jwt) return { headers, record: { strategy: 'identity-headers' } }
    const j = s.jwt
    let key = this.#identityKeys.get(s)
    if (!key) this.#identityKeys.set(s, (key = importPrivateKey(j.key.reveal(), j.algorithm)))
    const now = Math.floor(this.#now() / 1000)
    const jti = randomUUID()
    const jwt = await new SignJWT({ client_id: p.clientId, scope: [...p.scopes].join(' '), ...(p.actor ? { act: p.claims.act } : {}) })
      .setProtectedHeader({ alg: j.algorithm, typ: 'JWT', ...(j.keyId ? { kid: j.keyId } : {}) })
      .setIssuer(this.#deps.publicUrl)
      .setSubject(p.subject)
      .setAudience(j.audience ?? route.upstream.url)
      .setIssuedAt(now)
      .setExpirationTime(Math.min(now + j.ttlSec, p.expiresAt))
      .setJti(jti)
      .sign(await key)
    headers[j.header] = jwt
    return { headers, record: { strategy: 'identity-headers', tokenId: jti } }
  }
}

const audiencesOf = (s: TokenRequestStrategy): string[] => [s.resource, s.audience].filter((a) => a !== undefined)

/** Upstream scopes for the caller's scopes, sorted so equal sets share a cache entry. */
export function narrowScope(map: ReadonlyMap<string, readonly string[]>, held: ReadonlySet<string>): string[] {
  const out = new Set<string>()
  for (const s of held) for (const u of map.get(s) ?? []) out.add(u)
  return [...out].sort()
}

function outcomeOf(err: GatewayError, cause: unknown): Outcome {
  if (cause instanceof InvalidTokenResponse) return 'invalid-response'
  switch (err.code) {
    case 'GW_EXCHANGE_UNAVAILABLE':
      return 'unavailable'
    case 'GW_AUTH_INVALID_TOKEN':
      return 'refused'
    case 'GW_EXCHANGE_FORBIDDEN':
      return 'forbidden'
    default:
      return 'error'
  }
}
