/**
 * What the pipeline stages learn about a request, attached to it as `request.gw`. Each stage
 * fills its own part (the order is pipeline/stages.ts): authenticate → principal, mcp checks →
 * mcp, decide → decision, credential → upstream headers and credential record, forward → outcome.
 */
import type { Principal } from '../auth/principal.js'
import type { RuntimeRoute } from '../config/load.js'
import type { CredentialRecord } from '../exchange/broker.js'
import type { GatewayError } from '../errors.js'
import type { ParsedBody } from '../mcp/jsonrpc.js'
import type { CompiledApproval } from '../policy/compile.js'
import type { HttpFacts } from '../upstream/path.js'
import type { TraceSpan } from '../observability/tracing.js'
import type { IncomingHttpHeaders } from 'node:http'

export interface McpContext {
  body: ParsedBody
  raw: Buffer
  protocolVersion: string
  sessionId: string | undefined
  /** First request's method and target, for audit and policy. */
  method: string | undefined
  target: string | undefined
  rpcId: string | number | undefined
}

export interface RequestContext {
  route: RuntimeRoute | undefined
  principal: Principal | undefined
  mcp: McpContext | undefined
  error: GatewayError | undefined
  streaming: boolean
  /** Headers the credential stage adds toward the upstream (e.g. the exchanged token). */
  upstreamHeaders: Record<string, string> | undefined
  credential: CredentialRecord | undefined
  /**
   * API routes and egress targets: method, path under the prefix and query, the input for HTTP
   * policy matching (headers are on the request itself). Undefined on MCP routes.
   */
  http: HttpFacts | undefined
  /** Egress: the inbound request this call serves, as the MCP server reported it (correlation header). */
  causedBy: string | undefined
  /** A tools/call held by a require-approval rule, for the approval stage (pipeline/approve.ts). */
  approval: { spec: CompiledApproval; tool: string; arguments: unknown; policyVersion: string; argumentsDigest: string; approvalId?: string; approvedToken?: string } | undefined
  /** The policy decision (policy stage), for audit. */
  decision: AuditedDecision | undefined
  /** The rate limit that refused the request, or the Redis-down outcome (limits stage), for audit. */
  rateLimit: { limit: string; outcome: 'limited' | 'unavailable' | 'fail-open' } | undefined
  /**
   * Applied by the proxy to every JSON-RPC message of the upstream response (JSON or SSE);
   * set only when a response must be rewritten (discovery filtering), so other responses are
   * piped through untouched.
   */
  transformResponse: ((message: unknown) => unknown) | undefined
  /** The request's server span; undefined whenever tracing is off (observability/request-span.ts). */
  span: TraceSpan | undefined
  /**
   * Session state learned from the upstream's answer (pipeline/session.ts): awaited for each
   * message of an SSE answer, and of a JSON answer when `json`, before the client can see it;
   * false withholds the message.
   */
  watchResponse: { json: boolean; message: (message: unknown, headers: IncomingHttpHeaders) => boolean | Promise<boolean> } | undefined
}

export interface AuditedDecision {
  effect: string
  policy: string | undefined
  rule: string | undefined
  reason: string
  shadow: { effect: string; policy: string | undefined; rule: string | undefined } | undefined
  policyVersion: string
  argumentsDigest: string | undefined
  arguments: unknown
}

declare module 'fastify' {
  interface FastifyRequest {
    gw: RequestContext
  }
}

export const newContext = (route: RuntimeRoute | undefined): RequestContext => ({
  route,
  principal: undefined,
  mcp: undefined,
  error: undefined,
  streaming: false,
  upstreamHeaders: undefined,
  credential: undefined,
  http: undefined,
  causedBy: undefined,
  decision: undefined,
  approval: undefined,
  rateLimit: undefined,
  transformResponse: undefined,
  span: undefined,
  watchResponse: undefined,
})
