/**
 * Fastify glue for the first stage: every request to an MCP route (POST, GET and DELETE,
 * notifications included) must carry a valid bearer token for that route's resource. A session
 * id never stands in for a token (MCP 2025-11-25 security best practices).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError, isGatewayError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'
import { extractCredential } from './bearer.js'
import type { TokenValidator } from './token-validator.js'

export function authenticateHook(validator: TokenValidator, metrics: Metrics) {
  return async function authenticate(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const route = request.gw.route!
    try {
      const cred = extractCredential(request.raw.rawHeaders, validator.maxTokenSize(route))
      if (cred.kind === 'none') throw new GatewayError('GW_AUTH_TOKEN_MISSING')
      const principal = await validator.authenticate(route, cred.token)
      const missing = route.requiredScopes.filter((s) => !principal.scopes.has(s))
      if (missing.length > 0) {
        const kept = [...principal.scopes].filter((s) => s !== 'offline_access')
        throw new GatewayError('GW_AUTH_INSUFFICIENT_SCOPE', { scope: [...kept, ...missing].join(' '), detail: `missing ${missing.join(' ')}`, description: `missing scope ${missing.join(' ')}` })
      }
      request.gw.principal = principal
      metrics.tokenValidations.inc({ route: route.name, outcome: 'valid', reason: 'ok' })
    } catch (e) {
      if (isGatewayError(e)) {
        const outcome = e.statusCode >= 500 ? 'unavailable' : e.code === 'GW_AUTH_TOKEN_MISSING' ? 'missing' : 'invalid'
        metrics.tokenValidations.inc({ route: route.name, outcome, reason: e.reason })
      }
      throw e
    }
  }
}
