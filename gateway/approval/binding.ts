/**
 * What an approval is for. An approval covers exactly one binding: who (issuer, subject), through
 * which agent, which upstream and tool, which arguments (canonical-JSON SHA-256) and which policy
 * version decided it needed approval. The binding digest is what the AS or webhook approver is
 * shown and what a decision must name, so a decision can never be moved to another call.
 */
import { createHash } from 'node:crypto'
import { canonicalJson } from '../policy/digest.js'

export interface ApprovalBinding {
  readonly issuer: string
  readonly subject: string
  readonly agent: string
  readonly route: string
  readonly tool: string
  /** `sha256:<base64url>` of the canonical JSON of the arguments (policy/digest.ts). */
  readonly argumentsDigest: string
  readonly policyVersion: string
}

const sha = (text: string) => createHash('sha256').update(text).digest('base64url')

/** The digest of the whole binding: the ledger key of the call and the value a decision must name. */
export const bindingDigest = (b: ApprovalBinding): string => sha(canonicalJson(b))

/** A window approval covers the same caller, agent, route and tool under the same policy, any arguments. */
export const windowDigest = (b: ApprovalBinding): string => sha(canonicalJson({ ...b, argumentsDigest: '*' }))

/**
 * The RAR (RFC 9396) object describing the call, sent to the AS in the backchannel request (and in
 * the webhook payload). `binding` is what the gateway checks in the token the AS returns.
 */
export function authorizationDetail(type: string, binding: ApprovalBinding, args: unknown, mode: 'arguments' | 'digest'): Record<string, unknown> {
  return {
    type,
    tool: binding.tool,
    upstream: binding.route,
    agent: binding.agent,
    ...(mode === 'arguments' ? { arguments: args } : {}),
    arguments_digest: binding.argumentsDigest,
    policy_version: binding.policyVersion,
    binding: bindingDigest(binding),
  }
}

/** Whether an AS's authorization_details still name this binding (the AS may not swap the call). */
export function detailsNameBinding(details: unknown, type: string, digest: string): boolean {
  return Array.isArray(details) && details.some((d) => d && typeof d === 'object' && (d as Record<string, unknown>).type === type && (d as Record<string, unknown>).binding === digest)
}
