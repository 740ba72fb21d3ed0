/**
 * The audit line without pino's generic pass: the record has a fixed shape, so the line can be
 * put together directly, byte for byte what `log.info({ reqId, audit }, msg)` writes (unit test
 * `audit line serialiser`). Not wired into audit.ts yet: in isolation it measured no faster than
 * pino's path (docs/performance.md, "Issue 19 preparation"). Every logger feature the gateway does not use for audit lines (hooks,
 * mixins, formatters, nested keys, metadata streams such as multistream) makes `auditWriter`
 * answer undefined, and the caller keeps pino's path.
 */
import { pino, type Logger } from 'pino'
import type { AuditRecord } from './audit.js'

const S = pino.symbols
// Not in pino's typings, but a prefix would change the msg bytes.
const msgPrefixSym = (S as unknown as Record<string, symbol>).msgPrefixSym

/**
 * pino's own escaping of top-level string values on Node < 25 (lib/tools.js `_asString`): it
 * differs from JSON.stringify for lone surrogates (left as they are), so reqId must use it for
 * the bytes to match. On Node ≥ 25 pino uses JSON.stringify.
 */
function pinoString(str: string): string {
  let result = ''
  let last = 0
  let found = false
  let point = 255
  const l = str.length
  if (l > 100) return JSON.stringify(str)
  for (let i = 0; i < l && point >= 32; i++) {
    point = str.charCodeAt(i)
    if (point === 34 || point === 92) {
      result += str.slice(last, i) + '\\'
      last = i
      found = true
    }
  }
  result = found ? result + str.slice(last) : str
  return point < 32 ? JSON.stringify(str) : '"' + result + '"'
}
const asString = Number(process.versions.node.split('.')[0]) >= 25 ? (s: string) => JSON.stringify(s) : pinoString

/**
 * `,"key":value` for a member, as JSON.stringify writes it inside an object: undefined (and
 * functions) left out, NaN and infinities as null, toJSON honoured.
 */
const member = (key: string, v: unknown): string => {
  if (v === undefined) return ''
  const s = JSON.stringify(v)
  return s === undefined ? '' : `,"${key}":${s}`
}

/**
 * The `audit` member exactly as JSON.stringify(record) writes it, for a record built by
 * `auditRecord` (its keys, in that literal's order). Throws where JSON.stringify throws (a cycle).
 */
export function auditJson(r: AuditRecord): string {
  const mcp = r.mcp
  let m = ''
  if (mcp !== undefined) {
    const inner = `${member('method', mcp.method)}${member('target', mcp.target)}${member('rpcId', mcp.rpcId)}${member('protocolVersion', mcp.protocolVersion)}${member('session', mcp.session)}${member('batch', mcp.batch)}`
    m = `,"mcp":{${inner.slice(1)}}`
  }
  const http = r.http === undefined ? '' : `,"http":{${member('path', r.http.path).slice(1)}}`
  const body =
    `${member('requestId', r.requestId)}${member('route', r.route)}${member('httpMethod', r.httpMethod)}${member('status', r.status)}${member('reason', r.reason)}${member('code', r.code)}` +
    `${member('principal', r.principal)}${m}${member('decision', r.decision)}${member('approval', r.approval)}${member('rateLimit', r.rateLimit)}${member('streaming', r.streaming)}` +
    `${member('credential', r.credential)}${http}${member('traceId', r.traceId)}${member('causedBy', r.causedBy)}${member('latencyMs', r.latencyMs)}`
  return `{${body.slice(1)}}`
}

/** The whole line from the logger's own parts: level prefix, time, bindings, then reqId, audit, msg. */
export function auditLine(level: string, time: string, chindings: string, reqId: string, record: AuditRecord, msg: string, end: string): string {
  return `${level}${time}${chindings},"reqId":${asString(reqId)},"audit":${auditJson(record)},"msg":${asString(msg)}${end}`
}

/**
 * A writer for info-level audit lines that bypasses pino's generic serialisation, or undefined
 * when the logger uses a feature this serialiser does not reproduce.
 */
export function auditWriter(log: Logger): ((reqId: string, record: AuditRecord, msg: string) => void) | undefined {
  const l = log as unknown as Record<symbol, unknown>
  const formatters = l[S.formattersSym] as { log?: unknown; bindings?: unknown; level?: (label: string, n: number) => unknown } | undefined
  const stream = l[S.streamSym] as { write(s: string): unknown; [k: symbol]: unknown } | undefined
  const cache = l[S.lsCacheSym] as Record<number, string> | undefined
  const chindings = l[S.chindingsSym]
  const time = l[S.timeSym] as (() => string) | undefined
  // pino's default level formatter is `(label, number) => ({ level: number })`.
  const defaultLevel = formatters?.level ? JSON.stringify(formatters.level('info', 30)) === '{"level":30}' : false
  const hooks = l[S.hooksSym] as { logMethod?: unknown; streamWrite?: unknown } | undefined
  if (
    !stream || typeof stream.write !== 'function' || stream[S.needsMetadataGsym] === true || !cache || typeof cache[30] !== 'string' || typeof chindings !== 'string' || !time ||
    !defaultLevel || l[S.mixinSym] || l[S.nestedKeySym] || (msgPrefixSym !== undefined && l[msgPrefixSym]) || hooks?.logMethod || hooks?.streamWrite || l[S.messageKeySym] !== 'msg' ||
    Object.keys((l[S.serializersSym] as object | undefined) ?? {}).some((k) => k === 'reqId' || k === 'audit' || k === 'msg') ||
    Object.keys((l[S.stringifiersSym] as object | undefined) ?? {}).length > 0 || (l[S.stringifiersSym] as Record<symbol, unknown> | undefined)?.[S.wildcardFirstSym] !== undefined
  ) {
    return undefined
  }
  const level = cache[30]
  const end = l[S.endSym]
  if (typeof end !== 'string') return undefined
  return (reqId, record, msg) => {
    stream.write(auditLine(level, time.call(log), chindings, reqId, record, msg, end))
  }
}
