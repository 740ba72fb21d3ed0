import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { ConnectionOptions } from 'node:tls'
import type { Logger } from 'pino'
import type { Metrics } from '../observability/metrics.js'
import type { SharedStore } from './shared-store.js'

export interface RedisNode {
  host: string
  port: number
}

interface HaAuth {
  username?: string | undefined
  password?: string | undefined
  /** Present = TLS; to the data nodes and, with Sentinel, to the sentinels. */
  tls?: { ca?: string | undefined; serverName?: string | undefined } | undefined
  natMap?: Record<string, RedisNode> | undefined
}

/** Where Redis is: one server, a master found through Sentinel, or a Cluster (secrets revealed). */
export type RedisTarget =
  | { mode: 'standalone'; url: string }
  | ({ mode: 'sentinel'; name: string; sentinels: RedisNode[]; sentinelUsername?: string | undefined; sentinelPassword?: string | undefined } & HaAuth)
  | ({ mode: 'cluster'; nodes: RedisNode[]; maxRedirections: number } & HaAuth)

export interface RedisStoreOptions {
  target: RedisTarget
  keyPrefix: string
  commandTimeoutMs: number
  logger: Logger
  metrics: Metrics
}

const retry = (times: number) => Math.min(100 * 2 ** Math.min(times, 6), 5000)

/**
 * The ioredis construction for a target, as data (unit tests check it without a server). Every
 * mode keeps the same failure behaviour: no offline queue and no per-request retries, so a
 * command against an unreachable Redis fails at once (a miss) instead of queueing behind the
 * request, and a slow one gives up after the command timeout.
 */
export function redisClientOptions(
  o: Pick<RedisStoreOptions, 'target' | 'keyPrefix' | 'commandTimeoutMs'>,
): { kind: 'redis'; url?: string; options: RedisOptions } | { kind: 'cluster'; nodes: RedisNode[]; options: ClusterOptions } {
  const t = o.target
  const base: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: o.commandTimeoutMs,
    connectTimeout: 2000,
  }
  if (t.mode === 'standalone') return { kind: 'redis', url: t.url, options: { ...base, keyPrefix: o.keyPrefix, lazyConnect: false, retryStrategy: retry } }
  const tls: ConnectionOptions | undefined = t.tls && { ...(t.tls.ca ? { ca: t.tls.ca } : {}), ...(t.tls.serverName ? { servername: t.tls.serverName } : {}) }
  const auth: RedisOptions = { ...(t.username ? { username: t.username } : {}), ...(t.password ? { password: t.password } : {}) }
  if (t.mode === 'sentinel') {
    return {
      kind: 'redis',
      options: {
        ...base,
        ...auth,
        keyPrefix: o.keyPrefix,
        lazyConnect: false,
        retryStrategy: retry,
        sentinels: t.sentinels.map(({ host, port }) => ({ host, port })),
        name: t.name,
        role: 'master',
        ...(t.sentinelUsername ? { sentinelUsername: t.sentinelUsername } : {}),
        ...(t.sentinelPassword ? { sentinelPassword: t.sentinelPassword } : {}),
        sentinelCommandTimeout: o.commandTimeoutMs,
        // Sentinel asks for the master anew on every reconnect; on failover the old master
        // turns replica and answers READONLY, which ioredis turns into a reconnect.
        reconnectOnError: (e) => /READONLY/.test(e.message),
        ...(t.natMap ? { natMap: t.natMap } : {}),
        ...(tls ? { tls, enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
      },
    }
  }
  return {
    kind: 'cluster',
    nodes: t.nodes.map(({ host, port }) => ({ host, port })),
    options: {
      // keyPrefix must be top-level for Cluster: it is what routes a key to its slot.
      keyPrefix: o.keyPrefix,
      enableOfflineQueue: false,
      lazyConnect: false,
      // Reads from replicas could miss a session binding written a moment ago on the master.
      scaleReads: 'master',
      maxRedirections: t.maxRedirections,
      clusterRetryStrategy: retry,
      slotsRefreshTimeout: 2000,
      ...(t.natMap ? { natMap: t.natMap } : {}),
      redisOptions: { ...auth, maxRetriesPerRequest: 0, commandTimeout: o.commandTimeoutMs, connectTimeout: 2000, ...(tls ? { tls } : {}) },
    },
  }
}

/**
 * Redis-backed SharedStore. No offline queue and a command timeout: when Redis is down a
 * command fails fast (a miss) instead of queueing behind the request. ioredis reconnects by
 * itself; `healthy()` follows the connection state.
 */
export class RedisStore implements SharedStore {
  readonly kind = 'redis' as const
  readonly #client: Redis | Cluster
  readonly #logger: Logger
  readonly #metrics: Metrics
  readonly mode: RedisTarget['mode']
  #up = false

  constructor(o: RedisStoreOptions) {
    this.#logger = o.logger
    this.#metrics = o.metrics
    this.mode = o.target.mode
    const c = redisClientOptions(o)
    this.#client = c.kind === 'cluster' ? new Cluster(c.nodes, c.options) : c.url !== undefined ? new Redis(c.url, c.options) : new Redis(c.options)
    this.#metrics.redisUp.set(0)
    this.#client.on('ready', () => this.#setUp(true))
    this.#client.on('end', () => this.#setUp(false))
    this.#client.on('close', () => this.#setUp(false))
    // ioredis emits 'error' on every failed reconnect; state changes are logged once instead.
    // A Cluster also emits it for a failed slots refresh while it keeps serving ('ready' would
    // not come again), so only an error that left the client not ready counts as down.
    this.#client.on('error', () => this.#setUp(this.#client.status === 'ready'))
  }

  #setUp(up: boolean): void {
    if (up === this.#up) return
    this.#up = up
    this.#metrics.redisUp.set(up ? 1 : 0)
    if (up) this.#logger.info({ event: 'redis.up' }, 'redis connected')
    else this.#logger.warn({ event: 'redis.down' }, 'redis unreachable: serving from in-memory caches only')
  }

  async #run<T>(op: () => Promise<T>, fallback: T): Promise<T> {
    if (!this.#up) return fallback
    try {
      return await op()
    } catch {
      this.#metrics.redisErrors.inc()
      return fallback
    }
  }

  get(key: string): Promise<string | undefined> {
    return this.#run(async () => (await this.#client.get(key)) ?? undefined, undefined)
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    if (ttlMs <= 0) return
    await this.#run(() => this.#client.set(key, value, 'PX', Math.ceil(ttlMs)), null)
  }

  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    return this.#run(async () => (await this.#client.set(key, value, 'PX', Math.ceil(ttlMs), 'NX')) === 'OK', false)
  }

  async delete(key: string): Promise<void> {
    await this.#run(() => this.#client.del(key), 0)
  }

  healthy(): boolean {
    return this.#up
  }

  /** Resolves once connected or after `ms`, whichever first; start-up must not block on Redis. */
  async waitReady(ms: number): Promise<boolean> {
    if (this.#up) return true
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(this.#up), ms)
      this.#client.once('ready', () => {
        clearTimeout(t)
        resolve(true)
      })
    })
  }

  /** The raw client, for modules that need Lua or pub/sub (rate limits, approvals). */
  get client(): Redis | Cluster {
    return this.#client
  }

  async close(): Promise<void> {
    this.#client.disconnect()
  }
}
