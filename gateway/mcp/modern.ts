/**
 * MCP 2026-07-28 ("modern" era) wire rules, as pure checks (checklist §17, V26-01…07).
 *
 * Modern requests carry their version, client identity and capabilities in every request's
 * `_meta`, mirror `method` and the target name into `Mcp-Method` / `Mcp-Name`, and have no
 * sessions. The body stays the source of truth (V26-02): the headers are only cross-checked, so
 * a load balancer or WAF that routes on them can never be told one thing while the upstream
 * executes another.
 */
import { GatewayError } from '../errors.js'
import type { McpMessage } from './jsonrpc.js'
import { SUPPORTED_PROTOCOL_VERSIONS } from './protocol.js'

/** Modern revisions the gateway implements (per-request metadata, no initialize). */
export const MODERN_PROTOCOL_VERSIONS = ['2026-07-28'] as const

/** The first modern revision: anything dated from it on is per-request-metadata era. */
export const FIRST_MODERN_VERSION = '2026-07-28'

export const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion'
export const META_CLIENT_INFO = 'io.modelcontextprotocol/clientInfo'
export const META_CLIENT_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities'

/** Methods whose target is mirrored into `Mcp-Name`, and the params member it comes from. */
export const NAMED_METHODS: Readonly<Record<string, 'name' | 'uri'>> = { 'tools/call': 'name', 'prompts/get': 'name', 'resources/read': 'uri' }

const VERSION_SHAPE = /^\d{4}-\d{2}-\d{2}$/

/** Whether a version string belongs to the modern era (ISO dates compare as strings). */
export const isModernVersion = (v: string): boolean => VERSION_SHAPE.test(v) && v >= FIRST_MODERN_VERSION

/**
 * How a route serves 2026-07-28 clients.
 * - caller: the gateway opens one upstream session per caller (issuer, subject, client) and route, and reuses it;
 * - request: a fresh upstream session for every request, ended after it (nothing carried between requests);
 * - native: the upstream speaks 2026-07-28 itself; requests are checked and forwarded as they are;
 * - refuse: 2026-07-28 is not offered; clients get UnsupportedProtocolVersionError listing the legacy versions.
 */
export type ModernMode = 'caller' | 'request' | 'native' | 'refuse'
export const MODERN_MODES: readonly ModernMode[] = ['caller', 'request', 'native', 'refuse']
export const DEFAULT_MODERN_MODE: ModernMode = 'caller'

/** Versions a route answers, newest first (the `supported` list of -32022). */
export function supportedVersions(mode: ModernMode): string[] {
  const legacy = [...SUPPORTED_PROTOCOL_VERSIONS].reverse()
  return mode === 'refuse' ? legacy : [...MODERN_PROTOCOL_VERSIONS, ...legacy]
}

export const unsupportedVersion = (requested: string, mode: ModernMode): GatewayError =>
  new GatewayError('GW_MCP_UNSUPPORTED_VERSION', {
    detail: 'unsupported protocol version',
    // Echoed only when it looks like a version: the body never carries arbitrary client input.
    data: { supported: supportedVersions(mode), ...(VERSION_SHAPE.test(requested) ? { requested } : {}) },
  })

const mismatch = (detail: string): GatewayError => new GatewayError('GW_MCP_HEADER_MISMATCH', { detail })

const SENTINEL = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/
/** Visible ASCII, space and tab (RFC 9110 field values); leading/trailing whitespace must be encoded. */
const PLAIN = /^[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?$/

/**
 * A mirrored header value as the client meant it: plain visible ASCII, or the `=?base64?…?=`
 * sentinel holding UTF-8. Anything else (control characters, bad base64, invalid UTF-8) is
 * undefined, which callers treat as a mismatch.
 */
export function decodeHeaderValue(value: string): string | undefined {
  const m = SENTINEL.exec(value)
  if (m) {
    const b64 = m[1]!
    if (b64.length % 4 !== 0) return undefined
    const bytes = Buffer.from(b64, 'base64')
    // Buffer.from ignores garbage; a round trip proves the text was canonical base64.
    if (bytes.toString('base64') !== b64) return undefined
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    } catch {
      return undefined
    }
  }
  if (value.startsWith('=?base64?')) return undefined
  return value === '' || PLAIN.test(value) ? value : undefined
}

export interface ModernHeaders {
  protocolVersion: string
  method: string | undefined
  name: string | undefined
}

/** The `_meta` object of a request's params, if it is one. */
export function metaOf(message: McpMessage): Record<string, unknown> | undefined {
  if (message.kind === 'response') return undefined
  const meta = message.params?._meta
  return meta && typeof meta === 'object' && !Array.isArray(meta) ? (meta as Record<string, unknown>) : undefined
}

/** The protocol version a message declares in its `_meta`, if any. */
export function declaredVersion(message: McpMessage): unknown {
  return metaOf(message)?.[META_PROTOCOL_VERSION]
}

/**
 * The checks of a modern POST (streamable-http.mdx "Server Validation", "Sending Messages").
 * Throws the spec-shaped error; returns nothing when the request may go on.
 */
export function checkModernMessage(message: McpMessage, headers: ModernHeaders): void {
  // V26-07: a 2026-07-28 client never answers the server (server requests are embedded in results).
  if (message.kind === 'response') throw new GatewayError('GW_MCP_INVALID_REQUEST', { detail: 'a 2026-07-28 client sends no JSON-RPC responses' })
  // V26-05: the header and the body must name the same revision.
  const declared = declaredVersion(message)
  if (message.kind === 'request' && declared !== headers.protocolVersion) {
    throw mismatch(declared === undefined ? 'request _meta has no protocolVersion' : 'MCP-Protocol-Version does not match _meta protocolVersion')
  }
  if (message.kind === 'notification') {
    // Header rules for notification POSTs are undefined in this revision; a stated version must still agree.
    if (declared !== undefined && declared !== headers.protocolVersion) throw mismatch('MCP-Protocol-Version does not match _meta protocolVersion')
    if (headers.method !== undefined && headers.method !== message.method) throw mismatch('Mcp-Method does not match the body')
    return
  }
  // V26-01: Mcp-Method on every request, equal to the body's method (values are case-sensitive).
  if (headers.method === undefined) throw mismatch('missing Mcp-Method')
  if (headers.method !== message.method) throw mismatch('Mcp-Method does not match the body')
  const member = NAMED_METHODS[message.method]
  if (member) {
    if (headers.name === undefined) throw mismatch('missing Mcp-Name')
    const decoded = decodeHeaderValue(headers.name)
    if (decoded === undefined) throw mismatch('Mcp-Name has invalid characters or encoding')
    const bodyValue = message.params?.[member]
    if (typeof bodyValue !== 'string' || decoded !== bodyValue) throw mismatch('Mcp-Name does not match the body')
  }
}

/** 2026-07-28 methods with no faithful equivalent on a legacy session, besides initialize (which the gateway owns). */
export const UNBRIDGEABLE_METHODS: ReadonlySet<string> = new Set(['initialize', 'subscriptions/listen'])

/**
 * A bridged route cannot serve these to a 2026-07-28 client: 404 with -32601, as the revision
 * prescribes for a method the server does not implement. Checked before policy, so the answer
 * does not depend on whether a policy happens to allow the method.
 */
export function checkBridgeable(message: McpMessage, mode: ModernMode): void {
  if (mode === 'native' || message.kind !== 'request' || !UNBRIDGEABLE_METHODS.has(message.method)) return
  throw new GatewayError('GW_MCP_METHOD_NOT_FOUND', { detail: `${message.method} cannot be served to a 2026-07-28 client by a legacy upstream` })
}

/**
 * A copy of a modern request's params for a legacy upstream: the `io.modelcontextprotocol/*`
 * members of `_meta` (version, client info, capabilities) are the modern envelope and mean
 * nothing to a session that was initialized; everything else (progressToken, arguments) is kept.
 */
export function legacyParams(params: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!params) return params
  const meta = params._meta
  if (!meta || typeof meta !== 'object' || Array.isArray(meta)) return params
  const kept = Object.fromEntries(Object.entries(meta as Record<string, unknown>).filter(([k]) => !k.startsWith('io.modelcontextprotocol/')))
  const { _meta: _dropped, ...rest } = params
  return Object.keys(kept).length > 0 ? { ...rest, _meta: kept } : rest
}
