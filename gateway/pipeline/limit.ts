/**
 * Fastify glue for rate limits and quotas: a preHandler after the decide stage (a request policy
 * refuses costs nothing) and before the credential stage (a limited request costs no token).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { GatewayError } from '../errors.js'
import { targetName } from '../mcp/jsonrpc.js'
import type { Metrics } from '../observability/metrics.js'
import type { PolicyEngine } from '../policy/engine.js'
import { chargesFor } from '../limits/charges.js'
import type { AddressFailures } from '../limits/failures.js'
import { LimiterUnavailable, type Limiter } from '../limits/window.js'

export interface LimitStageOptions {
  /** local: the limiter itself falls back (fallback.ts) and never reports the store unavailable. */
  onRedisDown: 'closed' | 'open' | 'local'
  logger: Logger
}

/** Retry-After is whole seconds (RFC 9110 §10.2.3); round up so a client that obeys it is served. */
const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000))

export function limitStage(engine: PolicyEngine, limiter: Limiter, metrics: Metrics, o: LimitStageOptions) {
  let lastWarn = 0
  return async function rateLimit(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const gw = request.gw
    const route = gw.route!
    // Read after decide: a reload landing between the two stages applies its limits to a request
    // the previous rules allowed, never the reverse mix of old limits for new rules.
    const limits = engine.current.limitsFor(route.name)
    if (limits.length === 0 || !gw.mcp) return
    const messages = gw.mcp.body.messages.flatMap((m) => (m.kind === 'response' ? [] : [{ method: m.method, name: targetName(m) }]))
    const charges = chargesFor(limits, { route: route.name, upstream: route.upstream.url, principal: gw.principal, messages })
    if (charges.length === 0) return
    let verdict
    try {
      verdict = await limiter.consume(charges)
    } catch (e) {
      if (!(e instanceof LimiterUnavailable)) throw e
      const names = [...new Set(charges.map((c) => c.limit))].join(',')
      if (o.onRedisDown === 'open') {
        metrics.rateLimitDecisions.inc({ route: route.name, limit: '-', outcome: 'fail-open' })
        gw.rateLimit = { limit: names, outcome: 'fail-open' }
        // One warning per second at most: an outage must not turn into a log flood.
        if (Date.now() - lastWarn > 1000) {
          lastWarn = Date.now()
          o.logger.warn({ event: 'rate_limit.fail_open', limits: names }, 'rate-limit store unreachable: request let through (policies.limits.onRedisDown: open)')
        }
        return
      }
      metrics.rateLimitDecisions.inc({ route: route.name, limit: '-', outcome: 'unavailable' })
      gw.rateLimit = { limit: names, outcome: 'unavailable' }
      throw new GatewayError('GW_RATE_LIMIT_UNAVAILABLE', { retryAfter: 1, detail: 'rate-limit store unreachable' })
    }
    if (verdict.allowed) {
      metrics.rateLimitDecisions.inc({ route: route.name, limit: '-', outcome: 'allowed' })
      return
    }
    const limit = limits.find((l) => l.name === verdict.limit)
    metrics.rateLimitDecisions.inc({ route: route.name, limit: verdict.limit, outcome: 'limited' })
    gw.rateLimit = { limit: verdict.limit, outcome: 'limited' }
    // A cost larger than the limit never fits: the client is told to wait a whole window.
    const retryAfter = seconds(verdict.retryAfterMs ?? limit?.perMs ?? 60_000)
    throw new GatewayError('GW_RATE_LIMITED', { retryAfter, detail: `limit ${verdict.limit}` })
  }
}

/**
 * The failed-authentication gate around the authenticate hook: `gate` before it (refuse an
 * address out of budget, else hold a unit), `pass` after it (the token was accepted: give the
 * unit back), `observe` on response (unknown sessions count as failures too).
 */
export function addressGate(failures: AddressFailures, metrics: Metrics) {
  const held = new WeakMap<FastifyRequest, number>()
  return {
    async gate(request: FastifyRequest): Promise<void> {
      const r = failures.acquire(request.ip)
      if ('slice' in r) {
        held.set(request, r.slice)
        return
      }
      metrics.rateLimitDecisions.inc({ route: request.gw.route?.name ?? '-', limit: 'auth-failures', outcome: 'limited' })
      request.gw.rateLimit = { limit: 'auth-failures', outcome: 'limited' }
      throw new GatewayError('GW_RATE_LIMITED', { retryAfter: seconds(r.retryAfterMs), detail: 'limit auth-failures' })
    },
    async pass(request: FastifyRequest): Promise<void> {
      const slice = held.get(request)
      if (slice === undefined) return
      held.delete(request)
      failures.release(request.ip, slice)
    },
    observe(request: FastifyRequest): void {
      if (request.gw.error?.code === 'GW_MCP_SESSION_NOT_FOUND') failures.record(request.ip)
    },
  }
}
