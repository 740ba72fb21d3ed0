/**
 * The audit log as a SIEM receives it (docs/audit.md): the real CLI writes chained, checkpointed
 * lines; `audit verify` passes them and names each kind of tampering; a real rsyslogd over TLS
 * receives them byte for byte; an HTTP sink that goes down under load, with the gateway killed
 * (kill -9) and restarted in the middle of the outage, receives every record exactly once, in
 * order. The outage lasts about 10 s (1.5 s of load, the restart, 2 s more), not 30 s: the
 * buffer path is the same and the suite stays short.
 */
import { generateKeyPairSync } from 'node:crypto'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../demo/authorization-server.js'
import { startMcpServer, type McpUpstream } from '../../demo/mcp-server.js'
import { serve } from '../../gateway/main.js'
import { verifyAudit } from '../../gateway/observability/audit-verify.js'
import { DiskBuffer } from '../../gateway/observability/sinks/buffer.js'
import { freePort } from '../helpers/ports.js'
import { runCli, waitFor, type CliProcess } from '../helpers/process.js'
import { rsyslogBinary, startRsyslog } from '../helpers/rsyslog.js'
import { listenerYaml } from '../helpers/stack.js'
import { makePki } from '../helpers/tls.js'

const dir = mkdtempSync(join(tmpdir(), 'mcpw-audit-'))
const keys = generateKeyPairSync('ed25519')
writeFileSync(join(dir, 'checkpoint.key'), keys.privateKey.export({ format: 'pem', type: 'pkcs8' }))
writeFileSync(join(dir, 'checkpoint.pub'), keys.publicKey.export({ format: 'pem', type: 'spki' }))

let as: AuthorizationServer
let upstream: McpUpstream
beforeAll(async () => {
  ;[as, upstream] = await Promise.all([startAuthorizationServer(), startMcpServer()])
})
afterAll(async () => {
  await Promise.all([as?.close(), upstream?.close()])
})

const config = (port: number, adminPort: number, audit: string) => `${listenerYaml({ port, adminPort })}issuers:
  demo:
    issuer: ${as.issuer}
routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: ${upstream.url} }
    issuers: [demo]
audit:
${audit.trim().split('\n').map((l) => `  ${l}`).join('\n')}
`

/** Unauthenticated calls: each is refused (401) and audited, no token needed to make records. */
const call = (port: number) => fetch(`http://127.0.0.1:${port}/mcp/alpha`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).then((r) => r.arrayBuffer().then(() => r.status))

async function startCli(file: string, adminPort: number): Promise<CliProcess> {
  const p = runCli(['serve', '--config', file])
  // Generous: tsx compiles the CLI on start, and the machine may be busy.
  await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200, 60_000)
  return p
}

describe('audit verify on what the gateway wrote', () => {
  it('passes the rotated files of a clean run; names each kind of tampering with file:line and exits 1', async () => {
    const [port, adminPort] = [await freePort(), await freePort()]
    const file = join(dir, 'verify.yaml')
    writeFileSync(file, config(port, adminPort, `replica: gw-verify\nstdout: false\ncheckpoint: { signingKey: { fromFile: checkpoint.key }, interval: 1s }\nsinks:\n  - { type: file, path: verify/audit.log, rotate: { maxSize: 4kb, keep: 50 } }`))
    mkdirSync(join(dir, 'verify'))
    const gw = await startCli(file, adminPort)
    for (let i = 0; i < 20; i++) expect(await call(port)).toBe(401)
    // An interval checkpoint between the two halves, so the tampering below is after a signed one.
    const written = () => readdirSync(join(dir, 'verify')).map((f) => readFileSync(join(dir, 'verify', f), 'utf8')).join('')
    await waitFor(async () => written().includes('"msg":"audit.checkpoint"'), 30_000)
    for (let i = 0; i < 20; i++) expect(await call(port)).toBe(401)
    gw.child.kill('SIGTERM')
    expect(await gw.exited).toBe(0)

    const rotated = readdirSync(join(dir, 'verify')).filter((f) => /^audit\.log\.\d+$/.test(f)).sort((a, b) => Number(b.split('.').pop()) - Number(a.split('.').pop()))
    expect(rotated.length).toBeGreaterThan(1)
    const files = [...rotated, 'audit.log'].map((f) => join(dir, 'verify', f))
    const clean = runCli(['audit', 'verify', '--key', join(dir, 'checkpoint.pub'), ...files])
    expect(await clean.exited).toBe(0)
    expect(clean.stdout()).toMatch(/^ok: \d+ records in 1 chain\(s\), [1-9]\d* checkpoint\(s\)\n$/)

    // All rotated files in one, then one tampering of each kind at known lines.
    const lines = files.flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean))
    const cpAt = lines.findIndex((l) => l.includes('"checkpoint":'))
    const requests = lines.map((l, i) => [l, i] as const).filter(([l], i) => i > cpAt + 1 && l.includes('"msg":"mcp.request"')).map(([, i]) => i)
    const [edit, del, swapA, swapB, dup] = [requests[1]!, requests[4]!, requests[8]!, requests[9]!, requests[12]!]
    const t = [...lines]
    t[edit] = t[edit]!.replace('"status":401', '"status":200')
    t[cpAt] = t[cpAt]!.replace(/"sig":"./, (m) => m.slice(0, -1) + (m.endsWith('A') ? 'B' : 'A'))
    ;[t[swapA], t[swapB]] = [t[swapB]!, t[swapA]!]
    t.splice(dup + 1, 0, lines[dup]!.replace('"status":401', '"status":403'))
    t.splice(del, 1)
    const tampered = join(dir, 'tampered.log')
    writeFileSync(tampered, `${t.join('\n')}\n`)
    const bad = runCli(['audit', 'verify', '--key', join(dir, 'checkpoint.pub'), tampered])
    expect(await bad.exited).toBe(1)
    const err = bad.stderr()
    // Line numbers are 1-based and after the delete (which moved later lines up by one).
    const at = (i: number) => `${tampered}:${i + 1}: error: `
    expect(err).toContain(`${at(cpAt)}forged-checkpoint`)
    expect(err).toContain(`${at(edit)}changed`)
    expect(err).toContain(`${at(del)}removed`)
    expect(err).toContain(`${at(swapA)}reordered`)
    expect(err).toContain(`${at(dup)}inserted`)
    expect(err).toMatch(/FAILED: \d+ problem/)
  }, 120_000)
})

describe('audit through a real rsyslogd over TLS', () => {
  const rs = rsyslogBinary()
  it.skipIf('missing' in rs)(`delivers every record byte for byte, RFC 5424 octet-counted over TLS${'missing' in rs ? ` (skipped: ${rs.missing})` : ''}`, async () => {
    const pki = makePki()
    const rdir = mkdtempSync(join(tmpdir(), 'mcpw-rsyslog-'))
    const syslog = await startRsyslog((rs as { bin: string }).bin, pki, rdir)
    try {
      const [port, adminPort] = [await freePort(), await freePort()]
      const file = join(dir, 'syslog.yaml')
      copyFileSync(pki.caFile, join(dir, 'syslog-ca.pem'))
      writeFileSync(file, config(port, adminPort, `replica: gw-syslog\nstdout: false\ncheckpoint: { signingKey: { fromFile: checkpoint.key } }\nsinks:\n  - { type: syslog, host: 127.0.0.1, port: ${syslog.port}, ca: { fromFile: syslog-ca.pem }, buffer: { dir: syslog-buffer } }`))
      const gw = await serve(file)
      const { url } = { url: `http://127.0.0.1:${port}` }
      for (let i = 0; i < 25; i++) expect(await fetch(`${url}/mcp/alpha`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } }).then((r) => r.status)).toBe(401)
      await gw.close()
      // 25 requests and the final checkpoint.
      await waitFor(async () => syslog.lines().length >= 26, 20_000)
      const received = syslog.lines()
      expect(received).toHaveLength(26)
      const r = verifyAudit([{ name: 'rsyslog', text: `${received.join('\n')}\n` }], { key: keys.publicKey })
      expect(r.findings).toEqual([])
      expect(r).toMatchObject({ ok: true, records: 26, checkpoints: 1 })
    } finally {
      await syslog.close()
    }
  }, 90_000)
})

describe('HTTP sink down under load, gateway killed mid-outage', () => {
  it('every record arrives exactly once, in order per chain, after the sink is back', async () => {
    const sinkPort = await freePort()
    const received: string[] = []
    const handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      let body = ''
      req.on('data', (d: Buffer) => (body += d.toString()))
      req.on('end', () => {
        received.push(...body.split('\n').filter(Boolean))
        res.end('{}')
      })
    }
    let sink: Server = createServer(handler)
    const up = () => new Promise<void>((r) => sink.listen(sinkPort, '127.0.0.1', () => r()))
    const down = () => new Promise<void>((r) => {
      sink.close(() => r())
      sink.closeAllConnections()
    })
    await up()

    const [port, adminPort] = [await freePort(), await freePort()]
    const file = join(dir, 'http.yaml')
    const bufferDir = join(dir, 'http-buffer')
    writeFileSync(file, config(port, adminPort, `replica: gw-http\nstdout: false\ncheckpoint: { signingKey: { fromFile: checkpoint.key }, interval: 1s }\nsinks:\n  - { type: http, url: http://127.0.0.1:${sinkPort}/ingest, format: json-lines, batch: 50, flushInterval: 100ms, timeout: 2s, buffer: { dir: http-buffer, maxSize: 8mb, onFull: block } }`))
    let gw = await startCli(file, adminPort)

    // Load: 4 callers in a loop; `paused` lets the test kill the gateway with no request in flight,
    // so every answered request's record was written before the kill.
    let answered = 0
    let inflight = 0
    let paused = false
    let stop = false
    const workers = Array.from({ length: 4 }, async () => {
      while (!stop) {
        if (paused) {
          await new Promise((r) => setTimeout(r, 20))
          continue
        }
        inflight++
        const status = await call(port).catch(() => undefined)
        inflight--
        if (status === 401) answered++
        else await new Promise((r) => setTimeout(r, 50))
      }
    })
    const settle = async () => {
      paused = true
      await waitFor(async () => inflight === 0)
      await new Promise((r) => setTimeout(r, 300))
    }
    const mcpRequests = () => received.filter((l) => l.includes('"msg":"mcp.request"'))
    try {
      await waitFor(async () => mcpRequests().length >= 20, 30_000)
      await down()
      await new Promise((r) => setTimeout(r, 1500))
      await settle()
      gw.child.kill('SIGKILL')
      await gw.exited
      // Precondition: the outage left records only on disk.
      const left = new DiskBuffer(bufferDir, 8 * 1024 * 1024)
      const pending = left.peek(1_000_000).lines.length
      left.close()
      expect(pending).toBeGreaterThan(0)

      gw = await startCli(file, adminPort)
      paused = false
      await new Promise((r) => setTimeout(r, 2000))
      await up()
      await new Promise((r) => setTimeout(r, 1000))
      await settle()
      stop = true
      await Promise.all(workers)
      gw.child.kill('SIGTERM')
      expect(await gw.exited).toBe(0)
      await waitFor(async () => mcpRequests().length >= answered && received.at(-1)!.includes('"final":true'), 30_000)
    } finally {
      stop = true
      paused = false
      if (gw.child.exitCode === null) gw.child.kill('SIGKILL')
      await down().catch(() => undefined)
    }

    expect(mcpRequests()).toHaveLength(answered)
    // Per chain: seq 0, 1, 2, … in arrival order, none twice, none missing.
    const chains = new Map<string, number[]>()
    for (const l of received) {
      const c = (JSON.parse(l) as { chain: { id: string; seq: number } }).chain
      chains.set(c.id, [...(chains.get(c.id) ?? []), c.seq])
    }
    expect(chains.size).toBe(2)
    for (const seqs of chains.values()) expect(seqs).toEqual(seqs.map((_, i) => i))
    const r = verifyAudit([{ name: 'sink', text: `${received.join('\n')}\n` }], { key: keys.publicKey })
    // The killed process's chain has no final checkpoint: a warning, not a failure.
    expect(r.findings.filter((f) => !f.warning)).toEqual([])
    expect(r.ok).toBe(true)
  }, 150_000)
})
