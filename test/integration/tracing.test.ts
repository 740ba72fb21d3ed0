/**
 * OpenTelemetry tracing end to end (issue 21 part 1): a test OTLP/HTTP-protobuf receiver decoding
 * with the official protobuf root; spans, parentage, trace continuation, upstream traceparent, no secrets.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import { afterAll, describe, expect, it } from 'vitest'
import { INIT, MCP_HEADERS, startStack } from '../helpers/stack.js'

const require = createRequire(import.meta.url)
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const root: any = require('otlp-proto-root/build/src/generated/root.js')
const Req = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest

interface Span { traceId: string; spanId: string; parentSpanId: string; name: string; kind: number; attributes: { key: string; value: Record<string, unknown> }[] }
const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('hex') : '')

async function receiver(): Promise<{ url: string; spans: Span[]; requests: number; close(): Promise<void>; server: Server }> {
  const spans: Span[] = []
  const r = { url: '', spans, requests: 0, server: undefined as unknown as Server, close: async () => {} }
  r.server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      r.requests++
      const msg = Req.decode(Buffer.concat(chunks))
      for (const rs of msg.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push({ ...s, traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId), attributes: s.attributes ?? [] })
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  await new Promise<void>((ok) => r.server.listen(0, '127.0.0.1', ok))
  r.url = `http://127.0.0.1:${(r.server.address() as AddressInfo).port}`
  r.close = () => new Promise<void>((ok) => r.server.close(() => ok()))
  return r
}

describe('tracing', () => {
  const closers: (() => Promise<void>)[] = []
  afterAll(async () => { for (const c of closers.reverse()) await c() })

  it('one trace per request, SERVER parent of children, client trace id continued, upstream gets the CLIENT span, no secrets', async () => {
    const rx = await receiver()
    closers.push(rx.close)
    const stack = await startStack({ deps: { tracing: { enabled: true, endpoint: rx.url, protocol: 'http/protobuf', principal: ['client', 'issuer'], flushMs: 50 } as never } })
    let closed = false
    closers.push(async () => { if (!closed) await stack.close() })
    const token = await stack.token()
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
    const r = await fetch(`${stack.url}/mcp/alpha`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, traceparent: `00-${traceId}-00f067aa0ba902b7-01` }, body: INIT })
    expect(r.status).toBe(200)
    await r.text()
    await stack.close()
    closed = true
    const spans = rx.spans
    expect(spans.length).toBeGreaterThan(0)
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([traceId]))
    const server = spans.filter((s) => s.kind === 2)
    expect(server).toHaveLength(1)
    expect(server[0]!.parentSpanId).toBe('00f067aa0ba902b7')
    const byId = new Map(spans.map((s) => [s.spanId, s]))
    for (const s of spans) if (s !== server[0]) expect(byId.has(s.parentSpanId) || s.parentSpanId === server[0]!.spanId).toBe(true)
    const upstreamClient = spans.filter((s) => s.kind === 3 && s.parentSpanId === server[0]!.spanId)
    expect(upstreamClient.length).toBeGreaterThan(0)
    const tp = stack.alpha.requests.map((q) => q.headers.traceparent).filter(Boolean) as string[]
    expect(tp.length).toBeGreaterThan(0)
    const upSpanId = tp[0]!.split('-')[2]
    expect(upstreamClient.map((s) => s.spanId)).toContain(upSpanId)
    expect(tp[0]!.split('-')[1]).toBe(traceId)
    const all = JSON.stringify(spans.map((s) => s.attributes))
    expect(all).not.toContain(token)
    expect(all).not.toContain(token.split('.')[2]!)
  })

  it('with tracing off (the default) nothing is loaded and nothing is exported', async () => {
    const stack = await startStack()
    try {
      expect(stack.gateway.tracing).toBeUndefined()
    } finally {
      await stack.close()
    }
  })
})
