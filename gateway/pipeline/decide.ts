/**
 * Fastify glue for the decide stage (after the MCP checks): every JSON-RPC message of the body
 * is decided (a batch is refused whole if any element is), the decision is attached for audit,
 * and list responses get a filter. Refusals become GatewayErrors; error-handler shapes them.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { AuditedDecision } from './context.js'
import { GatewayError } from '../errors.js'
import { targetName, type McpMessage } from '../mcp/jsonrpc.js'
import type { Metrics } from '../observability/metrics.js'
import { argumentsDigest } from '../policy/digest.js'
import type { Logger } from 'pino'
import type { RuntimeConfig } from '../config/load.js'
import { compileContext, PolicyEngine } from '../policy/engine.js'
import { evaluate, visible, type Decision } from '../policy/evaluate.js'
import { LIST_METHODS, listFilter, replayFilter } from '../policy/filter.js'
import type { TargetKind } from '../policy/compile.js'

const SEVERITY = { allow: 0, 'require-scopes': 1, 'require-approval': 2, deny: 3 } as const

export interface PolicyStageOptions {
  rawArguments: boolean
  /** An approval stage follows: a single held tools/call is handed to it instead of refused. */
  approvals?: boolean
  now?: () => number
}

export function policyStage(engine: PolicyEngine, metrics: Metrics, options: PolicyStageOptions) {
  const now = options.now ?? Date.now
  // Synchronous: nothing here waits, and the stage chain (pipeline/chain.ts) runs a stage that
  // returns no promise without a tick or a promise of its own.
  return function decide(request: FastifyRequest, _reply: FastifyReply): void {
    const gw = request.gw
    const route = gw.route!.name
    const mcp = gw.mcp!
    // One read of the set per request: a reload mid-request cannot mix two versions.
    const set = engine.current
    const at = now()
    const principal = gw.principal

    let deciding: { decision: Decision; message: McpMessage | undefined; args: unknown } | undefined
    const lists = new Map<string | number, string>()
    for (const message of mcp.body.messages) {
      // Client responses answer the server's own requests (sampling, elicitation); they call nothing.
      if (message.kind === 'response') continue
      const name = targetName(message)
      const args = message.method === 'tools/call' ? message.params?.arguments : undefined
      const decision = evaluate(set, { route, method: message.method, name, arguments: args, principal, now: at })
      metrics.policyDecisions.inc({ route, effect: decision.effect, reason: decision.reason })
      if (decision.shadow && decision.shadow.effect !== decision.effect) metrics.policyShadowDivergences.inc({ route, effect: decision.shadow.effect })
      // A batch is answered by its most restrictive element: a step-up cannot fix a denied sibling.
      if (!deciding || SEVERITY[decision.effect] > SEVERITY[deciding.decision.effect]) deciding = { decision, message, args }
      if (message.kind === 'request' && LIST_METHODS[message.method]) lists.set(message.id, message.method)
    }
    // GET (server stream) and DELETE (session end) carry no message; a route without any policy is closed to them too.
    if (!deciding) {
      const open = set.rulesFor(route).length > 0
      deciding = { decision: { effect: open ? 'allow' : 'deny', policy: undefined, ruleId: undefined, reason: open ? 'rule-allowed' : 'no-policy-for-route' }, message: undefined, args: undefined }
    }

    const { decision, message, args } = deciding
    gw.decision = audited(decision, set.version, args, options.rawArguments)
    if (decision.shadow && decision.shadow.effect !== decision.effect) {
      request.log.info({ event: 'policy.shadow', decision: gw.decision }, `shadow policy would ${decision.shadow.effect === 'allow' ? 'allow' : 'refuse'} this request`)
    }

    const detail = `${decision.reason}${decision.ruleId ? ` ${decision.policy}/${decision.ruleId}` : ''}`
    switch (decision.effect) {
      case 'allow':
        break
      case 'require-scopes':
        // `scope` keeps the granted scopes too: clients (the MCP SDK among them) replace their
        // scope with the challenge's, and a step-up must not cost the scopes the session already uses.
        throw new GatewayError('GW_AUTH_INSUFFICIENT_SCOPE', { scope: decision.scopes!.join(' '), detail, ...(decision.missing?.length ? { description: `missing scope ${decision.missing.join(' ')}` } : {}) })
      case 'require-approval': {
        // Only a lone tools/call can be held and bound to one approval; anything else is refused.
        const single = mcp.body.messages.filter((m) => m.kind !== 'response').length === 1
        const tool = message && message.kind !== 'response' && message.method === 'tools/call' ? targetName(message) : undefined
        if (options.approvals && single && tool !== undefined && decision.approval) {
          gw.approval = { spec: decision.approval, tool, arguments: args ?? null, policyVersion: set.version, argumentsDigest: argumentsDigest(args ?? null) }
          break
        }
        throw new GatewayError('GW_POLICY_DENIED', { reason: 'policy-approval', detail })
      }
      case 'deny':
        throw new GatewayError(message && targetName(message) === undefined ? 'GW_POLICY_METHOD_DENIED' : 'GW_POLICY_DENIED', { detail })
    }

    const isVisible = (kind: TargetKind, name: string) => visible(set, route, kind, name, principal, at)
    if (lists.size > 0) gw.transformResponse = listFilter(lists, isVisible)
    // A GET stream (Last-Event-ID resumption, or the standalone stream) may replay a list answer.
    else if (request.method === 'GET') gw.transformResponse = replayFilter(isVisible)
  }
}

function audited(d: Decision, version: string, args: unknown, raw: boolean): AuditedDecision {
  return {
    effect: d.effect,
    policy: d.policy,
    rule: d.ruleId,
    reason: d.reason,
    shadow: d.shadow && { effect: d.shadow.effect, policy: d.shadow.policy, rule: d.shadow.ruleId },
    policyVersion: version,
    argumentsDigest: args === undefined ? undefined : argumentsDigest(args),
    arguments: raw ? args : undefined,
  }
}

/** The engine for a config with a `policies:` section (throws ConfigError when the set is invalid). */
export function createPolicyEngine(config: RuntimeConfig, logger: Logger, metrics: Metrics): PolicyEngine | undefined {
  return config.policies ? PolicyEngine.load(config.policies.dir, compileContext(config), logger, metrics) : undefined
}
