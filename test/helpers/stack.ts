/**
 * A whole deployment on loopback: a real oidc-provider AS, two real MCP SDK upstreams
 * (alpha, beta), optionally a real redis-server, and mcp-warden in front, configured from YAML
 * text exactly as an operator would. Logs are captured so tests can prove what never appears.
 */
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { startAuthorizationServer, type AuthorizationServer, type AuthorizationServerOptions } from '../../demo/authorization-server.js'
import { startMcpServer, type McpUpstream, type McpUpstreamOptions } from '../../demo/mcp-server.js'
import { loadConfigText } from '../../gateway/config/load.js'
import { buildGateway, type Gateway, type GatewayDeps } from '../../gateway/server.js'
import { REDACT_PATHS, serializeRequest } from '../../gateway/observability/logger.js'
import { freePort } from './ports.js'
import { startRedis, type RedisInstance } from './redis.js'

export interface StackOptions {
  redis?: boolean | RedisInstance
  as?: AuthorizationServer
  asOptions?: AuthorizationServerOptions
  /** Extra YAML under `issuers.demo` (indented by the helper); a `jwks:` line replaces the default cooldown. */
  issuerExtra?: string
  /** Extra YAML appended to each route. */
  routeExtra?: string
  /** Extra YAML appended to one route (e.g. its `credentials`). */
  routeExtras?: { alpha?: string; beta?: string }
  /** Extra flow-mapping entries for `cache.redis`, e.g. `encryptionKey: { value: … }`. */
  redisExtra?: string
  /** Extra top-level YAML (e.g. a `policies:` section). */
  extra?: string
  /** Replace the generated YAML entirely. */
  yaml?: (ctx: { publicUrl: string; port: number; adminPort: number; issuer: string; alpha: string; beta: string; redisUrl?: string }) => string
  deps?: Partial<GatewayDeps>
  /** Options for both upstreams (e.g. `resumable`). */
  upstream?: Omit<McpUpstreamOptions, 'name'>
  /** Another replica of an existing deployment: same public URL (so the same resources), own port. */
  replicaOf?: Stack
}

export interface Stack {
  as: AuthorizationServer
  alpha: McpUpstream
  beta: McpUpstream
  redis: RedisInstance | undefined
  gateway: Gateway
  url: string
  adminUrl: string
  resource: { alpha: string; beta: string }
  logs: string[]
  /** Every log line parsed; audit lines have an `audit` member. */
  logLines(): Record<string, unknown>[]
  token(o?: { route?: 'alpha' | 'beta'; scope?: string; subject?: string; clientId?: string }): Promise<string>
  close(): Promise<void>
}

export async function startStack(o: StackOptions = {}): Promise<Stack> {
  const as = o.as ?? (await startAuthorizationServer(o.asOptions))
  // A replica fronts the same upstreams as the deployment it joins.
  const [alpha, beta] = o.replicaOf ? [o.replicaOf.alpha, o.replicaOf.beta] : await Promise.all([startMcpServer({ ...o.upstream, name: 'alpha' }), startMcpServer({ ...o.upstream, name: 'beta' })])
  const redis = o.redis === true ? await startRedis() : o.redis || undefined
  const port = await freePort()
  const adminPort = await freePort()
  const publicUrl = o.replicaOf ? new URL(o.replicaOf.url).origin : `http://127.0.0.1:${port}`
  const allowedHosts = o.replicaOf ? `allowedHosts: [${new URL(publicUrl).host}, 127.0.0.1:${port}]` : undefined
  const ctx = { publicUrl, port, adminPort, issuer: as.issuer, alpha: alpha.url, beta: beta.url, ...(redis ? { redisUrl: redis.url } : {}) }
  const indent = (s: string | undefined, n: number) => (s ? s.trim().split('\n').map((l) => ' '.repeat(n) + l).join('\n') + '\n' : '')
  const yaml =
    o.yaml?.(ctx) ??
    `${listenerYaml({ publicUrl, port, adminPort, ...(allowedHosts ? { serverExtra: allowedHosts } : {}) })}issuers:
  demo:
    issuer: ${as.issuer}
${/^jwks:/m.test(o.issuerExtra ?? '') ? '' : '    jwks: { cooldown: 5s }\n'}${indent(o.issuerExtra, 4)}routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: ${alpha.url}, timeout: 5s }
    issuers: [demo]
    scopesSupported: [tools.read]
${indent(o.routeExtra, 4)}${indent(o.routeExtras?.alpha, 4)}  - name: beta
    path: /mcp/beta
    upstream: { url: ${beta.url}, timeout: 5s }
    issuers: [demo]
    scopesSupported: [tools.read]
${indent(o.routeExtra, 4)}${indent(o.routeExtras?.beta, 4)}${o.extra ? `${o.extra.trim()}\n` : ''}${redis ? `cache:\n  redis: { url: ${redis.url}${o.redisExtra ? `, ${o.redisExtra}` : ''} }\n` : ''}logging: { level: info }
`
  const { config } = loadConfigText('test-gateway.yaml', yaml)
  const logs: string[] = []
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter(Boolean))
      cb()
    },
  })
  const logger = pino({ level: 'debug', redact: { paths: REDACT_PATHS, censor: '[redacted]' }, serializers: { req: serializeRequest } }, sink)
  const gateway = await buildGateway(config, { logger, ...o.deps })
  const { adminUrl } = await gateway.start()
  const url = `http://127.0.0.1:${port}`
  const resource = { alpha: `${publicUrl}/mcp/alpha`, beta: `${publicUrl}/mcp/beta` }
  return {
    as,
    alpha,
    beta,
    redis,
    gateway,
    url,
    adminUrl,
    resource,
    logs,
    logLines: () => logs.map((l) => JSON.parse(l) as Record<string, unknown>),
    async token(t = {}) {
      const r = await as.getToken({ resource: resource[t.route ?? 'alpha'], scope: t.scope ?? 'tools.read', ...(t.subject ? { subject: t.subject } : {}), ...(t.clientId ? { clientId: t.clientId } : {}) })
      return r.access_token
    },
    async close() {
      await gateway.close().catch(() => undefined)
      if (!o.replicaOf) await Promise.all([alpha.close(), beta.close()])
      if (!o.as) await as.close()
      if (o.redis === true) await redis?.stop()
    },
  }
}

export interface ReplicaPair {
  redis: RedisInstance
  a: Stack
  /** Replica of `a`: same AS, upstreams, public URL and Redis; its own port. */
  b: Stack
  close(): Promise<void>
}

/** Two replicas of one deployment sharing a real redis-server: what any replica must agree on. */
export async function startReplicaPair(): Promise<ReplicaPair> {
  const redis = await startRedis()
  const a = await startStack({ redis })
  const b = await startStack({ redis, as: a.as, replicaOf: a })
  return {
    redis,
    a,
    b,
    async close() {
      await b.close()
      await a.close()
      await redis.stop()
    },
  }
}

/**
 * The `server:` and `admin:` blocks every test gateway starts with: loopback listeners, a short
 * shutdown grace. `serverExtra` lines go under `server:` (allowedHosts, authFailures, …).
 */
export function listenerYaml(l: { publicUrl?: string; port: number; adminPort: number; shutdownGrace?: string; serverExtra?: string }): string {
  const extra = l.serverExtra ? `${l.serverExtra.trim().split('\n').map((x) => `  ${x}`).join('\n')}\n` : ''
  return `server:
  publicUrl: ${l.publicUrl ?? `http://127.0.0.1:${l.port}`}
  listen: { host: 127.0.0.1, port: ${l.port} }
  shutdownGrace: ${l.shutdownGrace ?? '2s'}
${extra}admin:
  listen: { host: 127.0.0.1, port: ${l.adminPort} }
`
}

export const MCP_HEADERS = {
  accept: 'application/json, text/event-stream',
  'content-type': 'application/json',
  'mcp-protocol-version': '2025-11-25',
} as const

export const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
})

/** Parse a WWW-Authenticate Bearer challenge into its auth-params (RFC 9110 §11.6.1). */
export function parseChallenge(header: string | null): { scheme: string; params: Record<string, string> } | undefined {
  if (!header) return undefined
  const m = /^(\S+)\s*(.*)$/s.exec(header)
  if (!m) return undefined
  const params: Record<string, string> = {}
  const re = /([A-Za-z_]+)="((?:[^"\\]|\\.)*)"/g
  for (let x = re.exec(m[2]!); x; x = re.exec(m[2]!)) params[x[1]!] = x[2]!.replace(/\\(.)/g, '$1')
  return { scheme: m[1]!, params }
}
