/**
 * Fastify glue for session binding: a preHandler that refuses sessions the caller does not own,
 * and an upstream-response observer that records new sessions and forgets ended ones.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { GatewayError } from '../errors.js'
import type { SessionRegistry } from '../session/binding.js'
import { sessionVersion, versionOfInitializeResult, type NegotiatedVersions } from '../session/negotiated.js'
import { serverRequestId, type AnswerScope, type ServerRequests } from '../session/server-requests.js'

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

/**
 * Session state beyond ownership (negotiated.ts, server-requests.ts), right after the owner
 * check and so before any decision or upstream credential: the protocol version a request is
 * handled under comes from the session, and a client response must answer a request the
 * server sent on one of the session's streams. The upstream's answers are watched for the
 * negotiated version (initialize) and for the server's requests, both recorded before the
 * client can see them.
 */
export function sessionStateStage(versions: NegotiatedVersions, serverRequests: ServerRequests) {
  return async function sessionState(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const { mcp, principal, route } = request.gw
    if (!mcp || !principal || !route) return
    if (mcp.sessionId !== undefined) {
      const header = request.headers['mcp-protocol-version']
      const negotiated = await versions.get(route.name, mcp.sessionId)
      try {
        mcp.protocolVersion = sessionVersion(negotiated, { header: typeof header === 'string' ? header : undefined, body: request.method === 'POST' ? mcp.body : undefined }, mcp.protocolVersion)
      } catch (e) {
        // A batch has no one id to answer with (SHTTP-14); a single request gets its own.
        if (mcp.body.batch) mcp.rpcId = undefined
        throw e
      }
    }
    const scope: AnswerScope = { route: route.name, sessionId: mcp.sessionId, principal }
    for (const m of mcp.body.messages) {
      if (m.kind !== 'response') continue
      if (!(await serverRequests.answer(scope, m.id))) {
        // The error answers no request of the client's: it carries no id (SHTTP-15).
        mcp.rpcId = undefined
        throw new GatewayError('GW_MCP_INVALID_REQUEST', { detail: 'a response to no server request of this session' })
      }
    }
    const initialize = request.method === 'POST' && mcp.method === 'initialize'
    const rpcId = mcp.rpcId
    request.gw.watchResponse = {
      json: initialize,
      message: (message, headers) => {
        if (initialize) {
          const version = versionOfInitializeResult(message, rpcId)
          // Keyed by the upstream's id, the one later requests carry once checkSession unsealed theirs.
          const issued = issuedUpstream.get(request) ?? headers['mcp-session-id']
          return version && typeof issued === 'string' ? versions.record(route.name, issued, version).then(() => true) : true
        }
        const id = serverRequestId(message)
        if (id === undefined) return true
        return serverRequests.expect(scope, id).then((recorded) => {
          if (!recorded) request.log.warn({ event: 'session.server-requests-full', route: route.name }, 'server request withheld: too many unanswered server requests on this session')
          return recorded
        })
      },
    }
  }
}

/** The session id an upstream issued on initialize, before the binding observer replaces it with the sealed one. */
const issuedUpstream = new WeakMap<FastifyRequest, string>()

/**
 * Notes the upstream's own id of a new session (it must run before `observeSessions`, which
 * rewrites the header the client will see) and forgets the negotiated version with the session
 * (DELETE accepted, or the upstream's 404).
 */
export function observeSessionState(versions: NegotiatedVersions) {
  return async function sessionStateObserver(request: FastifyRequest, status: number, headers: IncomingHttpHeaders): Promise<void> {
    const { mcp, route } = request.gw
    const issued = headers['mcp-session-id']
    if (request.method === 'POST' && mcp?.method === 'initialize' && typeof issued === 'string') issuedUpstream.set(request, issued)
    if (!route || !mcp?.sessionId) return
    if ((request.method === 'DELETE' && status >= 200 && status < 300) || status === 404) await versions.forget(route.name, mcp.sessionId)
  }
}
