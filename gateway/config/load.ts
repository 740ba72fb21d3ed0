/**
 * gateway.yaml → frozen RuntimeConfig. Pipeline: parse with positions → ${ENV} → schema
 * (all errors at once, unknown keys refused) → semantic checks → normalise (durations to ms,
 * URLs, secrets resolved) → deep freeze. Nothing downstream ever sees raw YAML.
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { dirname, resolve } from 'node:path'
import { ConfigError, type ConfigProblem } from '../errors.js'
import { GatewayConfigSchema, type GatewayConfigInput, type IssuerInput, type RouteInput, type SecretSourceInput } from './schema.js'
import { normalizeCredentials, type RuntimeCredentials } from './credentials.js'
import { normalizeAudit, type RuntimeAudit } from './audit.js'
import { normalizeEgress, type RuntimeEgress } from './egress.js'
import { normalizeRedisConnection, type RuntimeRedis } from './redis.js'
import { resolveSecret, Secret } from './secrets.js'
import { parseDuration, parseSize } from './units.js'
import { parseYamlSource, problemAt, validateAgainst, type YamlSource } from './yaml-source.js'

export const MAX_CLOCK_SKEW_MS = 60_000
export const PRM_WELL_KNOWN = '/.well-known/oauth-protected-resource'

export interface RuntimeIssuer {
  readonly name: string
  readonly issuer: string
  readonly jwksUri: string | undefined
  readonly discovery: boolean
  readonly algorithms: readonly string[]
  readonly extraAudiences: readonly string[]
  readonly clockSkewSec: number
  readonly requireTyp: 'at+jwt' | 'any'
  readonly strictAudience: boolean
  readonly maxTokenSize: number
  readonly tokenEndpoint: string | undefined
  readonly introspectionEndpoint: string | undefined
  readonly client: RuntimeOAuthClient | undefined
  /** Which tokens go where: docs/introspection.md. */
  readonly validation: 'jwt' | 'introspection' | 'both'
  readonly introspection: RuntimeIntrospection
  readonly jwks: { readonly cooldownMs: number; readonly maxAgeMs: number; readonly maxStaleMs: number; readonly timeoutMs: number }
  readonly approval: RuntimeApproval | undefined
  /** RFC 9449 sender-constrained tokens (docs/dpop.md); undefined = a token with cnf is refused. */
  readonly dpop?: RuntimeDpop | undefined
}

export interface RuntimeDpop {
  readonly required: boolean
  readonly algorithms: readonly string[]
  readonly maxAgeSec: number
  readonly nonce: boolean
  readonly nonceRotationMs: number
}

/** DPOP-03: proofs older than this are never accepted, whatever the config says. */
export const MAX_DPOP_AGE_SEC = 300

export interface RuntimeApproval {
  readonly channel: 'ciba' | 'webhook'
  readonly backchannelEndpoint: string | undefined
  readonly loginHintClaim: string
  readonly scope: string
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly exchangeSubject: 'caller' | 'approved'
  /** RFC 9396 authorization_details sent to the AS (ciba). */
  readonly authorizationDetails: 'none' | 'digest' | 'arguments'
  /** RFC 8707 resource of the backchannel request: the route's own, a fixed URI, or none. */
  readonly resource: { readonly kind: 'route' } | { readonly kind: 'uri'; readonly uri: string } | undefined
  /** The AS's binding_message rule (compiled without flags, as oidc-provider's literal). */
  readonly bindingMessagePattern: RegExp
  readonly webhook: { readonly url: string; readonly secret: Secret; readonly maxSkewMs: number } | undefined
}

export interface RuntimeIntrospection {
  readonly timeoutMs: number
  readonly maxConcurrent: number
  readonly maxQueued: number
  readonly cache: { readonly enabled: boolean; readonly maxTtlMs: number; readonly negativeTtlMs: number }
}

/** RFC 7662 §4 leaves the bound to us; the checklist (INT-06) caps negative caching at 10s. */
export const MAX_NEGATIVE_TTL_MS = 10_000
export const RECOMMENDED_MAX_TTL_MS = 60_000

export interface RuntimeOAuthClient {
  readonly id: string
  readonly auth: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt'
  readonly secret: Secret | undefined
  readonly privateKey: Secret | undefined
  readonly keyId: string | undefined
  readonly algorithm: string
}

export interface RuntimeRoute {
  readonly name: string
  /**
   * mcp: an MCP server on an exact path. api: a plain HTTP API under a path prefix. egress: an
   * allow-listed API behind the egress listener (config/egress.ts), never on the public listener.
   */
  readonly kind: 'mcp' | 'api' | 'egress'
  readonly path: string
  readonly upstream: RuntimeUpstream
  /** Canonical resource identifier (RFC 8707 / RFC 9728 `resource`). */
  readonly resource: string
  readonly resourceName: string
  /** Absolute URL of this route's protected-resource metadata (the `resource_metadata` challenge value). */
  readonly metadataUrl: string
  /** Path on the gateway where that metadata is served. */
  readonly metadataPath: string
  readonly issuers: readonly string[]
  readonly scopesSupported: readonly string[]
  readonly requiredScopes: readonly string[]
  /** The `scope` of 401 challenges: what a first token needs; step-up asks for the rest. */
  readonly challengeScopes: readonly string[]
  readonly allowedOrigins: ReadonlySet<string>
  readonly bodyLimit: number
  readonly streams: { readonly maxDurationMs: number; readonly maxPerCaller: number }
  /** How the upstream credential is obtained; undefined = the upstream receives none. */
  readonly credentials: RuntimeCredentials | undefined
  /** egress only: loopback/private/link-local ranges (CIDR) the target may resolve to. */
  readonly allowAddresses: readonly string[]
  /** Also serve 2024-11-05 HTTP+SSE clients at <path>/sse and <path>/message (gateway/transports/legacy/, pipeline/legacy-clients.ts). */
  readonly legacyClients?: boolean
  /** MCP routes: how 2026-07-28 clients are served (gateway/transports/modern/); undefined = caller. */
  readonly modernClients?: 'caller' | 'request' | 'native' | 'refuse'
  /**
   * What the route's challenges offer (docs/dpop.md): set when some issuer accepts DPoP.
   * `bearer` false when only DPoP-bound tokens are accepted (then no Bearer challenge is sent).
   */
  readonly dpop?: { readonly algorithms: readonly string[]; readonly bearer: boolean; readonly required: boolean } | undefined
  /** Tool-definition pinning (gateway/pinning/); undefined = off. */
  readonly pinning?: 'observe' | 'enforce' | undefined
}

/**
 * Where a route's MCP server is. `http` is proxied directly; `sse` and `stdio` are served by an
 * in-process bridge (gateway/transports/bridge/) that speaks Streamable HTTP toward the proxy.
 */
export interface RuntimeUpstream {
  readonly kind: 'http' | 'sse' | 'stdio'
  /** The Streamable HTTP URL (http), the legacy SSE endpoint (sse), or `stdio://<route>` (stdio, not a network address). */
  readonly url: string
  readonly timeoutMs: number
  readonly idleTimeoutMs: number
  readonly connections: number
  readonly stdio: RuntimeStdio | undefined
  /** Bridged kinds only. */
  readonly maxSessions: number
  readonly sessionIdleMs: number
  /** PEM of an extra CA trusted for this https upstream (certificates are always verified). */
  readonly ca: string | undefined
}

export interface RuntimeStdio {
  readonly command: string
  readonly args: readonly string[]
  readonly env: ReadonlyMap<string, Secret>
  readonly cwd: string | undefined
  readonly mode: 'per-session' | 'shared'
  readonly backoffMs: number
  readonly maxBackoffMs: number
}

export interface RuntimePolicies {
  /** Absolute path of the policy directory. */
  readonly dir: string
  readonly watch: boolean
  readonly claims: { readonly groups: string | undefined; readonly roles: string | undefined }
  readonly rawArguments: boolean
  /** Rate limits when Redis cannot answer (docs/limits.md). */
  readonly limitsOnRedisDown: 'closed' | 'open' | 'local'
  /** Replicas sharing the limits (onRedisDown: local charges floor(limit / replicas) each). */
  readonly limitsReplicas: number
}

/** observability.tracing; unset fields fall back to the OTEL_* environment (observability/tracing.ts). */
export interface RuntimeTracing {
  readonly enabled: boolean
  readonly endpoint: string | undefined
  readonly protocol: 'http/protobuf' | 'grpc' | undefined
  readonly ratio: number | undefined
  readonly parentBased: boolean | undefined
  readonly serviceName: string | undefined
  readonly principal: readonly ('subject' | 'client' | 'issuer' | 'actor')[]
}

export interface RuntimeConfig {
  readonly file: string
  readonly baseDir: string
  readonly server: {
    readonly publicUrl: string
    readonly listen: { readonly host: string; readonly port: number }
    readonly allowedHosts: ReadonlySet<string>
    /** false, a hop count or the proxies' addresses/CIDRs (Fastify's trustProxy); never `true`. */
    readonly trustProxy: false | number | readonly string[]
    readonly shutdownGraceMs: number
    readonly maxHeaderSize: number
    /** Failed-authentication budget per client address (docs/limits.md); undefined = off. */
    readonly authFailures: { readonly limit: number; readonly perMs: number } | undefined
  }
  readonly admin: { readonly listen: { readonly host: string; readonly port: number } }
  readonly issuers: ReadonlyMap<string, RuntimeIssuer>
  readonly routes: readonly RuntimeRoute[]
  /** The egress listener for the MCP server's own API calls (docs/egress.md). */
  readonly egress: RuntimeEgress | undefined
  readonly cache: { readonly redis: RuntimeRedis | undefined; readonly memoryMaxEntries: number }
  readonly logging: { readonly level: string }
  readonly observability: { readonly tracing: RuntimeTracing }
  /** Audit chain, checkpoints and sinks (docs/audit.md). */
  readonly audit: RuntimeAudit
  readonly sessions: { readonly ttlMs: number; readonly signingKey: Secret | undefined }
  /** Policy engine settings; undefined = no policy stage (every authenticated call forwarded). */
  readonly policies: RuntimePolicies | undefined
  /** Start-up warnings (insecure development settings); logged once by main. */
  readonly warnings: readonly string[]
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv
  /** Override the listener ports (tests, demo). */
  overrides?: (input: GatewayConfigInput) => void
}

export interface LoadResult {
  config: RuntimeConfig
  warnings: ConfigProblem[]
}

export function loadConfigFile(file: string, options: LoadOptions = {}): LoadResult {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `cannot read file: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, severity: 'error' }])
  }
  return loadConfigText(file, text, options)
}

export function loadConfigText(file: string, text: string, options: LoadOptions = {}): LoadResult {
  const env = options.env ?? process.env
  const problems: ConfigProblem[] = []
  const src = parseYamlSource(file, text, env, problems)
  if (!src) throw new ConfigError(problems)
  if (src.value === null || typeof src.value !== 'object' || Array.isArray(src.value)) {
    throw new ConfigError([...problems, problemAt(src, [], 'the document must be a mapping')])
  }
  validateAgainst(src, GatewayConfigSchema, problems)
  if (problems.some((p) => p.severity === 'error')) throw new ConfigError(problems)
  const input = src.value as GatewayConfigInput
  options.overrides?.(input)
  const config = normalize(src, input, dirname(resolve(file)), env, problems)
  if (problems.some((p) => p.severity === 'error')) throw new ConfigError(problems)
  return { config: deepFreeze(config), warnings: problems.filter((p) => p.severity === 'warning') }
}

const isLoopback = (host: string): boolean => host === 'localhost' || host === '[::1]' || /^127\./.test(host)

function normalize(src: YamlSource, input: GatewayConfigInput, baseDir: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[]): RuntimeConfig {
  const warnings: string[] = []
  const publicUrl = new URL(input.server.publicUrl)
  const origin = publicUrl.origin
  if (publicUrl.protocol === 'http:' && !isLoopback(publicUrl.hostname)) {
    problems.push(problemAt(src, ['server', 'publicUrl'], 'publicUrl must be https unless it is a loopback address'))
  }

  const issuers = new Map<string, RuntimeIssuer>()
  for (const [name, iss] of Object.entries(input.issuers)) issuers.set(name, normalizeIssuer(src, name, iss, baseDir, env, problems, warnings))

  const routes: RuntimeRoute[] = []
  const seenPaths = new Map<string, number>()
  const seenNames = new Map<string, number>()
  const seenMetadata = new Map<string, number>()
  input.routes.forEach((r, i) => {
    const at = (...p: (string | number)[]) => ['routes', i, ...p]
    if (seenNames.has(r.name)) problems.push(problemAt(src, at('name'), `duplicate route name "${r.name}" (first at routes[${seenNames.get(r.name)}])`))
    seenNames.set(r.name, i)
    const dupPath = seenPaths.has(r.path)
    if (dupPath) problems.push(problemAt(src, at('path'), `duplicate route path "${r.path}" (first at routes[${seenPaths.get(r.path)}])`))
    seenPaths.set(r.path, i)
    if (r.path.startsWith('/.well-known/')) problems.push(problemAt(src, at('path'), 'a route path may not be under /.well-known/'))
    // Bridges speak legacy revisions only: a 2026-07-28 request forwarded to one as is could only fail.
    if (r.modernClients === 'native' && !r.upstream.url) problems.push(problemAt(src, at('modernClients'), 'modernClients: native needs a Streamable HTTP upstream (url) that speaks 2026-07-28; sse and stdio upstreams are bridged (use caller or request)'))
    r.issuers.forEach((name, j) => {
      if (!issuers.has(name)) problems.push(problemAt(src, at('issuers', j), `unknown issuer "${name}" (known: ${[...issuers.keys()].join(', ')})`))
    })
    if (r.scopesSupported.includes('offline_access')) {
      problems.push(problemAt(src, at('scopesSupported'), 'offline_access should not be advertised (MCP scope minimisation)', 'warning'))
    }
    const credentials = normalizeCredentials(r.credentials, { src, at: at('credentials'), routeIssuers: r.issuers, issuers: input.issuers, baseDir, env, problems })
    const route = { ...normalizeRoute(src, r, i, origin, baseDir, env, problems, warnings), credentials, allowAddresses: [], dpop: routeDpop(src, r, issuers, at, problems) }
    const sharer = routes.findIndex((o) => o.resource === route.resource)
    if (sharer !== -1 && !dupPath && !(r.sharedResource && input.routes[sharer]!.sharedResource)) {
      problems.push(problemAt(src, at('resource'), `two routes share one resource identifier (routes[${sharer}]); set sharedResource: true on both if one token is to be valid on both`))
    } else if (seenMetadata.has(route.metadataPath) && !dupPath) {
      problems.push(problemAt(src, at('resource'), `this route's metadata path ${route.metadataPath} is already served for routes[${seenMetadata.get(route.metadataPath)}]`))
    }
    seenMetadata.set(route.metadataPath, i)
    routes.push(route)
  })
  // A route's legacy client paths (gateway/transports/legacy/, pipeline/legacy-clients.ts) must not shadow another route.
  routes.forEach((r, i) => {
    if (!r.legacyClients) return
    for (const p of [`${r.path}/sse`, `${r.path}/message`]) if (seenPaths.has(p)) problems.push(problemAt(src, ['routes', i, 'legacyClients'], `${p} is already the path of routes[${seenPaths.get(p)}]`))
  })

  let redis: RuntimeConfig['cache']['redis']
  if (input.cache.redis) {
    const r = input.cache.redis
    const connection = normalizeRedisConnection(r, { src, baseDir, env, problems, warnings })
    // Checked even when the connection is not: one run reports both.
    const key = encryptionKey(src, r.encryptionKey, baseDir, env, problems)
    if (connection) redis = { connection, keyPrefix: r.keyPrefix, commandTimeoutMs: parseDuration(r.commandTimeout), encryptionKey: key }
    if (redis && !redis.encryptionKey && routes.some((rt) => rt.credentials?.strategies.some((st) => st.kind === 'token-exchange' || st.kind === 'identity-chaining' || st.kind === 'client-credentials'))) {
      problems.push(problemAt(src, ['cache', 'redis'], 'no encryptionKey: tokens issued for upstreams are cached per replica only, not in Redis', 'warning'))
    }
  } else {
    warnings.push('no cache.redis configured: caches are per replica (in memory)')
  }

  const policies: RuntimePolicies | undefined = input.policies && {
    dir: resolve(baseDir, input.policies.dir),
    watch: input.policies.watch,
    claims: { groups: input.policies.claims.groups, roles: input.policies.claims.roles },
    rawArguments: input.policies.audit.rawArguments,
    limitsOnRedisDown: input.policies.limits.onRedisDown,
    limitsReplicas: input.policies.limits.replicas ?? 1,
  }
  if (input.policies?.limits.onRedisDown === 'local' && input.policies.limits.replicas === undefined) {
    problems.push(problemAt(src, ['policies', 'limits', 'onRedisDown'], 'onRedisDown: local needs policies.limits.replicas (the number of replicas sharing the limits)'))
  }
  if (!policies) warnings.push('no policies configured: every authenticated request is forwarded (add a policies: section for per-tool decisions)')
  const egress = input.egress && normalizeEgress(input.egress, { src, issuers: input.issuers, baseDir, env, problems })

  const allowedHosts = new Set((input.server.allowedHosts ?? [publicUrl.host]).map((h) => h.toLowerCase()))
  return {
    file: src.file,
    baseDir,
    server: {
      publicUrl: origin,
      listen: { host: input.server.listen.host, port: input.server.listen.port },
      allowedHosts,
      trustProxy: trustProxyOf(input.server.trustProxy, src, problems),
      shutdownGraceMs: parseDuration(input.server.shutdownGrace),
      maxHeaderSize: parseSize(input.server.maxHeaderSize),
      authFailures: input.server.authFailures && { limit: input.server.authFailures.limit, perMs: parseDuration(input.server.authFailures.per) },
    },
    admin: { listen: { host: input.admin.listen.host, port: input.admin.listen.port } },
    issuers,
    routes,
    egress,
    cache: { redis, memoryMaxEntries: input.cache.memory.maxEntries },
    logging: { level: input.logging.level },
    observability: {
      tracing: {
        enabled: input.observability.tracing.enabled,
        endpoint: input.observability.tracing.endpoint,
        protocol: input.observability.tracing.protocol,
        ratio: input.observability.tracing.sampler.ratio,
        parentBased: input.observability.tracing.sampler.parentBased,
        serviceName: input.observability.tracing.serviceName,
        principal: input.observability.tracing.principal,
      },
    },
    audit: normalizeAudit(input.audit, { src, baseDir, env, problems, warnings }),
    sessions: { ttlMs: parseDuration(input.sessions.ttl), signingKey: sessionSigningKey(src, input.sessions.signingKey, baseDir, env, problems, warnings) },
    policies,
    warnings,
  }
}

function normalizeClient(src: YamlSource, name: string, iss: IssuerInput, baseDir: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[], warnings: string[]): RuntimeOAuthClient | undefined {
  const c = iss.client
  if (!c) return undefined
  const at = (...p: string[]) => ['issuers', name, 'client', ...p]
  const resolve = (field: 'secret' | 'privateKey'): Secret | undefined => {
    const source = c[field]
    if (!source) return undefined
    const r = resolveSecret(source, baseDir, env)
    if (!r.ok) {
      problems.push(problemAt(src, at(field), r.message))
      return undefined
    }
    if (r.inline) warnings.push(`issuers.${name}.client.${field} is written inline; use fromEnv or fromFile outside development`)
    return r.secret
  }
  if (c.auth === 'private_key_jwt' && !c.privateKey) problems.push(problemAt(src, at('auth'), 'private_key_jwt needs client.privateKey'))
  if (c.auth !== 'private_key_jwt' && !c.secret) problems.push(problemAt(src, at('auth'), `${c.auth} needs client.secret`))
  return { id: c.id, auth: c.auth, secret: resolve('secret'), privateKey: resolve('privateKey'), keyId: c.keyId, algorithm: c.algorithm }
}

function normalizeIssuer(src: YamlSource, name: string, iss: IssuerInput, baseDir: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[], warnings: string[]): RuntimeIssuer {
  const at = (...p: string[]) => ['issuers', name, ...p]
  const clockSkewMs = parseDuration(iss.clockSkew)
  if (clockSkewMs > MAX_CLOCK_SKEW_MS) problems.push(problemAt(src, at('clockSkew'), 'clock skew may be at most 60s (RFC 9068 §4)'))
  let issuerUrl: URL | undefined
  try {
    issuerUrl = new URL(iss.issuer)
  } catch {
    problems.push(problemAt(src, at('issuer'), 'issuer must be an absolute URL'))
  }
  if (issuerUrl && issuerUrl.protocol !== 'https:') {
    if (issuerUrl.protocol === 'http:' && isLoopback(issuerUrl.hostname)) warnings.push(`issuer ${name} uses plain http (loopback only, development)`)
    else problems.push(problemAt(src, at('issuer'), 'issuer must be https (plain http is accepted for loopback development only)'))
  }
  if (iss.jwksUri) {
    const u = new URL(iss.jwksUri)
    if (u.protocol !== 'https:' && !isLoopback(u.hostname)) problems.push(problemAt(src, at('jwksUri'), 'jwksUri must be https'))
  }
  if (iss.discovery === false && !iss.jwksUri && iss.validation !== 'introspection') problems.push(problemAt(src, at(), 'set jwksUri, or enable discovery'))
  const introspection = normalizeIntrospection(src, name, iss, problems, warnings)
  if (iss.requireTyp === 'any') warnings.push(`issuer ${name}: typ check relaxed (requireTyp: any), a documented deviation from RFC 9068`)
  return {
    name,
    issuer: iss.issuer,
    jwksUri: iss.jwksUri,
    discovery: iss.discovery ?? !iss.jwksUri,
    algorithms: iss.algorithms,
    extraAudiences: iss.audience ?? [],
    clockSkewSec: Math.round(clockSkewMs / 1000),
    requireTyp: iss.requireTyp,
    strictAudience: iss.strictAudience,
    maxTokenSize: parseSize(iss.maxTokenSize),
    tokenEndpoint: iss.tokenEndpoint,
    introspectionEndpoint: iss.introspectionEndpoint,
    client: normalizeClient(src, name, iss, baseDir, env, problems, warnings),
    validation: iss.validation,
    introspection,
    approval: normalizeApproval(src, name, iss, baseDir, env, problems, warnings),
    dpop: normalizeDpop(src, iss, at, problems),
    jwks: {
      cooldownMs: parseDuration(iss.jwks.cooldown),
      maxAgeMs: parseDuration(iss.jwks.maxAge),
      maxStaleMs: parseDuration(iss.jwks.maxStale),
      timeoutMs: parseDuration(iss.jwks.timeout),
    },
  }
}

function normalizeApproval(src: YamlSource, name: string, iss: IssuerInput, baseDir: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[], warnings: string[]): RuntimeApproval | undefined {
  const a = iss.approval
  if (!a) return undefined
  const at = (...p: string[]) => ['issuers', name, 'approval', ...p]
  if (a.channel === 'ciba' && !iss.client) problems.push(problemAt(src, at('channel'), 'ciba needs client credentials (issuers.<name>.client): mcp-warden is the CIBA client'))
  if (a.channel === 'ciba' && !a.scope.split(' ').includes('openid')) problems.push(problemAt(src, at('scope'), 'a CIBA request must include the openid scope'))
  if (a.channel === 'webhook' && a.exchangeSubject === 'approved') problems.push(problemAt(src, at('exchangeSubject'), 'exchangeSubject: approved needs the ciba channel (a webhook approval issues no token)'))
  if (a.channel === 'webhook' && !a.webhook) problems.push(problemAt(src, at('channel'), 'webhook needs approval.webhook (url, secret)'))
  let webhook: RuntimeApproval['webhook']
  if (a.webhook) {
    const r = resolveSecret(a.webhook.secret, baseDir, env)
    if (!r.ok) problems.push(problemAt(src, at('webhook', 'secret'), r.message))
    else {
      if (r.inline) warnings.push(`issuers.${name}.approval.webhook.secret is written inline; use fromEnv or fromFile outside development`)
      if (!r.secret.placeholder && r.secret.reveal().length < 32) problems.push(problemAt(src, at('webhook', 'secret'), 'the webhook secret must be at least 32 characters'))
      webhook = { url: a.webhook.url, secret: r.secret, maxSkewMs: parseDuration(a.webhook.maxSkew) }
    }
  }
  let resource: RuntimeApproval['resource']
  if (a.resource === 'route') resource = { kind: 'route' }
  else if (a.resource !== undefined) {
    const u = URL.parse(a.resource)
    if (!u || u.hash) problems.push(problemAt(src, at('resource'), 'resource must be `route` or an absolute URI without a fragment (RFC 8707 §2)'))
    else resource = { kind: 'uri', uri: a.resource }
  }
  if (a.exchangeSubject === 'approved' && !resource) warnings.push(`issuers.${name}.approval: exchangeSubject: approved without approval.resource: the approved token is not audience-bound to the route; set resource: route if the AS knows the route`)
  let bindingMessagePattern = /^[a-zA-Z0-9-._+/!?#]{1,20}$/
  try {
    bindingMessagePattern = new RegExp(a.bindingMessagePattern)
  } catch (e) {
    problems.push(problemAt(src, at('bindingMessagePattern'), `not a valid regular expression: ${(e as Error).message}`))
  }
  return {
    channel: a.channel,
    backchannelEndpoint: a.backchannelEndpoint,
    loginHintClaim: a.loginHintClaim,
    scope: a.scope,
    intervalMs: parseDuration(a.interval),
    timeoutMs: parseDuration(a.timeout),
    exchangeSubject: a.exchangeSubject,
    authorizationDetails: a.authorizationDetails,
    resource,
    bindingMessagePattern,
    webhook,
  }
}

function normalizeIntrospection(src: YamlSource, name: string, iss: IssuerInput, problems: ConfigProblem[], warnings: string[]): RuntimeIntrospection {
  const at = (...p: string[]) => ['issuers', name, ...p]
  const i = iss.introspection
  const maxTtlMs = parseDuration(i.cache.maxTtl)
  const negativeTtlMs = parseDuration(i.cache.negativeTtl)
  if (iss.validation !== 'jwt') {
    if (!iss.client) problems.push(problemAt(src, at('validation'), 'introspection needs client credentials (issuers.<name>.client, RFC 7662 §2.1)'))
    if (iss.discovery === false && !iss.introspectionEndpoint) problems.push(problemAt(src, at('validation'), 'introspection needs introspectionEndpoint, or discovery'))
  }
  if (iss.introspectionEndpoint) {
    const u = new URL(iss.introspectionEndpoint)
    if (u.protocol !== 'https:' && !isLoopback(u.hostname)) problems.push(problemAt(src, at('introspectionEndpoint'), 'introspectionEndpoint must be https'))
  }
  if (negativeTtlMs > MAX_NEGATIVE_TTL_MS) problems.push(problemAt(src, at('introspection', 'cache', 'negativeTtl'), 'negativeTtl may be at most 10s'))
  if (maxTtlMs > RECOMMENDED_MAX_TTL_MS) warnings.push(`issuer ${name}: introspection cache maxTtl above 60s; a revoked token keeps working that long`)
  return { timeoutMs: parseDuration(i.timeout), maxConcurrent: i.maxConcurrent, maxQueued: i.maxQueued, cache: { enabled: i.cache.enabled, maxTtlMs, negativeTtlMs } }
}

/** Issued upstream tokens are bearer tokens: Redis only ever holds them sealed with this key. */
function sessionSigningKey(src: YamlSource, source: SecretSourceInput | undefined, baseDir: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[], warnings: string[]): Secret | undefined {
  if (!source) return undefined
  const at = ['sessions', 'signingKey']
  const r = resolveSecret(source, baseDir, env)
  if (!r.ok) {
    problems.push(problemAt(src, at, r.message))
    return undefined
  }
  if (r.inline) warnings.push('sessions.signingKey is written inline; use fromEnv or fromFile outside development')
  // HMAC-SHA256 under a short key is only as strong as the key.
  if (Buffer.byteLength(r.secret.reveal()) < 32) problems.push(problemAt(src, at, 'sessions.signingKey must be at least 32 characters (e.g. openssl rand -base64 32)'))
  return r.secret
}

function encryptionKey(src: YamlSource, source: SecretSourceInput | undefined, baseDir: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[]): Secret | undefined {
  if (!source) return undefined
  const at = ['cache', 'redis', 'encryptionKey']
  const r = resolveSecret(source, baseDir, env)
  if (!r.ok) {
    problems.push(problemAt(src, at, r.message))
    return undefined
  }
  if (r.secret.placeholder) return r.secret
  const text = r.secret.reveal()
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64')
  if (key.length !== 32) {
    problems.push(problemAt(src, at, 'encryptionKey must be 32 bytes: 64 hex digits or base64 of 32 bytes (e.g. openssl rand -base64 32)'))
    return undefined
  }
  // Kept as a Secret (a frozen config cannot hold a Buffer), canonicalised to base64.
  return new Secret(key.toString('base64'))
}

function readCa(src: YamlSource, file: string, baseDir: string, at: (string | number)[], problems: ConfigProblem[]): string | undefined {
  try {
    const pem = readFileSync(resolve(baseDir, file), 'utf8')
    if (pem.includes('-----BEGIN CERTIFICATE-----')) return pem
    problems.push(problemAt(src, at, `${file} holds no PEM certificate`))
  } catch (e) {
    problems.push(problemAt(src, at, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`))
  }
  return undefined
}

function normalizeUpstream(src: YamlSource, r: RouteInput, i: number, baseDir: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[], warnings: string[]): RuntimeUpstream {
  const u = r.upstream
  const at = (...p: string[]) => ['routes', i, 'upstream', ...p]
  const given = (['url', 'sse', 'stdio'] as const).filter((k) => u[k] !== undefined)
  if (given.length !== 1) problems.push(problemAt(src, at(), `set exactly one of url, sse, stdio (found ${given.length === 0 ? 'none' : given.join(', ')})`))
  const kind = u.stdio ? 'stdio' : u.sse ? 'sse' : 'http'
  for (const k of ['url', 'sse'] as const) {
    const v = u[k]
    if (v === undefined) continue
    // The uri format accepts `https://:host`; the proxy's URL parser does not.
    let host = ''
    try {
      host = new URL(v).hostname
    } catch {
      /* reported below */
    }
    if (!host) problems.push(problemAt(src, at(k), `${v} is not a usable URL (no host)`))
  }
  if (kind === 'http' && (u.maxSessions !== undefined || u.sessionIdle !== undefined)) {
    problems.push(problemAt(src, at(u.maxSessions !== undefined ? 'maxSessions' : 'sessionIdle'), 'maxSessions and sessionIdle apply to sse and stdio upstreams only'))
  }
  let stdio: RuntimeStdio | undefined
  if (u.stdio) {
    const s = u.stdio
    const vars = new Map<string, Secret>()
    for (const [name, value] of Object.entries(s.env)) {
      const r = resolveSecret(typeof value === 'string' ? { value } : value, baseDir, env)
      if (!r.ok) problems.push(problemAt(src, at('stdio', 'env', name), r.message))
      else vars.set(name, r.secret)
    }
    const backoffMs = parseDuration(s.restart.backoff)
    const maxBackoffMs = parseDuration(s.restart.maxBackoff)
    if (backoffMs > maxBackoffMs) problems.push(problemAt(src, at('stdio', 'restart', 'backoff'), 'backoff must not exceed maxBackoff'))
    if (s.mode === 'shared') warnings.push(`route ${r.name}: one stdio process serves every caller (mode: shared); the program must not keep per-caller state`)
    stdio = { command: s.command, args: s.args, env: vars, cwd: s.cwd === undefined ? undefined : resolve(baseDir, s.cwd), mode: s.mode, backoffMs, maxBackoffMs }
  }
  return {
    kind,
    url: u.url ?? u.sse ?? `stdio://${r.name}`,
    timeoutMs: parseDuration(u.timeout),
    idleTimeoutMs: parseDuration(u.idleTimeout),
    connections: u.connections,
    stdio,
    maxSessions: u.maxSessions ?? 64,
    sessionIdleMs: parseDuration(u.sessionIdle ?? '30m'),
    ca: u.ca === undefined ? undefined : readCa(src, u.ca, baseDir, at('ca'), problems),
  }
}

function normalizeRoute(src: YamlSource, r: RouteInput, i: number, origin: string, baseDir: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[], warnings: string[]): Omit<RuntimeRoute, 'credentials' | 'allowAddresses'> {
  const resource = r.resource ?? `${origin}${r.path}`
  let metadataPath = `${PRM_WELL_KNOWN}${r.path}`
  if (r.sharedResource && r.resource === undefined) problems.push(problemAt(src, ['routes', i, 'sharedResource'], 'sharedResource needs an explicit resource: (the default, publicUrl + path, is never shared)'))
  try {
    const u = new URL(resource)
    if (u.hash || resource.includes('#')) problems.push(problemAt(src, ['routes', i, 'resource'], 'a resource identifier has no fragment (RFC 8707)'))
    if (u.origin !== origin) problems.push(problemAt(src, ['routes', i, 'resource'], `the resource must be on the public origin ${origin}, where its metadata is served`))
    if (u.search) problems.push(problemAt(src, ['routes', i, 'resource'], 'a resource identifier should have no query'))
    // A shared resource has one well-known path but several routes, each with its own issuers and
    // scopes: each serves its document at the path-inserted URL of its own path, which is where
    // MCP clients look first (and what its challenges name).
    if (!r.sharedResource) metadataPath = `${PRM_WELL_KNOWN}${u.pathname === '/' ? '' : u.pathname}`
    // Clients accept metadata whose resource is the server URL or a path prefix of it (the MCP
    // SDK's checkResourceAllowed, RFC 9728 §3.3); any other shared identifier fails discovery.
    else if (u.origin === origin && !pathPrefix(u.pathname, r.path)) {
      problems.push(problemAt(src, ['routes', i, 'resource'], `a shared resource should be a path prefix of the route path ${r.path}: MCP clients refuse metadata whose resource is not`, 'warning'))
    }
  } catch {
    problems.push(problemAt(src, ['routes', i, 'resource'], 'resource must be an absolute URL'))
  }
  return {
    name: r.name,
    kind: r.kind,
    path: r.path,
    upstream: normalizeUpstream(src, r, i, baseDir, env, problems, warnings),
    resource,
    resourceName: r.resourceName ?? `MCP server ${r.name}`,
    metadataUrl: `${origin}${metadataPath}`,
    metadataPath,
    issuers: r.issuers,
    scopesSupported: r.scopesSupported,
    requiredScopes: r.requiredScopes,
    challengeScopes: challengeScopesOf(src, r, i, problems),
    allowedOrigins: new Set(r.allowedOrigins),
    bodyLimit: parseSize(r.bodyLimit),
    streams: { maxDurationMs: parseDuration(r.streams.maxDuration), maxPerCaller: r.streams.maxPerCaller },
    legacyClients: legacyClientsOf(src, r, i, problems),
    modernClients: r.modernClients,
    pinning: r.pinning === 'observe' || r.pinning === 'enforce' ? r.pinning : undefined,
  }
}

const pathPrefix = (prefix: string, path: string): boolean => prefix === '/' || path === prefix || path.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`)

function challengeScopesOf(src: YamlSource, r: RouteInput, i: number, problems: ConfigProblem[]): readonly string[] {
  if (r.challengeScopes === undefined) return r.scopesSupported
  const at = ['routes', i, 'challengeScopes']
  r.challengeScopes.forEach((s, j) => {
    if (s === 'offline_access') problems.push(problemAt(src, [...at, j], 'offline_access is never requested in a challenge (SCP-06)'))
    else if (!r.scopesSupported.includes(s)) problems.push(problemAt(src, [...at, j], `scope "${s}" is not in scopesSupported; clients would ask for a scope the metadata does not publish`))
  })
  // A first token without them is refused by the route itself: the client could never get in.
  const missing = r.requiredScopes.filter((s) => !r.challengeScopes!.includes(s))
  if (missing.length > 0) problems.push(problemAt(src, at, `challengeScopes must include the requiredScopes (missing ${missing.join(' ')})`))
  return r.challengeScopes
}

function legacyClientsOf(src: YamlSource, r: RouteInput, i: number, problems: ConfigProblem[]): boolean {
  if (r.legacyClients && r.kind !== 'mcp') problems.push(problemAt(src, ['routes', i, 'legacyClients'], 'legacyClients applies to MCP routes only'))
  return r.legacyClients === true
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    if (o instanceof Map || o instanceof Set) {
      for (const v of o.values()) deepFreeze(v)
    } else {
      for (const v of Object.values(o)) deepFreeze(v)
    }
  }
  return o
}

const PROXY_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal'])

/** `server.trustProxy` for Fastify, or a problem: `true` lets any client choose the address its budget is kept under. */
function trustProxyOf(v: boolean | number | string[], src: YamlSource, problems: ConfigProblem[]): false | number | readonly string[] {
  if (v === false) return false
  if (v === true) {
    problems.push(problemAt(src, ['server', 'trustProxy'], 'trustProxy: true takes whatever X-Forwarded-For a client sends as its address (a client then escapes server.authFailures by rotating it); give the number of proxies in front of the gateway (e.g. 1) or their addresses/CIDRs'))
    return false
  }
  if (typeof v === 'number') return v
  v.forEach((entry, i) => {
    const [addr = '', prefix, more] = entry.split('/')
    const family = isIP(addr)
    const max = family === 4 ? 32 : 128
    const ok = PROXY_RANGES.has(entry) || (family !== 0 && more === undefined && (prefix === undefined || (/^[0-9]{1,3}$/.test(prefix) && Number(prefix) <= max)))
    if (!ok) problems.push(problemAt(src, ['server', 'trustProxy', i], `"${entry}" is not an IP address, a CIDR or one of loopback, linklocal, uniquelocal`))
  })
  return v
}

function normalizeDpop(src: YamlSource, iss: IssuerInput, at: (...p: string[]) => (string | number)[], problems: ConfigProblem[]): RuntimeDpop | undefined {
  const d = iss.dpop
  if (!d) return undefined
  const maxAgeSec = Math.round(parseDuration(d.maxAge) / 1000)
  if (maxAgeSec < 1 || maxAgeSec > MAX_DPOP_AGE_SEC) problems.push(problemAt(src, at('dpop', 'maxAge'), `maxAge must be between 1s and ${MAX_DPOP_AGE_SEC}s (RFC 9449 §11.1)`))
  const nonceRotationMs = parseDuration(d.nonceRotation)
  if (nonceRotationMs < 10_000) problems.push(problemAt(src, at('dpop', 'nonceRotation'), 'nonceRotation must be at least 10s'))
  return { required: d.required, algorithms: d.algorithms, maxAgeSec, nonce: d.nonce, nonceRotationMs }
}

function routeDpop(src: YamlSource, r: RouteInput, issuers: ReadonlyMap<string, RuntimeIssuer>, at: (...p: string[]) => (string | number)[], problems: ConfigProblem[]): RuntimeRoute['dpop'] {
  const configured = r.issuers.map((n) => issuers.get(n)).filter((i): i is RuntimeIssuer => !!i)
  const withDpop = configured.filter((i) => i.dpop)
  if (r.requireDpop && withDpop.length !== configured.length) problems.push(problemAt(src, at('requireDpop'), 'requireDpop needs `dpop` on every issuer of the route'))
  if (withDpop.length === 0) return undefined
  const algorithms = [...new Set(withDpop.flatMap((i) => i.dpop!.algorithms))]
  const required = r.requireDpop === true
  return { algorithms, required, bearer: !required && configured.some((i) => !i.dpop?.required) }
}
