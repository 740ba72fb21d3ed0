/**
 * The one place where errors become HTTP responses: OAuth errors as RFC 6750 challenges,
 * MCP errors as JSON-RPC error objects on MCP routes, the rest as small JSON documents. API
 * routes and the egress listener never answer with JSON-RPC: their clients are not MCP clients. 5xx bodies never
 * carry detail; every body carries the request id that the log and audit line carry.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { bearerChallenge, dpopChallenge } from '../auth/challenge.js'
import { GatewayError, isGatewayError } from '../errors.js'
import { lingerOnClose } from '../lib/linger.js'

/** Fastify's own error codes, mapped onto the catalogue. */
const FASTIFY_CODES: Record<string, GatewayError['code']> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'GW_HTTP_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'GW_HTTP_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'GW_MCP_INVALID_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'GW_MCP_PARSE_ERROR',
  FST_ERR_CTP_INVALID_JSON_BODY: 'GW_MCP_PARSE_ERROR',
  FST_ERR_CTP_EMPTY_TYPE: 'GW_HTTP_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_TYPE: 'GW_HTTP_UNSUPPORTED_MEDIA_TYPE',
}

export function toGatewayError(err: unknown): GatewayError {
  if (isGatewayError(err)) return err
  const fe = err as Partial<FastifyError>
  const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined
  if (mapped) return new GatewayError(mapped, { detail: fe.code })
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new GatewayError('GW_MCP_INVALID_REQUEST', { detail: fe.code ?? 'client error' })
  }
  return new GatewayError('GW_INTERNAL', { detail: (err as Error)?.message ?? String(err), cause: err })
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const e = toGatewayError(err)
  request.gw.error = e
  const requestId = request.id
  const route = request.gw.route
  const spec = e.spec
  const log = e.statusCode >= 500 ? request.log.error.bind(request.log) : request.log.info.bind(request.log)
  log({ event: 'request.error', code: e.code, reason: e.reason, detail: e.detail, err: e.code === 'GW_INTERNAL' ? e.cause : undefined }, e.message)

  reply.code(e.statusCode)
  reply.header('x-request-id', requestId)
  if (!request.raw.complete && (e.code === 'GW_HTTP_BODY_TOO_LARGE' || String(reply.getHeader('connection')).toLowerCase() === 'close')) {
    // Refused before the body was read: say the connection ends, and end it so the answer arrives (lib/linger.ts).
    reply.header('connection', 'close')
    lingerOnClose(request.raw)
  }
  reply.header('cache-control', 'no-store')
  if (e.retryAfter !== undefined) reply.header('retry-after', String(e.retryAfter))

  if (spec.protocol === 'oauth') {
    const oauthError =
      e.code === 'GW_AUTH_INVALID_TOKEN' ? 'invalid_token' : e.code === 'GW_AUTH_INVALID_REQUEST' ? 'invalid_request' : e.code === 'GW_AUTH_INSUFFICIENT_SCOPE' ? 'insufficient_scope' : undefined
    const dpopError = e.code === 'GW_AUTH_INVALID_DPOP_PROOF' ? 'invalid_dpop_proof' : e.code === 'GW_AUTH_USE_DPOP_NONCE' ? 'use_dpop_nonce' : oauthError
    if (route && e.code !== 'GW_AUTH_UNAVAILABLE') {
      // MCP 2025-11-25: the 401 names the scopes a first token needs (least privilege: not all of
      // scopesSupported, or no client would ever step up); the 403 the ones the refused call needs.
      const scope = e.scope ?? (route.challengeScopes.length > 0 ? route.challengeScopes.join(' ') : undefined)
      const resourceMetadata = route.metadataUrl || undefined
      // RFC 9449 §7.1/§7.2: one challenge per accepted scheme; the error goes into the scheme the client used.
      const challenges: string[] = []
      const dpop = route.kind === 'egress' ? undefined : route.dpop
      if (!dpop || dpop.bearer) challenges.push(bearerChallenge({ resourceMetadata, error: e.scheme === 'DPoP' ? undefined : oauthError, description: e.description, scope }))
      if (dpop) challenges.push(dpopChallenge({ resourceMetadata, algs: dpop.algorithms, error: e.scheme === 'DPoP' || !dpop.bearer ? dpopError : undefined, description: e.description, scope }))
      reply.header('www-authenticate', challenges.length === 1 ? challenges[0]! : challenges)
    }
    // RFC 9449 §8/§9: exactly one DPoP-Nonce; cache-control no-store is already set (§8.2).
    if (e.dpopNonce) reply.header('dpop-nonce', e.dpopNonce)
    const body: Record<string, unknown> = { error: dpopError ?? (e.statusCode === 503 ? 'temporarily_unavailable' : 'unauthorized'), request_id: requestId }
    if (e.description ?? (e.expose && dpopError)) body.error_description = e.description ?? spec.message
    if (e.code === 'GW_AUTH_INSUFFICIENT_SCOPE' && e.scope) body.scope = e.scope
    return reply.type('application/json').send(body)
  }
  // Errors raised before a route is known (host check, no route) concern MCP clients only when the path is an MCP route.
  if (spec.protocol === 'jsonrpc' && (route === undefined || route.kind === 'mcp')) {
    return reply.type('application/json').send({
      jsonrpc: '2.0',
      id: request.gw.mcp?.rpcId ?? null,
      error: { code: 'rpcCode' in spec ? spec.rpcCode : -32603, message: spec.message, data: { ...e.data, code: e.code, requestId, ...(e.retryAfter !== undefined ? { retryAfter: e.retryAfter } : {}) } },
    })
  }
  return reply.type('application/json').send({ error: e.code, message: spec.message, request_id: requestId })
}
