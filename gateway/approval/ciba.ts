/**
 * OpenID CIBA Core 1.0, poll mode, with mcp-warden as the client: the backchannel authentication
 * request (§7.1) for the calling user, with a binding_message and, when the issuer uses RAR,
 * authorization_details (RFC 9396 §3) describing the call, and the token request polls (§10.1)
 * that learn the outcome.
 * Decision logic only: no Fastify, no clock of its own.
 */
import { decodeJwt, type JWTPayload } from 'jose'
import type { OAuthClient } from '../oauth/client.js'
import { OAuthRequestError } from '../oauth/client.js'

export const CIBA_GRANT = 'urn:openid:params:grant-type:ciba'
/** CIBA §11: slow_down means "add at least 5 seconds to the interval". */
export const SLOW_DOWN_MS = 5_000

export interface CibaStart {
  loginHint: string
  bindingMessage: string
  /** Undefined: no RAR (an AS without it refuses the parameter, or the client is not allowed the type). */
  authorizationDetails: readonly Record<string, unknown>[] | undefined
  scope: string
  /** RFC 8707 resource, only when configured: an AS refuses one it does not know (invalid_target). */
  resource: string | undefined
  requestedExpirySec: number
}

export interface CibaStarted {
  authReqId: string
  expiresInSec: number
  /** Seconds, when the AS names a minimum polling interval. */
  intervalSec: number | undefined
}

export type CibaPoll =
  | { status: 'approved'; authorizationDetails: unknown; accessToken: string; expiresInSec: number | undefined; idToken: JWTPayload | undefined }
  | { status: 'pending' }
  | { status: 'slow_down' }
  | { status: 'denied' }
  | { status: 'expired' }
  /** invalid_grant: the request is unknown or already redeemed (by another replica). */
  | { status: 'gone' }

export class CibaError extends Error {
  constructor(
    message: string,
    readonly kind: string,
    /** The AS's HTTP status, when it answered. */
    readonly status?: number,
  ) {
    super(message)
    this.name = 'CibaError'
  }

  /**
   * The AS answered and said no (4xx): a verdict on the request or the client's registration,
   * which retrying cannot change. Timeouts, 5xx and unreachable ASes are not refusals.
   */
  get refused(): boolean {
    return this.status !== undefined && this.status >= 400 && this.status < 500
  }
}

const refusal = (what: string, e: unknown) =>
  e instanceof OAuthRequestError ? new CibaError(what, e.kind, e.status) : new CibaError(what, 'unreachable')

export interface CibaEndpoints {
  backchannel: string
  token: string
}

export class CibaChannel {
  constructor(
    private readonly client: OAuthClient,
    private readonly endpoints: () => Promise<CibaEndpoints>,
    private readonly timeoutMs: number,
  ) {}

  get clientId(): string {
    return this.client.clientId
  }

  async start(s: CibaStart): Promise<CibaStarted> {
    const { backchannel } = await this.endpoints()
    let body: Record<string, unknown>
    try {
      body = await this.client.postForm(
        backchannel,
        {
          scope: s.scope,
          login_hint: s.loginHint,
          binding_message: s.bindingMessage,
          ...(s.authorizationDetails ? { authorization_details: JSON.stringify(s.authorizationDetails) } : {}),
          requested_expiry: String(Math.max(1, Math.ceil(s.requestedExpirySec))),
          ...(s.resource ? { resource: s.resource } : {}),
        },
        this.timeoutMs,
      )
    } catch (e) {
      throw refusal('backchannel authentication request failed', e)
    }
    const id = body.auth_req_id
    const expiresIn = body.expires_in
    if (typeof id !== 'string' || id.length === 0 || id.length > 512 || typeof expiresIn !== 'number' || !(expiresIn > 0)) {
      throw new CibaError('backchannel authentication response is malformed', 'malformed')
    }
    const interval = typeof body.interval === 'number' && body.interval > 0 && body.interval <= 300 ? body.interval : undefined
    return { authReqId: id, expiresInSec: expiresIn, intervalSec: interval }
  }

  async poll(authReqId: string): Promise<CibaPoll> {
    const { token } = await this.endpoints()
    let body: Record<string, unknown>
    try {
      body = await this.client.postForm(token, { grant_type: CIBA_GRANT, auth_req_id: authReqId }, this.timeoutMs)
    } catch (e) {
      const err = refusal('CIBA token request failed', e)
      switch (err.kind) {
        case 'authorization_pending':
          return { status: 'pending' }
        case 'slow_down':
          return { status: 'slow_down' }
        case 'access_denied':
          return { status: 'denied' }
        case 'expired_token':
          return { status: 'expired' }
        case 'invalid_grant':
          return { status: 'gone' }
        default:
          throw err
      }
    }
    if (typeof body.access_token !== 'string') throw new CibaError('CIBA token response has no access_token', 'malformed')
    return {
      status: 'approved',
      authorizationDetails: body.authorization_details,
      accessToken: body.access_token,
      expiresInSec: typeof body.expires_in === 'number' ? body.expires_in : undefined,
      idToken: claimsOf(body.id_token),
    }
  }
}

/**
 * The ID token of a CIBA token response (§10.1.1). It comes straight from the token endpoint on a
 * client-authenticated connection, so OIDC Core §3.1.3.7 lets TLS stand in for its signature; its
 * claims say who approved, and the gate compares them with the caller.
 */
function claimsOf(idToken: unknown): JWTPayload | undefined {
  if (typeof idToken !== 'string') return undefined
  try {
    return decodeJwt(idToken)
  } catch {
    return undefined
  }
}

/** CIBA Core §10.1.1 (required for ping and push, allowed in poll mode). */
const AUTH_REQ_ID_CLAIM = 'urn:openid:params:jwt:claim:auth_req_id'

/**
 * Whether the ID token names the user the call was made for, issued to mcp-warden, unexpired,
 * and (when it says which request it answers) for the auth_req_id the gateway polled with.
 */
export function approvedBy(idToken: JWTPayload | undefined, expected: { issuer: string; subject: string; clientId: string; authReqId?: string | undefined }, nowMs: number): boolean {
  if (!idToken) return false
  const aud = Array.isArray(idToken.aud) ? idToken.aud : [idToken.aud]
  const forRequest = idToken[AUTH_REQ_ID_CLAIM] === undefined || idToken[AUTH_REQ_ID_CLAIM] === expected.authReqId
  return idToken.iss === expected.issuer && idToken.sub === expected.subject && aud.includes(expected.clientId) && typeof idToken.exp === 'number' && idToken.exp * 1000 > nowMs && forRequest
}
