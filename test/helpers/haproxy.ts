/**
 * A real HAProxy in front of gateway replicas: HTTP mode, round robin per request (HAProxy
 * balances every request of a keep-alive connection unless told to prefer the last server).
 * Install-or-skip: `haproxyBinary()` finds it, or installs the Debian package when running as root
 * with apt-get (as .ci/run does), else says why it is missing so the test can skip clearly.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { accessSync, constants, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort } from './ports.js'
import { waitFor } from './process.js'

const CANDIDATES = [process.env.HAPROXY_BIN, '/usr/sbin/haproxy', '/usr/bin/haproxy', '/usr/local/sbin/haproxy', '/usr/local/bin/haproxy']

function find(): string | undefined {
  for (const c of CANDIDATES) {
    if (!c) continue
    try {
      accessSync(c, constants.X_OK)
      return c
    } catch {
      // next
    }
  }
  const which = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' })
  return which.status === 0 ? which.stdout.trim() || undefined : undefined
}

/** The haproxy binary, installing it (root + apt-get only) when absent; or why there is none. */
export function haproxyBinary(): { bin: string } | { missing: string } {
  const found = find()
  if (found) return { bin: found }
  if (process.getuid?.() !== 0 || spawnSync('sh', ['-c', 'command -v apt-get']).status !== 0) return { missing: 'haproxy not installed (apt-get install -y haproxy, or set HAPROXY_BIN)' }
  const r = spawnSync('sh', ['-c', 'apt-get install -y -qq haproxy || (apt-get update -qq && apt-get install -y -qq haproxy)'], { stdio: 'ignore', timeout: 180_000 })
  const after = find()
  return after ? { bin: after } : { missing: `haproxy not installed and apt-get install failed (exit ${r.status})` }
}

export interface HaProxy {
  url: string
  /** Requests answered per server (from the stats CSV: sum of hrsp_* columns). */
  perServer(): Promise<number[]>
  close(): Promise<void>
}

export async function startHaProxy(bin: string, backendPorts: number[], dir: string, port?: number): Promise<HaProxy> {
  const lbPort = port ?? (await freePort())
  const statsPort = await freePort()
  const cfg = join(dir, 'haproxy.cfg')
  writeFileSync(
    cfg,
    `global
  maxconn 2000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend gw
  bind 127.0.0.1:${lbPort}
  default_backend replicas
backend replicas
  balance roundrobin
${backendPorts.map((p, i) => `  server r${i} 127.0.0.1:${p}`).join('\n')}
listen stats
  bind 127.0.0.1:${statsPort}
  stats enable
  stats uri /stats
`,
  )
  const child: ChildProcess = spawn(bin, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const stats = `http://127.0.0.1:${statsPort}/stats;csv`
  await waitFor(async () => (await fetch(stats)).ok, 10_000).catch(() => {
    child.kill('SIGKILL')
    throw new Error(`haproxy did not start: ${err.slice(-1000)}`)
  })
  return {
    url: `http://127.0.0.1:${lbPort}`,
    async perServer() {
      const [head, ...rows] = (await (await fetch(stats)).text()).trim().split('\n')
      const cols = head!.replace(/^# /, '').split(',')
      const at = (n: string) => cols.indexOf(n)
      const hrsp = cols.flatMap((c, i) => (c.startsWith('hrsp_') ? [i] : []))
      return backendPorts.map((_, i) => {
        const row = rows.map((r) => r.split(',')).find((r) => r[at('pxname')] === 'replicas' && r[at('svname')] === `r${i}`)
        return row ? hrsp.reduce((s, j) => s + Number(row[j] || 0), 0) : 0
      })
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
      }),
  }
}
