/**
 * The admin listener: liveness, readiness and Prometheus metrics, kept off the public port so
 * probes and scrapes never need a token and the public surface stays MCP-only.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Metrics } from './metrics.js'

export interface ReadinessCheck {
  name: string
  /** A failed critical check makes /readyz 503; a failed non-critical one reports "degraded" with 200. */
  critical: boolean
  check(): boolean
}

export function buildAdminServer(metrics: Metrics, checks: () => ReadinessCheck[], logger: Logger): FastifyInstance {
  const admin = Fastify({ loggerInstance: logger.child({ listener: 'admin' }) as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) })
  admin.get('/healthz', async () => ({ status: 'ok' }))
  admin.get('/readyz', async (_req, reply) => {
    const results: Record<string, boolean> = {}
    let ready = true
    let degraded = false
    for (const c of checks()) {
      const ok = c.check()
      results[c.name] = ok
      if (!ok && c.critical) ready = false
      if (!ok && !c.critical) degraded = true
    }
    // Redis down is "degraded", not "not ready": replicas keep serving from memory, and pulling
    // every pod out of the Service because the shared cache blinked would turn a blip into an outage.
    return reply.code(ready ? 200 : 503).send({ status: ready ? (degraded ? 'degraded' : 'ready') : 'not-ready', checks: results })
  })
  admin.get('/metrics', async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType)
    return metrics.registry.metrics()
  })
  return admin
}
