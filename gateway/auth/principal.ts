/**
 * Who is calling, as every later stage sees it. JWTs and introspected opaque tokens both
 * produce this shape, so policies cannot tell them apart.
 */
export interface Principal {
  readonly tokenKind: 'jwt' | 'opaque'
  /** Name of the issuer entry in gateway.yaml. */
  readonly issuerName: string
  readonly issuer: string
  readonly subject: string
  /** The agent: `client_id` (RFC 9068) or `azp`. */
  readonly clientId: string
  readonly scopes: ReadonlySet<string>
  readonly audience: readonly string[]
  /** The current actor (`act.sub`, RFC 8693 §4.1). Only this one may be used for decisions. */
  readonly actor: string | undefined
  /** The full delegation chain, outermost first, for audit only. */
  readonly delegationChain: readonly string[]
  /** False for app-only tokens (client credentials: no user behind the call). */
  readonly userPresent: boolean
  /** Seconds since the epoch. */
  readonly expiresAt: number
  readonly tokenId: string | undefined
  readonly authorizationDetails: readonly unknown[] | undefined
  readonly confirmation: Readonly<Record<string, unknown>> | undefined
  /** All claims, for configurable claim lookups (groups, roles). */
  readonly claims: Readonly<Record<string, unknown>>
}

export function scopesFromClaims(claims: Record<string, unknown>): Set<string> {
  const out = new Set<string>()
  if (typeof claims.scope === 'string') for (const s of claims.scope.split(' ')) if (s) out.add(s)
  if (Array.isArray(claims.scp)) for (const s of claims.scp) if (typeof s === 'string' && s) out.add(s)
  return out
}

export function delegationChain(claims: Record<string, unknown>): string[] {
  const chain: string[] = []
  let act = claims.act
  for (let depth = 0; depth < 16 && act && typeof act === 'object' && !Array.isArray(act); depth++) {
    const sub = (act as Record<string, unknown>).sub
    if (typeof sub !== 'string') break
    chain.push(sub)
    act = (act as Record<string, unknown>).act
  }
  return chain
}

/**
 * The principal from checked claims: a verified JWT's payload or an active introspection
 * response (RFC 7662 §2.2 names the same members). `iss` and `sub` are optional in an
 * introspection response: the configured issuer and, for app-only tokens, the client stand in.
 */
export function principalFromClaims(tokenKind: Principal['tokenKind'], issuer: { name: string; issuer: string }, c: Record<string, unknown>): Principal {
  const chain = delegationChain(c)
  const clientId = (c.client_id ?? c.azp) as string
  const subject = typeof c.sub === 'string' ? c.sub : clientId
  return {
    tokenKind,
    issuerName: issuer.name,
    issuer: typeof c.iss === 'string' ? c.iss : issuer.issuer,
    subject,
    clientId,
    scopes: scopesFromClaims(c),
    audience: typeof c.aud === 'string' ? [c.aud] : (c.aud as string[]),
    actor: chain[0],
    delegationChain: chain,
    userPresent: subject !== clientId,
    expiresAt: c.exp as number,
    tokenId: typeof c.jti === 'string' ? c.jti : undefined,
    authorizationDetails: Array.isArray(c.authorization_details) ? c.authorization_details : undefined,
    confirmation: c.cnf && typeof c.cnf === 'object' ? (c.cnf as Record<string, unknown>) : undefined,
    claims: c,
  }
}

/** Principal fields safe to log and audit (no token, no raw claims). */
export function auditablePrincipal(p: Principal | undefined): Record<string, unknown> | undefined {
  if (!p) return undefined
  return {
    issuer: p.issuer,
    subject: p.subject,
    agent: p.clientId,
    actor: p.actor,
    chain: p.delegationChain.length > 0 ? p.delegationChain : undefined,
    userPresent: p.userPresent,
    tokenKind: p.tokenKind,
    jti: p.tokenId,
  }
}
