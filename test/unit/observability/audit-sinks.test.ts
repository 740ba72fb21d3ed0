import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { createMetrics } from '../../../gateway/observability/metrics.js'
import { DiskBuffer } from '../../../gateway/observability/sinks/buffer.js'
import { FileSink } from '../../../gateway/observability/sinks/file.js'
import { body } from '../../../gateway/observability/sinks/http.js'
import { QueuedSink } from '../../../gateway/observability/sinks/queued.js'
import { frame } from '../../../gateway/observability/sinks/syslog.js'
import type { Sender } from '../../../gateway/observability/sinks/sink.js'
import { CONFIG_HEAD, configProblems } from '../../helpers/config.js'

const tmp = () => mkdtempSync(join(tmpdir(), 'mcpw-sink-'))
const quiet = pino({ level: 'silent' })
const line = (seq: number) => `{"level":30,"time":"2026-12-07T10:00:00.000Z","reqId":"r${seq}","audit":{"status":200},"chain":{"replica":"a","id":"c1","seq":${seq},"prev":"${'0'.repeat(64)}"},"msg":"mcp.request"}`
const count = async (m: ReturnType<typeof createMetrics>, outcome: string) => (await m.auditRecords.get()).values.filter((v) => v.labels.outcome === outcome).reduce((a, v) => a + v.value, 0)

describe('disk buffer', () => {
  it('keeps undelivered lines across a reopen (restart), in order, and forgets delivered ones', () => {
    const dir = tmp()
    const b = new DiskBuffer(dir, 1024 * 1024)
    for (let i = 0; i < 10; i++) b.append(line(i))
    const first = b.peek(4)
    expect(first.lines).toEqual([0, 1, 2, 3].map(line))
    b.commit(first.next)
    b.close()
    const again = new DiskBuffer(dir, 1024 * 1024)
    expect(again.peek(100).lines).toEqual([4, 5, 6, 7, 8, 9].map(line))
    expect(again.size).toBe(6 * (line(4).length + 1))
    again.close()
  })

  it('spans segments, deletes delivered ones, and drops half a line a kill -9 left behind', () => {
    const dir = tmp()
    const b = new DiskBuffer(dir, 64 * 1024)
    for (let i = 0; i < 400; i++) b.append(line(i))
    expect(readdirSync(dir).filter((f) => f.startsWith('segment-')).length).toBeGreaterThan(1)
    const all = b.peek(1000)
    expect(all.lines).toHaveLength(400)
    b.commit(all.next)
    expect(readdirSync(dir).filter((f) => f.startsWith('segment-'))).toHaveLength(1)
    b.append(line(400))
    b.close()
    const seg = readdirSync(dir).find((f) => f.startsWith('segment-'))!
    appendFileSync(join(dir, seg), '{"level":30,"ti')
    const c = new DiskBuffer(dir, 64 * 1024)
    c.append(line(401))
    expect(c.peek(10).lines).toEqual([line(400), line(401)])
    c.close()
  })
})

/** A sender that fails while `down` and records what it accepted. */
function sender(): Sender & { down: boolean; got: string[] } {
  const s = {
    down: false,
    got: [] as string[],
    async send(lines: readonly string[]) {
      if (s.down) throw new Error('ECONNREFUSED')
      s.got.push(...lines)
    },
    close() {},
  }
  return s
}

describe('queued sink', () => {
  it('block: asks for requests to be refused when full, keeps records of requests in flight, frees after delivery', async () => {
    const s = sender()
    s.down = true
    const metrics = createMetrics()
    const q = new QueuedSink({ name: 'http[0]', dir: tmp(), maxBytes: 10 * (line(0).length + 1), onFull: 'block', batch: 100, flushIntervalMs: 1, sender: s, metrics, logger: quiet })
    for (let i = 0; i < 10; i++) q.write(line(i))
    expect(q.blocking).toBe(true)
    q.write(line(10)) // a request that was in flight: into the reserve
    expect(await count(metrics, 'lost')).toBe(0)
    s.down = false
    await q.close(5000)
    expect(s.got).toEqual(Array.from({ length: 11 }, (_, i) => line(i)))
    expect(q.blocking).toBe(false)
    expect(await count(metrics, 'sent')).toBe(11)
  })

  it('drop: counts what does not fit, and replays a persisted buffer after a restart', async () => {
    const dir = tmp()
    const s = sender()
    s.down = true
    const metrics = createMetrics()
    const q = new QueuedSink({ name: 'http[0]', dir, maxBytes: 3 * (line(0).length + 1), onFull: 'drop', batch: 100, flushIntervalMs: 1, sender: s, metrics, logger: quiet })
    for (let i = 0; i < 5; i++) q.write(line(i))
    expect(q.blocking).toBe(false)
    expect(await count(metrics, 'lost')).toBe(2)
    await q.close(50)
    const s2 = sender()
    const q2 = new QueuedSink({ name: 'http[0]', dir, maxBytes: 1024 * 1024, onFull: 'drop', batch: 100, flushIntervalMs: 1, sender: s2, metrics: createMetrics(), logger: quiet })
    await q2.close(5000)
    expect(s2.got).toEqual([0, 1, 2].map(line))
  })
})

describe('sink shapes', () => {
  it('Splunk HEC keeps the line as the raw event; Elasticsearch bulk creates with the chain position as _id', () => {
    const hec = JSON.parse(body('splunk-hec', [line(3)], { index: 'audit', replica: 'pod-a' })) as Record<string, unknown>
    expect(hec).toEqual({ time: Date.parse('2026-12-07T10:00:00.000Z') / 1000, host: 'pod-a', source: 'mcp-warden', sourcetype: '_json', index: 'audit', event: line(3) })
    expect(body('elasticsearch-bulk', [line(3)], { index: 'mcpw', replica: 'pod-a' })).toBe(`{"create":{"_index":"mcpw","_id":"c1-3"}}\n${line(3)}\n`)
    expect(body('json-lines', [line(1), line(2)], { replica: 'x' })).toBe(`${line(1)}\n${line(2)}\n`)
  })

  it('syslog frames are octet-counted (bytes, not characters) RFC 5424 messages', () => {
    const l = line(1).replace('r1', 'rü')
    const f = frame(l, { facility: 13, replica: 'pod a', appName: 'mcp-warden', pid: 7 }).toString('utf8')
    const sp = f.indexOf(' ')
    const msg = f.slice(sp + 1)
    expect(Number(f.slice(0, sp))).toBe(Buffer.byteLength(msg))
    expect(msg).toBe(`<110>1 2026-12-07T10:00:00.000Z pod_a mcp-warden 7 audit - ${l}`)
  })
})

describe('file sink', () => {
  it('rotates by size and keeps N files', () => {
    const dir = tmp()
    const path = join(dir, 'audit.log')
    const f = new FileSink({ name: 'file[0]', path, maxBytes: 3 * (line(0).length + 1), intervalMs: undefined, keep: 2, metrics: createMetrics(), logger: quiet })
    for (let i = 0; i < 10; i++) f.write(line(i))
    void f.close()
    expect(readFileSync(path, 'utf8')).toBe(`${line(9)}\n`)
    expect(readFileSync(`${path}.1`, 'utf8')).toBe([6, 7, 8].map((i) => `${line(i)}\n`).join(''))
    expect(existsSync(`${path}.2`)).toBe(true)
    expect(existsSync(`${path}.3`)).toBe(false)
  })
})

describe('audit config', () => {
  const audit = (yaml: string) => configProblems(`${CONFIG_HEAD}routes:\n  - { name: alpha, path: /mcp/alpha, upstream: { url: "http://127.0.0.1:3000/mcp" }, issuers: [corp] }\naudit:\n${yaml}`, { KEY: 'not a key' }).map((p) => `${p.line}: ${p.message}`)
  it('positions a bad signing key, a plain-http remote sink, a missing HEC token, a shared buffer dir, rotate without a trigger', () => {
    expect(audit('  checkpoint: { signingKey: { fromEnv: KEY } }\n')).toEqual(['12: signingKey is not a PEM (PKCS#8) or JWK private key'])
    const sinks = audit(`  sinks:
    - { type: http, url: http://siem.example/ingest, buffer: { dir: b1 } }
    - { type: http, url: https://siem.example/hec, format: splunk-hec, buffer: { dir: b1 } }
    - { type: file, path: a.log, rotate: { keep: 3 } }
`)
    expect(sinks).toEqual([
      expect.stringMatching(/^13: an audit http sink must be https/),
      expect.stringMatching(/^14: splunk-hec needs token/),
      expect.stringMatching(/^14: audit.sinks\[0\] already buffers in b1/),
      expect.stringMatching(/^15: rotate needs maxSize, interval or both/),
    ])
  })
})
