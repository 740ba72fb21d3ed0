import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../../gateway/config/load.js'
import { revealRedisConnection } from '../../../gateway/config/redis.js'
import { redisClientOptions } from '../../../gateway/store/redis.js'
import { slotKey } from '../../../gateway/limits/redis.js'
import { CONFIG_HEAD, configProblems } from '../../helpers/config.js'

const BASE = `${CONFIG_HEAD}routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: http://127.0.0.1:3000/mcp }
    issuers: [corp]
cache:
  redis:
`
const withRedis = (lines: string) => BASE + lines.trim().split('\n').map((l) => `    ${l}`).join('\n') + '\n'
const at = (p: { line: number; column: number; path: string; message: string }) => `${p.line}:${p.column} ${p.path}: ${p.message}`

describe('config cache.redis: Sentinel and Cluster', () => {
  it('sentinel / sentinels + name + passwords from the secrets mechanism, never printed', () => {
    const text = withRedis(`
sentinels: [{ host: s1.redis, port: 26379 }, { host: s2.redis, port: 26379 }]
name: mymaster
sentinelPassword: { fromEnv: SPW }
password: { fromEnv: PW }
username: gw
tls: { serverName: redis.internal }`)
    const { config } = loadConfigText('gw.yaml', text, { env: { SPW: 'sentinel-secret', PW: 'data-secret' } })
    const c = config.cache.redis!.connection
    expect(c.mode).toBe('sentinel')
    expect(JSON.stringify(config)).not.toMatch(/sentinel-secret|data-secret/)
    const o = redisClientOptions({ target: revealRedisConnection(c) as never, keyPrefix: 'mcpw:', commandTimeoutMs: 250 })
    expect(o.kind).toBe('redis')
    expect(o.options).toMatchObject({
      sentinels: [{ host: 's1.redis', port: 26379 }, { host: 's2.redis', port: 26379 }],
      name: 'mymaster',
      sentinelPassword: 'sentinel-secret',
      password: 'data-secret',
      username: 'gw',
      keyPrefix: 'mcpw:',
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 250,
      enableTLSForSentinelMode: true,
      tls: { servername: 'redis.internal' },
      sentinelTLS: { servername: 'redis.internal' },
    })
  })

  it('cluster / nodes; keyPrefix top-level, fail-fast options on every node, reads from masters', () => {
    const text = withRedis(`
cluster: { nodes: [{ host: 10.0.0.1, port: 7000 }, { host: 10.0.0.2, port: 7000 }] }
password: { value: pw }
commandTimeout: 300ms
natMap: { "172.17.0.2:7000": { host: 10.0.0.1, port: 7000 } }`)
    const { config } = loadConfigText('gw.yaml', text, { env: {} })
    const c = config.cache.redis!.connection
    expect(c).toMatchObject({ mode: 'cluster', maxRedirections: 16 })
    const o = redisClientOptions({ target: revealRedisConnection(c) as never, keyPrefix: 'mcpw:', commandTimeoutMs: 300 })
    expect(o.kind).toBe('cluster')
    if (o.kind !== 'cluster') return
    expect(o.nodes).toEqual([{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 7000 }])
    expect(o.options).toMatchObject({
      keyPrefix: 'mcpw:',
      enableOfflineQueue: false,
      scaleReads: 'master',
      natMap: { '172.17.0.2:7000': { host: '10.0.0.1', port: 7000 } },
      redisOptions: { password: 'pw', maxRetriesPerRequest: 0, commandTimeout: 300 },
    })
  })

  it('url / still a single server, unchanged', () => {
    const { config } = loadConfigText('gw.yaml', withRedis('url: redis://127.0.0.1:6379'), { env: {} })
    const o = redisClientOptions({ target: revealRedisConnection(config.cache.redis!.connection) as never, keyPrefix: 'p:', commandTimeoutMs: 250 })
    expect(o).toMatchObject({ kind: 'redis', url: 'redis://127.0.0.1:6379', options: { keyPrefix: 'p:', enableOfflineQueue: false } })
  })

  it('invalid / exactly one of url, sentinels, cluster, with the position of the offending key', () => {
    const both = configProblems(withRedis(`
url: redis://127.0.0.1:6379
cluster: { nodes: [{ host: a, port: 7000 }] }`))
    expect(both.map(at)).toEqual(['17:14 cache.redis.cluster: set exactly one of url (one server), sentinels (with name) or cluster (found url, cluster)'])
    const none = configProblems(withRedis('keyPrefix: "x:"'))
    expect(none.map((p) => p.message)).toEqual(['set exactly one of url (one server), sentinels (with name) or cluster (found none)'])
  })

  it('invalid / sentinels without name, options of another mode, braces in a cluster keyPrefix, bad ports', () => {
    expect(configProblems(withRedis('sentinels: [{ host: a, port: 26379 }]')).map(at)).toEqual([
      '16:16 cache.redis.sentinels: sentinels need name: the master group name the sentinels monitor',
    ])
    expect(configProblems(withRedis(`
url: redis://127.0.0.1:6379
password: { value: x }
name: mymaster`)).map(at)).toEqual([
      '18:11 cache.redis.name: name is only for sentinels',
      '17:15 cache.redis.password: password is only for sentinels or cluster: with url, write it in the URL (redis://user:password@host, rediss:// for TLS)',
    ])
    expect(configProblems(withRedis(`
cluster: { nodes: [{ host: a, port: 7000 }] }
name: mymaster
keyPrefix: "{gw}:"`)).map((p) => p.message)).toEqual([
      'name is only for sentinels',
      'with cluster, keyPrefix must not contain { or } (mcp-warden sets the hash tags itself)',
    ])
    const bad = configProblems(withRedis('sentinels: [{ host: a, port: 0 }]\nname: m'))
    expect(bad[0]?.path).toBe('cache.redis.sentinels[0].port')
    expect(configProblems(withRedis('cluster: { nodes: [] }'))[0]?.path).toBe('cache.redis.cluster.nodes')
    expect(configProblems(withRedis('sentinels: [{ host: a, port: 1 }]\nname: m\nsentinelPassword: { fromEnv: NOPE }')).map((p) => p.message)).toEqual([
      'environment variable NOPE is not set',
    ])
  })

  it('limits / on Cluster every budget key carries the same hash tag; elsewhere names are unchanged', () => {
    expect(slotKey('rl:abc')).toBe('{rl}:abc')
    expect(slotKey('rl:def').slice(0, 4)).toBe(slotKey('rl:abc').slice(0, 4))
  })
})
