/**
 * One structured audit line per MCP request. It names who (issuer, subject, agent, delegation
 * chain), what (route, method, target), the outcome and why, and never a token or raw
 * arguments. Later stages (policy, credentials) add their fields to `request.gw`.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { auditablePrincipal } from '../auth/principal.js'
import type { CredentialRecord } from '../exchange/broker.js'
import type { AuditedDecision } from './context.js'
import type { AuditChain } from '../observability/audit-chain.js'
import type { Metrics } from '../observability/metrics.js'
import { parseTraceparent } from '../observability/trace.js'

export interface AuditRecord {
  requestId: string
  route: string | undefined
  httpMethod: string
  status: number
  reason: string
  code: string | undefined
  principal: Record<string, unknown> | undefined
  mcp: { method?: string; target?: string; rpcId?: string | number; protocolVersion?: string; session?: boolean; batch?: boolean } | undefined
  /** Policy decision: effect, policy, rule, reason, shadow decision, policy version, argument digest. */
  decision: AuditedDecision | undefined
  /** The approval that released a held call (docs/approvals.md); its own audit lines carry the binding. */
  approval: string | undefined
  /** Rate limit that refused the request (or let it through with Redis down). */
  rateLimit: { limit: string; outcome: string } | undefined
  streaming: boolean
  /** Upstream credential strategy and the downstream token's jti or digest (never the token). */
  credential: CredentialRecord | undefined
  /** API routes and egress: the path under the prefix (never the query: values may be personal). */
  http: { path: string } | undefined
  /** W3C trace id of the request (`traceparent`), the link between an MCP call and its egress calls. */
  traceId: string | undefined
  /** Egress: request id of the inbound MCP request this call serves, as reported by the MCP server. */
  causedBy: string | undefined
  latencyMs: number
}

export function auditRecord(request: FastifyRequest, reply: FastifyReply): AuditRecord {
  const gw = request.gw
  const mcp = gw.mcp
  return {
    requestId: request.id,
    route: gw.route?.name,
    httpMethod: request.method,
    status: reply.statusCode,
    reason: gw.error?.reason ?? 'ok',
    code: gw.error?.code,
    principal: auditablePrincipal(gw.principal),
    mcp: mcp && {
      method: mcp.method,
      target: mcp.target,
      rpcId: mcp.rpcId,
      protocolVersion: mcp.protocolVersion,
      session: mcp.sessionId !== undefined || undefined,
      batch: mcp.body.batch || undefined,
    },
    decision: gw.decision,
    approval: gw.approval?.approvalId,
    rateLimit: gw.rateLimit,
    streaming: gw.streaming,
    credential: gw.credential,
    http: gw.http && { path: gw.http.path },
    traceId: parseTraceparent(request.headers.traceparent)?.traceId,
    causedBy: gw.causedBy,
    latencyMs: Math.round(reply.elapsedTime * 100) / 100,
  }
}

/**
 * Writes the chained audit line for a request (observability/audit-chain.ts). The line is built
 * from an allow-list (no token, no header, no raw argument can be in it), so it skips pino and its
 * redaction pass, which in process cost more than building the record (docs/performance.md); any
 * other log line keeps redaction. Keys read as `request.log.info({ audit }, msg)` wrote them:
 * level, time, service, reqId, audit, then chain and msg.
 */
export function writeAudit(log: Logger, chain: AuditChain, request: FastifyRequest, reply: FastifyReply, msg: string): void {
  if (log.isLevelEnabled('info')) chain.append(`"reqId":${JSON.stringify(request.id)},"audit":${JSON.stringify(auditRecord(request, reply))}`, msg)
}

/** What the onResponse hook needs besides the request. */
export interface AuditStageDeps {
  logger: Logger
  chain: AuditChain
  metrics: Metrics
  /** Sees every answered request (the address gate counts failed session lookups). */
  observe?: (request: FastifyRequest) => void
  /** Ends the request's server span (tracing on). */
  endSpan?: (request: FastifyRequest, reply: FastifyReply) => void
}

/** onResponse of the public listener: request metrics, the audit line, the end of the server span. */
export function auditStage(d: AuditStageDeps) {
  const { metrics } = d
  return async function audit(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const route = request.gw?.route
    if (!route) return
    const reason = request.gw.error?.reason ?? 'ok'
    metrics.requests.inc({ route: route.name, status: String(reply.statusCode), reason })
    metrics.requestDuration.observe({ route: route.name }, reply.elapsedTime / 1000)
    const code = request.gw.error?.code
    d.observe?.(request)
    if (code === 'GW_MCP_JSON_LIMIT') metrics.limitsExceeded.inc({ limit: request.gw.error!.detail ?? 'json' })
    else if (code === 'GW_HTTP_BODY_TOO_LARGE') metrics.limitsExceeded.inc({ limit: 'body' })
    else if (code === 'GW_HTTP_TOO_MANY_STREAMS') metrics.limitsExceeded.inc({ limit: 'streams' })
    if (request.raw.method !== 'OPTIONS') writeAudit(d.logger, d.chain, request, reply, 'mcp.request')
    d.endSpan?.(request, reply)
  }
}
