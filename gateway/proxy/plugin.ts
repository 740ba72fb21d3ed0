/**
 * Forwarding to upstream MCP servers with @fastify/reply-from (undici pools, one per route).
 * POST bodies are the exact bytes the MCP stage parsed; SSE responses are streamed through
 * without buffering; the upstream's own challenges and cookies never reach the client.
 */
import replyFrom from '@fastify/reply-from'
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler, preHandlerHookHandler } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { RuntimeRoute } from '../config/load.js'
import { sendError } from '../error-handler.js'
import { GatewayError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.js'

/** Sees every upstream response before it is relayed (session binding, bookkeeping). */
export type UpstreamResponseObserver = (request: FastifyRequest, status: number, headers: IncomingHttpHeaders) => Promise<void>

export interface RouteStages {
  onRequest: onRequestHookHandler[]
  preHandler: preHandlerHookHandler[]
  onUpstreamResponse: UpstreamResponseObserver[]
}

interface UpstreamResponse {
  statusCode: number
  headers: IncomingHttpHeaders
  stream: Readable
}

const MCP_METHODS = ['POST', 'GET', 'DELETE'] as const
const ALLOW = 'GET, POST, DELETE'
const CORS_ALLOW_HEADERS = 'Authorization, Content-Type, Accept, MCP-Protocol-Version, MCP-Session-Id, Last-Event-ID, Mcp-Method, Mcp-Name'
const CORS_EXPOSE_HEADERS = 'WWW-Authenticate, MCP-Session-Id, MCP-Protocol-Version, X-Request-Id'

/** Query parameters that must never travel upstream (a token in the URL is ignored, not used). */
const DROPPED_QUERY = new Set(['access_token'])

function filterQuery(search: string | undefined, reqUrl: string): string {
  const q = reqUrl.indexOf('?')
  if (q === -1) return search?.replace(/^\?/, '') ?? ''
  const params = new URLSearchParams(reqUrl.slice(q + 1))
  for (const k of [...params.keys()]) if (DROPPED_QUERY.has(k)) params.delete(k)
  const upstream = new URLSearchParams(search ?? '')
  for (const [k, v] of params) upstream.append(k, v)
  return upstream.toString()
}

export async function registerRouteProxy(app: FastifyInstance, route: RuntimeRoute, stages: RouteStages, metrics: Metrics): Promise<void> {
  const upstream = new URL(route.upstream.url)
  await app.register(async (scope) => {
    await scope.register(replyFrom, {
      base: upstream.origin,
      undici: {
        connections: route.upstream.connections,
        pipelining: 1,
        headersTimeout: route.upstream.timeoutMs,
        bodyTimeout: route.upstream.idleTimeoutMs,
        keepAliveTimeout: 30_000,
      },
      disableRequestLogging: true,
    })

    const originCheck: onRequestHookHandler = async (request, reply) => {
      const origin = request.headers.origin
      if (origin !== undefined && !route.allowedOrigins.has(origin)) throw new GatewayError('GW_HTTP_ORIGIN_FORBIDDEN', { detail: 'origin not allowed' })
      if (origin !== undefined) {
        reply.header('access-control-allow-origin', origin).header('vary', 'Origin').header('access-control-expose-headers', CORS_EXPOSE_HEADERS)
      }
    }

    scope.route({
      method: [...MCP_METHODS],
      url: route.path,
      exposeHeadRoute: false,
      bodyLimit: route.bodyLimit,
      onRequest: [originCheck, ...stages.onRequest],
      preHandler: stages.preHandler,
      handler: (request, reply) => forward(request, reply, route, upstream, metrics, stages.onUpstreamResponse),
    })

    // CORS preflight carries no credentials: answered here, never proxied (SHTTP-05).
    scope.route({
      method: 'OPTIONS',
      url: route.path,
      onRequest: [originCheck],
      handler: async (request, reply) => {
        if (request.headers.origin === undefined) {
          reply.header('allow', `${ALLOW}, OPTIONS`)
          return reply.code(204).send()
        }
        return reply
          .code(204)
          .header('access-control-allow-methods', `${ALLOW}, OPTIONS`)
          .header('access-control-allow-headers', CORS_ALLOW_HEADERS)
          .header('access-control-max-age', '600')
          .send()
      },
    })

    scope.route({
      method: ['HEAD', 'PUT', 'PATCH'],
      url: route.path,
      exposeHeadRoute: false,
      handler: async (_request, reply) => {
        reply.header('allow', ALLOW)
        throw new GatewayError('GW_HTTP_METHOD_NOT_ALLOWED')
      },
    })
  })
}

const noRetry = (): null => null

function forward(request: FastifyRequest, reply: FastifyReply, route: RuntimeRoute, upstream: URL, metrics: Metrics, observers: UpstreamResponseObserver[]): FastifyReply {
  const mcp = request.gw.mcp
  const hasBody = request.method === 'POST' && mcp !== undefined
  return reply.from(upstream.pathname, {
    ...(hasBody ? { body: mcp.raw, contentType: 'application/json' } : {}),
    queryString: filterQuery,
    retryDelay: noRetry,
    rewriteRequestHeaders: (req, headers) => {
      const out = upstreamRequestHeaders(req.headers, {
        requestId: request.id,
        host: String(headers.host ?? upstream.host),
        clientIp: request.ip,
        proto: request.protocol,
      })
      if (hasBody) {
        out['content-type'] = 'application/json'
        out['content-length'] = String(mcp.raw.length)
      }
      return request.gw.upstreamHeaders ? Object.assign(out, request.gw.upstreamHeaders) : out
    },
    rewriteHeaders: (headers) => clientResponseHeaders(headers, request.id) as IncomingHttpHeaders,
    onResponse: (_req, rep, raw) => {
      // reply-from hands over undici's response ({ statusCode, headers, stream }), not a ServerResponse.
      const res = raw as unknown as UpstreamResponse
      const req = request
      const status = res.statusCode
      if (status === 401 || status === 407) {
        // The upstream refused the gateway's credential; its challenge is about us, not the client (ATK-41).
        res.stream.destroy()
        for (const h of Object.keys(rep.getHeaders())) rep.removeHeader(h)
        metrics.upstreamErrors.inc({ route: route.name, reason: 'upstream-invalid' })
        sendError(req, rep as FastifyReply, new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: `upstream answered ${status}` }))
        return
      }
      const ct = String(res.headers['content-type'] ?? '')
      if (ct.startsWith('text/event-stream')) {
        request.gw.streaming = true
        metrics.activeStreams.inc({ route: route.name })
        let done = false
        const end = () => {
          if (done) return
          done = true
          metrics.activeStreams.dec({ route: route.name })
        }
        res.stream.once('close', end)
        // A client that goes away cancels the upstream request (SHTTP-18).
        req.raw.once('close', () => {
          if (!rep.raw.writableEnded) res.stream.destroy()
        })
        rep.raw.once('close', () => {
          if (!res.stream.destroyed) res.stream.destroy()
        })
      }
      if (observers.length === 0) {
        rep.send(res.stream)
        return
      }
      // Observers finish before the client sees the response: a session id must be bound before
      // the client can present it (to this replica or another).
      Promise.all(observers.map((o) => o(request, status, res.headers))).then(
        () => rep.send(res.stream),
        (e: unknown) => {
          res.stream.destroy()
          for (const h of Object.keys(rep.getHeaders())) rep.removeHeader(h)
          sendError(request, rep as FastifyReply, e)
        },
      )
    },
    onError: (rep, { error }) => {
      const e = error as { statusCode?: number; code?: string }
      const timeout = e.statusCode === 504
      metrics.upstreamErrors.inc({ route: route.name, reason: timeout ? 'upstream-timeout' : 'upstream-unavailable' })
      sendError(request, rep as FastifyReply, new GatewayError(timeout ? 'GW_UPSTREAM_TIMEOUT' : 'GW_UPSTREAM_UNAVAILABLE', { detail: e.code ?? 'upstream error' }))
    },
  })
}
