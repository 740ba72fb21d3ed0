/**
 * The order a request takes, per route kind. This file is the pipeline: read it top to bottom.
 * Every stage refuses by throwing a GatewayError (error-handler.ts turns it into the answer); a
 * stage that has nothing to wait for returns nothing and costs no promise (chain.ts).
 *
 *   front (front.ts)         host allow-list, route lookup, origin / CORS          before the body
 *   authenticate             bearer token → principal, or 401 with a challenge     before the body
 *   body                     raw JSON bytes, parsed once, strictly (mcp-checks.ts)
 *   mcp checks               protocol version, headers against body, Accept
 *   session                  the session id belongs to this caller; its negotiated state
 *   decide                   policy, per JSON-RPC message (when `policies:` exists)
 *   limit                    rate limits and quotas of the policy set
 *   pin                      tool definitions still match their pins (route.pinning)
 *   approve                  a held tools/call waits for a human (approval channels)
 *   credential               the upstream's own token (exchange, client credentials, …)
 *   modern clients           2026-07-28 requests answered through an upstream session
 *   forward (forward.ts)     to the upstream; responses rewritten only where a stage asked
 *   audit (audit.ts)         one chained audit line and the request metrics, on response
 */
import type { onRequestHookHandler, preHandlerHookHandler } from 'fastify'
import type { RuntimeRoute } from '../config/load.js'
import type { ProxyTarget, RouteStages, UpstreamResponseObserver } from './forward.js'
import { checkMcpRequest } from './mcp-checks.js'

type Stage = preHandlerHookHandler

/** Every stage this deployment has, built once by server.ts; optional ones are absent when not configured. */
export interface PipelineStages {
  /** Counts failed session lookups per address and refuses an address that keeps failing. */
  addressGate: { gate: onRequestHookHandler; pass: onRequestHookHandler } | undefined
  authenticate: onRequestHookHandler
  checkSession: Stage
  sessionState: Stage
  decide: Stage | undefined
  limit: Stage | undefined
  pin: ((route: RuntimeRoute) => Stage) | undefined
  approve: ((route: RuntimeRoute) => Stage) | undefined
  /** Test and embedding hook: stages placed right before the credential stage. */
  extra: (route: RuntimeRoute) => Stage[]
  credential: (route: RuntimeRoute) => Stage[]
  /** `target`: the bridge in front of a stdio or legacy SSE upstream. */
  modernClients: (route: RuntimeRoute, target: ProxyTarget | undefined) => Stage
  /** Sees the upstream's answer before the client does: the negotiated state first, then the session binding (which may re-seal the id). */
  observers: { sessionState: UpstreamResponseObserver; session: UpstreamResponseObserver }
}

const authentication = (s: PipelineStages): onRequestHookHandler[] => (s.addressGate ? [s.addressGate.gate, s.authenticate, s.addressGate.pass] : [s.authenticate])

/** An MCP route (Streamable HTTP; stdio and legacy SSE upstreams through a bridge). */
export function mcpRouteStages(route: RuntimeRoute, s: PipelineStages, target: ProxyTarget | undefined): RouteStages {
  const preHandler: Stage[] = [checkMcpRequest, s.checkSession, s.sessionState]
  if (s.decide) preHandler.push(s.decide)
  // After the policy decision, so a refused call is never charged.
  if (s.limit) preHandler.push(s.limit)
  if (route.pinning && s.pin) preHandler.push(s.pin(route))
  // After rate limits, so an agent cannot flood a user's phone with approval requests.
  if (s.approve) preHandler.push(s.approve(route))
  // Last before forwarding: no token is requested for a call that an earlier stage refuses.
  preHandler.push(...s.extra(route), ...s.credential(route), s.modernClients(route, target))
  return { onRequest: authentication(s), preHandler, onUpstreamResponse: [s.observers.sessionState, s.observers.session] }
}

/** An API route (kind api): no MCP parsing, no sessions; `request.gw.http` is the policy input. */
export function apiRouteStages(route: RuntimeRoute, s: PipelineStages): RouteStages {
  return { onRequest: authentication(s), preHandler: egressTargetStages(route, s), onUpstreamResponse: [] }
}

/** An egress target (the MCP server's own API call, authenticated by the egress listener), and an API route's preHandler. */
export function egressTargetStages(target: RuntimeRoute, s: PipelineStages): Stage[] {
  return [...s.extra(target), ...s.credential(target)]
}
