/** MCP wire facts that several stages share. */

/** Revisions whose Streamable HTTP / HTTP+SSE semantics the gateway implements. */
export const SUPPORTED_PROTOCOL_VERSIONS = ['2024-10-07', '2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25'] as const

/** MCP 2025-11-25 "Protocol Version Header": assume this when nothing says otherwise. */
export const DEFAULT_PROTOCOL_VERSION = '2025-03-26'

/** Revisions that forbid JSON-RPC batches (removed in 2025-06-18). */
export const batchesAllowed = (version: string): boolean => version < '2025-06-18'

/** Request headers an upstream MCP server may see; everything else is dropped (allow-list). */
export const FORWARDED_REQUEST_HEADERS = new Set([
  'accept',
  'content-type',
  'mcp-session-id',
  'mcp-protocol-version',
  'last-event-id',
  'mcp-method',
  'mcp-name',
  'user-agent',
  'traceparent',
  'tracestate',
])

/** Header-name prefixes forwarded as-is (2026-07-28 parameter headers). */
export const FORWARDED_REQUEST_HEADER_PREFIXES = ['mcp-param-']

/** Response headers never relayed to the client. */
export const DROPPED_RESPONSE_HEADERS = new Set([
  'www-authenticate',
  'set-cookie',
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'alt-svc',
])

/** Session ids are visible ASCII (MCP 2025-11-25 "Session Management"). */
export const SESSION_ID = /^[\x21-\x7e]{1,256}$/
