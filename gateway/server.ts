/**
 * Composition: builds every stage this deployment has, once, and hands each route the ordered list
 * of pipeline/stages.ts; builds the public, admin and egress listeners. No I/O happens at import
 * time; `start()` listens, `close()` drains.
 */
import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type preHandlerHookHandler } from 'fastify'
import type { Logger } from 'pino'
import { approvalStage, createApprovalGate, registerApprovalCallbacks } from './pipeline/approve.js'
import { IntrospectionVerifier } from './auth/introspection.js'
import { DpopVerifier } from './auth/dpop.js'
import { PinBook } from './pinning/pins.js'
import { pinningStage } from './pipeline/pin.js'
import { authenticateHook } from './pipeline/authenticate.js'
import { TokenValidator, type OpaqueTokenVerifier } from './auth/token-validator.js'
import { RedisStore } from './store/redis.js'
import { revealRedisConnection } from './config/redis.js'
import { MemoryStore, type SharedStore } from './store/shared-store.js'
import type { RuntimeConfig, RuntimeRoute } from './config/load.js'
import { sendError } from './pipeline/error-handler.js'
import { GatewayError } from './errors.js'
import { CredentialBroker } from './exchange/broker.js'
import { credentialStage } from './pipeline/credential.js'
import { buildEgressServer } from './egress/listener.js'
import { checkMcpRequest, registerJsonBodyParser, registerResourceMetadata } from './pipeline/mcp-checks.js'
import { modernStage } from './pipeline/modern-clients.js'
import { UpstreamSessions } from './transports/modern/sessions.js'
import { buildAdminServer, type ReadinessCheck } from './observability/admin.js'
import { auditStage } from './pipeline/audit.js'
import { front } from './pipeline/front.js'
import { apiRouteStages, egressTargetStages, mcpRouteStages, type PipelineStages } from './pipeline/stages.js'
import { createAuditOutput } from './observability/audit-output.js'
import { createMetrics, type Metrics } from './observability/metrics.js'
import { endRequestSpan, startRequestSpan, tracedStage } from './pipeline/request-span.js'
import { startTracing, type Tracing, type TracingSettings } from './observability/tracing.js'
import type { Bridge } from './transports/bridge/bridge.js'
import type { PolicyEngine } from './policy/engine.js'
import { createPolicyEngine, policyStage } from './pipeline/decide.js'
import { MemoryLimiter } from './limits/memory.js'
import { AddressFailures } from './limits/failures.js'
import { addressGate, limitStage } from './pipeline/limit.js'
import { RedisLimiter } from './limits/redis.js'
import { LocalFallbackLimiter } from './limits/fallback.js'
import type { Limiter } from './limits/window.js'
import { registerRouteProxy } from './pipeline/forward.js'
import { originCheckFor } from './pipeline/front.js'
import { registerLegacyClients, servesLegacyClients } from './pipeline/legacy-clients.js'
import { SessionRegistry } from './session/binding.js'
import { SessionSealer } from './session/sealed-id.js'
import { checkSessionHook, observeSessions, observeSessionState, sessionStateStage } from './pipeline/session.js'
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
      : new MemoryStore({ maxEntries: config.cache.memoryMaxEntries, onFull: (outcome) => metrics.memoryStoreFull.inc({ outcome }) }))
  if (store instanceof RedisStore) await store.waitReady(2000)
  const introspecting = [...config.issuers.values()].some((i) => i.validation !== 'jwt')
  const introspection: IntrospectionVerifier | undefined = introspecting && !deps.opaque ? new IntrospectionVerifier(config.issuers.values(), { store, logger, metrics, discover: (name) => validator.keys.get(name)!.discover(), ...(deps.now ? { now: deps.now } : {}) }) : undefined
  const opaque = deps.opaque ?? introspection
  const validator: TokenValidator = new TokenValidator(config, { store, logger, metrics, ...(opaque ? { opaque } : {}), ...(deps.now ? { now: deps.now } : {}) })

  const frontDoor = front(config, () => audit.blocking())
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
    rewriteUrl: frontDoor.rewriteUrl,
  })

  // Node answers 431 itself, before Fastify sees the request; count it here.
  app.server.on('clientError', (err: NodeJS.ErrnoException) => {
    if (err.code === 'HPE_HEADER_OVERFLOW') metrics.limitsExceeded.inc({ limit: 'header' })
  })
  app.decorateRequest('gw', null as never)
  const gate = config.server.authFailures && addressGate(new AddressFailures(config.server.authFailures.limit, config.server.authFailures.perMs), metrics)
  app.addHook('onRequest', frontDoor.hook)
  if (tracing) app.addHook('onRequest', startRequestSpan(tracing))
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err))
  app.setNotFoundHandler((request, reply) => sendError(request, reply, new GatewayError('GW_HTTP_NOT_FOUND')))
  app.addHook(
    'onResponse',
    auditStage({
      logger,
      chain: audit.chain,
      metrics,
      ...(gate ? { observe: (r) => gate.observe(r) } : {}),
      ...(tracing ? { endSpan: (request, reply) => endRequestSpan(tracing, request, reply) } : {}),
    }),
  )

  registerJsonBodyParser(app)
  registerResourceMetadata(app, config)
  const dpopAccepted = [...config.issuers.values()].some((i) => i.dpop)
  const authenticate = traced('mcp-warden.authenticate', authenticateHook(validator, metrics, dpopAccepted ? { verifier: new DpopVerifier(store, deps.now), config } : undefined))
  const policies = createPolicyEngine(config, logger, metrics)
  // Human approval (docs/approvals.md): only where some issuer has an approval channel.
  const approvals = policies ? createApprovalGate(config, { store, registry: metrics.registry, discover: (name) => validator.keys.get(name)!.discover(), encryptionKey: config.cache.redis?.encryptionKey && Buffer.from(config.cache.redis.encryptionKey.reveal(), 'base64'), ...(deps.now ? { now: deps.now } : {}) }) : undefined
  if (approvals) registerApprovalCallbacks(app, approvals)
  // Rate limits live in policy documents; shared through Redis when configured, else per replica.
  const limiter = policies && rateLimiter(config, store, logger)
  const pins = new PinBook(store)
  // Sealed session ids (session/sealed-id.ts): every replica can decide every session without Redis.
  const signingKey = config.sessions.signingKey && Buffer.from(config.sessions.signingKey.reveal(), 'utf8')
  const sessions = new SessionRegistry(store, config.sessions.ttlMs, { sealer: signingKey && new SessionSealer(signingKey) })
  const negotiated = new NegotiatedVersions(store, config.sessions.ttlMs)
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
  const stages: PipelineStages = {
    addressGate: gate || undefined,
    authenticate,
    checkSession: checkSessionHook(sessions),
    sessionState: sessionStateStage(negotiated, new ServerRequests(store)),
    decide: policies && policyStage(policies, metrics, { rawArguments: config.policies!.rawArguments, approvals: approvals !== undefined, ...(deps.now ? { now: deps.now } : {}) }),
    limit: policies && limiter && traced('mcp-warden.rate_limit', limitStage(policies, limiter, metrics, { onRedisDown: config.policies!.limitsOnRedisDown, logger })),
    pin: (route) => pinningStage(pins, route, metrics),
    approve: approvals && ((route) => traced('mcp-warden.approval', approvalStage(approvals, route))),
    extra: (route) => deps.stages?.(route) ?? [],
    credential: (route) => credentialStage(broker, route).map((s) => traced('mcp-warden.credential', s)),
    modernClients: (route, target) => traced('mcp-warden.upstream_session', modernStage({ route, target, sessions: upstreamSessions, metrics })),
    observers: { sessionState: observeSessionState(negotiated), session: observeSessions(sessions) },
  }
  const bridges = new Map<string, Bridge>()
  for (const route of config.routes) {
    let target
    if (route.upstream.kind !== 'http') {
      // Loaded only when a route needs it: deployments of plain HTTP upstreams never load the SDK.
      const { Bridge } = await import('./transports/bridge/bridge.js')
      const bridge = new Bridge(route, logger, { onRestart: () => metrics.bridgeRestarts.inc({ route: route.name }), onSessions: (n) => metrics.bridgeSessions.set({ route: route.name }, n) })
      bridges.set(route.name, bridge)
      target = await bridge.listen()
    }
    const routeStages = route.kind === 'mcp' ? mcpRouteStages(route, stages, target) : apiRouteStages(route, stages)
    await registerRouteProxy(app, route, routeStages, metrics, target)
    // 2024-11-05 HTTP+SSE clients: each of their messages is replayed through the route above.
    if (servesLegacyClients(route)) await registerLegacyClients(app, route, { onRequest: [originCheckFor(route), ...routeStages.onRequest], sessions, metrics, logger })
  }
  const egress = config.egress
    ? await buildEgressServer(config.egress, {
        logger,
        metrics,
        authenticate,
        stages: (target) => egressTargetStages(target, stages),
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
