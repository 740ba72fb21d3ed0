/**
 * Fastify glue for session binding: a preHandler that refuses sessions the caller does not own,
 * and an upstream-response observer that records new sessions and forgets ended ones.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { GatewayError } from '../errors.js'
import type { SessionRegistry } from './binding.js'

/** The sealed id a request presented, to hand back instead of the upstream's id on its response. */
const presented = new WeakMap<FastifyRequest, { sealed: string; upstream: string }>()

export function checkSessionHook(sessions: SessionRegistry) {
  return async function checkSession(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const { mcp, principal, route } = request.gw
    if (!mcp?.sessionId || !principal || !route) return
    const { verdict, upstreamId } = await sessions.resolve(route.name, mcp.sessionId, principal)
    // Someone else's session is indistinguishable from a session that does not exist (SHTTP-27).
    if (verdict !== 'owner') throw new GatewayError('GW_MCP_SESSION_NOT_FOUND', { detail: `session ${verdict}` })
    // A sealed id (sealed-id.ts) is the gateway's: the upstream only knows its own id.
    if (upstreamId !== mcp.sessionId) {
      presented.set(request, { sealed: mcp.sessionId, upstream: upstreamId })
      request.headers['mcp-session-id'] = upstreamId
      mcp.sessionId = upstreamId
    }
  }
}

export function observeSessions(sessions: SessionRegistry) {
  return async function sessionObserver(request: FastifyRequest, status: number, headers: IncomingHttpHeaders): Promise<void> {
    const { mcp, principal, route } = request.gw
    if (!principal || !route) return
    const issued = headers['mcp-session-id']
    // Upstreams (the MCP SDK among them) repeat the session id on every response, and clients
    // adopt what they receive: the client must keep seeing the sealed id, never the upstream's.
    const p = presented.get(request)
    if (p && issued === p.upstream) headers['mcp-session-id'] = p.sealed
    if (request.method === 'POST' && mcp?.method === 'initialize' && status >= 200 && status < 300 && typeof issued === 'string') {
      // Rewritten in place: the proxy relays these headers once every observer has finished.
      headers['mcp-session-id'] = await sessions.issue(route.name, issued, principal)
      return
    }
    // A terminated session (DELETE accepted, or the upstream no longer knows it) is forgotten.
    if (mcp?.sessionId && ((request.method === 'DELETE' && status >= 200 && status < 300) || status === 404)) {
      await sessions.forget(route.name, mcp.sessionId)
    }
  }
}
