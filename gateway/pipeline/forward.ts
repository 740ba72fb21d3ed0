/**
 * Forwarding with @fastify/reply-from (undici pools, one per route). MCP routes: POST bodies are
 * the exact bytes the MCP stage parsed. API routes and egress targets: request bodies and
 * responses are streamed untouched, under a path prefix mapped by path.ts. SSE responses are
 * streamed through without buffering; the upstream's own challenges and cookies never reach the
 * client.
 */
import replyFrom from '@fastify/reply-from'
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler, preHandlerHookHandler } from 'fastify'
import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import { pipeline, type Readable } from 'node:stream'
import type { Pool } from 'undici'
import type { RuntimeRoute } from '../config/load.js'
import { sendError } from './error-handler.js'
import { GatewayError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'
import type { TraceSpan } from '../observability/tracing.js'
import { clientResponseHeaders, upstreamRequestHeaders } from '../upstream/headers.js'
import { DROPPED_QUERY, mapPath } from '../upstream/path.js'
import { rewriteJsonBody, sseRewriter } from '../upstream/response-transform.js'
import { dispatchUpstream, upstreamPool, type HeadDecision } from '../upstream/dispatch.js'
import { callerKey, StreamCounter, streamDeadlineMs } from '../upstream/streams.js'
import { chain } from './chain.js'
import { ALLOW, CORS_ALLOW_HEADERS, methodNotAllowed, originCheckFor, preflight } from './front.js'

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
function filterQuery(search: string | undefined, reqUrl: string): string {
  const q = reqUrl.indexOf('?')
  if (q === -1) return search?.replace(/^\?/, '') ?? ''
  const params = new URLSearchParams(reqUrl.slice(q + 1))
  for (const k of [...params.keys()]) if (DROPPED_QUERY.has(k)) params.delete(k)
  const upstream = new URLSearchParams(search ?? '')
  for (const [k, v] of params) upstream.append(k, v)
  return upstream.toString()
}

/** undici connector options (egress: a lookup that checks every resolved address). */
export interface ConnectOptions {
  lookup?: (hostname: string, options: object, callback: (...args: never[]) => void) => void
}

/** Where requests go when that is not the route's own URL (a bridge), and headers it requires. */
export interface ProxyTarget {
  url: string
  headers: Record<string, string>
}

async function registerUpstream(scope: FastifyInstance, route: RuntimeRoute, connect: ConnectOptions = {}): Promise<URL> {
  const upstream = new URL(route.upstream.url)
  const pool = upstreamPool(upstream.origin, route.upstream, connect)
  scope.addHook('onClose', async () => {
    await pool.destroy()
  })
  await scope.register(replyFrom, { base: upstream.origin, undici: pool, disableRequestLogging: true })
  return upstream
}

const API_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const

/**
 * An API route (kind api) or an egress target: every method under `route.path` and
 * `route.path/…`, bodies streamed as received (no parsing, no JSON requirement), the path mapped
 * by path.ts. `request.gw.http` is set before authentication, so a bad path costs nothing.
 */
export async function registerPrefixProxy(app: FastifyInstance, route: RuntimeRoute, stages: RouteStages, metrics: Metrics, connect?: ConnectOptions): Promise<void> {
  await app.register(async (scope) => {
    const upstream = await registerUpstream(scope, route, connect)
    scope.removeAllContentTypeParsers()
    // The raw request stream is the body: reply-from pipes it upstream unread.
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload))
    const mapHttp: onRequestHookHandler = async (request) => {
      request.gw.http = mapPath(request.method, request.url, route.path, upstream.pathname).facts
    }
    const onRequest = route.kind === 'egress' ? [mapHttp, ...stages.onRequest] : [originCheckFor(route), mapHttp, ...stages.onRequest]
    const handler = (request: FastifyRequest, reply: FastifyReply) => {
      const mapped = mapPath(request.method, request.url, route.path, upstream.pathname)
      return forward(request, reply, { route, upstream, headers: {}, source: mapped.upstreamPath, query: () => mapped.query, body: undefined }, metrics, stages.onUpstreamResponse)
    }
    for (const url of [route.path, `${route.path}/*`]) {
      scope.route({ method: [...API_METHODS], url, exposeHeadRoute: false, onRequest, preHandler: stages.preHandler.length > 0 ? chain(stages.preHandler) : [], handler })
      if (route.kind !== 'egress') scope.route({ method: 'OPTIONS', url, onRequest: [originCheckFor(route)], handler: preflight(API_METHODS.join(', '), 'Authorization, Content-Type, Accept') })
    }
  })
}

export async function registerRouteProxy(app: FastifyInstance, route: RuntimeRoute, stages: RouteStages, metrics: Metrics, target?: ProxyTarget): Promise<void> {
  if (route.kind !== 'mcp') return registerPrefixProxy(app, route, stages, metrics)
  const streams = new StreamCounter()
  await app.register(async (scope) => {
    const upstream = new URL(target?.url ?? route.upstream.url)
    // A bridge on loopback is plain http: the route's CA is for the route's own upstream.
    const pool = upstreamPool(upstream.origin, target ? { ...route.upstream, ca: undefined } : route.upstream)
    scope.addHook('onClose', async () => pool.destroy())

    const originCheck = originCheckFor(route)

    scope.route({
      method: [...MCP_METHODS],
      url: route.path,
      exposeHeadRoute: false,
      bodyLimit: route.bodyLimit,
      onRequest: chain([originCheck, ...stages.onRequest]),
      preHandler: chain(stages.preHandler),
      handler: (request, reply) => {
        const principal = request.gw.principal
        if (request.method === 'GET' && principal) {
          // GET streams are the long-lived ones; cap them per caller so one agent cannot hold
          // every connection (issue 7). POST responses end with their call.
          const key = callerKey(principal)
          if (!streams.acquire(key, route.streams.maxPerCaller)) throw new GatewayError('GW_HTTP_TOO_MANY_STREAMS', { retryAfter: 5 })
          reply.raw.once('close', () => streams.release(key))
        }
        const mcp = request.gw.mcp
        const body = request.method === 'POST' && mcp !== undefined ? mcp.raw : undefined
        return forwardMcp(request, reply, { route, upstream, pool, headers: target?.headers ?? {}, body }, metrics, stages.onUpstreamResponse)
      },
    })

    // CORS preflight carries no credentials: answered here, never proxied (SHTTP-05).
    scope.route({
      method: 'OPTIONS',
      url: route.path,
      onRequest: [originCheck],
      handler: preflight(ALLOW, CORS_ALLOW_HEADERS),
    })

    scope.route({
      method: ['HEAD', 'PUT', 'PATCH'],
      url: route.path,
      exposeHeadRoute: false,
      handler: methodNotAllowed(ALLOW),
    })
  })
}

interface Forwarding {
  route: RuntimeRoute
  /** Origin actually called: the upstream, or a bridge in front of it. */
  upstream: URL
  /** Headers the target requires (a bridge's key), applied last. */
  headers: Record<string, string>
  /** Path at the upstream origin. */
  source: string
  query: (search: string | undefined, reqUrl: string) => string
  /** MCP: the parsed bytes. Undefined: the request stream (API, egress) or no body. */
  body: Buffer | undefined
}

const same = (m: unknown): unknown => m

const isUpstreamChallenge = (status: number, headers: IncomingHttpHeaders): boolean =>
  status === 401 || status === 407 || (status === 403 && headers['www-authenticate'] !== undefined)

/**
 * Relays an upstream response given as a stream (reply-from's, or dispatch.ts's for SSE and
 * rewritten answers): refuses upstream challenges, rewrites what a stage asked for, keeps SSE
 * streams bounded, and lets observers see the head before the client does.
 */
function relayResponse(request: FastifyRequest, rep: FastifyReply, res: UpstreamResponse, route: RuntimeRoute, metrics: Metrics, observers: UpstreamResponseObserver[]): void {
  const status = res.statusCode
  // The upstream refused the gateway's credential (401/407, or a 403 insufficient_scope
  // challenge): that challenge names the upstream's AS, not the client's, so relaying it would
  // send the client to the wrong place (CHL-13, ATK-41). A plain 403 is the upstream's own answer.
  if (isUpstreamChallenge(status, res.headers)) {
    res.stream.destroy()
    for (const h of Object.keys(rep.getHeaders())) rep.removeHeader(h)
    metrics.upstreamErrors.inc({ route: route.name, reason: 'upstream-invalid' })
    sendError(request, rep, new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: `upstream answered ${status}` }))
    return
  }
  const ct = String(res.headers['content-type'] ?? '')
  const fail = (detail: string) => {
    res.stream.destroy()
    for (const h of Object.keys(rep.getHeaders())) rep.removeHeader(h)
    sendError(request, rep, new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail }))
  }
  // Only responses a later stage must rewrite (discovery filtering) or read (session state) leave the straight pipe.
  const transform = status === 200 ? request.gw.transformResponse : undefined
  const watchSpec = status === 200 ? request.gw.watchResponse : undefined
  const watch = watchSpec && ((m: unknown) => watchSpec.message(m, res.headers))
  if (transform && !ct.startsWith('application/json') && !ct.startsWith('text/event-stream')) return fail(`cannot rewrite a ${ct || 'typeless'} response`)
  if (ct.startsWith('text/event-stream')) {
    request.gw.streaming = true
    metrics.activeStreams.inc({ route: route.name })
    res.stream.once('close', () => metrics.activeStreams.dec({ route: route.name }))
    // The stream ends (cleanly, so the client reconnects with a fresh token) when the token
    // that opened it expires or the route's maximum duration is reached (CHL-10).
    const deadline = setTimeout(() => {
      metrics.upstreamErrors.inc({ route: route.name, reason: 'stream-deadline' })
      metrics.limitsExceeded.inc({ limit: 'stream-duration' })
      rep.raw.end()
      res.stream.destroy()
    }, streamDeadlineMs(request.gw.principal, route.streams.maxDurationMs))
    deadline.unref()
    // A client that goes away cancels the upstream request (SHTTP-18): the response's 'close'
    // (the request's own 'close' has fired once its body was read).
    rep.raw.once('close', () => {
      clearTimeout(deadline)
      if (!res.stream.destroyed) res.stream.destroy()
    })
  }
  const relay = () => {
    const json = !request.gw.streaming && ct.startsWith('application/json')
    if (json && (transform || watchSpec?.json)) {
      rep.removeHeader('content-length')
      rewriteJsonBody(res.stream, transform ?? same, undefined, watch).then(
        (body) => rep.send(body),
        () => fail('unparseable JSON response to rewrite'),
      )
      return
    }
    const rewrite = request.gw.streaming && (transform || watch)
    rep.send(rewrite ? pipeline(res.stream, sseRewriter(transform, watch), () => undefined) : res.stream)
    // Node holds response headers until the first body byte; an SSE stream may stay silent
    // for minutes, and the client must know the stream is open now.
    if (request.gw.streaming && !rep.raw.headersSent) (rep.raw as ServerResponse).flushHeaders()
  }
  if (observers.length === 0) {
    relay()
    return
  }
  // Observers finish before the client sees the response: a session id must be bound before
  // the client can present it (to this replica or another).
  Promise.all(observers.map((o) => o(request, status, res.headers))).then(
    () => {
      // The head was set before the observers ran; one may have re-issued the session id (session/sealed-id.ts).
      const sid = res.headers['mcp-session-id']
      if (typeof sid === 'string') rep.header('mcp-session-id', sid)
      relay()
    },
    (e: unknown) => {
      res.stream.destroy()
      for (const h of Object.keys(rep.getHeaders())) rep.removeHeader(h)
      sendError(request, rep, e)
    },
  )
}

interface McpForwarding {
  route: RuntimeRoute
  /** Origin and path actually called: the upstream, or a bridge in front of it. */
  upstream: URL
  pool: Pool
  /** Headers the target requires (a bridge's key), applied last. */
  headers: Record<string, string>
  /** POST: the bytes the MCP stage parsed. */
  body: Buffer | undefined
}

/** Upstream failures before any response head: timeouts and unreachable upstreams. */
function upstreamFailure(route: RuntimeRoute, metrics: Metrics, code: string | undefined): GatewayError {
  const timeout = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT'
  metrics.upstreamErrors.inc({ route: route.name, reason: timeout ? 'upstream-timeout' : 'upstream-unavailable' })
  return new GatewayError(timeout ? 'GW_UPSTREAM_TIMEOUT' : 'GW_UPSTREAM_UNAVAILABLE', { detail: code ?? 'upstream error' })
}

function forwardMcp(request: FastifyRequest, reply: FastifyReply, f: McpForwarding, metrics: Metrics, observers: UpstreamResponseObserver[]): FastifyReply {
  const { route, upstream, body } = f
  const headers = upstreamRequestHeaders(request.headers, { requestId: request.id, host: upstream.host, clientIp: request.ip, proto: request.protocol })
  if (body) {
    headers['content-type'] = 'application/json'
    headers['content-length'] = String(body.length)
  }
  if (request.gw.upstreamHeaders) Object.assign(headers, request.gw.upstreamHeaders)
  // Headers the target itself requires (a bridge's key) go last: nothing overrides them.
  Object.assign(headers, f.headers)
  const query = filterQuery(upstream.search, request.url)
  const res = reply.raw
  const span = request.gw.span && upstreamSpan(request, upstream, headers)

  const direct = (status: number, upstreamHeaders: IncomingHttpHeaders): HeadDecision => {
    // From here the bytes go straight to the socket; Fastify's onResponse hooks (audit) still
    // run on the response's 'finish'.
    reply.hijack()
    const out = clientResponseHeaders(upstreamHeaders, request.id)
    for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined && !(k in out)) out[k] = v as string
    res.writeHead(status, out)
    return { kind: 'direct', write: (c) => res.write(c), onDrain: (resume) => res.once('drain', resume), end: () => res.end(), fail: () => res.destroy() }
  }

  const abort = dispatchUpstream(f.pool, {
    path: query ? `${upstream.pathname}?${query}` : upstream.pathname,
    method: request.method,
    headers,
    body,
    onHead: (status, h, makeStream) => {
      if (span) endUpstreamSpan(span, status, res)
      const ct = h['content-type']
      const sse = typeof ct === 'string' && ct.startsWith('text/event-stream')
      if (sse || isUpstreamChallenge(status, h) || (status === 200 && (request.gw.transformResponse || request.gw.watchResponse?.json))) {
        const stream = makeStream()
        reply.code(status).headers(clientResponseHeaders(h, request.id))
        relayResponse(request, reply, { statusCode: status, headers: h, stream }, route, metrics, observers)
        return { kind: 'stream', stream }
      }
      if (observers.length === 0) return direct(status, h)
      // Observers finish before the client sees the response: a session id must be bound before
      // the client can present it (to this replica or another).
      return Promise.all(observers.map((o) => o(request, status, h))).then(
        () => direct(status, h),
        (e: unknown): HeadDecision => {
          sendError(request, reply, e)
          return { kind: 'discard' }
        },
      )
    },
    onError: (err) => {
      span?.fail((err as { code?: string }).code ?? 'error')
      span?.end()
      if (reply.sent || res.headersSent) return void res.destroy()
      sendError(request, reply, err instanceof GatewayError ? err : upstreamFailure(route, metrics, (err as { code?: string }).code))
    },
  })
  // A client that goes away cancels the upstream request (SHTTP-18).
  res.once('close', () => {
    if (!res.writableFinished) abort(new Error('client closed the connection'))
  })
  return reply
}

/**
 * The upstream call as a CLIENT span (only with tracing on): the upstream receives this span's
 * traceparent, never the client's, so its spans hang under the gateway's call. Bridges (stdio,
 * legacy SSE) are this hop too: their loopback URL is what `server.address` shows.
 */
function upstreamSpan(request: FastifyRequest, upstream: URL, headers: Record<string, string | string[] | undefined>): TraceSpan {
  const span = request.gw.span!.child(request.method, 'client', {
    'http.request.method': request.method,
    'server.address': upstream.hostname,
    'server.port': Number(upstream.port || (upstream.protocol === 'https:' ? 443 : 80)),
    'url.full': `${upstream.origin}${upstream.pathname}`,
    'mcp_warden.route': request.gw.route!.name,
  })
  const h = span.headers()
  headers.traceparent = h.traceparent
  if (h.tracestate) headers.tracestate = h.tracestate
  else delete headers.tracestate
  return span
}

/** Ends at the response's end, so the span covers a streamed answer too. */
function endUpstreamSpan(span: TraceSpan, status: number, res: { once(event: 'close', f: () => void): unknown }): void {
  span.set({ 'http.response.status_code': status })
  if (status >= 500) span.fail(String(status))
  res.once('close', () => span.end())
}

const noRetry = (): null => null

function forward(request: FastifyRequest, reply: FastifyReply, f: Forwarding, metrics: Metrics, observers: UpstreamResponseObserver[]): FastifyReply {
  const { route, body, upstream } = f
  let span: TraceSpan | undefined
  return reply.from(f.source, {
    ...(body ? { body, contentType: 'application/json' } : {}),
    queryString: f.query,
    retryDelay: noRetry,
    rewriteRequestHeaders: (req, headers) => {
      const out = upstreamRequestHeaders(req.headers, {
        requestId: request.id,
        host: String(headers.host ?? upstream.host),
        clientIp: request.ip,
        proto: request.protocol,
        api: route.kind !== 'mcp',
      })
      if (body) {
        out['content-type'] = 'application/json'
        out['content-length'] = String(body.length)
      }
      if (request.gw.upstreamHeaders) Object.assign(out, request.gw.upstreamHeaders)
      if (request.gw.span) span = upstreamSpan(request, upstream, out)
      // Headers the target itself requires (a bridge's key) go last: nothing overrides them.
      return Object.keys(f.headers).length > 0 ? Object.assign(out, f.headers) : out
    },
    rewriteHeaders: (headers) => clientResponseHeaders(headers, request.id) as IncomingHttpHeaders,
    onResponse: (_req, rep, raw) => {
      if (span) endUpstreamSpan(span, (raw as unknown as UpstreamResponse).statusCode, rep.raw)
      relayResponse(request, rep as FastifyReply, raw as unknown as UpstreamResponse, route, metrics, observers)
    },
    onError: (rep, { error }) => {
      span?.fail((error as { code?: string }).code ?? 'error')
      span?.end()
      const e = error as { statusCode?: number; code?: string; message?: string; cause?: { code?: string; message?: string } }
      // egress/address.ts refused the resolved address inside the connector: nothing was sent.
      const refused = e.code === 'EGRESS_ADDRESS_REFUSED' ? e : e.cause?.code === 'EGRESS_ADDRESS_REFUSED' ? e.cause : undefined
      if (refused) {
        sendError(request, rep as FastifyReply, new GatewayError('GW_EGRESS_ADDRESS_FORBIDDEN', { detail: refused.message }))
        return
      }
      sendError(request, rep as FastifyReply, upstreamFailure(route, metrics, e.statusCode === 504 ? 'UND_ERR_HEADERS_TIMEOUT' : e.code))
    },
  })
}
