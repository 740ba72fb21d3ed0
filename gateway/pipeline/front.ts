/**
 * The front of every route: which route a request is for, which hosts and origins may call it,
 * CORS answers and preflights. Runs before authentication, so a misdirected request costs nothing.
 */
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { RuntimeConfig, RuntimeRoute } from '../config/load.js'
import { GatewayError } from '../errors.js'
import { parseRequestTarget } from '../lib/request-target.js'
import { restUnder } from '../upstream/path.js'
import { newContext } from './context.js'

export const ALLOW = 'GET, POST, DELETE'
export const CORS_ALLOW_HEADERS = 'Authorization, Content-Type, Accept, MCP-Protocol-Version, MCP-Session-Id, Last-Event-ID, DPoP, Mcp-Method, Mcp-Name'
const CORS_EXPOSE_HEADERS = 'WWW-Authenticate, DPoP-Nonce, MCP-Session-Id, MCP-Protocol-Version, X-Request-Id'

export const originCheckFor =
  (route: RuntimeRoute): onRequestHookHandler =>
  async (request, reply) => {
    const origin = request.headers.origin
    if (origin !== undefined && !route.allowedOrigins.has(origin)) throw new GatewayError('GW_HTTP_ORIGIN_FORBIDDEN', { detail: 'origin not allowed' })
    if (origin !== undefined) {
      reply.header('access-control-allow-origin', origin).header('vary', 'Origin').header('access-control-expose-headers', CORS_EXPOSE_HEADERS)
    }
  }

export const preflight = (allow: string, allowHeaders: string) => async (request: FastifyRequest, reply: FastifyReply) => {
  if (request.headers.origin === undefined) {
    reply.header('allow', `${allow}, OPTIONS`)
    return reply.code(204).send()
  }
  return reply
    .code(204)
    .header('access-control-allow-methods', `${allow}, OPTIONS`)
    .header('access-control-allow-headers', allowHeaders)
    .header('access-control-max-age', '600')
    .send()
}


/**
 * The handler for methods a path does not serve: 405 with its `Allow`. `route` is for paths the
 * route lookup does not know (legacy client paths), so the refusal is answered and audited as that
 * route's.
 */
export const methodNotAllowed =
  (allow: string, detail?: string, route?: RuntimeRoute) =>
  async (request: FastifyRequest, reply: FastifyReply): Promise<never> => {
    if (route) request.gw.route = route
    reply.header('allow', allow)
    throw new GatewayError('GW_HTTP_METHOD_NOT_ALLOWED', detail === undefined ? {} : { detail })
  }

/** The route a path belongs to: an exact MCP path first, else the API route with the longest prefix. */
export function routeLookup(routes: readonly RuntimeRoute[]): (path: string) => RuntimeRoute | undefined {
  const byPath = new Map(routes.map((r) => [r.path, r]))
  const api = routes.filter((r) => r.kind === 'api').sort((a, b) => b.path.length - a.path.length)
  return (path) => byPath.get(path) ?? api.find((r) => restUnder(path, r.path) !== undefined)
}

/**
 * Fastify's `rewriteUrl` and the first onRequest hook. The rewrite runs before routing: an
 * absolute-form target is routed by its path, and its authority becomes the Host the host check
 * sees (RFC 9112 §3.2.2 says to ignore the header then); a target that cannot be parsed is routed
 * to `/` and refused by the hook, which also creates `request.gw`.
 */
export function front(config: RuntimeConfig, blocked: () => boolean): { rewriteUrl: (req: IncomingMessage) => string; hook: onRequestHookHandler } {
  const routeFor = routeLookup(config.routes)
  const badTargets = new WeakMap<object, string>()
  return {
    rewriteUrl: (req) => {
      const url = req.url ?? '/'
      if (url.startsWith('/') && !url.includes('#')) return url
      const t = parseRequestTarget(url)
      if ('invalid' in t) {
        badTargets.set(req, t.invalid)
        return '/'
      }
      if (t.authority !== undefined) req.headers.host = t.authority
      return t.path
    },
    hook: async (request) => {
      const bad = badTargets.get(request.raw)
      if (bad !== undefined) {
        request.gw = newContext(undefined)
        throw new GatewayError('GW_HTTP_PATH_INVALID', { detail: bad })
      }
      const q = request.url.indexOf('?')
      request.gw = newContext(routeFor(q === -1 ? request.url : request.url.slice(0, q)))
      // DNS-rebinding defence (SHTTP-02): only the configured public host names are served.
      const host = request.headers.host?.toLowerCase()
      if (!host || !config.server.allowedHosts.has(host)) throw new GatewayError('GW_HTTP_MISDIRECTED', { detail: 'host not allowed' })
      // An audit sink with a full buffer and onFull: block: no request is served that cannot be recorded.
      if (blocked()) throw new GatewayError('GW_AUDIT_UNAVAILABLE', { detail: 'audit buffer full', retryAfter: 5 })
    },
  }
}
