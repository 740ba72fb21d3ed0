/**
 * Which budgets a request draws on: every JSON-RPC request and notification of the body is
 * matched against the limits of its route; each match costs 1 under the limit's key. Charges of
 * one budget (a batch of five matching calls) are summed, so the limiter sees one charge per key.
 */
import type { CompiledLimit, PolicyPrincipal } from '../policy/compile.js'
import type { LimitKeyName } from '../policy/schema.js'
import { budgetKey, type Charge } from './window.js'

export interface LimitMessage {
  method: string
  /** Tool or prompt name, or resource URI. */
  name: string | undefined
}

export interface LimitRequest {
  route: string
  upstream: string
  principal: Pick<PolicyPrincipal, 'subject' | 'clientId' | 'issuer'> | undefined
  messages: readonly LimitMessage[]
}

export function keyValue(part: LimitKeyName, r: LimitRequest, m: LimitMessage): string {
  switch (part) {
    case 'subject':
      return r.principal?.subject ?? ''
    case 'agent':
      return r.principal?.clientId ?? ''
    case 'issuer':
      return r.principal?.issuer ?? ''
    case 'route':
      return r.route
    case 'upstream':
      return r.upstream
    case 'tool':
      return m.name ?? ''
    case 'method':
      return m.method
    default:
      // The schema allows only the names above; an unknown one must not merge every caller into one budget.
      throw new Error(`unknown limit key part ${String(part)}`)
  }
}

export function limitApplies(l: CompiledLimit, m: LimitMessage): boolean {
  if (l.methods && !l.methods.test(m.method)) return false
  if (l.names && (m.name === undefined || !l.names.test(m.name))) return false
  return true
}

export function chargesFor(limits: readonly CompiledLimit[], r: LimitRequest): Charge[] {
  const byKey = new Map<string, { limit: string; key: string; max: number; perMs: number; cost: number }>()
  for (const m of r.messages) {
    for (const l of limits) {
      if (!limitApplies(l, m)) continue
      const key = budgetKey(l.name, l.perMs, l.key.map((p) => `${p}=${keyValue(p, r, m)}`))
      const c = byKey.get(key)
      if (c) c.cost++
      else byKey.set(key, { limit: l.name, key, max: l.limit, perMs: l.perMs, cost: 1 })
    }
  }
  return [...byKey.values()]
}
