/**
 * A real rsyslogd receiving RFC 5424 over TCP with TLS (imtcp + the gtls driver, octet-counted
 * framing) in a temp dir, writing each message's MSG part to a file. Install-or-skip like
 * haproxy.ts: `rsyslogBinary()` installs Debian's rsyslog and rsyslog-gnutls as root with
 * apt-get (as .ci/run does), else says what is missing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort } from './ports.js'
import { waitFor } from './process.js'
import type { TestPki } from './tls.js'

const BIN = process.env.RSYSLOGD_BIN ?? '/usr/sbin/rsyslogd'
const GTLS = ['/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so', '/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so', '/usr/lib/rsyslog/lmnsd_gtls.so']
const ready = () => existsSync(BIN) && GTLS.some((p) => existsSync(p))

export function rsyslogBinary(): { bin: string } | { missing: string } {
  if (ready()) return { bin: BIN }
  if (process.getuid?.() !== 0 || spawnSync('sh', ['-c', 'command -v apt-get']).status !== 0) return { missing: 'rsyslogd with TLS not installed (apt-get install -y rsyslog rsyslog-gnutls, or set RSYSLOGD_BIN)' }
  const r = spawnSync('sh', ['-c', 'apt-get install -y -qq rsyslog rsyslog-gnutls || (apt-get update -qq && apt-get install -y -qq rsyslog rsyslog-gnutls)'], { stdio: 'ignore', timeout: 180_000 })
  return ready() ? { bin: BIN } : { missing: `rsyslog / rsyslog-gnutls not installed and apt-get install failed (exit ${r.status})` }
}

export interface Rsyslog {
  port: number
  /** The MSG parts received, one per line, in arrival order. */
  lines(): string[]
  close(): Promise<void>
}

export async function startRsyslog(bin: string, pki: TestPki, dir: string): Promise<Rsyslog> {
  const port = await freePort()
  const out = join(dir, 'received.log')
  const conf = join(dir, 'rsyslog.conf')
  writeFileSync(join(dir, 'server.key'), pki.key)
  writeFileSync(join(dir, 'server.pem'), pki.cert)
  writeFileSync(
    conf,
    `global(workDirectory="${dir}" maxMessageSize="64k"
  defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="${pki.caFile}"
  defaultNetstreamDriverCertFile="${join(dir, 'server.pem')}" defaultNetstreamDriverKeyFile="${join(dir, 'server.key')}")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" port="${port}" address="127.0.0.1")
template(name="msgOnly" type="string" string="%msg%\\n")
action(type="omfile" file="${out}" template="msgOnly" asyncWriting="off" flushOnTXEnd="on")
`,
  )
  const pidfile = join(dir, 'rsyslogd.pid')
  const child: ChildProcess = spawn(bin, ['-n', '-f', conf, '-i', pidfile], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`rsyslogd exited: ${err}`)
      return existsSync(pidfile)
    }, 20_000)
    // The pid file comes before the listener: wait until the TLS port takes connections.
    const { connect } = await import('node:net')
    await waitFor(
      () =>
        new Promise((resolve) => {
          const s = connect(port, '127.0.0.1', () => {
            s.destroy()
            resolve(true)
          })
          s.on('error', () => resolve(false))
        }),
      20_000,
    )
  } catch (e) {
    child.kill('SIGKILL')
    throw new Error(`${(e as Error).message}\n${err}`)
  }
  return {
    port,
    lines: () => (existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean) : []),
    async close() {
      if (child.exitCode === null) child.kill('SIGTERM')
      await exited
    },
  }
}
