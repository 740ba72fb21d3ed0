/**
 * Fastify glue for the credential stage (last preHandler, right before the proxy): puts the
 * upstream credential in `request.gw.upstreamHeaders`, which the proxy adds after its header
 * allow-list, and what was used in `request.gw.credential` for the audit line.
 */
import type { FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify'
import { extractCredential } from '../auth/bearer.js'
import type { RuntimeRoute } from '../config/load.js'
import type { CredentialBroker } from './broker.js'

export function credentialStage(broker: CredentialBroker, route: RuntimeRoute): preHandlerHookHandler[] {
  if (!route.credentials) return []
  return [
    async function upstreamCredential(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
      const principal = request.gw.principal!
      // The auth stage already accepted this header; read again rather than keep the token in request.gw.
      const cred = extractCredential(request.raw.rawHeaders, Number.MAX_SAFE_INTEGER)
      if (cred.kind !== 'bearer') return
      // An approved call may use the token the AS issued for the approval as the subject instead
      // (approval.exchangeSubject: approved), so the upstream credential carries the approval.
      const obtained = await broker.obtain(route, { principal, token: request.gw.approval?.approvedToken ?? cred.token })
      if (!obtained) return
      request.gw.upstreamHeaders = { ...request.gw.upstreamHeaders, ...obtained.headers }
      request.gw.credential = obtained.record
    },
  ]
}
