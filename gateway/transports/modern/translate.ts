/**
 * Bridging a stateless MCP 2026-07-28 request onto an upstream that speaks a legacy revision
 * (2025-03-26 … 2025-11-25 Streamable HTTP, or a bridge in front of a stdio / HTTP+SSE server).
 *
 * What makes the bridge faithful:
 * - the gateway owns the upstream `initialize` handshake and its `Mcp-Session-Id`; the client
 *   never sees either (2026-07-28 has no sessions);
 * - ids and progress tokens are rewritten to ones unique on the upstream session (stateless
 *   clients may reuse `id: 1` for every request, and one upstream session serves them all) and
 *   restored on the way back;
 * - the response is the one the request caused: the SSE stream ends with its final response;
 * - server → client requests (sampling, elicitation, roots) cannot reach a 2026-07-28 client as
 *   requests, and the gateway does not invent answers: the upstream gets a JSON-RPC error.
 * No Fastify here: pipeline/modern-clients.ts is the glue.
 */
import { GatewayError } from '../../errors.js'
import type { McpMessage } from '../../mcp/jsonrpc.js'
import { legacyParams, META_CLIENT_INFO, metaOf } from '../../mcp/modern.js'
import { SUPPORTED_PROTOCOL_VERSIONS } from '../../mcp/protocol.js'

/** The newest legacy revision, proposed in the gateway's own `initialize`. */
export const LEGACY_TARGET_VERSION = SUPPORTED_PROTOCOL_VERSIONS[SUPPORTED_PROTOCOL_VERSIONS.length - 1]!

/** Largest JSON message the bridge buffers from the upstream. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024

/** JSON-RPC error the upstream receives for a server → client request it sent. */
export const NO_CLIENT_REQUESTS = { code: -32601, message: 'Method not found: the client speaks MCP 2026-07-28 through mcp-warden and cannot answer server requests' } as const

export interface UpstreamSession {
  /** Mcp-Session-Id the upstream issued; undefined for a stateless upstream. */
  id: string | undefined
  /** The revision the upstream answered to initialize; sent as MCP-Protocol-Version. */
  protocolVersion: string
  serverInfo: unknown
  capabilities: unknown
  instructions: string | undefined
}

export interface Endpoint {
  url: string
  /** Headers every upstream call carries: the credential, a bridge's key, trace headers. */
  headers: Record<string, string>
  timeoutMs: number
}

export type FetchFn = typeof fetch

export const isRecord = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v)

/** Upstream ids: a per-process prefix (replicas may share one upstream session) and a counter. */
export class IdSource {
  readonly #prefix: string
  #n = 0
  constructor(prefix: string) {
    this.#prefix = prefix
  }
  next(): string {
    this.#n = (this.#n + 1) % Number.MAX_SAFE_INTEGER
    return `mw-${this.#prefix}-${this.#n}`
  }
}

/** The request the upstream sees: upstream id, legacy params, progress token rewritten. */
export function toUpstreamRequest(message: Extract<McpMessage, { kind: 'request' }>, upstreamId: string): { body: Record<string, unknown>; progressToken: string | number | undefined } {
  const params = legacyParams(message.params)
  const meta = params && isRecord(params._meta) ? params._meta : undefined
  const token = meta?.progressToken
  const progressToken = typeof token === 'string' || typeof token === 'number' ? token : undefined
  const out = progressToken === undefined ? params : { ...params, _meta: { ...meta, progressToken: upstreamId } }
  return { body: { jsonrpc: '2.0', id: upstreamId, method: message.method, ...(out ? { params: out } : {}) }, progressToken }
}

/** The clientInfo a request names, for the gateway's initialize on the caller's behalf. */
export function clientInfoOf(message: McpMessage): { name: string; version: string } {
  const info = metaOf(message)?.[META_CLIENT_INFO]
  if (isRecord(info) && typeof info.name === 'string' && typeof info.version === 'string' && info.name.length <= 200 && info.version.length <= 100) {
    return { name: info.name, version: info.version }
  }
  return { name: 'mcp-warden', version: '1' }
}

export type Classified =
  | { kind: 'final'; message: Record<string, unknown> }
  | { kind: 'notification'; message: Record<string, unknown> }
  | { kind: 'server-request'; id: string | number }
  | { kind: 'other' }

/**
 * What one upstream message means for the request with `upstreamId`, already translated back
 * to the client's id and progress token.
 */
export function classify(raw: unknown, upstreamId: string, clientId: string | number, progressToken: string | number | undefined): Classified {
  if (!isRecord(raw)) return { kind: 'other' }
  if (typeof raw.method === 'string') {
    if ('id' in raw && (typeof raw.id === 'string' || typeof raw.id === 'number')) return { kind: 'server-request', id: raw.id }
    if (raw.method === 'notifications/progress' && isRecord(raw.params) && raw.params.progressToken === upstreamId) {
      // A progress notification for this request goes back with the client's own token; one for another request is not ours.
      if (progressToken === undefined) return { kind: 'other' }
      return { kind: 'notification', message: { ...raw, params: { ...raw.params, progressToken } } }
    }
    if (raw.method === 'notifications/progress') return { kind: 'other' }
    return { kind: 'notification', message: raw }
  }
  if (raw.id === upstreamId && ('result' in raw || 'error' in raw)) return { kind: 'final', message: { ...raw, id: clientId } }
  return { kind: 'other' }
}

/** One SSE event's data lines joined (the WHATWG event-stream rules, enough for JSON-RPC). */
export async function* sseData(body: ReadableStream<Uint8Array>, maxBytes = MAX_MESSAGE_BYTES): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8')
  let buffer = ''
  let data: string[] = []
  let size = 0
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true })
    let nl: RegExpExecArray | null
    const re = /\r\n|\r|\n/g
    let start = 0
    while ((nl = re.exec(buffer))) {
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (nl[0] === '\r' && nl.index === buffer.length - 1) break
      const line = buffer.slice(start, nl.index)
      start = re.lastIndex
      if (line === '') {
        if (data.length > 0) yield data.join('\n')
        data = []
        size = 0
      } else if (line.startsWith('data:')) {
        const v = line.slice(line.startsWith('data: ') ? 6 : 5)
        size += v.length
        if (size > maxBytes) throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: 'SSE event too large' })
        data.push(v)
      }
    }
    buffer = buffer.slice(start)
    if (buffer.length > maxBytes) throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: 'SSE line too large' })
  }
  if (data.length > 0) yield data.join('\n')
}

/** A broken or aborted upstream body is the upstream failing, never a gateway 500. */
export const asUpstreamError = (e: unknown): GatewayError =>
  e instanceof GatewayError ? e : new GatewayError('GW_UPSTREAM_UNAVAILABLE', { detail: (e as Error)?.message ?? 'upstream body failed', cause: e })

/** A JSON body read whole, up to a limit. */
export async function readJson(body: ReadableStream<Uint8Array> | null, maxBytes = MAX_MESSAGE_BYTES): Promise<unknown> {
  if (!body) throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: 'empty upstream body' })
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    for await (const chunk of body) {
      size += chunk.length
      if (size > maxBytes) throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: 'upstream JSON too large' })
      chunks.push(chunk)
    }
  } catch (e) {
    throw asUpstreamError(e)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: 'unparseable upstream JSON' })
  }
}

export interface PostResult {
  response: Response
  abort: () => void
}

/** A POST to the upstream; the timeout covers the response headers only (streams may be long). */
export async function postUpstream(fetchFn: FetchFn, ep: Endpoint, session: UpstreamSession | undefined, body: unknown, signal?: AbortSignal): Promise<PostResult> {
  const ac = new AbortController()
  const onAbort = () => ac.abort()
  signal?.addEventListener('abort', onAbort, { once: true })
  const timer = setTimeout(() => ac.abort(new GatewayError('GW_UPSTREAM_TIMEOUT', { detail: 'upstream headers timeout' })), ep.timeoutMs)
  try {
    const response = await fetchFn(ep.url, {
      method: 'POST',
      headers: {
        accept: 'application/json, text/event-stream',
        'content-type': 'application/json',
        ...(session ? { 'mcp-protocol-version': session.protocolVersion } : {}),
        ...(session?.id ? { 'mcp-session-id': session.id } : {}),
        ...ep.headers,
      },
      body: JSON.stringify(body),
      signal: ac.signal,
      redirect: 'manual',
    })
    // The caller's signal stays attached: it must still cut the body (client gone, handshake deadline).
    return { response, abort: () => ac.abort() }
  } catch (e) {
    signal?.removeEventListener('abort', onAbort)
    if (ac.signal.reason instanceof GatewayError) throw ac.signal.reason
    throw new GatewayError('GW_UPSTREAM_UNAVAILABLE', { detail: (e as Error)?.message ?? 'fetch failed', cause: e })
  } finally {
    clearTimeout(timer)
  }
}

/** The upstream refused the gateway's own credential: never relayed (its challenge names the wrong AS). */
export const credentialRefused = (r: Response): boolean => r.status === 401 || r.status === 407 || (r.status === 403 && r.headers.has('www-authenticate'))

/** The single JSON-RPC response to `id` in a JSON or SSE body. */
export async function responseTo(r: Response, id: string): Promise<Record<string, unknown>> {
  try {
    return await findResponse(r, id)
  } catch (e) {
    throw asUpstreamError(e)
  }
}

async function findResponse(r: Response, id: string): Promise<Record<string, unknown>> {
  const ct = r.headers.get('content-type') ?? ''
  if (ct.startsWith('application/json')) {
    const m = await readJson(r.body)
    if (isRecord(m) && m.id === id) return m
    throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: 'upstream answered another id' })
  }
  if (ct.startsWith('text/event-stream') && r.body) {
    for await (const data of sseData(r.body)) {
      let m: unknown
      try {
        m = JSON.parse(data)
      } catch {
        continue
      }
      if (isRecord(m) && m.id === id && ('result' in m || 'error' in m)) {
        await r.body.cancel().catch(() => undefined)
        return m
      }
    }
  }
  throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: `no response to the gateway's request (${ct || 'no content-type'})` })
}

/**
 * The gateway's own initialize on the upstream, then `notifications/initialized`. The gateway
 * declares no client capabilities: a 2026-07-28 client cannot be asked anything mid-call through
 * the bridge, so a well-behaved upstream will not try.
 */
export async function initializeUpstream(fetchFn: FetchFn, ep: Endpoint, ids: IdSource, clientInfo: { name: string; version: string }): Promise<UpstreamSession> {
  const id = ids.next()
  // The whole handshake, bodies included, gets the headers timeout: callers wait on it together.
  const deadline = AbortSignal.timeout(ep.timeoutMs)
  const { response } = await postUpstream(fetchFn, ep, undefined, { jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: LEGACY_TARGET_VERSION, capabilities: {}, clientInfo } }, deadline)
  if (credentialRefused(response)) throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: `upstream answered ${response.status} to initialize` })
  if (!response.ok) {
    await response.body?.cancel().catch(() => undefined)
    throw new GatewayError(response.status >= 500 || response.status === 404 ? 'GW_UPSTREAM_UNAVAILABLE' : 'GW_UPSTREAM_INVALID_RESPONSE', { detail: `upstream answered ${response.status} to initialize` })
  }
  const sessionId = response.headers.get('mcp-session-id') ?? undefined
  const m = await responseTo(response, id)
  const result = m.result
  if (!isRecord(result) || typeof result.protocolVersion !== 'string' || !(SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(result.protocolVersion)) {
    throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: 'upstream initialize failed or chose an unsupported version' })
  }
  const session: UpstreamSession = {
    id: sessionId,
    protocolVersion: result.protocolVersion,
    serverInfo: result.serverInfo,
    capabilities: result.capabilities,
    instructions: typeof result.instructions === 'string' ? result.instructions : undefined,
  }
  const done = await postUpstream(fetchFn, ep, session, { jsonrpc: '2.0', method: 'notifications/initialized' }, deadline)
  await done.response.body?.cancel().catch(() => undefined)
  if (!done.response.ok) throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: `upstream answered ${done.response.status} to notifications/initialized` })
  return session
}

/** Ends an upstream session (request mode, or a session the gateway gave up); failures do not matter. */
export async function endUpstreamSession(fetchFn: FetchFn, ep: Endpoint, session: UpstreamSession): Promise<void> {
  if (!session.id) return
  const r = await fetchFn(ep.url, {
    method: 'DELETE',
    headers: { 'mcp-protocol-version': session.protocolVersion, 'mcp-session-id': session.id, ...ep.headers },
    signal: AbortSignal.timeout(ep.timeoutMs),
  }).catch(() => undefined)
  await r?.body?.cancel().catch(() => undefined)
}

/** Fire-and-forget message to the upstream session (errors for server requests, cancellations). */
export async function notifyUpstream(fetchFn: FetchFn, ep: Endpoint, session: UpstreamSession, message: unknown): Promise<void> {
  try {
    const { response } = await postUpstream(fetchFn, ep, session, message)
    await response.body?.cancel().catch(() => undefined)
  } catch {
    // The upstream is gone or slow: the request this concerned has ended anyway.
  }
}

/**
 * Methods whose 2026-07-28 results must carry caching hints (`ttlMs`, `cacheScope`): "Caching" ›
 * "Cacheable Results" of the revision, and `required` in its published schema.
 */
export const CACHEABLE_METHODS: ReadonlySet<string> = new Set(['server/discover', 'tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read'])

export const META_SERVER_INFO = 'io.modelcontextprotocol/serverInfo'

/**
 * A legacy upstream's response made a valid 2026-07-28 response to `method`. Every result gains
 * `resultType: "complete"` (a legacy server has no other kind); cacheable results gain the hints a
 * legacy server never sends: `ttlMs: 0` (it promised no freshness, and its list_changed
 * notifications cannot reach a stateless client through the bridge) and `cacheScope: "private"`
 * unless the upstream itself said "public". `perCaller` (the gateway filtered the result for this
 * caller) forces "private" whatever the upstream said (V26-10): a shared cache must never hand one
 * caller's filtered list to another.
 */
export function toModernResponse(message: Record<string, unknown>, method: string, perCaller: boolean): Record<string, unknown> {
  const result = message.result
  if (!isRecord(result)) return message
  const out: Record<string, unknown> = { ...result }
  if (typeof out.resultType !== 'string') out.resultType = 'complete'
  if (CACHEABLE_METHODS.has(method) && out.resultType === 'complete') {
    const ttl = out.ttlMs
    if (!(typeof ttl === 'number' && Number.isSafeInteger(ttl) && ttl >= 0)) out.ttlMs = 0
    if (perCaller || out.cacheScope !== 'public') out.cacheScope = 'private'
  }
  return { ...message, result: out }
}

/**
 * `server/discover` answered by the gateway from the upstream's initialize result (V26-11), in the
 * revision's shape: the server's identity goes in `_meta` (DiscoverResult has no `serverInfo`).
 * Scope "private": the answer is built from the caller's own upstream session.
 */
export function discoverResult(session: UpstreamSession, supported: readonly string[]): Record<string, unknown> {
  return {
    resultType: 'complete',
    supportedVersions: [...supported],
    capabilities: isRecord(session.capabilities) ? session.capabilities : {},
    ...(session.instructions ? { instructions: session.instructions } : {}),
    _meta: { [META_SERVER_INFO]: validImplementation(session.serverInfo) ?? { name: 'mcp-warden', version: '1' } },
    ttlMs: 0,
    cacheScope: 'private',
  }
}

/** The upstream's serverInfo when it has the required name and version; a broken one is not relayed. */
function validImplementation(v: unknown): Record<string, unknown> | undefined {
  return isRecord(v) && typeof v.name === 'string' && typeof v.version === 'string' ? v : undefined
}
