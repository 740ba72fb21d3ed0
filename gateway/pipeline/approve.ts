/**
 * Fastify glue for human approval (docs/approvals.md): the approval stage (after decide, before
 * the credential stage, so no upstream token is obtained for a call that is never approved) and
 * the webhook callback endpoint `POST /mcp-warden/approvals/<issuer>`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify'
import type { Registry } from 'prom-client'
import type { SharedStore } from '../store/shared-store.js'
import type { RuntimeConfig, RuntimeRoute } from '../config/load.js'
import { GatewayError } from '../errors.js'
import { OAuthClient } from '../oauth/client.js'
import { CibaChannel } from '../approval/ciba.js'
import { ApprovalGate, type ChannelConfig } from '../approval/gate.js'
import { ApprovalLedger } from '../approval/ledger.js'
import { approvalMetrics } from '../approval/metrics.js'
import { SIGNATURE_HEADER } from '../approval/webhook.js'

export const CALLBACK_PREFIX = '/mcp-warden/approvals/'

interface Metadata {
  token_endpoint?: string
  backchannel_authentication_endpoint?: string
}

/** The gate for a config where some issuer has an `approval` channel; undefined otherwise. */
export function createApprovalGate(config: RuntimeConfig, deps: { store: SharedStore; registry: Registry; discover: (issuer: string) => Promise<Metadata>; now?: () => number; encryptionKey?: Buffer | undefined }): ApprovalGate | undefined {
  const channels = new Map<string, ChannelConfig>()
  for (const issuer of config.issuers.values()) {
    const a = issuer.approval
    if (!a) continue
    if (a.channel === 'ciba') {
      const endpoints = async () => {
        const md = issuer.tokenEndpoint && a.backchannelEndpoint ? {} : await deps.discover(issuer.name)
        const backchannel = a.backchannelEndpoint ?? md.backchannel_authentication_endpoint
        const token = issuer.tokenEndpoint ?? md.token_endpoint
        if (!backchannel || !token) throw new Error('the AS publishes no backchannel_authentication_endpoint')
        return { backchannel, token }
      }
      channels.set(issuer.name, { channel: 'ciba', ciba: new CibaChannel(new OAuthClient(issuer.client!), endpoints, a.timeoutMs), loginHintClaim: a.loginHintClaim, scope: a.scope, intervalMs: a.intervalMs, keepToken: a.exchangeSubject === 'approved', details: a.authorizationDetails, resource: a.resource, bindingRule: a.bindingMessagePattern })
    } else if (a.webhook) {
      channels.set(issuer.name, { channel: 'webhook', url: a.webhook.url, secret: a.webhook.secret.reveal(), timeoutMs: a.timeoutMs, maxSkewMs: a.webhook.maxSkewMs, callbackUrl: `${config.server.publicUrl}${CALLBACK_PREFIX}${issuer.name}` })
    }
  }
  if (channels.size === 0) return undefined
  return new ApprovalGate({ ledger: new ApprovalLedger(deps.store, deps.now), channels, metrics: approvalMetrics(deps.registry), encryptionKey: deps.encryptionKey, ...(deps.now ? { now: deps.now } : {}) })
}

export function approvalStage(gate: ApprovalGate, route: RuntimeRoute): preHandlerHookHandler {
  return async function approval(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const held = request.gw.approval
    if (!held) return
    // A client that gives up stops the wait (the request to the user stays open for its retry).
    const abort = new AbortController()
    const onClose = () => {
      if (!reply.raw.writableEnded) abort.abort()
    }
    reply.raw.once('close', onClose)
    try {
      const { id, token } = await gate.pass(
        { principal: request.gw.principal!, route: route.name, resource: route.resource, tool: held.tool, arguments: held.arguments, argumentsDigest: held.argumentsDigest, policyVersion: held.policyVersion, spec: held.spec },
        request.log,
        abort.signal,
      )
      held.approvalId = id
      if (token) held.approvedToken = token
    } finally {
      reply.raw.off('close', onClose)
    }
  }
}

export function registerApprovalCallbacks(app: FastifyInstance, gate: ApprovalGate): void {
  app.post(`${CALLBACK_PREFIX}:issuer`, async (request, reply) => {
    const { issuer } = request.params as { issuer: string }
    const body = request.body
    if (!Buffer.isBuffer(body)) throw new GatewayError('GW_APPROVAL_CALLBACK_INVALID', { detail: 'callback body is not JSON' })
    const sig = request.headers[SIGNATURE_HEADER]
    const result = await gate.callback(issuer, body, typeof sig === 'string' ? sig : undefined, request.log)
    reply.header('cache-control', 'no-store')
    return reply.code(200).send({ id: result.id, outcome: result.outcome })
  })
}
