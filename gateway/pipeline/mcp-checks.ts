/**
 * Fastify glue for MCP wire handling: protected-resource metadata endpoints, the raw JSON body
 * parser, and the per-request MCP checks (headers, media types, strict body parse) that run
 * after authentication and before any decision.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { RuntimeConfig, RuntimeRoute } from '../config/load.js'
import { PRM_WELL_KNOWN } from '../config/load.js'
import { GatewayError } from '../errors.js'
import { parseMcpBody, targetName } from '../mcp/jsonrpc.js'
import { checkBridgeable, checkModernMessage, declaredVersion, DEFAULT_MODERN_MODE, isModernVersion, MODERN_PROTOCOL_VERSIONS, unsupportedVersion } from '../mcp/modern.js'
import { DEFAULT_PROTOCOL_VERSION, SESSION_ID, SUPPORTED_PROTOCOL_VERSIONS } from '../mcp/protocol.js'
import { METADATA_MAX_AGE_SECONDS, protectedResourceMetadata } from '../mcp/resource-metadata.js'
import { methodNotAllowed } from './front.js'

/** RFC 9728 documents, one per route, plus the root document when exactly one route exists. */
export function registerResourceMetadata(app: FastifyInstance, config: RuntimeConfig): void {
  const serve = (route: RuntimeRoute) => {
    const body = JSON.stringify(protectedResourceMetadata(config, route))
    return async (_req: FastifyRequest, reply: FastifyReply) =>
      reply
        .header('content-type', 'application/json')
        .header('cache-control', `public, max-age=${METADATA_MAX_AGE_SECONDS}`)
        .header('access-control-allow-origin', '*')
        .send(body)
  }
  const notAllowed = methodNotAllowed('GET, HEAD')
  const paths = new Map(config.routes.map((r) => [r.metadataPath, r]))
  // PRM-13: a root document is only correct when it describes the only resource.
  if (config.routes.length === 1 && !paths.has(PRM_WELL_KNOWN)) paths.set(PRM_WELL_KNOWN, config.routes[0]!)
  for (const [path, route] of paths) {
    app.route({ method: ['GET', 'HEAD'], url: path, exposeHeadRoute: false, handler: serve(route) })
    app.route({ method: ['POST', 'PUT', 'PATCH', 'DELETE'], url: path, handler: notAllowed })
  }
}

/**
 * application/json bodies are kept as the raw bytes: they are parsed strictly by the MCP stage
 * and those same bytes are forwarded. Only UTF-8 is accepted (MCP requires it).
 */
export function registerJsonBodyParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    const ct = req.headers['content-type'] ?? ''
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(ct)?.[1]
    if (charset && charset.toLowerCase() !== 'utf-8' && charset.toLowerCase() !== 'utf8') {
      done(new GatewayError('GW_HTTP_UNSUPPORTED_MEDIA_TYPE', { detail: 'charset' }), undefined)
      return
    }
    done(null, body)
  })
}

/** The value of a header that must appear at most once; duplicates are refused (ATK-38). */
export function singleHeader(rawHeaders: readonly string[], lowerName: string): string | undefined {
  let value: string | undefined
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const n = rawHeaders[i]!
    if (n.length === lowerName.length && n.toLowerCase() === lowerName) {
      if (value !== undefined) throw new GatewayError('GW_MCP_INVALID_REQUEST', { detail: `duplicate ${lowerName} header` })
      value = rawHeaders[i + 1]
    }
  }
  return value
}

const accepts = (accept: string | undefined, type: string): boolean =>
  !!accept && accept.split(',').some((part) => {
    const t = part.split(';')[0]!.trim().toLowerCase()
    return t === type || t === '*/*' || t === `${type.split('/')[0]}/*`
  })

/** preHandler: the MCP checks every request passes after authentication. */
export async function checkMcpRequest(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const raw = request.raw.rawHeaders
  const rawSessionId = singleHeader(raw, 'mcp-session-id')
  const versionHeader = singleHeader(raw, 'mcp-protocol-version')
  const mode = request.gw.route?.modernClients ?? DEFAULT_MODERN_MODE
  let modern = false
  if (versionHeader !== undefined && !(SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(versionHeader)) {
    if (mode === 'refuse' || !(MODERN_PROTOCOL_VERSIONS as readonly string[]).includes(versionHeader)) {
      // The error answers the request it refuses: a dual-era client matches it by id.
      request.gw.mcp = { body: { messages: [], batch: false }, raw: Buffer.alloc(0), protocolVersion: DEFAULT_PROTOCOL_VERSION, sessionId: undefined, method: undefined, target: undefined, rpcId: request.method === 'POST' ? rpcIdHint(request.body) : undefined }
      throw unsupportedVersion(versionHeader, mode)
    }
    modern = true
  }
  // 2026-07-28 has no sessions: a session id from such a client is ignored, never checked or forwarded (V26-06).
  const sessionId = modern ? undefined : rawSessionId
  if (sessionId !== undefined && !SESSION_ID.test(sessionId)) throw new GatewayError('GW_MCP_INVALID_REQUEST', { detail: 'malformed session id' })
  const methodHeader = singleHeader(raw, 'mcp-method')
  const nameHeader = singleHeader(raw, 'mcp-name')
  if (modern && request.method !== 'POST') {
    // V26-06: no GET stream and no DELETE in 2026-07-28.
    reply.header('allow', 'POST')
    throw new GatewayError('GW_HTTP_METHOD_NOT_ALLOWED', { detail: `${request.method} from a 2026-07-28 client` })
  }
  const accept = request.headers.accept

  if (request.method === 'GET') {
    if (!accepts(accept, 'text/event-stream')) throw new GatewayError('GW_HTTP_NOT_ACCEPTABLE', { detail: 'GET without text/event-stream' })
    request.gw.mcp = { body: { messages: [], batch: false }, raw: Buffer.alloc(0), protocolVersion: versionHeader ?? DEFAULT_PROTOCOL_VERSION, sessionId, method: undefined, target: undefined, rpcId: undefined }
    return
  }
  if (request.method === 'DELETE') {
    request.gw.mcp = { body: { messages: [], batch: false }, raw: Buffer.alloc(0), protocolVersion: versionHeader ?? DEFAULT_PROTOCOL_VERSION, sessionId, method: undefined, target: undefined, rpcId: undefined }
    return
  }
  // POST
  const encoding = request.headers['content-encoding']
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
    // A compressed body would be forwarded uninspected; refuse instead (SHTTP-11).
    throw new GatewayError('GW_HTTP_UNSUPPORTED_MEDIA_TYPE', { detail: 'content-encoding' })
  }
  if (!accepts(accept, 'application/json') || !accepts(accept, 'text/event-stream')) {
    throw new GatewayError('GW_HTTP_NOT_ACCEPTABLE', { detail: 'POST Accept must list application/json and text/event-stream' })
  }
  const body = request.body
  if (!Buffer.isBuffer(body) || body.length === 0) throw new GatewayError('GW_HTTP_UNSUPPORTED_MEDIA_TYPE', { detail: 'missing JSON body' })
  const first = firstVersionHint(body)
  const protocolVersion = versionHeader ?? first ?? DEFAULT_PROTOCOL_VERSION
  const parsed = parseMcpBody(body, protocolVersion)
  const head = parsed.messages[0]!
  // Every element of an allowed batch is checked, not only the first.
  const targets = parsed.messages.map(targetName)
  const target = targets[0]
  request.gw.mcp = {
    body: parsed,
    raw: body,
    protocolVersion,
    sessionId,
    method: head.kind === 'response' ? undefined : head.method,
    target,
    rpcId: head.kind === 'notification' ? undefined : head.id,
  }
  // Policies and digests see doubles; an upstream reading decimals exactly (Python's Decimal, a
  // big-number JSON reader) would see another number than the one decided on (issue 16 item 10).
  if (parsed.inexactNumber) throw new GatewayError('GW_MCP_INVALID_PARAMS', { detail: 'a number that a double does not hold exactly' })
  if (modern) {
    checkModernMessage(head, { protocolVersion, method: methodHeader, name: nameHeader })
    checkBridgeable(head, mode)
  } else {
    // A body that says it is 2026-07-28 under a legacy (or no) version header is a mismatch, not legacy traffic.
    for (const m of parsed.messages) {
      const declared = declaredVersion(m)
      if (typeof declared === 'string' && isModernVersion(declared)) throw new GatewayError('GW_MCP_HEADER_MISMATCH', { detail: 'a 2026-07-28 body without a matching MCP-Protocol-Version header' })
    }
  }
  if (head.kind === 'request' && head.method === 'initialize') {
    // Session fixation (SHTTP-31): ids are minted by the server, never chosen by the client.
    if (sessionId !== undefined) throw new GatewayError('GW_MCP_INVALID_REQUEST', { detail: 'initialize with a session id' })
  }
}

/** The protocolVersion an initialize request proposes, found without a full parse. */
function firstVersionHint(body: Buffer): string | undefined {
  const m = /"protocolVersion"\s*:\s*"(\d{4}-\d{2}-\d{2})"/.exec(body.subarray(0, 4096).toString('latin1'))
  return m && /"method"\s*:\s*"initialize"/.test(body.subarray(0, 4096).toString('latin1')) ? m[1] : undefined
}

/** The id of a single JSON-RPC request body, if it parses; for errors raised before the body is checked. */
function rpcIdHint(body: unknown): string | number | undefined {
  if (!Buffer.isBuffer(body)) return undefined
  try {
    const parsed = parseMcpBody(body, DEFAULT_PROTOCOL_VERSION)
    const m = parsed.messages[0]
    return !parsed.batch && m && m.kind !== 'notification' ? m.id : undefined
  } catch {
    return undefined
  }
}
