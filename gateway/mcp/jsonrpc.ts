/**
 * JSON-RPC 2.0 / MCP message parsing for decisions. The body is parsed once, strictly
 * (duplicate members, prototype keys and deep nesting refused); the raw bytes that were parsed
 * are what gets forwarded, so the upstream executes exactly what was decided on.
 */
import { GatewayError } from '../errors.js'
import { decodeUtf8Strict, jsonLimitOf, parseStrictJson, StrictJsonError } from '../lib/strict-json.js'
import { batchesAllowed } from './protocol.js'

export type JsonRpcId = string | number

export type McpMessage =
  | { kind: 'request'; id: JsonRpcId; method: string; params: Record<string, unknown> | undefined }
  | { kind: 'notification'; method: string; params: Record<string, unknown> | undefined }
  | { kind: 'response'; id: JsonRpcId }

export interface ParsedBody {
  messages: McpMessage[]
  batch: boolean
  /** Some number's text is not exactly the double it parses to (strict-json `readsExactly`): refused with the id once it is known. */
  inexactNumber?: true
}

/** Body nesting limit: MCP arguments are data, not deep trees; the limit blunts parser DoS. */
export const MAX_JSON_DEPTH = 64
/** Elements of one array and members of one object (docs/limits.md): bounds work per byte parsed. */
export const MAX_JSON_ARRAY = 10_000
export const MAX_JSON_MEMBERS = 10_000

const invalid = (detail: string): GatewayError => new GatewayError('GW_MCP_INVALID_REQUEST', { detail })

export function parseMcpBody(raw: Buffer, protocolVersion: string): ParsedBody {
  let value: unknown
  let inexact = false
  try {
    value = parseStrictJson(decodeUtf8Strict(raw), { maxDepth: MAX_JSON_DEPTH, maxArrayLength: MAX_JSON_ARRAY, maxMembers: MAX_JSON_MEMBERS, onInexactNumber: () => (inexact = true) })
  } catch (e) {
    const detail = e instanceof StrictJsonError ? e.message : 'unparseable'
    const limit = e instanceof StrictJsonError ? jsonLimitOf(e) : undefined
    if (limit) throw new GatewayError('GW_MCP_JSON_LIMIT', { detail: limit })
    // Semantic violations (duplicates, prototype keys) are invalid requests; bad syntax is a parse error.
    const code = /duplicate|forbidden|deep/.test(detail) ? 'GW_MCP_INVALID_REQUEST' : 'GW_MCP_PARSE_ERROR'
    throw new GatewayError(code, { detail })
  }
  if (Array.isArray(value)) {
    if (!batchesAllowed(protocolVersion)) throw invalid(`JSON-RPC batches are not allowed in ${protocolVersion}`)
    if (value.length === 0) throw invalid('empty batch')
    return { messages: value.map(toMessage), batch: true, ...(inexact ? { inexactNumber: true as const } : {}) }
  }
  return { messages: [toMessage(value)], batch: false, ...(inexact ? { inexactNumber: true as const } : {}) }
}

const isId = (v: unknown): v is JsonRpcId => typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v))

function toMessage(v: unknown): McpMessage {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw invalid('message is not an object')
  const m = v as Record<string, unknown>
  if (m.jsonrpc !== '2.0') throw invalid('jsonrpc must be "2.0"')
  if ('method' in m) {
    if (typeof m.method !== 'string' || m.method === '') throw invalid('method must be a non-empty string')
    if (m.params !== undefined && (typeof m.params !== 'object' || m.params === null || Array.isArray(m.params))) throw invalid('params must be an object')
    if ('result' in m || 'error' in m) throw invalid('a request has no result or error')
    const params = m.params as Record<string, unknown> | undefined
    if (!('id' in m)) {
      // Anything but a notifications/* method is a request and needs an id: a tools/call
      // shaped as a notification would run without anyone seeing its result.
      if (!m.method.startsWith('notifications/')) throw invalid('a request needs an id')
      return { kind: 'notification', method: m.method, params }
    }
    if (!isId(m.id)) throw invalid('id must be a string or an integer')
    if (m.method.startsWith('notifications/')) throw invalid('a notification has no id')
    return { kind: 'request', id: m.id, method: m.method, params }
  }
  if (!isId(m.id)) throw invalid('id must be a string or an integer')
  const hasResult = 'result' in m
  const hasError = 'error' in m
  if (hasResult === hasError) throw invalid('a response has exactly one of result and error')
  return { kind: 'response', id: m.id }
}

/** The name a policy matches on: tool for tools/call, prompt for prompts/get, URI for resources/*. */
export function targetName(msg: McpMessage): string | undefined {
  if (msg.kind !== 'request') return undefined
  const p = msg.params
  if (!p) return undefined
  switch (msg.method) {
    case 'tools/call':
    case 'prompts/get': {
      if (typeof p.name !== 'string') throw invalid(`${msg.method} needs a string name`)
      return p.name
    }
    case 'resources/read':
    case 'resources/subscribe':
    case 'resources/unsubscribe': {
      if (typeof p.uri !== 'string') throw invalid(`${msg.method} needs a string uri`)
      return p.uri
    }
    default:
      return undefined
  }
}
