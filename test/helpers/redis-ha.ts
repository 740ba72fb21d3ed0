/**
 * Real Redis Sentinel and Redis Cluster deployments on loopback, for the gateway's HA modes:
 * private redis-server processes on free ports, configuration in a temp dir, all removed by
 * `stop()`. No persistence; start-up is a few hundred milliseconds.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { freePort } from './ports.js'
import { pingRedis } from './redis.js'

const run = promisify(execFile)
const BIN = process.env.REDIS_SERVER_BIN ?? 'redis-server'
const CLI = process.env.REDIS_CLI_BIN ?? 'redis-cli'

export interface RedisProcess {
  port: number
  /** SIGKILL (a crash); resolves once the process has exited. */
  kill(): Promise<void>
}

const exited = (p: ChildProcess) => (p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => p.once('exit', () => r())))

async function until(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** redis-server with these arguments on `port`, once it answers PING. */
async function launch(port: number, args: string[], procs: ChildProcess[]): Promise<RedisProcess> {
  const output: string[] = []
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  procs.push(proc)
  proc.stdout?.on('data', (c: Buffer) => output.push(c.toString()))
  proc.stderr?.on('data', (c: Buffer) => output.push(c.toString()))
  try {
    await until(`redis on ${port}`, 10_000, async () => {
      if (proc.exitCode !== null) throw new Error('exited')
      return pingRedis(port)
    })
  } catch {
    proc.kill('SIGKILL')
    throw new Error(`redis-server ${args.join(' ')} did not start:\n${output.join('').slice(-2000)}`)
  }
  return {
    port,
    async kill() {
      proc.kill('SIGKILL')
      await exited(proc)
    },
  }
}

const common = (port: number, dir: string) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]

async function stopAll(procs: ChildProcess[], dir: string): Promise<void> {
  await Promise.all(
    procs.map((p) => {
      const done = exited(p)
      p.kill('SIGTERM')
      return done
    }),
  )
  rmSync(dir, { recursive: true, force: true })
}

export interface SentinelSetup {
  name: string
  master: RedisProcess
  replica: RedisProcess | undefined
  sentinel: RedisProcess
  /** The YAML flow mapping for `cache.redis`. */
  yaml: string
  /** The address the sentinel currently reports for the master. */
  masterAddress(): Promise<{ host: string; port: number }>
  stop(): Promise<void>
}

/**
 * One master (and optionally one replica) watched by one sentinel (quorum 1), with short
 * detection times so a failover happens within a few seconds.
 */
export async function startSentinel(o: { replica?: boolean; name?: string } = {}): Promise<SentinelSetup> {
  const name = o.name ?? 'mymaster'
  const dir = mkdtempSync(join(tmpdir(), 'mcpw-sentinel-'))
  const procs: ChildProcess[] = []
  try {
    const [mp, rp, sp] = await Promise.all([freePort(), freePort(), freePort()])
    const master = await launch(mp, common(mp, dir), procs)
    const replica = o.replica ? await launch(rp, [...common(rp, dir), '--replicaof', '127.0.0.1', String(mp), '--dbfilename', `replica-${rp}.rdb`], procs) : undefined
    const conf = join(dir, 'sentinel.conf')
    // Sentinel rewrites its config file at run time, so it must be a writable file of its own.
    writeFileSync(
      conf,
      [
        `port ${sp}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${mp} 1`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 3000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    )
    const sentinel = await launch(sp, [conf, '--sentinel'], procs)
    const ask = new Redis({ port: sp, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 })
    await ask.connect()
    const masterAddress = async () => {
      const r = (await ask.call('SENTINEL', 'get-master-addr-by-name', name)) as [string, string] | null
      if (!r) throw new Error('no master')
      return { host: r[0], port: Number(r[1]) }
    }
    await until('the sentinel to know the master', 10_000, async () => (await masterAddress()).port === mp)
    if (replica) {
      await until('the sentinel to see the replica', 15_000, async () => {
        const reps = (await ask.call('SENTINEL', 'replicas', name)) as string[][]
        return reps.length > 0
      })
    }
    return {
      name,
      master,
      replica,
      sentinel,
      yaml: `{ sentinels: [{ host: 127.0.0.1, port: ${sp} }], name: ${name} }`,
      masterAddress,
      async stop() {
        ask.disconnect()
        await stopAll(procs, dir)
      },
    }
  } catch (e) {
    await stopAll(procs, dir)
    throw e
  }
}

export interface ClusterSetup {
  nodes: RedisProcess[]
  yaml: string
  /** A cluster-aware client (no key prefix) for assertions. */
  client: InstanceType<typeof Redis.Cluster>
  stop(): Promise<void>
}

/** Three masters, no replicas, all 16384 slots assigned, `cluster_state:ok` on every node. */
export async function startCluster(): Promise<ClusterSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'mcpw-cluster-'))
  const procs: ChildProcess[] = []
  let client: InstanceType<typeof Redis.Cluster> | undefined
  try {
    const ports = await Promise.all([0, 1, 2].map(async () => [await freePort(), await freePort()] as const))
    const nodes = await Promise.all(
      ports.map(([port, bus]) =>
        // cluster-port: the default bus port (port + 10000) may be taken or out of range.
        launch(port, [...common(port, dir), '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-port', String(bus), '--cluster-node-timeout', '3000', '--dbfilename', `dump-${port}.rdb`], procs),
      ),
    )
    await run(CLI, ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 })
    await until('cluster_state:ok on every node', 20_000, async () => {
      const states = await Promise.all(nodes.map(async (n) => (await run(CLI, ['-p', String(n.port), 'cluster', 'info'])).stdout))
      return states.every((s) => s.includes('cluster_state:ok'))
    })
    client = new Redis.Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })))
    const c = client
    await until('a cluster client', 10_000, async () => c.status === 'ready')
    return {
      nodes,
      client: c,
      yaml: `{ cluster: { nodes: [${nodes.map((n) => `{ host: 127.0.0.1, port: ${n.port} }`).join(', ')}] } }`,
      async stop() {
        c.disconnect()
        await stopAll(procs, dir)
      },
    }
  } catch (e) {
    client?.disconnect()
    await stopAll(procs, dir)
    throw e
  }
}

/** Every key (with its value type) on every master of a cluster, or on one server. */
export async function allKeys(client: Redis | InstanceType<typeof Redis.Cluster>): Promise<string[]> {
  const servers = client instanceof Redis.Cluster ? client.nodes('master') : [client]
  const keys = await Promise.all(servers.map((s) => s.keys('*')))
  return keys.flat().sort()
}
