/**
 * The egress listener (the sidecar's other half): the MCP server sends its outbound API calls
 * here, as `<method> http://<egress>/<target>/<rest>`, with the token mcp-warden gave it on the
 * inbound leg. The call is authenticated like any route (audience = the MCP server's resource),
 * the credential stage exchanges the token for one made for the target, and the request is
 * forwarded to the allow-listed target only, at an address the SSRF rules accept
 * (address.ts). Anything else (unknown target, absolute-form or CONNECT proxy requests, browser
 * requests) is refused: this is not an open proxy.
 */
import { randomUUID } from 'node:crypto'
import { isIP } from 'node:net'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type onRequestHookHandler, type preHandlerHookHandler } from 'fastify'
import type { Logger } from 'pino'
import type { RuntimeEgress } from '../config/egress.js'
import type { RuntimeRoute } from '../config/load.js'
import { newContext } from '../pipeline/context.js'
import { sendError } from '../pipeline/error-handler.js'
import { GatewayError } from '../errors.js'
import { auditRecord } from '../pipeline/audit.js'
import type { Metrics } from '../observability/metrics.js'
import { correlationId } from '../observability/trace.js'
import { registerPrefixProxy } from '../pipeline/forward.js'
import { AddressPolicy } from './address.js'

export interface EgressDeps {
  logger: Logger
  metrics: Metrics
  authenticate: onRequestHookHandler
  /** preHandler stages per target, in pipeline order (decide, then credentials). */
  stages: (target: RuntimeRoute) => preHandlerHookHandler[]
  maxHeaderSize: number
}

/** The target named by the first path segment of a origin-form request URL, if any. */
export function targetOf(egress: RuntimeEgress, rawUrl: string): RuntimeRoute | undefined {
  if (!rawUrl.startsWith('/')) return undefined
  const name = /^\/([^/?#]+)/.exec(rawUrl)?.[1]
  return name === undefined ? undefined : egress.targets.get(name)
}

export async function buildEgressServer(egress: RuntimeEgress, deps: EgressDeps): Promise<FastifyInstance> {
  const { metrics } = deps
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    http: { maxHeaderSize: deps.maxHeaderSize },
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
  })

  app.decorateRequest('gw', null as never)
  app.addHook('onRequest', async (request) => {
    const target = targetOf(egress, request.url)
    request.gw = newContext(target)
    request.gw.causedBy = correlationId(request.headers[egress.correlationHeader])
    // Absolute-form (`GET http://host/…`) or unknown first segment: never a destination of its own.
    if (!target) throw new GatewayError('GW_EGRESS_TARGET_FORBIDDEN', { detail: request.url.startsWith('/') ? 'target not on the allow-list' : 'absolute-form request' })
    // Only the local MCP server calls this listener; a browser request is a DNS-rebinding attempt.
    if (request.headers.origin !== undefined) throw new GatewayError('GW_HTTP_ORIGIN_FORBIDDEN', { detail: 'origin on the egress listener' })
  })
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err))
  app.setNotFoundHandler((request, reply) => sendError(request, reply, new GatewayError('GW_EGRESS_TARGET_FORBIDDEN', { detail: 'target not on the allow-list' })))
  app.addHook('onResponse', async (request, reply) => {
    const route = request.gw?.route
    const reason = request.gw?.error?.reason ?? 'ok'
    metrics.requests.inc({ route: route?.name ?? 'egress', status: String(reply.statusCode), reason })
    if (route) metrics.requestDuration.observe({ route: route.name }, reply.elapsedTime / 1000)
    request.log.info({ audit: { ...auditRecord(request, reply), leg: 'egress' } }, 'egress.request')
  })
  // CONNECT (https through a proxy) is never tunnelled: the body would be opaque to us.
  app.server.on('connect', (_req, socket) => socket.end('HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\n\r\n'))

  for (const target of egress.targets.values()) {
    const policy = new AddressPolicy(target.allowAddresses)
    const host = new URL(target.upstream.url).hostname.replace(/^\[|\]$/g, '')
    // An IP literal is never looked up, so the connector's check would not see it.
    const literal: onRequestHookHandler = async () => {
      if (isIP(host) === 0) return
      try {
        policy.check(host)
      } catch (e) {
        throw new GatewayError('GW_EGRESS_ADDRESS_FORBIDDEN', { detail: (e as Error).message })
      }
    }
    await registerPrefixProxy(app, target, { onRequest: [literal, deps.authenticate], preHandler: deps.stages(target), onUpstreamResponse: [] }, metrics, { lookup: policy.lookup() as never })
  }
  return app
}
