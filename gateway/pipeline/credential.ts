/**
 * Fastify glue for the credential stage (last preHandler, right before the proxy): puts the
 * upstream credential in `request.gw.upstreamHeaders`, which the proxy adds after its header
 * allow-list, and what was used in `request.gw.credential` for the audit line.
 */
import type { FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify'
import { extractCredential } from '../auth/bearer.js'
import type { RuntimeRoute } from '../config/load.js'
import type { CredentialBroker, UpstreamCredential } from '../exchange/broker.js'

export function credentialStage(broker: CredentialBroker, route: RuntimeRoute): preHandlerHookHandler[] {
  if (!route.credentials) return []
  return [
    // Not async: a credential already in the in-process cache is applied without a promise; the
    // stage chain (pipeline/chain.ts) waits only when a promise is returned.
    function upstreamCredential(request: FastifyRequest, _reply: FastifyReply): Promise<void> | undefined {
      const principal = request.gw.principal!
      // The auth stage already accepted this header; read again rather than keep the token in request.gw.
      const cred = extractCredential(request.raw.rawHeaders, Number.MAX_SAFE_INTEGER)
      // A DPoP-bound token gets here only after its proof was checked (TX-11).
      if (cred.kind === 'none') return undefined
      // An approved call may use the token the AS issued for the approval as the subject instead
      // (approval.exchangeSubject: approved), so the upstream credential carries the approval.
      const caller = { principal, token: request.gw.approval?.approvedToken ?? cred.token }
      const cached = broker.cachedSync(route, caller)
      if (cached) {
        apply(request, cached)
        return undefined
      }
      return broker.obtain(route, caller).then((obtained) => {
        if (obtained) apply(request, obtained)
      })
    },
  ]
}

function apply(request: FastifyRequest, obtained: UpstreamCredential): void {
  request.gw.upstreamHeaders = { ...request.gw.upstreamHeaders, ...obtained.headers }
  request.gw.credential = obtained.record
}
