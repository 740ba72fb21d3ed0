/**
 * The `egress` section → the egress listener's targets. Each target becomes a RuntimeRoute of
 * kind `egress`, so token validation and the credential broker treat it like any route: the token
 * the MCP server presents is checked against `egress.resource` (the MCP server's own audience) and
 * exchanged per target.
 */
import { isIP } from 'node:net'
import type { ConfigProblem } from '../errors.js'
import { normalizeCredentials } from './credentials.js'
import type { RuntimeRoute } from './load.js'
import type { EgressInput, IssuerInput } from './schema.js'
import { parseDuration } from './units.js'
import { problemAt, type YamlSource } from './yaml-source.js'

export interface RuntimeEgress {
  readonly listen: { readonly host: string; readonly port: number }
  /** Audience a presented token must carry: the MCP server's resource. */
  readonly resource: string
  readonly issuers: readonly string[]
  /** Lower-case header that names the inbound request an egress call serves. */
  readonly correlationHeader: string
  /** By target name (the first path segment on the egress listener). */
  readonly targets: ReadonlyMap<string, RuntimeRoute>
}

export interface EgressContext {
  src: YamlSource
  issuers: Readonly<Record<string, IssuerInput>>
  baseDir: string
  env: NodeJS.ProcessEnv
  problems: ConfigProblem[]
}

const isLoopbackHost = (host: string): boolean => host === 'localhost' || host === '[::1]' || /^127\./.test(host)

/** `a.b.c.d[/n]` or an IPv6 address with an optional prefix length in range. */
export function validCidr(cidr: string): boolean {
  const [addr = '', bits, extra] = cidr.split('/')
  const family = isIP(addr)
  if (family === 0 || extra !== undefined) return false
  if (bits === undefined) return true
  const n = Number(bits)
  return /^[0-9]{1,3}$/.test(bits) && n <= (family === 4 ? 32 : 128)
}

export function normalizeEgress(input: EgressInput, ctx: EgressContext): RuntimeEgress {
  const { src, problems } = ctx
  const at = (...p: (string | number)[]) => ['egress', ...p]
  input.issuers.forEach((name, j) => {
    if (!ctx.issuers[name]) problems.push(problemAt(src, at('issuers', j), `unknown issuer "${name}"`))
  })
  const resource = URL.parse(input.resource)
  if (!resource || input.resource.includes('#')) problems.push(problemAt(src, at('resource'), 'resource must be an absolute URI without fragment (RFC 8707)'))

  const targets = new Map<string, RuntimeRoute>()
  input.targets.forEach((t, i) => {
    if (targets.has(t.name)) problems.push(problemAt(src, at('targets', i, 'name'), `duplicate egress target "${t.name}"`))
    const url = new URL(t.url)
    if (url.search || url.hash || url.username || url.password) problems.push(problemAt(src, at('targets', i, 'url'), 'a target URL has no query, fragment or user info'))
    if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
      problems.push(problemAt(src, at('targets', i, 'url'), 'plain http: the credential mcp-warden injects travels unencrypted', 'warning'))
    }
    t.allowAddresses.forEach((c, j) => {
      if (!validCidr(c)) problems.push(problemAt(src, at('targets', i, 'allowAddresses', j), `"${c}" is not an IP address or CIDR range`))
    })
    const credentials = normalizeCredentials(t.credentials, { src, at: at('targets', i, 'credentials'), routeIssuers: input.issuers, issuers: ctx.issuers, baseDir: ctx.baseDir, env: ctx.env, problems })
    targets.set(t.name, {
      name: `egress:${t.name}`,
      kind: 'egress',
      path: `/${t.name}`,
      upstream: { kind: 'http', url: t.url, timeoutMs: parseDuration(t.timeout), idleTimeoutMs: parseDuration(t.idleTimeout), connections: t.connections, stdio: undefined, maxSessions: 0, sessionIdleMs: 0, ca: undefined },
      resource: input.resource,
      resourceName: t.name,
      // The egress listener publishes no metadata: its only client is the local MCP server.
      metadataUrl: '',
      metadataPath: '',
      issuers: input.issuers,
      scopesSupported: [],
      requiredScopes: [],
      challengeScopes: [],
      allowedOrigins: new Set(),
      bodyLimit: 0,
      // Egress responses are bounded by the caller token's expiry like any stream; no per-caller cap.
      streams: { maxDurationMs: 3_600_000, maxPerCaller: Number.MAX_SAFE_INTEGER },
      credentials,
      allowAddresses: t.allowAddresses,
    })
  })
  return { listen: { host: input.listen.host, port: input.listen.port }, resource: input.resource, issuers: input.issuers, correlationHeader: input.correlationHeader.toLowerCase(), targets }
}
