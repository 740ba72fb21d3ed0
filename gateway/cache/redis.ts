import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Metrics } from '../observability/metrics.js'
import type { SharedStore } from './store.js'

export interface RedisStoreOptions {
  url: string
  keyPrefix: string
  commandTimeoutMs: number
  logger: Logger
  metrics: Metrics
}

/**
 * Redis-backed SharedStore. No offline queue and a command timeout: when Redis is down a
 * command fails fast (a miss) instead of queueing behind the request. ioredis reconnects by
 * itself; `healthy()` follows the connection state.
 */
export class RedisStore implements SharedStore {
  readonly kind = 'redis' as const
  readonly #client: Redis
  readonly #logger: Logger
  readonly #metrics: Metrics
  #up = false

  constructor(o: RedisStoreOptions) {
    this.#logger = o.logger
    this.#metrics = o.metrics
    this.#client = new Redis(o.url, {
      keyPrefix: o.keyPrefix,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: o.commandTimeoutMs,
      connectTimeout: 2000,
      lazyConnect: false,
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
    })
    this.#metrics.redisUp.set(0)
    this.#client.on('ready', () => this.#setUp(true))
    this.#client.on('end', () => this.#setUp(false))
    this.#client.on('close', () => this.#setUp(false))
    // ioredis emits 'error' on every failed reconnect; state changes are logged once instead.
    this.#client.on('error', () => this.#setUp(false))
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
  get client(): Redis {
    return this.#client
  }

  async close(): Promise<void> {
    this.#client.disconnect()
  }
}
