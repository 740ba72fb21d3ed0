/**
 * W3C Trace Context (`traceparent`) as far as the audit needs it: the trace id links an egress
 * call to the inbound MCP request that caused it when the MCP server propagates the header.
 * Anything malformed is ignored, never echoed into a log line.
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/

export interface TraceContext {
  traceId: string
  parentId: string
}

export function parseTraceparent(value: string | string[] | undefined): TraceContext | undefined {
  if (typeof value !== 'string') return undefined
  const m = TRACEPARENT.exec(value.trim())
  if (!m) return undefined
  const [, version, traceId, parentId] = m as unknown as [string, string, string, string]
  // Version ff is invalid; version 00 has exactly four fields; all-zero ids are invalid.
  if (version === 'ff' || (version === '00' && m[5] !== undefined)) return undefined
  if (/^0+$/.test(traceId) || /^0+$/.test(parentId)) return undefined
  return { traceId, parentId }
}

/** A correlation id the MCP server copied from its inbound request: a bounded visible token, else nothing. */
export function correlationId(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(value) ? value : undefined
}
