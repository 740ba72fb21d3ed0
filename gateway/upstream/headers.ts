/**
 * Header hygiene in both directions. Toward the upstream only an allow-list passes, so the
 * caller's Authorization, cookies, hop-by-hop fields and any identity header a client tries to
 * smuggle never arrive; the downstream credential is added afterwards by the caller.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { DROPPED_RESPONSE_HEADERS, FORWARDED_REQUEST_HEADER_PREFIXES, FORWARDED_REQUEST_HEADERS } from '../mcp/protocol.js'

export interface ForwardContext {
  requestId: string
  host: string
  clientIp: string
  proto: string
  /** API routes and egress: the HTTP semantics headers below pass too. */
  api?: boolean
}

/**
 * What a plain HTTP API needs besides the MCP list: the framing and encoding of a body passed
 * through untouched, content negotiation, conditional and range requests. Still an allow-list:
 * identity, cookies and forwarding information never pass.
 */
export const API_FORWARDED_REQUEST_HEADERS = new Set([
  'content-length',
  'content-encoding',
  'content-language',
  'accept-encoding',
  'accept-language',
  'cache-control',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'if-range',
  'range',
  'prefer',
  'idempotency-key',
])

/** Fields named in Connection are hop-by-hop even if they are on the allow-list (RFC 9110 §7.6.1). */
const NO_HOP_FIELDS: ReadonlySet<string> = new Set()
const hopByHop = (connection: unknown): ReadonlySet<string> =>
  typeof connection === 'string' && connection !== '' ? new Set(connection.split(',').map((s) => s.trim().toLowerCase())) : NO_HOP_FIELDS

const forwardedPrefix = (name: string): boolean => {
  for (const p of FORWARDED_REQUEST_HEADER_PREFIXES) if (name.startsWith(p)) return true
  return false
}

// Runs on every request: plain loops, and no Set unless the request names hop-by-hop fields.
export function upstreamRequestHeaders(inbound: IncomingHttpHeaders, ctx: ForwardContext): Record<string, string> {
  const out: Record<string, string> = {}
  const hop = hopByHop(inbound.connection)
  for (const name of Object.keys(inbound)) {
    const value = inbound[name]
    if (value === undefined || hop.has(name)) continue
    if (FORWARDED_REQUEST_HEADERS.has(name) || forwardedPrefix(name) || (ctx.api && API_FORWARDED_REQUEST_HEADERS.has(name))) {
      out[name] = Array.isArray(value) ? value.join(', ') : value
    }
  }
  out.host = ctx.host
  out['x-request-id'] = ctx.requestId
  out['x-forwarded-for'] = ctx.clientIp
  out['x-forwarded-proto'] = ctx.proto
  return out
}

export function clientResponseHeaders(upstream: OutgoingHttpHeaders | IncomingHttpHeaders, requestId: string): Record<string, string | string[] | number> {
  const out: Record<string, string | string[] | number> = {}
  const hop = hopByHop(upstream.connection)
  for (const name of Object.keys(upstream)) {
    const value = upstream[name]
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name) || hop.has(name)) continue
    out[name] = value
  }
  if (typeof out['content-type'] === 'string' && out['content-type'].startsWith('text/event-stream')) {
    // SSE must reach the client event by event: no intermediary buffering, no caching.
    out['cache-control'] = 'no-cache'
    out['x-accel-buffering'] = 'no'
    delete out['content-length']
  }
  out['x-request-id'] = requestId
  return out
}
