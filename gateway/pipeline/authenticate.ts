/**
 * Fastify glue for the first stage: every request to an MCP route (POST, GET and DELETE,
 * notifications included) must carry a valid bearer token for that route's resource. A session
 * id never stands in for a token (MCP 2025-11-25 security best practices). A DPoP-bound token
 * (`cnf.jkt`) is accepted only with `Authorization: DPoP` and a valid proof (docs/dpop.md).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RuntimeConfig, RuntimeRoute } from '../config/load.js'
import { GatewayError, isGatewayError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'
import { dpopProofs, extractCredential, type Credential } from '../auth/bearer.js'
import type { DpopVerifier } from '../auth/dpop.js'
import type { Principal } from '../auth/principal.js'
import type { TokenValidator } from '../auth/token-validator.js'

export interface DpopStage {
  verifier: DpopVerifier
  config: RuntimeConfig
}

export function authenticateHook(validator: TokenValidator, metrics: Metrics, dpop?: DpopStage) {
  return async function authenticate(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const route = request.gw.route!
    let cred: Credential = { kind: 'none' }
    try {
      cred = extractCredential(request.raw.rawHeaders, validator.maxTokenSize(route))
      // Where no issuer of the route accepts DPoP, the scheme is unknown here (RFC 6750 §3.1: no credentials).
      if (cred.kind === 'none' || (cred.kind === 'dpop' && !(dpop && route.dpop))) throw new GatewayError('GW_AUTH_TOKEN_MISSING')
      const principal = await validator.authenticate(route, cred.token)
      if (dpop && route.dpop) await checkSenderConstraint(dpop, route, request, cred as Exclude<Credential, { kind: 'none' }>, principal)
      else if (principal.confirmation !== undefined) throw new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'auth-dpop', detail: 'sender-constrained token presented as bearer' })
      const missing = route.requiredScopes.filter((s) => !principal.scopes.has(s))
      if (missing.length > 0) {
        const kept = [...principal.scopes].filter((s) => s !== 'offline_access')
        throw new GatewayError('GW_AUTH_INSUFFICIENT_SCOPE', { scope: [...kept, ...missing].join(' '), detail: `missing ${missing.join(' ')}`, description: `missing scope ${missing.join(' ')}` })
      }
      request.gw.principal = principal
      metrics.tokenValidations.inc({ route: route.name, outcome: 'valid', reason: 'ok' })
    } catch (e) {
      if (isGatewayError(e)) {
        // The error belongs in the challenge of the scheme the client used (RFC 9449 §7.1).
        if (cred.kind === 'dpop' && e.scheme === undefined && e.code !== 'GW_AUTH_TOKEN_MISSING') e.scheme = 'DPoP'
        const outcome = e.statusCode >= 500 ? 'unavailable' : e.code === 'GW_AUTH_TOKEN_MISSING' ? 'missing' : 'invalid'
        metrics.tokenValidations.inc({ route: route.name, outcome, reason: e.reason })
      }
      throw e
    }
  }
}

async function checkSenderConstraint(dpop: DpopStage, route: RuntimeRoute, request: FastifyRequest, cred: { kind: 'bearer' | 'dpop'; token: string }, principal: Principal): Promise<void> {
  const issuer = dpop.config.issuers.get(principal.issuerName)!
  const jkt = principal.confirmation?.jkt
  if (cred.kind === 'bearer') {
    // DPOP-04 (RFC 9449 §7.2): a bound token used as a bearer token is a stolen token.
    if (principal.confirmation !== undefined) throw new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'auth-dpop', detail: 'DPoP-bound token presented as bearer', scheme: 'Bearer' })
    if (route.dpop!.required || issuer.dpop?.required) throw new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'auth-dpop', detail: 'a DPoP-bound token is required', scheme: 'DPoP' })
    return
  }
  if (!issuer.dpop || typeof jkt !== 'string') throw new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'auth-dpop', detail: 'DPoP scheme with a token that is not DPoP-bound', scheme: 'DPoP' })
  const q = request.raw.url!.indexOf('?')
  // DPOP-02: htu is checked against the configured public origin, never a client-supplied Host.
  const url = dpop.config.server.publicUrl + (q === -1 ? request.raw.url! : request.raw.url!.slice(0, q))
  await dpop.verifier.verify({
    proofs: dpopProofs(request.raw.rawHeaders),
    method: request.raw.method!,
    url,
    accessToken: cred.token,
    jkt,
    issuer: issuer.issuer,
    clockSkewSec: issuer.clockSkewSec,
    settings: issuer.dpop,
  })
}
