/**
 * The decision: pure (PolicySet, input) → Decision. No I/O, no clock (the time is an input).
 *
 * Order (docs/policies.md "Evaluation"):
 *   1. The rules of every policy that applies to the route are matched; a rule matches when all
 *      of its conditions hold.
 *   2. A matching deny wins.
 *   3. Else a matching require-scopes whose scopes the token lacks → require-scopes (every
 *      scope those rules need, plus what the token already has, in one challenge: SCP-02).
 *   4. Else a matching require-approval → require-approval.
 *   5. Else a matching allow (or require-scopes the token satisfies) → allow.
 *   6. Else deny (default): no rule, or no policy, means no.
 * Within one step the first rule in file-name then document order is the one reported.
 * Shadow rules take part in a second, logged-only evaluation with every rule enforced.
 */
import { TARGET_METHODS, type CompiledApproval, type CompiledRule, type EvalInput, type PolicyPrincipal, type PolicySet } from './compile.js'
import { canonicalResourceUri } from './matchers.js'
import type { EffectName } from './schema.js'

/** Closed set of decision reasons (audit and metrics labels). */
export type DecisionReason =
  | 'rule-allowed'
  | 'explicit-deny'
  | 'scope-missing'
  | 'approval-required'
  | 'no-rule-matched'
  | 'no-policy-for-route'
  | 'invalid-name'

export interface Decision {
  readonly effect: EffectName
  readonly policy: string | undefined
  readonly ruleId: string | undefined
  readonly reason: DecisionReason
  /** require-scopes: the scope value for the challenge. */
  readonly scopes?: readonly string[]
  /** require-scopes: the scopes of `scopes` the token does not have (what the refused call lacks). */
  readonly missing?: readonly string[]
  /** require-approval: how to ask. */
  readonly approval?: CompiledApproval
  /** The decision with shadow rules enforced, when the route has shadow rules. */
  readonly shadow?: { readonly effect: EffectName; readonly policy: string | undefined; readonly ruleId: string | undefined }
}

export interface DecisionInput {
  route: string
  method: string
  /** Tool or prompt name, or resource URI, when the method names one. */
  name?: string | undefined
  arguments?: unknown
  principal: PolicyPrincipal | undefined
  /** Milliseconds since the epoch. */
  now: number
  listing?: boolean
}

const RESOURCE_METHODS = new Set(TARGET_METHODS.resource)

/** MCP 2025-11-25 Tools › Tool Names: the characters a tool name may use. */
const TOOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/

export function evaluate(set: PolicySet, input: DecisionInput): Decision {
  const rules = set.rulesFor(input.route)
  if (rules.length === 0) return { effect: 'deny', policy: undefined, ruleId: undefined, reason: 'no-policy-for-route' }
  const ei = prepare(input)
  if ('effect' in ei) return ei
  const enforced = decide(rules, ei, false)
  if (!rules.some((r) => r.shadow)) return enforced
  const all = decide(rules, ei, true)
  return { ...enforced, shadow: { effect: all.effect, policy: all.policy, ruleId: all.ruleId } }
}

/** The input rules see (canonical resource URI), or the refusal of a malformed name. */
function prepare(input: DecisionInput): EvalInput | Decision {
  const invalid: Decision = { effect: 'deny', policy: undefined, ruleId: undefined, reason: 'invalid-name' }
  let name = input.name
  if (input.method === 'tools/call' && name !== undefined && !TOOL_NAME.test(name)) return invalid
  if (RESOURCE_METHODS.has(input.method) && name !== undefined) {
    name = canonicalResourceUri(name)
    if (name === undefined) return invalid
  }
  return { method: input.method, name, arguments: input.arguments, principal: input.principal, now: input.now, listing: input.listing ?? false }
}

/** Why a rule did not match, or undefined when it did. */
export function whyNot(rule: CompiledRule, input: EvalInput): string | undefined {
  return failing(rule, input)?.()
}

function failing(rule: CompiledRule, input: EvalInput): (() => string) | undefined {
  for (const c of rule.checks) {
    const why = c(input, rule.effect)
    if (why !== undefined) return why
  }
  return undefined
}

function decide(rules: readonly CompiledRule[], input: EvalInput, includeShadow: boolean): Decision {
  let allow: CompiledRule | undefined
  let approval: CompiledRule | undefined
  let stepUp: CompiledRule | undefined
  const needed = new Set<string>()
  for (const rule of rules) {
    if (rule.shadow && !includeShadow) continue
    if (failing(rule, input) !== undefined) continue
    switch (rule.effect) {
      case 'deny':
        return { effect: 'deny', policy: rule.policy, ruleId: rule.id, reason: 'explicit-deny' }
      case 'require-scopes': {
        const have = input.principal?.scopes
        const missing = rule.scopes.filter((s) => !have?.has(s))
        if (missing.length > 0) {
          // Listing: some calls of the tool may not hit this rule at all (their arguments differ).
          if (input.listing && rule.args.length > 0) break
          stepUp ??= rule
          for (const s of rule.scopes) needed.add(s)
        } else allow ??= rule
        break
      }
      case 'require-approval':
        approval ??= rule
        break
      case 'allow':
        allow ??= rule
        break
    }
  }
  if (stepUp) {
    const granted = [...(input.principal?.scopes ?? [])].filter((s) => s !== 'offline_access' && !needed.has(s))
    const have = input.principal?.scopes
    return { effect: 'require-scopes', policy: stepUp.policy, ruleId: stepUp.id, reason: 'scope-missing', scopes: [...granted, ...needed], missing: [...needed].filter((s) => !have?.has(s)) }
  }
  if (approval) return { effect: 'require-approval', policy: approval.policy, ruleId: approval.id, reason: 'approval-required', ...(approval.approval ? { approval: approval.approval } : {}) }
  if (allow) return { effect: 'allow', policy: allow.policy, ruleId: allow.id, reason: 'rule-allowed' }
  return { effect: 'deny', policy: undefined, ruleId: undefined, reason: 'no-rule-matched' }
}

/** Whether a listed item should be visible: some call of it could be allowed (or approved). */
export function visible(set: PolicySet, route: string, kind: 'tool' | 'prompt' | 'resource', name: string, principal: PolicyPrincipal | undefined, now: number): boolean {
  const method = kind === 'tool' ? 'tools/call' : kind === 'prompt' ? 'prompts/get' : 'resources/read'
  const d = evaluate(set, { route, method, name, principal, now, listing: true })
  return d.effect === 'allow' || d.effect === 'require-approval'
}

/** For `policy explain`: each rule of the route and why it did or did not match. */
export function explain(set: PolicySet, input: DecisionInput): { decision: Decision; rules: { rule: CompiledRule; matched: boolean; why: string | undefined }[] } {
  const decision = evaluate(set, input)
  const ei = prepare(input)
  const rules = set.rulesFor(input.route).map((rule) => {
    const why = 'effect' in ei ? `the name is refused before any rule (${ei.reason})` : whyNot(rule, ei)
    return { rule, matched: why === undefined, why }
  })
  return { decision, rules }
}
