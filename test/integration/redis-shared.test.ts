/**
 * JWKS shared through Redis across replicas, and the gateway's behaviour when Redis goes away:
 * it keeps serving from memory, says so in /readyz, metrics and logs, and never accepts a token it
 * could not verify (issue 2 item 6).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { INIT, MCP_HEADERS, type ReplicaPair, type Stack, startReplicaPair } from '../helpers/stack.js'
import type { RedisInstance } from '../helpers/redis.js'

let pair: ReplicaPair
let redis: RedisInstance
let a: Stack
let b: Stack
beforeAll(async () => {
  pair = await startReplicaPair()
  ;({ redis, a, b } = pair)
})
afterAll(() => pair?.close())

const call = (st: Stack, token: string) =>
  fetch(`${st.url}/mcp/alpha`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: INIT })

const metric = async (st: Stack, name: string) => {
  const text = await (await fetch(`${st.adminUrl}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(name))
  return line ? Number(line.split(' ').pop()) : undefined
}

describe('redis-shared JWKS', () => {
  it('a second replica takes the key set from Redis instead of the AS', async () => {
    // Each stack fetched at start; B found A's document in Redis.
    const text = await (await fetch(`${b.adminUrl}/metrics`)).text()
    expect(text).toMatch(/mcp_warden_jwks_fetches_total\{issuer="demo",source="redis",outcome="ok"\} 1/)
    expect(text).not.toMatch(/source="origin",outcome="ok"/)
    const token = await a.token()
    expect((await call(a, token)).status).toBe(200)
    expect((await call(b, token)).status).toBe(200)
    expect(await metric(a, 'mcp_warden_redis_up')).toBe(1)
  })

  it('Redis down: valid tokens keep working from memory, readyz says degraded, metrics say 0, forged tokens still fail', async () => {
    const token = await a.token({ subject: 'bob' })
    await redis.kill()
    await new Promise((r) => setTimeout(r, 300))
    expect((await call(a, token)).status).toBe(200)
    const ready = await fetch(`${a.adminUrl}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ status: 'degraded', checks: { redis: false } })
    expect(await metric(a, 'mcp_warden_redis_up')).toBe(0)
    const forged = `${token.slice(0, token.lastIndexOf('.'))}.${Buffer.from('not a signature').toString('base64url')}`
    expect((await call(a, forged)).status).toBe(401)
    expect(a.logLines().some((l) => l.event === 'redis.down')).toBe(true)

    await redis.restart()
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline && (await metric(a, 'mcp_warden_redis_up')) !== 1) await new Promise((r) => setTimeout(r, 200))
    expect(await metric(a, 'mcp_warden_redis_up')).toBe(1)
    expect((await (await fetch(`${a.adminUrl}/readyz`)).json()) as unknown).toMatchObject({ status: 'ready' })
  })
})
