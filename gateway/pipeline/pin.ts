/**
 * The pinning stage (after decide, so policy refusals come first): for tools/list, prompts/list
 * and resources/templates/list it wraps the response transform so each listed item is compared
 * with its pin; in enforce mode it refuses tools/call and prompts/get of an item that is not
 * pinned or whose latest listing differs from its pin. Pins are read once per request from the
 * SharedStore; the comparison itself is synchronous.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RuntimeRoute } from '../config/load.js'
import { GatewayError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'
import { PinBook, pinnedDefinition, pinScope, toolDigest, toolStatus, type PinDocument, type PinKind, type PinnedTool } from '../pinning/pins.js'

const LISTS: Readonly<Record<string, { kind: PinKind; field: string; key: string }>> = {
  'tools/list': { kind: 'tool', field: 'tools', key: 'name' },
  'prompts/list': { kind: 'prompt', field: 'prompts', key: 'name' },
  'resources/templates/list': { kind: 'template', field: 'resourceTemplates', key: 'uriTemplate' },
}
/** Uses refused in enforce mode. A template has no single use to match (any resources/read could be one). */
const USES: Readonly<Record<string, PinKind>> = { 'tools/call': 'tool', 'prompts/get': 'prompt' }

type Spec = (typeof LISTS)[string]

export function pinningStage(book: PinBook, route: RuntimeRoute, metrics: Metrics) {
  const mode = route.pinning!
  return async function pinning(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const mcp = request.gw.mcp
    if (!mcp) return
    const lists = new Map<string | number, Spec>()
    const uses: Array<{ kind: PinKind; name: string }> = []
    for (const m of mcp.body.messages) {
      if (m.kind !== 'request' && m.kind !== 'notification') continue
      const spec = LISTS[m.method]
      if (spec && m.kind === 'request') lists.set(m.id, spec)
      const use = USES[m.method]
      if (use) uses.push({ kind: use, name: typeof m.params?.name === 'string' ? m.params.name : '' })
    }
    if (lists.size === 0 && uses.length === 0) return
    const kinds = new Set<PinKind>([...[...lists.values()].map((s) => s.kind), ...uses.map((u) => u.kind)])
    const pins = new Map<PinKind, PinDocument | undefined>()
    for (const k of kinds) pins.set(k, await book.pins(pinScope(route.name, k)))
    // A store that cannot answer reads as "no pins": enforce must not take that for a first use.
    if (mode === 'enforce' && !book.healthy()) throw new GatewayError('GW_PINS_UNAVAILABLE', { detail: 'pin store unavailable', retryAfter: 2 })
    if (mode === 'enforce' && uses.length > 0) {
      for (const { kind, name } of uses) {
        const pending = await book.pending(pinScope(route.name, kind))
        const pinned = pins.get(kind)?.tools[name]
        const changed = pending.tools[name] && pending.tools[name]!.digest !== pinned?.digest
        if (!pinned || changed) {
          throw new GatewayError('GW_TOOL_NOT_APPROVED', { detail: `${kind} ${name.slice(0, 64)} ${pinned ? 'changed since it was pinned' : 'has no pin'}`, data: { [kind]: name.slice(0, 128) } })
        }
      }
    }
    if (lists.size === 0) return
    const prior = request.gw.transformResponse
    const judges = new Map([...kinds].map((k) => [k, judgeListing(book, route, mode, k, pins.get(k), metrics, request)] as const))
    request.gw.transformResponse = (message) => judgeMessages(prior ? prior(message) : message, lists, judges)
  }
}

type Judge = (items: unknown[]) => unknown[]

function judgeMessages(message: unknown, ids: ReadonlyMap<string | number, Spec>, judges: ReadonlyMap<PinKind, Judge>): unknown {
  const one = (m: unknown): unknown => {
    if (!m || typeof m !== 'object' || Array.isArray(m)) return m
    const r = m as Record<string, unknown>
    const spec = (typeof r.id === 'string' || typeof r.id === 'number') && !('method' in r) ? ids.get(r.id) : undefined
    const result = r.result as Record<string, unknown> | undefined
    if (!spec || !result || typeof result !== 'object' || !Array.isArray(result[spec.field])) return m
    return { ...r, result: { ...result, [spec.field]: judges.get(spec.kind)!(result[spec.field] as unknown[]) } }
  }
  return Array.isArray(message) ? message.map(one) : one(message)
}

function judgeListing(book: PinBook, route: RuntimeRoute, mode: 'observe' | 'enforce', kind: PinKind, pins: PinDocument | undefined, metrics: Metrics, request: FastifyRequest): Judge {
  const scope = pinScope(route.name, kind)
  const key = Object.values(LISTS).find((s) => s.kind === kind)!.key
  // Store writes are not awaited: the response must not wait on Redis, and a lost write only
  // means the next listing notes the change again.
  const background = (p: Promise<unknown>) => p.catch((e: unknown) => request.log.warn({ event: 'pin.store-failed', err: (e as Error).message }, 'could not record a pin'))
  const nameOf = (item: unknown): string | undefined => {
    const n = item && typeof item === 'object' ? (item as Record<string, unknown>)[key] : undefined
    return typeof n === 'string' ? n : undefined
  }
  return (items) => {
    const seen: Record<string, PinnedTool> = {}
    for (const item of items) {
      const name = nameOf(item)
      if (name !== undefined) seen[name] = { digest: toolDigest(item as Record<string, unknown>, kind), definition: pinnedDefinition(item as Record<string, unknown>, kind) }
    }
    if (!pins) {
      // Trust on first use: what the first listing shows becomes the pins.
      background(book.trustOnFirstUse(scope, seen))
      request.log.info({ event: 'pin.recorded', route: route.name, kind, count: Object.keys(seen).length }, 'definitions pinned on first use')
      return items
    }
    const drifted: Record<string, PinnedTool> = {}
    const kept = items.filter((item) => {
      const name = nameOf(item)
      if (name === undefined) return mode === 'observe'
      const pin = seen[name]!
      const status = toolStatus(pins, name, pin.digest)
      if (status === 'pinned') return true
      drifted[name] = pin
      metrics.toolPinDrift.inc({ route: route.name, kind: kind === 'tool' ? status : `${kind}-${status}`, mode })
      request.log.warn({ event: 'pin.drift', route: route.name, [kind]: name.slice(0, 128), kind: status, digest: pin.digest, pinned: pins.tools[name]?.digest, mode }, `${kind} definition ${status === 'new' ? 'is new' : 'changed'} (${mode === 'enforce' ? 'hidden' : 'shown'})`)
      return mode === 'observe'
    })
    if (Object.keys(drifted).length > 0) background(book.notePending(scope, drifted))
    return kept
  }
}
