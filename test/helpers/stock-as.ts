/**
 * An oidc-provider 9.x in its stock configuration for CIBA, as its documentation describes it and
 * nothing more: CIBA on in poll mode, no RAR, the default binding_message rule, the default
 * resource indicator handling (unknown resources are invalid_target). The CIBA helpers the
 * provider cannot do without are the documented minimum: `processLoginHint` returns the account,
 * `triggerAuthenticationDevice` hands the request to the test (the user's phone), and
 * `validateRequestContext`/`verifyUserCode` accept their parameters' absence. The test decides with
 * `provider.backchannelResult()`, the documented way to finish a backchannel request. Unlike
 * demo/authorization-server.ts, nothing here knows about mcp-warden.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes, randomUUID } from 'node:crypto'
import * as jose from 'jose'

export const CIBA_GRANT = 'urn:openid:params:grant-type:ciba'

export interface StockCibaRequest {
  authReqId: string
  accountId: string
  clientId: string
  params: Record<string, unknown>
}

export interface StockAs {
  issuer: string
  /** Registered for CIBA (poll), client_secret_basic. */
  client: { id: string; secret: string }
  /** Registered without the CIBA grant: the AS answers unauthorized_client. */
  otherClient: { id: string; secret: string }
  /** Backchannel requests the AS accepted, in order. */
  requests: StockCibaRequest[]
  /** Every backchannel or token endpoint error the AS answered with (its `error` codes). */
  errors: string[]
  next(timeoutMs?: number): Promise<StockCibaRequest>
  approve(authReqId: string): Promise<void>
  deny(authReqId: string): Promise<void>
  /** An RFC 9068 access token for a route, signed with the AS's own key (what its token endpoint would issue for an agent). */
  accessToken(o: { subject: string; audience: string; clientId?: string; scope?: string }): Promise<string>
  close(): Promise<void>
}

// oidc-provider ships ESM only; the specifier is kept in a variable so tsc does not resolve its types.
const OIDC = 'oidc-provider'

export async function startStockAs(): Promise<StockAs> {
  const original = console.warn
  // oidc-provider prints notices for every default it wants changed in production; keep output readable.
  console.warn = () => undefined
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const { default: Provider, errors } = (await import(OIDC)) as any
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true })
  const jwk = { ...(await jose.exportJWK(privateKey)), kid: 'stock-1', alg: 'RS256', use: 'sig' }

  const server: Server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const client = { id: 'mcp-warden', secret: randomBytes(24).toString('base64url') }
  const otherClient = { id: 'no-ciba', secret: randomBytes(24).toString('base64url') }
  const requests: StockCibaRequest[] = []
  const errorCodes: string[] = []
  const waiters: ((r: StockCibaRequest) => void)[] = []
  const queue: StockCibaRequest[] = []

  const provider = new Provider(issuer, {
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clients: [
      { client_id: client.id, client_secret: client.secret, grant_types: [CIBA_GRANT], response_types: [], redirect_uris: [], backchannel_token_delivery_mode: 'poll' },
      { client_id: otherClient.id, client_secret: otherClient.secret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
    ],
    findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub }) }),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      ciba: {
        enabled: true,
        deliveryModes: ['poll'],
        processLoginHint: async (_ctx: unknown, loginHint: string) => loginHint,
        validateRequestContext: async (_ctx: unknown, requestContext: unknown) => {
          if (requestContext) throw new errors.InvalidRequest('request_context not supported')
        },
        verifyUserCode: async (_ctx: unknown, _account: unknown, userCode: unknown) => {
          if (userCode) throw new errors.InvalidRequest('user_code not supported')
        },
        triggerAuthenticationDevice: async (_ctx: unknown, request: { jti: string; accountId: string; clientId: string; params: Record<string, unknown> }) => {
          const r = { authReqId: request.jti, accountId: request.accountId, clientId: request.clientId, params: { ...request.params } }
          requests.push(r)
          const w = waiters.shift()
          if (w) w(r)
          else queue.push(r)
        },
      },
    },
  })
  provider.on('backchannel_authentication.error', (_ctx: unknown, err: { error?: string }) => err.error && errorCodes.push(err.error))
  provider.on('grant.error', (_ctx: unknown, err: { error?: string }) => err.error && errorCodes.push(err.error))
  console.warn = original
  const callback = provider.callback() as (req: IncomingMessage, res: ServerResponse) => void
  server.on('request', callback)

  return {
    issuer,
    client,
    otherClient,
    requests,
    errors: errorCodes,
    next(timeoutMs = 10_000) {
      const q = queue.shift()
      if (q) return Promise.resolve(q)
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1)
          reject(new Error(`no backchannel request within ${timeoutMs}ms`))
        }, timeoutMs)
        const w = (r: StockCibaRequest) => {
          clearTimeout(t)
          resolve(r)
        }
        waiters.push(w)
      })
    },
    async approve(authReqId) {
      const request = await provider.BackchannelAuthenticationRequest.find(authReqId)
      const grant = new provider.Grant({ accountId: request.accountId, clientId: request.clientId })
      grant.addOIDCScope(request.scope)
      await grant.save()
      await provider.backchannelResult(request, grant)
    },
    async deny(authReqId) {
      const request = await provider.BackchannelAuthenticationRequest.find(authReqId)
      await provider.backchannelResult(request, new errors.AccessDenied('end-user denied the request'))
    },
    async accessToken(o) {
      const key = await jose.importJWK(jwk, 'RS256')
      const now = Math.floor(Date.now() / 1000)
      return new jose.SignJWT({ client_id: o.clientId ?? 'agent', scope: o.scope ?? 'tools.read', jti: randomUUID() })
        .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: jwk.kid })
        .setIssuer(issuer)
        .setSubject(o.subject)
        .setAudience(o.audience)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(key)
    },
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
    },
  }
}
