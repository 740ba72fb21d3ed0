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
    // A 2026-07-28 result (a native upstream's) may say "public"; filtered for this caller it is private (V26-10).
    return { ...m, result: { ...result, [spec.field]: visibleItems(items, spec, isVisible), ...('cacheScope' in result ? { cacheScope: 'private' } : {}) } }
  }
  return (message) => (Array.isArray(message) ? message.map(one) : one(message))
}

function visibleItems(items: unknown[], spec: { kind: TargetKind; key: string }, isVisible: Visibility): unknown[] {
  return items.filter((item) => {
    const name = item && typeof item === 'object' ? (item as Record<string, unknown>)[spec.key] : undefined
    return typeof name === 'string' && isVisible(spec.kind, name)
  })
}

/**
 * For streams that carry answers to requests this request did not make (ATK-59, issue 16 item 8):
 * a GET resuming a POST's stream with Last-Event-ID replays that POST's answer, and which id was
 * a list was only known to the POST. Instead of remembering it (a record Redis could drop), every
 * response on such a stream is filtered by its shape: each list field a result carries
 * (`tools`, `prompts`, `resources`) keeps only what the caller may see. A result that is not a
 * list has none of those fields and passes unchanged.
 */
export function replayFilter(isVisible: Visibility): (message: unknown) => unknown {
  const one = (message: unknown): unknown => {
    if (!message || typeof message !== 'object' || Array.isArray(message)) return message
    const m = message as Record<string, unknown>
    if ('method' in m || !m.result || typeof m.result !== 'object' || Array.isArray(m.result)) return message
    let result = m.result as Record<string, unknown>
    for (const spec of Object.values(LIST_METHODS)) {
      const items = result[spec.field]
      if (Array.isArray(items)) result = { ...result, [spec.field]: visibleItems(items, spec, isVisible) }
    }
    if (result === m.result) return message
    return { ...m, result: 'cacheScope' in result ? { ...result, cacheScope: 'private' } : result }
  }
  return (message) => (Array.isArray(message) ? message.map(one) : one(message))
}
