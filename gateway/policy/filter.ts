/**
 * Discovery filtering (POL-09, ATK-59): the results of tools/list, prompts/list and
 * resources/list keep only the items the caller may use. Items without a string name (or uri)
 * are dropped: what cannot be decided is not shown.
 */
import type { TargetKind } from './compile.js'

export const LIST_METHODS: Readonly<Record<string, { kind: TargetKind; field: string; key: string }>> = {
  'tools/list': { kind: 'tool', field: 'tools', key: 'name' },
  'prompts/list': { kind: 'prompt', field: 'prompts', key: 'name' },
  'resources/list': { kind: 'resource', field: 'resources', key: 'uri' },
}

export type Visibility = (kind: TargetKind, name: string) => boolean

/**
 * Returns a transform for JSON-RPC messages answering the given list requests (by id).
 * Other messages (notifications, progress, other ids) pass unchanged.
 */
export function listFilter(requests: ReadonlyMap<string | number, string>, isVisible: Visibility): (message: unknown) => unknown {
  const one = (message: unknown): unknown => {
    if (!message || typeof message !== 'object' || Array.isArray(message)) return message
    const m = message as Record<string, unknown>
    const method = (typeof m.id === 'string' || typeof m.id === 'number') && !('method' in m) ? requests.get(m.id) : undefined
    const spec = method ? LIST_METHODS[method] : undefined
    if (!spec || !m.result || typeof m.result !== 'object') return message
    const result = m.result as Record<string, unknown>
    const items = result[spec.field]
    if (!Array.isArray(items)) return message
    const kept = items.filter((item) => {
      const name = item && typeof item === 'object' ? (item as Record<string, unknown>)[spec.key] : undefined
      return typeof name === 'string' && isVisible(spec.kind, name)
    })
    // A 2026-07-28 result (a native upstream's) may say "public"; filtered for this caller it is private (V26-10).
    return { ...m, result: { ...result, [spec.field]: kept, ...('cacheScope' in result ? { cacheScope: 'private' } : {}) } }
  }
  return (message) => (Array.isArray(message) ? message.map(one) : one(message))
}
