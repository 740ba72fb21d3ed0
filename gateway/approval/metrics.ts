/**
 * Approval metrics, registered on the gateway's registry. Label values are bounded: issuer names
 * come from config, channel and outcome from closed sets.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export function approvalMetrics(registry: Registry) {
  return {
    waiting: new Gauge({
      name: 'mcp_warden_approvals_pending',
      help: 'Calls held on this replica waiting for a human decision.',
      registers: [registry],
    }),
    requests: new Counter({
      name: 'mcp_warden_approval_requests_total',
      help: 'Approval requests sent to a user, by issuer and channel (ciba, webhook).',
      labelNames: ['issuer', 'channel'] as const,
      registers: [registry],
    }),
    outcomes: new Counter({
      name: 'mcp_warden_approvals_total',
      help: 'Approval decisions by issuer, channel and outcome (approved, denied, expired, unbound, refused).',
      labelNames: ['issuer', 'channel', 'outcome'] as const,
      registers: [registry],
    }),
    decisionSeconds: new Histogram({
      name: 'mcp_warden_approval_decision_seconds',
      help: 'Time from the approval request to its decision, by channel and outcome.',
      labelNames: ['channel', 'outcome'] as const,
      buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    refusals: new Counter({
      name: 'mcp_warden_approval_refusals_total',
      help: 'Approval requests the AS refused, by issuer, endpoint (backchannel, token) and OAuth error code (known codes; anything else is "other").',
      labelNames: ['issuer', 'endpoint', 'error'] as const,
      registers: [registry],
    }),
    calls: new Counter({
      name: 'mcp_warden_approval_calls_total',
      help: 'Held calls by route and result: approved (ran), window (ran under a window approval), denied, expired, unbound, pending (wait elapsed), refused (by the AS), unavailable.',
      labelNames: ['route', 'result'] as const,
      registers: [registry],
    }),
  }
}

export type ApprovalMetrics = ReturnType<typeof approvalMetrics>
