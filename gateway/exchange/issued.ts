/**
 * Acceptance of a token an AS issued for an upstream (RFC 8693 §2.2.1, RFC 6749 §5.1). The AS is
 * trusted to authenticate, not to be configured correctly: a response that echoes the caller's
 * token, or a JWT made for another audience or another subject, is refused, so a misconfigured
 * AS can never turn the exchange into passthrough (ATK-32, TX-09).
 */
import { createHash } from 'node:crypto'
import { decodeJwt } from 'jose'

export const TOKEN_TYPE_URN = {
  access_token: 'urn:ietf:params:oauth:token-type:access_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
} as const

export interface IssuedToken {
  token: string
  /** Milliseconds since the epoch. */
  expiresAt: number
  /** The token's `jti` when it is a JWT that has one. */
  tokenId: string | undefined
  /** SHA-256 (base64url): what the audit records when there is no jti. */
  digest: string
}

export interface Expectation {
  /** Set for token exchange: the issued_token_type that must come back. */
  requestedTokenType?: keyof typeof TOKEN_TYPE_URN
  /** The upstream identifiers requested; a JWT's `aud` must contain one of them. */
  audiences: readonly string[]
  /** The caller's token, which must never come back. */
  subjectToken?: string
  /** Token exchange: a JWT's `sub` must stay the caller's. */
  subject?: string
  now: number
}

export class InvalidTokenResponse extends Error {
  constructor(readonly why: string) {
    super(`invalid token response: ${why}`)
    this.name = 'InvalidTokenResponse'
  }
}

export const digestOf = (token: string): string => createHash('sha256').update(token).digest('base64url')

// The token goes into an HTTP header: visible ASCII only, bounded.
const HEADER_SAFE = /^[\x21-\x7e]{1,16384}$/

export function acceptTokenResponse(body: Record<string, unknown>, x: Expectation): IssuedToken {
  const fail = (why: string): never => {
    throw new InvalidTokenResponse(why)
  }
  const token = body.access_token
  if (typeof token !== 'string' || !HEADER_SAFE.test(token)) return fail('access_token missing or not header-safe')
  if (x.subjectToken !== undefined && token === x.subjectToken) fail('the AS returned the subject token itself')

  const type = typeof body.token_type === 'string' ? body.token_type.toLowerCase() : undefined
  // N_A (RFC 8693 §2.2.1) only makes sense when something other than an access token was asked for.
  const acceptedTypes = x.requestedTokenType === 'jwt' ? ['bearer', 'n_a'] : ['bearer']
  if (!type || !acceptedTypes.includes(type)) fail(`token_type ${type ?? 'missing'} is not usable as a bearer credential`)
  if (x.requestedTokenType && body.issued_token_type !== TOKEN_TYPE_URN[x.requestedTokenType]) fail('issued_token_type differs from the requested type')

  let expiresAt: number | undefined
  if (body.expires_in !== undefined) {
    const e = body.expires_in
    if (typeof e !== 'number' || !Number.isFinite(e) || e <= 0) fail('expires_in is not a positive number')
    expiresAt = x.now + (e as number) * 1000
  }

  let tokenId: string | undefined
  const claims = jwtClaims(token)
  if (claims) {
    const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : []
    if (!aud.some((a) => x.audiences.includes(a as string))) fail('the issued token is not audience-restricted to the upstream')
    if (x.subject !== undefined && claims.sub !== x.subject) fail('the issued token names another subject')
    if (typeof claims.exp === 'number') expiresAt = Math.min(expiresAt ?? Infinity, claims.exp * 1000)
    if (typeof claims.jti === 'string' && /^[\x21-\x7e]{1,128}$/.test(claims.jti)) tokenId = claims.jti
  }
  if (expiresAt === undefined) return fail('no expires_in and no exp: lifetime unknown')
  if (expiresAt <= x.now) fail('the issued token is already expired')
  return { token, expiresAt, tokenId, digest: digestOf(token) }
}

function jwtClaims(token: string): Record<string, unknown> | undefined {
  if (token.split('.').length !== 3) return undefined
  try {
    return decodeJwt(token)
  } catch {
    return undefined
  }
}
