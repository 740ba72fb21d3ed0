/**
 * RFC 9068 JWT access-token validation with the RFC 8725 hardening. Every check that can be
 * made without a key runs before the signature check, so malformed or foreign tokens cost
 * nothing and never cause a JWKS fetch.
 */
import type { RuntimeIssuer } from '../config/load.js'
import { GatewayError, type Reason } from '../errors.js'
import { decodeUtf8Strict, parseStrictJson } from '../lib/strict-json.js'
import type { IssuerKeys } from './jwks.js'
import { JwsError, verifyCompactJws } from './jws-verify.js'
import { principalFromClaims, type Principal } from './principal.js'

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** Header parameters whose meaning we implement; anything else in `crit` is refused (RFC 7515 §4.1.11). */
const UNDERSTOOD_CRIT = new Set<string>()

export interface DecodedJwt {
  header: Record<string, unknown>
  claims: Record<string, unknown>
}

const invalid = (reason: Reason, detail: string): GatewayError => new GatewayError('GW_AUTH_INVALID_TOKEN', { reason, detail })

function decodeSegment(seg: string, what: string): Record<string, unknown> {
  let v: unknown
  try {
    v = parseStrictJson(decodeUtf8Strict(Buffer.from(seg, 'base64url')), { rejectProtoKeys: false, maxDepth: 16 })
  } catch (e) {
    throw invalid('auth-invalid', `${what}: ${(e as Error).message}`)
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw invalid('auth-invalid', `${what} is not a JSON object`)
  return v as Record<string, unknown>
}

/** Shape checks only: three base64url segments of UTF-8 JSON objects without duplicate members. */
export function decodeJwt(token: string): DecodedJwt {
  if (!COMPACT_JWS.test(token)) throw invalid('auth-invalid', 'not a compact JWS')
  const [h, p] = token.split('.') as [string, string, string]
  return { header: decodeSegment(h, 'header'), claims: decodeSegment(p, 'claims') }
}

/** True when a bearer token looks like a JWS (three segments); otherwise it is opaque. */
export const looksLikeJwt = (token: string): boolean => COMPACT_JWS.test(token)

/**
 * Scheme and host compare case-insensitively, everything else exactly (MCP 2025-11-25
 * "Canonical Server URI"): no trailing-slash, default-port, dot-segment or percent-decoding.
 */
export function audienceMatches(aud: string, resource: string): boolean {
  if (aud === resource) return true
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*)(.*)$/s
  const a = m.exec(aud)
  const r = m.exec(resource)
  return !!a && !!r && a[1]!.toLowerCase() === r[1]!.toLowerCase() && a[2] === r[2]
}

/** `aud` as a non-empty list of strings, or undefined when absent or malformed. */
export function audienceList(aud: unknown): string[] | undefined {
  const list = typeof aud === 'string' ? [aud] : Array.isArray(aud) && aud.every((a) => typeof a === 'string') ? (aud as string[]) : undefined
  return list && list.length > 0 ? list : undefined
}

/** The token must name this route's resource (MCP "Token Handling"), whatever its format. */
export function checkAudience(aud: readonly string[], issuer: RuntimeIssuer, resource: string): void {
  if (issuer.strictAudience && aud.length > 1) throw invalid('auth-audience', 'multiple audiences refused')
  const accepted = [resource, ...issuer.extraAudiences]
  if (!aud.some((a) => accepted.some((r) => audienceMatches(a, r)))) throw invalid('auth-audience', 'aud does not name this resource')
}

/** `cnf` that binds to a DPoP key and to nothing else (RFC 9449 §6). */
export function isJktBinding(cnf: unknown): cnf is { jkt: string } {
  if (!cnf || typeof cnf !== 'object' || Array.isArray(cnf)) return false
  const keys = Object.keys(cnf)
  const jkt = (cnf as { jkt?: unknown }).jkt
  return keys.length === 1 && typeof jkt === 'string' && /^[A-Za-z0-9_-]{43}$/.test(jkt)
}

function typIsAccessToken(typ: unknown): boolean {
  if (typeof typ !== 'string') return false
  const t = typ.toLowerCase()
  return t === 'at+jwt' || t === 'application/at+jwt'
}

export interface VerifyContext {
  issuer: RuntimeIssuer
  keys: IssuerKeys
  /** The route resource the token must be for. */
  resource: string
  nowSec: number
}

export interface VerifiedJwt {
  principal: Principal
  kid: string | undefined
  keyGeneration: number
}

export async function verifyAccessToken(token: string, decoded: DecodedJwt, ctx: VerifyContext): Promise<VerifiedJwt> {
  const { header, claims } = decoded
  const { issuer } = ctx

  const alg = header.alg
  if (typeof alg !== 'string' || !issuer.algorithms.includes(alg)) throw invalid('auth-signature', 'algorithm not allowed')
  if (header.crit !== undefined) {
    if (!Array.isArray(header.crit) || header.crit.length === 0 || header.crit.some((c) => typeof c !== 'string' || !UNDERSTOOD_CRIT.has(c))) {
      throw invalid('auth-invalid', 'unsupported crit header')
    }
  }
  if (header.kid !== undefined && typeof header.kid !== 'string') throw invalid('auth-invalid', 'kid is not a string')
  if (header.kid !== undefined && (header.kid.length === 0 || header.kid.length > 256)) throw invalid('auth-unknown-key', 'kid length out of range')
  if (issuer.requireTyp === 'at+jwt' && !typIsAccessToken(header.typ)) throw invalid('auth-type', 'typ is not at+jwt')
  if (issuer.requireTyp === 'any' && header.typ !== undefined && typeof header.typ === 'string' && !['jwt', 'application/jwt', 'at+jwt', 'application/at+jwt'].includes(header.typ.toLowerCase())) {
    throw invalid('auth-type', 'typ names another kind of JWT')
  }

  checkClaims(claims, ctx)

  const kid = header.kid as string | undefined
  const key = await ctx.keys.keyFor(kid, alg)
  try {
    verifyCompactJws(token, alg, key)
  } catch (e) {
    if (e instanceof JwsError) throw invalid('auth-signature', `signature: ${e.code}`)
    throw invalid('auth-signature', 'signature verification failed')
  }
  return { principal: principalFromClaims('jwt', ctx.issuer, claims), kid, keyGeneration: ctx.keys.generation }
}

function checkClaims(c: Record<string, unknown>, ctx: VerifyContext): void {
  const { issuer, nowSec } = ctx
  const skew = issuer.clockSkewSec
  if (c.iss !== issuer.issuer) throw invalid('auth-issuer', 'iss mismatch')
  if (typeof c.exp !== 'number') throw invalid('auth-invalid', 'exp missing')
  if (nowSec >= c.exp + skew) throw invalid('auth-expired', 'token expired')
  if (c.nbf !== undefined && (typeof c.nbf !== 'number' || nowSec < c.nbf - skew)) throw invalid('auth-expired', 'token not yet valid')
  if (typeof c.iat !== 'number') throw invalid('auth-invalid', 'iat missing')
  if (c.iat > nowSec + skew) throw invalid('auth-expired', 'iat in the future')
  if (typeof c.sub !== 'string' || c.sub === '') throw invalid('auth-invalid', 'sub missing')
  if (typeof c.jti !== 'string' || c.jti === '') throw invalid('auth-invalid', 'jti missing')
  const clientId = c.client_id ?? c.azp
  if (typeof clientId !== 'string' || clientId === '') throw invalid('auth-invalid', 'client_id missing')
  // RFC 8725 §3.11: an ID token is not an access token, whatever its typ says.
  if (c.nonce !== undefined || c.at_hash !== undefined || c.c_hash !== undefined) throw invalid('auth-type', 'looks like an ID token')

  const aud = audienceList(c.aud)
  if (!aud) throw invalid('auth-audience', 'aud missing')
  if (aud.includes(clientId)) throw invalid('auth-type', 'aud is a client id (ID token)')
  checkAudience(aud, issuer, ctx.resource)
  if (c.scope !== undefined && typeof c.scope !== 'string') throw invalid('auth-invalid', 'scope is not a string')
  // RAR-01 (RFC 9396 §2, §9.1): an array of objects each with a string type, or the token is malformed.
  if (c.authorization_details !== undefined && !(Array.isArray(c.authorization_details) && c.authorization_details.every((d) => !!d && typeof d === 'object' && !Array.isArray(d) && typeof (d as { type?: unknown }).type === 'string' && (d as { type: string }).type !== ''))) {
    throw invalid('auth-invalid', 'authorization_details is malformed')
  }
  // A sender-constrained token (DPoP jkt, mTLS x5t#S256) presented as a plain bearer is a
  // downgrade (RFC 9449 §7.1). Where the issuer accepts DPoP, a jkt binding is kept for the
  // auth stage to enforce with a proof (auth/dpop.ts); every other binding is refused.
  if (c.cnf !== undefined && !(issuer.dpop && isJktBinding(c.cnf))) throw invalid('auth-invalid', 'sender-constrained token presented as bearer')
}
