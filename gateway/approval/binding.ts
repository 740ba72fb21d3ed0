/**
 * What an approval is for. An approval covers exactly one binding: who (issuer, subject), through
 * which agent, which upstream and tool, which arguments (canonical-JSON SHA-256) and which policy
 * version decided it needed approval. The binding digest is what the AS or webhook approver is
 * shown and what a decision must name, so a decision can never be moved to another call.
 */
import { createHash } from 'node:crypto'
import { canonicalJson } from '../policy/digest.js'
import { parseArgPath, resolvePath } from '../policy/matchers.js'

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

const MAX_VALUE = 40
const MAX_MESSAGE = 160

/** One argument or identity value as a person can read it: no control characters, bounded. */
function short(v: unknown): string {
  let text = typeof v === 'string' ? v : v === undefined ? '?' : JSON.stringify(v) ?? '?'
  text = text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/gu, ' ').trim()
  return text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE - 1)}…` : text
}

/**
 * The binding_message: the policy's template with {agent}, {tool}, {route}, {subject} and
 * {args.<path>} filled in. It is for the human; the binding digest in authorization_details is
 * what binds. Unknown placeholders are left visible rather than silently dropped.
 */
export function bindingMessage(template: string, facts: { agent: string; tool: string; route: string; subject: string; arguments: unknown }): string {
  const out = template.replace(/\{([A-Za-z]+)(?:\.([^}]+))?\}/g, (whole, name: string, path: string | undefined) => {
    if (name === 'args' && path) {
      const p = parseArgPath(path)
      if (!p) return whole
      const r = resolvePath(facts.arguments, p)
      return r.found ? short(r.value) : '?'
    }
    if (path) return whole
    if (name === 'agent' || name === 'tool' || name === 'route' || name === 'subject') return short(facts[name])
    return whole
  })
  const flat = out.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/gu, ' ')
  return flat.length > MAX_MESSAGE ? `${flat.slice(0, MAX_MESSAGE - 1)}…` : flat
}

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
