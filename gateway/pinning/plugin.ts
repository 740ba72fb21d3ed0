/**
 * The pinning stage (after decide, so policy refusals come first): for tools/list it wraps the
 * response transform so each listed tool is compared with its pin; for tools/call in enforce
 * mode it refuses a tool that is not pinned or whose latest listing differs from its pin.
 * Pins are read once per request from the SharedStore; the comparison itself is synchronous.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RuntimeRoute } from '../config/load.js'
import { GatewayError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'
import { PinBook, pinnedDefinition, toolDigest, toolStatus, type PinDocument, type PinnedTool } from './pins.js'

export function pinningStage(book: PinBook, route: RuntimeRoute, metrics: Metrics) {
  const mode = route.pinning!
  return async function pinning(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const mcp = request.gw.mcp
    if (!mcp) return
    const lists = new Set<string | number>()
    const calls: string[] = []
    for (const m of mcp.body.messages) {
      if (m.kind !== 'request' && m.kind !== 'notification') continue
      if (m.method === 'tools/list' && m.kind === 'request') lists.add(m.id)
      if (m.method === 'tools/call') calls.push(typeof m.params?.name === 'string' ? m.params.name : '')
    }
    if (lists.size === 0 && calls.length === 0) return
    const pins = await book.pins(route.name)
    // A store that cannot answer reads as "no pins": enforce must not take that for a first use.
    if (mode === 'enforce' && !book.healthy()) throw new GatewayError('GW_PINS_UNAVAILABLE', { detail: 'pin store unavailable', retryAfter: 2 })
    if (mode === 'enforce' && calls.length > 0) {
      const pending = await book.pending(route.name)
      for (const name of calls) {
        const pinned = pins?.tools[name]
        const changed = pending.tools[name] && pending.tools[name]!.digest !== pinned?.digest
        if (!pinned || changed) {
          throw new GatewayError('GW_TOOL_NOT_APPROVED', { detail: `tool ${name.slice(0, 64)} ${pinned ? 'changed since it was pinned' : 'has no pin'}`, data: { tool: name.slice(0, 128) } })
        }
      }
    }
    if (lists.size === 0) return
    const prior = request.gw.transformResponse
    const judge = judgeListing(book, route, mode, pins, metrics, request)
    request.gw.transformResponse = (message) => judgeMessages(prior ? prior(message) : message, lists, judge)
  }
}

type Judge = (tools: unknown[]) => unknown[]

function judgeMessages(message: unknown, ids: ReadonlySet<string | number>, judge: Judge): unknown {
  const one = (m: unknown): unknown => {
    if (!m || typeof m !== 'object' || Array.isArray(m)) return m
    const r = m as Record<string, unknown>
    if (!(typeof r.id === 'string' || typeof r.id === 'number') || !ids.has(r.id) || 'method' in r) return m
    const result = r.result as Record<string, unknown> | undefined
    if (!result || typeof result !== 'object' || !Array.isArray(result.tools)) return m
    return { ...r, result: { ...result, tools: judge(result.tools) } }
  }
  return Array.isArray(message) ? message.map(one) : one(message)
}

function judgeListing(book: PinBook, route: RuntimeRoute, mode: 'observe' | 'enforce', pins: PinDocument | undefined, metrics: Metrics, request: FastifyRequest): Judge {
  // Store writes are not awaited: the response must not wait on Redis, and a lost write only
  // means the next listing notes the change again.
  const background = (p: Promise<unknown>) => p.catch((e: unknown) => request.log.warn({ event: 'pin.store-failed', err: (e as Error).message }, 'could not record a tool pin'))
  return (tools) => {
    const seen: Record<string, PinnedTool> = {}
    for (const t of tools) {
      if (!t || typeof t !== 'object' || typeof (t as { name?: unknown }).name !== 'string') continue
      const tool = t as Record<string, unknown>
      seen[tool.name as string] = { digest: toolDigest(tool), definition: pinnedDefinition(tool) }
    }
    if (!pins) {
      // Trust on first use: what the first listing shows becomes the pins.
      background(book.trustOnFirstUse(route.name, seen))
      request.log.info({ event: 'pin.recorded', route: route.name, tools: Object.keys(seen).length }, 'tool definitions pinned on first use')
      return tools
    }
    const drifted: Record<string, PinnedTool> = {}
    const kept = tools.filter((t) => {
      const name = (t as { name?: unknown } | null)?.name
      if (typeof name !== 'string') return mode === 'observe'
      const pin = seen[name]!
      const status = toolStatus(pins, name, pin.digest)
      if (status === 'pinned') return true
      drifted[name] = pin
      metrics.toolPinDrift.inc({ route: route.name, kind: status, mode })
      request.log.warn({ event: 'pin.drift', route: route.name, tool: name.slice(0, 128), kind: status, digest: pin.digest, pinned: pins.tools[name]?.digest, mode }, `tool definition ${status === 'new' ? 'is new' : 'changed'} (${mode === 'enforce' ? 'hidden' : 'shown'})`)
      return mode === 'observe'
    })
    if (Object.keys(drifted).length > 0) background(book.notePending(route.name, drifted))
    return kept
  }
}
