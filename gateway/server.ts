/**
 * Composition: builds the public and admin Fastify instances and wires the pipeline stages in
 * order. No I/O happens at import time; `start()` listens, `close()` drains.
 *
 *   onRequest   host check → route lookup → origin check → authenticate (principal or 401)
 *   body        raw JSON bytes (UTF-8 only)
 *   preHandler  MCP checks + strict parse → session owner → decide (policy/, when configured) → downstream credential
 *               (API routes: downstream credential only; no MCP parsing, no policy yet)
 *   handler     proxy to the upstream (JSON or SSE streamed; API bodies streamed untouched)
 *
 * With `egress`, a second listener (egress/plugin.ts) takes the MCP server's own API calls through
 * the same authenticate → credential → proxy stages, per allow-listed target.
 *   onResponse  audit line + metrics
 */
import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type preHandlerHookHandler } from 'fastify'
import type { Logger } from 'pino'
import { approvalStage, createApprovalGate, registerApprovalCallbacks } from './approval/plugin.js'
import { IntrospectionVerifier } from './auth/introspection.js'
import { DpopVerifier } from './auth/dpop.js'
import { PinBook } from './pinning/pins.js'
import { pinningStage } from './pinning/plugin.js'
import { authenticateHook } from './auth/plugin.js'
import { TokenValidator, type OpaqueTokenVerifier } from './auth/token-validator.js'
import { RedisStore } from './cache/redis.js'
import { revealRedisConnection } from './config/redis.js'
import { MemoryStore, type SharedStore } from './cache/store.js'
import type { RuntimeConfig, RuntimeRoute } from './config/load.js'
import { newContext } from './context.js'
import { sendError } from './error-handler.js'
import { GatewayError } from './errors.js'
import { CredentialBroker } from './exchange/broker.js'
import { credentialStage } from './exchange/plugin.js'
import { buildEgressServer } from './egress/plugin.js'
import { checkMcpRequest, registerJsonBodyParser, registerResourceMetadata } from './mcp/plugin.js'
import { modernStage } from './modern/plugin.js'
import { UpstreamSessions } from './modern/sessions.js'
import { buildAdminServer, type ReadinessCheck } from './observability/admin.js'
import { writeAudit } from './observability/audit.js'
import { createAuditOutput } from './observability/audit-output.js'
import { createMetrics, type Metrics } from './observability/metrics.js'
import { endRequestSpan, startRequestSpan, tracedStage } from './observability/request-span.js'
import { startTracing, type Tracing, type TracingSettings } from './observability/tracing.js'
import type { Bridge } from './bridge/bridge.js'
import type { PolicyEngine } from './policy/engine.js'
import { createPolicyEngine, policyStage } from './policy/plugin.js'
import { MemoryLimiter } from './limits/memory.js'
import { AddressFailures } from './limits/failures.js'
import { addressGate, limitStage } from './limits/plugin.js'
import { RedisLimiter } from './limits/redis.js'
import { LocalFallbackLimiter } from './limits/fallback.js'
import type { Limiter } from './limits/window.js'
import { parseRequestTarget } from './lib/request-target.js'
import { restUnder } from './proxy/path.js'
import { originCheckFor, registerRouteProxy } from './proxy/plugin.js'
import { registerLegacyClients, servesLegacyClients } from './legacy/plugin.js'
import { SessionRegistry } from './session/binding.js'
import { SessionSealer } from './session/sealed-id.js'
import { checkSessionHook, observeSessions, observeSessionState, sessionStateStage } from './session/plugin.js'
import { NegotiatedVersions } from './session/negotiated.js'
import { ServerRequests } from './session/server-requests.js'

const GATEWAY_VERSION = '0.1.0'

export interface GatewayDeps {
  logger: Logger
  store?: SharedStore
  metrics?: Metrics
  opaque?: OpaqueTokenVerifier
  /** Extra preHandler stages (decide, credentials), in pipeline order, per route. */
  stages?: (route: RuntimeRoute) => preHandlerHookHandler[]
  now?: () => number
  /** Overrides observability.tracing (tests: a short flush interval). */
  tracing?: TracingSettings
}

export interface Gateway {
  app: FastifyInstance
  admin: FastifyInstance
  config: RuntimeConfig
  validator: TokenValidator
  store: SharedStore
  metrics: Metrics
  logger: Logger
  /** The policy set in force and its reloads; undefined without a `policies:` section. */
  policies: PolicyEngine | undefined
  /** The egress listener, when `egress` is configured. */
  egress: FastifyInstance | undefined
  /** Extra readiness checks registered by later stages. */
  readiness: ReadinessCheck[]
  /** OpenTelemetry tracing; undefined when off (the default). */
  tracing: Tracing | undefined
  /** Bridges serving the routes whose upstream is stdio or legacy SSE, by route name. */
  bridges: ReadonlyMap<string, Bridge>
  start(): Promise<{ url: string; adminUrl: string; egressUrl?: string }>
  close(): Promise<void>
}

/** Shared through Redis when configured, else per replica; `onRedisDown: local` wraps the shared one. */
function rateLimiter(config: RuntimeConfig, store: SharedStore, logger: Logger): Limiter {
  if (!(store instanceof RedisStore)) return new MemoryLimiter()
  const shared = new RedisLimiter(store.client, { oneSlot: store.mode === 'cluster' })
  if (config.policies?.limitsOnRedisDown !== 'local') return shared
  const replicas = config.policies.limitsReplicas
  return new LocalFallbackLimiter(shared, {
    replicas,
    onLocal: (local) =>
      local
        ? logger.warn({ event: 'rate_limit.local', replicas }, 'rate-limit store unreachable: each replica charges limit / replicas (policies.limits.onRedisDown: local)')
        : logger.info({ event: 'rate_limit.shared' }, 'rate limits decided by Redis again'),
  })
}

export async function buildGateway(config: RuntimeConfig, deps: GatewayDeps): Promise<Gateway> {
  const { logger } = deps
  const metrics = deps.metrics ?? createMetrics()
  const audit = createAuditOutput(config.audit, { logger, metrics })
  // Off by default: then undefined, the SDK is never imported and no hook below is installed.
  const tracing = await startTracing(deps.tracing ?? config.observability.tracing, logger, GATEWAY_VERSION)
  // Only stages that can wait get wrapped; with tracing off this is the identity.
  const traced = <S>(name: string, stage: S): S => (tracing ? tracedStage(tracing, name, stage) : stage)
  const store =
    deps.store ??
    (config.cache.redis
      ? new RedisStore({ target: revealRedisConnection(config.cache.redis.connection), keyPrefix: config.cache.redis.keyPrefix, commandTimeoutMs: config.cache.redis.commandTimeoutMs, logger, metrics })
      : new MemoryStore())
  if (store instanceof RedisStore) await store.waitReady(2000)
  const introspecting = [...config.issuers.values()].some((i) => i.validation !== 'jwt')
  const introspection: IntrospectionVerifier | undefined = introspecting && !deps.opaque ? new IntrospectionVerifier(config.issuers.values(), { store, logger, metrics, discover: (name) => validator.keys.get(name)!.discover(), ...(deps.now ? { now: deps.now } : {}) }) : undefined
  const opaque = deps.opaque ?? introspection
  const validator: TokenValidator = new TokenValidator(config, { store, logger, metrics, ...(opaque ? { opaque } : {}), ...(deps.now ? { now: deps.now } : {}) })

  const routesByPath = new Map(config.routes.map((r) => [r.path, r]))
  // API routes match by prefix, the longest first; an exact MCP path wins over them.
  const apiRoutes = config.routes.filter((r) => r.kind === 'api').sort((a, b) => b.path.length - a.path.length)
  const routeFor = (path: string) => routesByPath.get(path) ?? apiRoutes.find((r) => restUnder(path, r.path) !== undefined)
  const badTargets = new WeakMap<object, string>()
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    trustProxy: trustProxyOption(config.server.trustProxy),
    bodyLimit: Math.max(...config.routes.map((r) => r.bodyLimit)),
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    http: { maxHeaderSize: config.server.maxHeaderSize },
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
    // Runs before routing: an absolute-form target is routed by its path, and its authority
    // becomes the Host the host check below sees (RFC 9112 §3.2.2 says to ignore the header then).
    rewriteUrl: (req) => {
      const url = req.url ?? '/'
      if (url.startsWith('/') && !url.includes('#')) return url
      const t = parseRequestTarget(url)
      if ('invalid' in t) {
        badTargets.set(req, t.invalid)
        return '/'
      }
      if (t.authority !== undefined) req.headers.host = t.authority
      return t.path
    },
  })

  // Node answers 431 itself, before Fastify sees the request; count it here.
  app.server.on('clientError', (err: NodeJS.ErrnoException) => {
    if (err.code === 'HPE_HEADER_OVERFLOW') metrics.limitsExceeded.inc({ limit: 'header' })
  })
  app.decorateRequest('gw', null as never)
  app.addHook('onRequest', async (request) => {
    const bad = badTargets.get(request.raw)
    if (bad !== undefined) {
      request.gw = newContext(undefined)
      throw new GatewayError('GW_HTTP_PATH_INVALID', { detail: bad })
    }
    const q = request.url.indexOf('?')
    request.gw = newContext(routeFor(q === -1 ? request.url : request.url.slice(0, q)))
    // DNS-rebinding defence (SHTTP-02): only the configured public host names are served.
    const host = request.headers.host?.toLowerCase()
    if (!host || !config.server.allowedHosts.has(host)) throw new GatewayError('GW_HTTP_MISDIRECTED', { detail: 'host not allowed' })
    // An audit sink with a full buffer and onFull: block: no request is served that cannot be recorded.
    if (audit.blocking()) throw new GatewayError('GW_AUDIT_UNAVAILABLE', { detail: 'audit buffer full', retryAfter: 5 })
  })
  if (tracing) app.addHook('onRequest', startRequestSpan(tracing))
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err))
  app.setNotFoundHandler((request, reply) => sendError(request, reply, new GatewayError('GW_HTTP_NOT_FOUND')))
  app.addHook('onResponse', async (request, reply) => {
    const route = request.gw?.route
    if (!route) return
    const reason = request.gw.error?.reason ?? 'ok'
    metrics.requests.inc({ route: route.name, status: String(reply.statusCode), reason })
    metrics.requestDuration.observe({ route: route.name }, reply.elapsedTime / 1000)
    const code = request.gw.error?.code
    gate?.observe(request)
    if (code === 'GW_MCP_JSON_LIMIT') metrics.limitsExceeded.inc({ limit: request.gw.error!.detail ?? 'json' })
    else if (code === 'GW_HTTP_BODY_TOO_LARGE') metrics.limitsExceeded.inc({ limit: 'body' })
    else if (code === 'GW_HTTP_TOO_MANY_STREAMS') metrics.limitsExceeded.inc({ limit: 'streams' })
    if (request.raw.method !== 'OPTIONS') writeAudit(logger, audit.chain, request, reply, 'mcp.request')
    if (tracing) endRequestSpan(tracing, request, reply)
  })

  registerJsonBodyParser(app)
  registerResourceMetadata(app, config)
  const dpopAccepted = [...config.issuers.values()].some((i) => i.dpop)
  const authenticate = traced('mcp-warden.authenticate', authenticateHook(validator, metrics, dpopAccepted ? { verifier: new DpopVerifier(store, deps.now), config } : undefined))
  const gate = config.server.authFailures && addressGate(new AddressFailures(config.server.authFailures.limit, config.server.authFailures.perMs), metrics)
  const policies = createPolicyEngine(config, logger, metrics)
  // Human approval (docs/approvals.md): only where some issuer has an approval channel.
  const approvals = policies ? createApprovalGate(config, { store, registry: metrics.registry, discover: (name) => validator.keys.get(name)!.discover(), encryptionKey: config.cache.redis?.encryptionKey && Buffer.from(config.cache.redis.encryptionKey.reveal(), 'base64'), ...(deps.now ? { now: deps.now } : {}) }) : undefined
  if (approvals) registerApprovalCallbacks(app, approvals)
  const decide = policies ? [policyStage(policies, metrics, { rawArguments: config.policies!.rawArguments, approvals: approvals !== undefined, ...(deps.now ? { now: deps.now } : {}) })] : []
  // Rate limits live in policy documents; shared through Redis when configured, else per replica.
  if (policies) decide.push(traced('mcp-warden.rate_limit', limitStage(policies, rateLimiter(config, store, logger), metrics, { onRedisDown: config.policies!.limitsOnRedisDown, logger })))
  const pins = new PinBook(store)
  // Sealed session ids (session/sealed-id.ts): every replica can decide every session without Redis.
  const signingKey = config.sessions.signingKey && Buffer.from(config.sessions.signingKey.reveal(), 'utf8')
  const sessions = new SessionRegistry(store, config.sessions.ttlMs, { sealer: signingKey && new SessionSealer(signingKey) })
  const checkSession = checkSessionHook(sessions)
  const sessionObserver = observeSessions(sessions)
  const negotiated = new NegotiatedVersions(store, config.sessions.ttlMs)
  const sessionState = sessionStateStage(negotiated, new ServerRequests(store))
  const sessionStateObserver = observeSessionState(negotiated)
  const upstreamSessions = new UpstreamSessions(store, config.sessions.ttlMs)
  const broker = new CredentialBroker({
    issuers: config.issuers,
    discover: (name) => validator.keys.get(name)!.discover(),
    store,
    encryptionKey: config.cache.redis?.encryptionKey && Buffer.from(config.cache.redis.encryptionKey.reveal(), 'base64'),
    metrics,
    logger,
    publicUrl: config.server.publicUrl,
    ...(deps.now ? { now: deps.now } : {}),
  })
  const bridges = new Map<string, Bridge>()
  for (const route of config.routes) {
    let target
    if (route.upstream.kind !== 'http') {
      // Loaded only when a route needs it: deployments of plain HTTP upstreams never load the SDK.
      const { Bridge } = await import('./bridge/bridge.js')
      const bridge = new Bridge(route, logger, { onRestart: () => metrics.bridgeRestarts.inc({ route: route.name }), onSessions: (n) => metrics.bridgeSessions.set({ route: route.name }, n) })
      bridges.set(route.name, bridge)
      target = await bridge.listen()
    }
    // API routes: no MCP parsing, no sessions, no MCP policy; request.gw.http is kept for HTTP policies.
    const mcp = route.kind === 'mcp'
    // 2026-07-28 requests are answered last, through the gateway's upstream session (gateway/modern/).
    const modern = mcp ? [modernStage({ route, target, sessions: upstreamSessions, metrics })] : []
    // A held call is asked for after rate limits, so an agent cannot flood a user's phone.
    const preHandler = [...(mcp ? [checkMcpRequest, checkSession, sessionState, ...decide, ...(route.pinning ? [pinningStage(pins, route, metrics)] : []), ...(approvals ? [traced('mcp-warden.approval', approvalStage(approvals, route))] : [])] : []), ...(deps.stages?.(route) ?? []), ...credentialStage(broker, route).map((s) => traced('mcp-warden.credential', s)), ...modern.map((s) => traced('mcp-warden.upstream_session', s))]
    const onRequest = gate ? [gate.gate, authenticate, gate.pass] : [authenticate]
    // sessionStateObserver first: it reads the upstream's session id before sessionObserver seals it.
    await registerRouteProxy(app, route, { onRequest, preHandler, onUpstreamResponse: mcp ? [sessionStateObserver, sessionObserver] : [] }, metrics, target)
    // 2024-11-05 HTTP+SSE clients: each of their messages is replayed through the route above.
    if (servesLegacyClients(route)) await registerLegacyClients(app, route, { onRequest: [originCheckFor(route), ...onRequest], sessions, metrics, logger })
  }
  const egress = config.egress
    ? await buildEgressServer(config.egress, {
        logger,
        metrics,
        authenticate,
        stages: (target) => [...(deps.stages?.(target) ?? []), ...credentialStage(broker, target)],
        maxHeaderSize: config.server.maxHeaderSize,
      })
    : undefined

  const readiness: ReadinessCheck[] = []
  let draining = false
  const admin = buildAdminServer(
    metrics,
    () => [
      { name: 'config', critical: true, check: () => true },
      { name: 'accepting', critical: true, check: () => !draining },
      ...validator.jwtKeys().map((k) => ({ name: `jwks:${k.name}`, critical: true, check: () => k.ready() })),
      ...(introspection ? [{ name: 'introspection', critical: false, check: () => introspection.healthy() }] : []),
      ...(config.cache.redis ? [{ name: 'redis', critical: false, check: () => store.healthy() }] : []),
      ...readiness,
    ],
    logger,
  )

  return {
    app,
    admin,
    config,
    validator,
    store,
    metrics,
    logger,
    policies,
    egress,
    readiness,
    bridges,
    tracing,
    async start() {
      await validator.init()
      if (config.policies?.watch) policies?.watch()
      const url = await app.listen({ host: config.server.listen.host, port: config.server.listen.port })
      const adminUrl = await admin.listen({ host: config.admin.listen.host, port: config.admin.listen.port })
      const egressUrl = egress && config.egress ? await egress.listen({ host: config.egress.listen.host, port: config.egress.listen.port }) : undefined
      logger.info({ event: 'gateway.started', url, adminUrl, egressUrl, routes: config.routes.map((r) => ({ name: r.name, kind: r.kind, path: r.path, resource: r.resource })) }, 'mcp-warden listening')
      return { url, adminUrl, ...(egressUrl ? { egressUrl } : {}) }
    },
    async close() {
      draining = true
      policies?.close()
      // In-flight requests, SSE streams included, get the grace period; then the rest are cut.
      const force = setTimeout(() => app.server.closeAllConnections(), config.server.shutdownGraceMs)
      force.unref()
      const forceEgress = egress && setTimeout(() => egress.server.closeAllConnections(), config.server.shutdownGraceMs)
      forceEgress?.unref()
      await Promise.all([app.close(), egress?.close()])
      clearTimeout(force)
      clearTimeout(forceEgress)
      await admin.close()
      // No child process outlives the gateway.
      await Promise.allSettled([...bridges.values()].map((b) => b.close()))
      await store.close()
      // Last: the requests drained above are in the chain before its final checkpoint.
      await audit.close(config.server.shutdownGraceMs)
      // Flushes the spans still batched.
      await tracing?.shutdown()
    },
  }
}

/**
 * Fastify's trustProxy for `server.trustProxy`. A hop count becomes a function: this Fastify
 * reads a bare number as "trust nothing", while the operator means "the n-th address from the
 * right of X-Forwarded-For (index 0 is the peer) is the client" — what each proxy appended, never
 * what the client wrote to the left of it.
 */
export function trustProxyOption(t: false | number | readonly string[]): false | string[] | ((address: string, hop: number) => boolean) {
  if (typeof t === 'number') return (_address, hop) => hop < t
  return t === false ? false : [...t]
}
