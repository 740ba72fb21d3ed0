/**
 * Fastify glue for 2026-07-28 clients: the last preHandler of an MCP route. Legacy requests pass
 * through untouched. A 2026-07-28 request has already been authenticated, checked against its
 * headers (mcp/modern.ts), decided by policy and given its upstream credential; here it is
 * answered through the upstream session the gateway holds for the caller (translate.ts), and the
 * proxy handler never runs. With `modernClients: native` it goes on to the proxy as it is.
 */
import { randomBytes } from 'node:crypto'
import { PassThrough } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RuntimeRoute } from '../config/load.js'
import { GatewayError } from '../errors.js'
import { DEFAULT_MODERN_MODE, isModernVersion, supportedVersions } from '../mcp/modern.js'
import type { Metrics } from '../observability/metrics.js'
import { modernSessionKey, type UpstreamSessions } from '../transports/modern/sessions.js'
import {
  classify,
  clientInfoOf,
  credentialRefused,
  discoverResult,
  endUpstreamSession,
  IdSource,
  initializeUpstream,
  isRecord,
  NO_CLIENT_REQUESTS,
  notifyUpstream,
  postUpstream,
  readJson,
  sseData,
  toModernResponse,
  toUpstreamRequest,
  type Endpoint,
  type FetchFn,
  type UpstreamSession,
} from '../transports/modern/translate.js'

export interface ModernStageOptions {
  route: RuntimeRoute
  /** Where the route's requests really go (a bridge for sse/stdio upstreams) and the headers it needs. */
  target: { url: string; headers: Record<string, string> } | undefined
  sessions: UpstreamSessions
  metrics: Metrics
  fetch?: FetchFn
}

const TRACE_HEADERS = ['traceparent', 'tracestate', 'user-agent'] as const

export function modernStage(o: ModernStageOptions) {
  const { route, sessions, metrics } = o
  const mode = route.modernClients ?? DEFAULT_MODERN_MODE
  const fetchFn = o.fetch ?? fetch
  const url = o.target?.url ?? route.upstream.url
  const ids = new IdSource(randomBytes(6).toString('base64url'))

  return async function modern(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const mcp = request.gw.mcp
    if (!mcp || !isModernVersion(mcp.protocolVersion)) return undefined
    // V26-06: a session id or Last-Event-ID from a 2026-07-28 client means nothing; never forwarded.
    delete request.headers['mcp-session-id']
    delete request.headers['last-event-id']
    if (mode === 'native') return undefined
    const head = mcp.body.messages[0]!
    // No client notification of this revision has a legacy meaning without a session (cancellation is closing the stream).
    if (head.kind === 'notification') return reply.code(202).send()
    if (head.kind !== 'request') throw new GatewayError('GW_MCP_INVALID_REQUEST', { detail: 'response from a 2026-07-28 client' })
    // initialize and subscriptions/listen were refused by the MCP checks (mcp/modern.ts checkBridgeable).

    const headers: Record<string, string> = { ...(request.gw.upstreamHeaders ?? {}), 'x-request-id': request.id }
    for (const h of TRACE_HEADERS) {
      const v = request.headers[h]
      if (typeof v === 'string') headers[h] = v
    }
    // A bridge's key goes last: nothing overrides it.
    const ep: Endpoint = { url, timeoutMs: route.upstream.timeoutMs, headers: { ...headers, ...(o.target?.headers ?? {}) } }
    const key = modernSessionKey(route.name, request.gw.principal!)
    const open = () => initializeUpstream(fetchFn, ep, ids, clientInfoOf(head))
    let { session, reused } = mode === 'caller' ? await sessions.getOrOpen(key, open) : { session: await open(), reused: false }
    let ended = false
    const finish = () => {
      if (ended) return
      ended = true
      if (mode === 'request') void endUpstreamSession(fetchFn, ep, session)
    }

    try {
      if (head.method === 'server/discover') {
        finish()
        return reply.type('application/json').send({ jsonrpc: '2.0', id: head.id, result: discoverResult(session, supportedVersions(mode)) })
      }

      const upstreamId = ids.next()
      const { body, progressToken } = toUpstreamRequest(head, upstreamId)
      const gone = new AbortController()
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) gone.abort()
      })
      let post = await postUpstream(fetchFn, ep, session, body, gone.signal)
      if (post.response.status === 404 && reused) {
        // The upstream forgot the session (restart, idle expiry, another replica's bridge): open a new one, once.
        await post.response.body?.cancel().catch(() => undefined)
        await sessions.drop(key, session)
        ;({ session, reused } = await sessions.getOrOpen(key, open))
        post = await postUpstream(fetchFn, ep, session, body, gone.signal)
      }
      const r = post.response
      const ct = r.headers.get('content-type') ?? ''
      if (credentialRefused(r)) {
        await r.body?.cancel().catch(() => undefined)
        metrics.upstreamErrors.inc({ route: route.name, reason: 'upstream-invalid' })
        throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: `upstream answered ${r.status}` })
      }
      const answer = (message: Record<string, unknown>): Record<string, unknown> => {
        const t = request.gw.transformResponse
        return toModernResponse((t ? t(message) : message) as Record<string, unknown>, head.method, t !== undefined)
      }
      if (!r.ok) {
        // A JSON-RPC error the upstream gave (400 for bad params and the like) is the answer; the rest is the upstream failing.
        const m = ct.startsWith('application/json') && r.status < 500 ? await readJson(r.body).catch(() => undefined) : (await r.body?.cancel().catch(() => undefined), undefined)
        if (isRecord(m) && isRecord(m.error)) return reply.code(r.status).type('application/json').send({ jsonrpc: '2.0', id: head.id, error: m.error })
        metrics.upstreamErrors.inc({ route: route.name, reason: 'upstream-unavailable' })
        throw new GatewayError(r.status >= 500 ? 'GW_UPSTREAM_UNAVAILABLE' : 'GW_UPSTREAM_INVALID_RESPONSE', { detail: `upstream answered ${r.status}` })
      }
      if (ct.startsWith('application/json')) {
        const c = classify(await readJson(r.body), upstreamId, head.id, progressToken)
        if (c.kind !== 'final') throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: 'upstream JSON is not the response to the request' })
        const m = answer(c.message)
        // 2026-07-28 "Protocol Version Header": an unimplemented method is 404 with -32601.
        const status = isRecord(m.error) && m.error.code === -32601 ? 404 : 200
        return reply.code(status).type('application/json').send(m)
      }
      if (!ct.startsWith('text/event-stream') || !r.body) {
        await r.body?.cancel().catch(() => undefined)
        throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: `upstream content-type ${ct || 'none'}` })
      }

      request.gw.streaming = true
      metrics.activeStreams.inc({ route: route.name })
      const out = new PassThrough()
      const upstreamBody = r.body
      const sessionNow: UpstreamSession = session
      const write = (m: unknown) => out.write(`event: message\ndata: ${JSON.stringify(m)}\n\n`)
      const abortUpstream = post.abort
      const pump = async () => {
        let final = false
        // A silent upstream is cut after the route's idle timeout; the client then gets the clean error below.
        let idle = setTimeout(abortUpstream, route.upstream.idleTimeoutMs)
        try {
          for await (const data of sseData(upstreamBody)) {
            clearTimeout(idle)
            idle = setTimeout(abortUpstream, route.upstream.idleTimeoutMs)
            let raw: unknown
            try {
              raw = JSON.parse(data)
            } catch {
              continue
            }
            const c = classify(raw, upstreamId, head.id, progressToken)
            if (c.kind === 'server-request') {
              // The upstream must not wait for an answer that will never come.
              void notifyUpstream(fetchFn, ep, sessionNow, { jsonrpc: '2.0', id: c.id, error: NO_CLIENT_REQUESTS })
            } else if (c.kind === 'notification') {
              write(c.message)
            } else if (c.kind === 'final') {
              write(answer(c.message))
              final = true
              break
            }
          }
        } catch (e) {
          if (!gone.signal.aborted) request.log.info({ event: 'modern.upstream-stream', detail: (e as Error)?.message }, 'upstream stream failed')
        } finally {
          clearTimeout(idle)
        }
        if (!final && !gone.signal.aborted) {
          // The stream ended without the response: the client gets a clean error for its request, not a hang.
          metrics.upstreamErrors.inc({ route: route.name, reason: 'upstream-unavailable' })
          write({ jsonrpc: '2.0', id: head.id, error: { code: -32603, message: 'Upstream unavailable', data: { code: 'GW_UPSTREAM_UNAVAILABLE', requestId: request.id } } })
        }
        if (!final && gone.signal.aborted && mode === 'caller') {
          // 2026-07-28 cancels by closing the stream; a legacy session is told with notifications/cancelled.
          void notifyUpstream(fetchFn, ep, sessionNow, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: upstreamId, reason: 'client closed the stream' } })
        }
        await upstreamBody.cancel().catch(() => undefined)
        out.end()
        metrics.activeStreams.dec({ route: route.name })
        finish()
      }
      reply.code(200).header('content-type', 'text/event-stream').header('cache-control', 'no-store').header('x-accel-buffering', 'no')
      reply.send(out)
      void pump()
      return reply
    } finally {
      if (!request.gw.streaming) finish()
    }
  }
}
