/**
 * Shared limiter: one Lua script decides every limit of a request in one round trip, atomically
 * (Redis runs a script alone), on Redis' own clock (TIME), so replicas with skewed clocks still
 * agree on slices. The script is `checkWindow` + `addToWindow` of window.ts, over one hash per
 * budget (field = slice number, value = count). EVALSHA first; EVAL when the script is not
 * cached (Redis restarted or flushed).
 *
 * Redis Cluster runs a script only when all its keys hash to one slot, and a request's budgets
 * (per subject, per tool, per route…) hash anywhere. With `oneSlot` every budget key carries the
 * hash tag `{rl}`, so all budgets live on one slot (one shard): exact and atomic across budgets,
 * at the price of that shard doing all limiter work. Without it (one server, Sentinel) key names
 * stay `rl:<digest>` as before.
 */
import { createHash } from 'node:crypto'
import { LimiterUnavailable, SLICES, type Charge, type Limiter, type Verdict } from './window.js'

export const LIMIT_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slices = ${SLICES}
local n = #KEYS
for i = 1, n do
  local max = tonumber(ARGV[3 * i - 2])
  local per = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local oldest = math.floor(now * slices / per) - slices + 1
  local data = redis.call('HGETALL', KEYS[i])
  local total = 0
  local live = {}
  for j = 1, #data, 2 do
    local idx = tonumber(data[j])
    local c = tonumber(data[j + 1])
    if idx < oldest then
      redis.call('HDEL', KEYS[i], data[j])
    else
      total = total + c
      live[#live + 1] = idx
    end
  end
  if total + cost > max then
    local retry = -1
    if cost <= max then
      table.sort(live)
      local counts = {}
      for j = 1, #data, 2 do counts[tonumber(data[j])] = tonumber(data[j + 1]) end
      local need = total + cost - max
      local freed = 0
      for _, idx in ipairs(live) do
        freed = freed + counts[idx]
        if freed >= need then
          retry = math.ceil((idx + slices) * per / slices) - now
          break
        end
      end
    end
    return {0, i, retry}
  end
end
for i = 1, n do
  local per = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local current = math.floor(now * slices / per)
  redis.call('HINCRBY', KEYS[i], string.format('%d', current), cost)
  redis.call('PEXPIRE', KEYS[i], per + math.ceil(per / slices))
end
return {1, 0, 0}
`

/** `rl:<digest>` → `{rl}:<digest>`: the tag is what Redis Cluster hashes (keyPrefix has no braces). */
export function slotKey(key: string): string {
  return `{rl}:${key.startsWith('rl:') ? key.slice(3) : key}`
}

const SHA = createHash('sha1').update(LIMIT_SCRIPT).digest('hex')

/** The part of an ioredis client this needs (key prefixing included). */
export interface ScriptClient {
  evalsha(sha: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>
}

export class RedisLimiter implements Limiter {
  readonly kind = 'redis' as const
  readonly #oneSlot: boolean
  constructor(
    private readonly client: ScriptClient,
    o: { oneSlot?: boolean } = {},
  ) {
    this.#oneSlot = o.oneSlot ?? false
  }

  async consume(charges: readonly Charge[]): Promise<Verdict> {
    if (charges.length === 0) return { allowed: true }
    const keys = charges.map((c) => (this.#oneSlot ? slotKey(c.key) : c.key))
    const args = charges.flatMap((c) => [c.max, c.perMs, c.cost])
    let reply: unknown
    try {
      try {
        reply = await this.client.evalsha(SHA, keys.length, ...keys, ...args)
      } catch (e) {
        if (!/NOSCRIPT/.test((e as Error)?.message ?? '')) throw e
        reply = await this.client.eval(LIMIT_SCRIPT, keys.length, ...keys, ...args)
      }
    } catch (e) {
      throw new LimiterUnavailable(e)
    }
    if (!Array.isArray(reply) || reply.length !== 3) throw new LimiterUnavailable(new Error('unexpected script reply'))
    const [ok, index, retry] = reply.map(Number) as [number, number, number]
    if (ok === 1) return { allowed: true }
    const limit = charges[index - 1]?.limit ?? 'unknown'
    return { allowed: false, limit, retryAfterMs: retry >= 0 ? retry : undefined }
  }
}
