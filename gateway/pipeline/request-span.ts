/**
 * The request's SERVER span and the stage spans under it (docs/observability.md). server.ts uses
 * these only when tracing is on; with it off none of them is installed.
 *
 * The server span starts at the first point the parent is known: the HTTP `traceparent` at
 * onRequest, or, for a POST without one, the MCP message's `params._meta.traceparent` once the
 * body is parsed (its start time is still the request's arrival). Work done before that point on
 * such a request (authentication) has no span of its own.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Attributes } from '@opentelemetry/api'
import type { Principal } from '../auth/principal.js'
import type { PrincipalField, TraceSpan, Tracing } from '../observability/tracing.js'

type Stage = (this: unknown, request: FastifyRequest, reply: FastifyReply) => unknown

const isThenable = (v: unknown): v is PromiseLike<unknown> => v !== null && typeof v === 'object' && typeof (v as PromiseLike<unknown>).then === 'function'

const pathOf = (url: string): string => {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

const meta = (request: FastifyRequest): { traceparent?: unknown; tracestate?: unknown } | undefined => {
  const first = request.gw.mcp?.body.messages[0]
  const m = first && first.kind !== 'response' ? first.params?._meta : undefined
  return m && typeof m === 'object' ? (m as { traceparent?: unknown; tracestate?: unknown }) : undefined
}

const header = (v: string | string[] | undefined): string | undefined => (typeof v === 'string' ? v : undefined)

/** A POST to an MCP route whose client sent no traceparent header may carry one in the body. */
const waitsForBody = (request: FastifyRequest): boolean => request.method === 'POST' && request.gw.route?.kind === 'mcp' && request.headers.traceparent === undefined

/** The request's server span, started now if it was not yet (see the module comment). */
export function requestSpan(tracing: Tracing, request: FastifyRequest, reply: FastifyReply): TraceSpan {
  if (request.gw.span) return request.gw.span
  const m = request.headers.traceparent === undefined ? meta(request) : undefined
  const fromMeta = typeof m?.traceparent === 'string'
  request.gw.span = tracing.startRequest({
    method: request.method,
    path: pathOf(request.url),
    traceparent: fromMeta ? (m!.traceparent as string) : header(request.headers.traceparent),
    tracestate: fromMeta ? (typeof m!.tracestate === 'string' ? m!.tracestate : undefined) : header(request.headers.tracestate),
    startTime: Date.now() - reply.elapsedTime,
  })
  return request.gw.span
}

/** onRequest: the server span of requests whose parent is in the headers. */
export const startRequestSpan = (tracing: Tracing) =>
  async function traceRequest(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (request.gw.route && !waitsForBody(request)) requestSpan(tracing, request, reply)
  }

/**
 * Wraps a stage: the stage runs with its own span as the parent of what it causes (JWKS and AS
 * calls). A stage that finishes synchronously (a cache hit) took no time worth a span: its span
 * is never ended, and a span that is never ended is never exported.
 */
export function tracedStage<S>(tracing: Tracing, name: string, stage: S): S {
  const s = stage as unknown as Stage
  const wrapped = function (this: unknown, request: FastifyRequest, reply: FastifyReply): unknown {
    if (!request.gw.span && waitsForBody(request) && request.gw.mcp === undefined) return s.call(this, request, reply)
    const span = requestSpan(tracing, request, reply).child(name)
    const r = span.run(() => s.call(this, request, reply))
    if (!isThenable(r)) return r
    return Promise.resolve(r).then(
      (v) => {
        span.end()
        return v
      },
      (e: unknown) => {
        span.fail(errorType(e))
        span.end()
        throw e
      },
    )
  }
  Object.defineProperty(wrapped, 'name', { value: s.name })
  return wrapped as unknown as S
}

const errorType = (e: unknown): string => {
  const code = (e as { code?: unknown }).code
  return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'error'
}

export function principalAttributes(fields: readonly PrincipalField[], p: Principal): Attributes {
  const a: Attributes = {}
  for (const f of fields) {
    if (f === 'subject') a['mcp_warden.principal.subject'] = p.subject
    else if (f === 'client') a['mcp_warden.principal.client_id'] = p.clientId
    else if (f === 'issuer') a['mcp_warden.principal.issuer'] = p.issuerName
    else if (f === 'actor' && p.actor !== undefined) a['mcp_warden.principal.actor'] = p.actor
  }
  return a
}

/** Method names MCP defines carry a tool/prompt name as their target; resource URIs may hold data and stay out. */
const NAMED_TARGET: Record<string, string> = { 'tools/call': 'gen_ai.tool.name', 'prompts/get': 'gen_ai.prompt.name' }

/** onResponse: what the stages learned, then the end of the server span. */
export function endRequestSpan(tracing: Tracing, request: FastifyRequest, reply: FastifyReply): void {
  const gw = request.gw
  if (!gw?.route) return
  const span = requestSpan(tracing, request, reply)
  const a: Attributes = { 'http.route': gw.route.path, 'http.response.status_code': reply.statusCode, 'mcp_warden.route': gw.route.name }
  const mcp = gw.mcp
  let name = `${request.method} ${gw.route.path}`
  if (mcp?.method) {
    a['mcp.method.name'] = mcp.method
    a['mcp.protocol.version'] = mcp.protocolVersion
    const targetKey = NAMED_TARGET[mcp.method]
    if (targetKey && mcp.target !== undefined) {
      a[targetKey] = mcp.target
      name = `${mcp.method} ${mcp.target}`
    } else name = mcp.method
    if (mcp.body.batch) a['mcp_warden.batch.size'] = mcp.body.messages.length
  }
  if (gw.principal) Object.assign(a, principalAttributes(tracing.principal, gw.principal))
  if (gw.decision) {
    a['mcp_warden.decision'] = gw.decision.effect
    if (gw.decision.rule !== undefined) a['mcp_warden.decision.rule'] = gw.decision.rule
    if (gw.decision.policy !== undefined) a['mcp_warden.decision.policy'] = gw.decision.policy
    a['mcp_warden.policy.version'] = gw.decision.policyVersion
  }
  if (gw.credential) a['mcp_warden.credential.strategy'] = gw.credential.strategy
  span.set(a)
  // Server spans are errors for 5xx only (HTTP semantic conventions); refusals carry their code.
  if (gw.error) span.set({ 'mcp_warden.error.code': gw.error.code })
  if (reply.statusCode >= 500) span.fail(gw.error?.code ?? String(reply.statusCode))
  ;(span as { rename?: (n: string) => void }).rename?.(name)
  span.end()
}
