/**
 * A route's `credentials` section → the strategies the exchange stage runs. Schema checks only
 * shapes; which keys belong to which strategy, and what each needs, is checked here so every
 * mistake is reported at its own file:line:column.
 */
import type { ConfigProblem } from '../errors.js'
import type { CredentialsInput, CredentialStrategyInput, IssuerInput } from './schema.js'
import { resolveSecret, type Secret } from './secrets.js'
import { parseDuration } from './units.js'
import { problemAt, type PathSegment, type YamlSource } from './yaml-source.js'

export type CredentialWhen = 'user' | 'app' | 'any'
export type TokenTypeName = 'access_token' | 'jwt'

interface Common {
  readonly when: CredentialWhen
}

export interface TokenRequestOptions {
  /** Name of the issuer whose token endpoint and client registration are used. */
  readonly issuer: string
  readonly resource: string | undefined
  readonly audience: string | undefined
  readonly safetyMarginMs: number
  readonly timeoutMs: number
}

export interface TokenExchangeStrategy extends Common, TokenRequestOptions {
  readonly kind: 'token-exchange'
  /** Inbound scope → upstream scopes; undefined = send no scope. */
  readonly scopeMap: ReadonlyMap<string, readonly string[]> | undefined
  readonly subjectTokenType: TokenTypeName
  readonly requestedTokenType: TokenTypeName
  readonly actorToken: boolean
}

/**
 * Cross-domain identity chaining (draft-ietf-oauth-identity-chaining): RFC 8693 at the home AS
 * for a JWT authorization grant whose audience is the target AS, then RFC 7523 jwt-bearer at the
 * target AS for an access token to `resource`/`audience`.
 */
export interface IdentityChainingStrategy extends Common, TokenRequestOptions {
  readonly kind: 'identity-chaining'
  readonly targetIssuer: string
  readonly subjectTokenType: TokenTypeName
  readonly scope: readonly string[]
}

export interface ClientCredentialsStrategy extends Common, TokenRequestOptions {
  readonly kind: 'client-credentials'
  readonly scope: readonly string[]
}

export interface StaticStrategy extends Common {
  readonly kind: 'static'
  readonly header: string
  readonly scheme: string | undefined
  readonly value: Secret
}

export interface IdentityHeadersStrategy extends Common {
  readonly kind: 'identity-headers'
  readonly headers: Readonly<Partial<Record<'subject' | 'agent' | 'scopes' | 'issuer' | 'actor', string>>>
  readonly jwt:
    | { readonly header: string; readonly key: Secret; readonly keyId: string | undefined; readonly algorithm: string; readonly ttlSec: number; readonly audience: string | undefined }
    | undefined
}

export interface PassthroughStrategy extends Common {
  readonly kind: 'passthrough'
}

export type CredentialStrategy = TokenExchangeStrategy | IdentityChainingStrategy | ClientCredentialsStrategy | StaticStrategy | IdentityHeadersStrategy | PassthroughStrategy

export interface RuntimeCredentials {
  /** In order; the first whose `when` fits the caller is used. */
  readonly strategies: readonly CredentialStrategy[]
}

/** Keys each strategy takes besides strategy/when (which every entry has). */
const KEYS: Record<CredentialStrategy['kind'], readonly string[]> = {
  'token-exchange': ['issuer', 'resource', 'audience', 'scopes', 'subjectTokenType', 'requestedTokenType', 'actorToken', 'safetyMargin', 'timeout'],
  'identity-chaining': ['issuer', 'targetIssuer', 'resource', 'audience', 'scope', 'subjectTokenType', 'safetyMargin', 'timeout'],
  'client-credentials': ['issuer', 'resource', 'audience', 'scope', 'safetyMargin', 'timeout'],
  static: ['header', 'scheme', 'value'],
  'identity-headers': ['headers', 'jwt'],
  passthrough: ['unsafe'],
}
/** Keys with schema defaults: present on every entry, so they cannot be reported as misplaced. */
const DEFAULTED = new Set(['when', 'subjectTokenType', 'requestedTokenType', 'actorToken', 'safetyMargin', 'timeout'])

/**
 * Header names mcp-warden itself sets or forwards toward the upstream; a credential header of one
 * of these names would silently replace MCP or forwarding information (see mcp/protocol.ts).
 */
const RESERVED_HEADER = /^(host|content-.*|transfer-encoding|connection|keep-alive|upgrade|te|trailer|accept|last-event-id|mcp-.*|traceparent|tracestate|user-agent|x-request-id|x-forwarded-.*|forwarded)$/

export interface CredentialsContext {
  src: YamlSource
  at: PathSegment[]
  routeIssuers: readonly string[]
  issuers: Readonly<Record<string, IssuerInput>>
  baseDir: string
  env: NodeJS.ProcessEnv
  problems: ConfigProblem[]
}

export function normalizeCredentials(input: CredentialsInput | undefined, ctx: CredentialsContext): RuntimeCredentials | undefined {
  if (!input) return undefined
  const { src, at, problems } = ctx
  if (input.chain) {
    const stray = Object.keys(input).filter((k) => k !== 'chain' && !DEFAULTED.has(k))
    for (const k of stray) problems.push(problemAt(src, [...at, k], `"${k}" cannot be used next to chain; put it in a chain entry`, 'error', true))
    const strategies = input.chain.map((entry, i) => normalizeStrategy(entry, { ...ctx, at: [...at, 'chain', i] })).filter((s) => s !== undefined)
    input.chain.forEach((entry, i) => {
      if (entry.when === 'any' && i < input.chain!.length - 1) problems.push(problemAt(src, [...at, 'chain', i], 'an entry with when: any makes the entries after it unreachable', 'warning'))
    })
    return { strategies }
  }
  if (!input.strategy) {
    problems.push(problemAt(src, at, 'set strategy, or chain'))
    return undefined
  }
  const single = normalizeStrategy(input as CredentialStrategyInput, ctx)
  return single && { strategies: [single] }
}

function normalizeStrategy(s: CredentialStrategyInput, ctx: CredentialsContext): CredentialStrategy | undefined {
  const { src, at, problems } = ctx
  const kind = s.strategy as CredentialStrategy['kind']
  const before = problems.filter((p) => p.severity === 'error').length
  const err = (path: PathSegment[], message: string, key = false) => problems.push(problemAt(src, [...at, ...path], message, 'error', key))
  for (const k of Object.keys(s)) {
    if (k === 'strategy' || DEFAULTED.has(k) || KEYS[kind].includes(k)) continue
    err([k], `"${k}" does not apply to strategy ${kind}`, true)
  }
  const secret = (path: PathSegment[], source: NonNullable<CredentialStrategyInput['value']>): Secret | undefined => {
    const r = resolveSecret(source, ctx.baseDir, ctx.env)
    if (!r.ok) err(path, r.message)
    else if (r.inline) problems.push(problemAt(src, [...at, ...path], 'secret written inline; use fromEnv or fromFile outside development', 'warning'))
    return r.ok ? r.secret : undefined
  }
  const headerName = (path: PathSegment[], name: string): string => {
    const lower = name.toLowerCase()
    if (RESERVED_HEADER.test(lower)) err(path, `header "${name}" is reserved for MCP and forwarding information`)
    return lower
  }

  let out: CredentialStrategy | undefined
  switch (kind) {
    case 'token-exchange':
    case 'identity-chaining':
    case 'client-credentials': {
      const issuer = pickIssuer(s, ctx)
      if (!s.resource && !s.audience) err([], `${kind} needs resource and/or audience naming the upstream`)
      if (s.resource) {
        const u = URL.parse(s.resource)
        if (!u || s.resource.includes('#')) err(['resource'], 'resource must be an absolute URI without fragment (RFC 8707)')
      }
      const request = { issuer: issuer ?? '', resource: s.resource, audience: s.audience, safetyMarginMs: parseDuration(s.safetyMargin), timeoutMs: parseDuration(s.timeout) }
      if (kind === 'client-credentials') {
        out = { kind, when: s.when, ...request, scope: s.scope ?? [] }
        break
      }
      if (kind === 'identity-chaining') {
        const target = s.targetIssuer === undefined ? undefined : ctx.issuers[s.targetIssuer]
        if (s.targetIssuer === undefined) err([], 'identity-chaining needs targetIssuer: the AS of the target domain (a name under issuers:)')
        else if (!target) err(['targetIssuer'], `unknown issuer "${s.targetIssuer}"`)
        else if (!target.client) err(['targetIssuer'], `issuers.${s.targetIssuer} has no client registration for mcp-warden`)
        else if (s.targetIssuer === issuer) err(['targetIssuer'], 'targetIssuer is the home issuer: use token-exchange within one domain')
        out = { kind, when: s.when, ...request, targetIssuer: s.targetIssuer ?? '', subjectTokenType: s.subjectTokenType, scope: s.scope ?? [] }
        break
      }
      if (s.actorToken && issuer && ctx.issuers[issuer]?.client?.auth !== 'private_key_jwt') {
        err(['actorToken'], `actorToken is signed with mcp-warden's client key: issuers.${issuer}.client.auth must be private_key_jwt`)
      }
      const scopeMap = s.scopes ? new Map(Object.entries(s.scopes)) : undefined
      out = { kind, when: s.when, ...request, scopeMap, subjectTokenType: s.subjectTokenType, requestedTokenType: s.requestedTokenType, actorToken: s.actorToken }
      break
    }
    case 'static': {
      if (!s.value) err([], 'static needs value (fromEnv or fromFile)')
      const header = headerName(['header'], s.header ?? 'authorization')
      const value = s.value && secret(['value'], s.value)
      if (value) out = { kind, when: s.when, header, scheme: s.scheme, value }
      break
    }
    case 'identity-headers': {
      const headers: Record<string, string> = {}
      for (const [fact, name] of Object.entries(s.headers ?? (s.jwt ? {} : { subject: 'x-mcp-subject', agent: 'x-mcp-agent', scopes: 'x-mcp-scopes' }))) {
        if (name) headers[fact] = headerName(['headers', fact], name)
      }
      let jwt: IdentityHeadersStrategy['jwt']
      if (s.jwt) {
        const key = secret(['jwt', 'key'], s.jwt.key)
        if (key) jwt = { header: headerName(['jwt', 'header'], s.jwt.header), key, keyId: s.jwt.keyId, algorithm: s.jwt.algorithm, ttlSec: Math.max(1, Math.round(parseDuration(s.jwt.ttl) / 1000)), audience: s.jwt.audience }
      }
      out = { kind, when: s.when, headers, jwt }
      break
    }
    case 'passthrough':
      if (s.unsafe !== true) err(['strategy'], 'passthrough forwards the caller token and violates the MCP specification; it needs unsafe: true')
      else problems.push(problemAt(src, [...at, 'unsafe'], 'passthrough is enabled: the caller token is sent upstream (violates the MCP specification "Token Passthrough")', 'warning'))
      out = { kind, when: s.when }
      break
  }
  return problems.filter((p) => p.severity === 'error').length > before ? undefined : out
}

function pickIssuer(s: CredentialStrategyInput, ctx: CredentialsContext): string | undefined {
  const { src, at, problems } = ctx
  if (s.issuer !== undefined) {
    const iss = ctx.issuers[s.issuer]
    if (!iss) problems.push(problemAt(src, [...at, 'issuer'], `unknown issuer "${s.issuer}"`))
    else if (!iss.client) problems.push(problemAt(src, [...at, 'issuer'], `issuers.${s.issuer} has no client registration for mcp-warden`))
    else return s.issuer
    return undefined
  }
  const found = ctx.routeIssuers.find((n) => ctx.issuers[n]?.client)
  if (!found) problems.push(problemAt(src, [...at, 'strategy'], `${s.strategy} needs an issuer with a client registration (issuers.<name>.client)`))
  return found
}
