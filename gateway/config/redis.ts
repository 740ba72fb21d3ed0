/**
 * The `cache.redis` section → how to reach Redis: one server by URL, a master found through
 * Sentinel, or a Cluster. Exactly one of the three; the options that only make sense for one of
 * them are refused elsewhere (a password next to a URL would be silently ignored by ioredis).
 */
import type { ConfigProblem } from '../errors.js'
import { resolveSecret, type Secret } from './secrets.js'
import type { GatewayConfigInput, SecretSourceInput } from './schema.js'
import { problemAt, type YamlSource } from './yaml-source.js'

export interface RedisNodeAddress {
  readonly host: string
  readonly port: number
}

interface RedisAuth {
  readonly username: string | undefined
  readonly password: Secret | undefined
  readonly tls: { readonly ca: Secret | undefined; readonly serverName: string | undefined } | undefined
  readonly natMap: ReadonlyMap<string, RedisNodeAddress> | undefined
}

export type RuntimeRedisConnection =
  | { readonly mode: 'standalone'; readonly url: Secret }
  | ({
      readonly mode: 'sentinel'
      readonly name: string
      readonly sentinels: readonly RedisNodeAddress[]
      readonly sentinelUsername: string | undefined
      readonly sentinelPassword: Secret | undefined
    } & RedisAuth)
  | ({ readonly mode: 'cluster'; readonly nodes: readonly RedisNodeAddress[]; readonly maxRedirections: number } & RedisAuth)

export interface RuntimeRedis {
  readonly connection: RuntimeRedisConnection
  readonly keyPrefix: string
  readonly commandTimeoutMs: number
  readonly encryptionKey: Secret | undefined
}

type RedisInput = NonNullable<GatewayConfigInput['cache']['redis']>

export interface RedisContext {
  src: YamlSource
  baseDir: string
  env: NodeJS.ProcessEnv
  problems: ConfigProblem[]
  warnings: string[]
}

const AT = ['cache', 'redis'] as const

/** Returns undefined when a problem was recorded (the caller throws on any error). */
export function normalizeRedisConnection(r: RedisInput, ctx: RedisContext): RuntimeRedisConnection | undefined {
  const { src, problems } = ctx
  const err = (path: string[], message: string) => problems.push(problemAt(src, [...AT, ...path], message))
  const modes = (['url', 'sentinels', 'cluster'] as const).filter((k) => r[k] !== undefined)
  if (modes.length !== 1) {
    err(modes[1] ? [modes[1]] : [], `set exactly one of url (one server), sentinels (with name) or cluster (found ${modes.length === 0 ? 'none' : modes.join(', ')})`)
    return undefined
  }
  const secret = (field: string, source: SecretSourceInput | undefined): Secret | undefined => {
    if (!source) return undefined
    const res = resolveSecret(source, ctx.baseDir, ctx.env)
    if (!res.ok) {
      err([field], res.message)
      return undefined
    }
    if (res.inline && field !== 'url') ctx.warnings.push(`cache.redis.${field} is written inline; use fromEnv or fromFile outside development`)
    return res.secret
  }
  const sentinelOnly = (['name', 'sentinelUsername', 'sentinelPassword'] as const).filter((k) => r[k] !== undefined)
  const haOnly = (['username', 'password', 'tls', 'natMap'] as const).filter((k) => r[k] !== undefined)
  const before = problems.length

  if (r.url !== undefined) {
    for (const k of [...sentinelOnly, ...haOnly]) {
      err([k], k === 'username' || k === 'password' || k === 'tls' ? `${k} is only for sentinels or cluster: with url, write it in the URL (redis://user:password@host, rediss:// for TLS)` : `${k} is only for sentinels`)
    }
    const url = secret('url', typeof r.url === 'string' ? { value: r.url } : r.url)
    if (url && typeof r.url !== 'string' && !url.placeholder && !/^rediss?:\/\//.test(url.reveal())) err(['url'], 'the secret must hold a redis:// or rediss:// URL')
    return url && problems.length === before ? { mode: 'standalone', url } : undefined
  }

  const auth = (): RedisAuth => ({
    username: r.username,
    password: secret('password', r.password),
    tls: r.tls && { ca: secret('tls', r.tls.ca), serverName: r.tls.serverName },
    natMap: r.natMap && new Map(Object.entries(r.natMap).map(([k, v]) => [k, { host: v.host, port: v.port }])),
  })

  if (r.sentinels) {
    if (r.name === undefined) err(['sentinels'], 'sentinels need name: the master group name the sentinels monitor')
    const a = auth()
    const sentinelPassword = secret('sentinelPassword', r.sentinelPassword)
    if (problems.length !== before) return undefined
    return { mode: 'sentinel', name: r.name!, sentinels: r.sentinels.map(({ host, port }) => ({ host, port })), sentinelUsername: r.sentinelUsername, sentinelPassword, ...a }
  }

  const c = r.cluster!
  for (const k of sentinelOnly) err([k], `${k} is only for sentinels`)
  // A brace in the prefix would make it (part of) every key's hash tag, or an empty tag `{}`
  // that Redis ignores: either way the limiter's keys could no longer be kept in one slot.
  if (/[{}]/.test(r.keyPrefix)) err(['keyPrefix'], 'with cluster, keyPrefix must not contain { or } (mcp-warden sets the hash tags itself)')
  const a = auth()
  if (problems.length !== before) return undefined
  return { mode: 'cluster', nodes: c.nodes.map(({ host, port }) => ({ host, port })), maxRedirections: c.maxRedirections, ...a }
}

/**
 * The connection with its secrets revealed, for the Redis client only (the shape of
 * store/redis.ts `RedisTarget`, kept structural so config/ imports nothing from store/).
 */
export function revealRedisConnection(c: RuntimeRedisConnection) {
  if (c.mode === 'standalone') return { mode: c.mode, url: c.url.reveal() }
  const common = {
    username: c.username,
    password: c.password?.reveal(),
    tls: c.tls && { ca: c.tls.ca?.reveal(), serverName: c.tls.serverName },
    natMap: c.natMap && Object.fromEntries([...c.natMap].map(([k, v]) => [k, { host: v.host, port: v.port }])),
  }
  if (c.mode === 'sentinel') {
    return { mode: c.mode, name: c.name, sentinels: c.sentinels.map((n) => ({ ...n })), sentinelUsername: c.sentinelUsername, sentinelPassword: c.sentinelPassword?.reveal(), ...common }
  }
  return { mode: c.mode, nodes: c.nodes.map((n) => ({ ...n })), maxRedirections: c.maxRedirections, ...common }
}
