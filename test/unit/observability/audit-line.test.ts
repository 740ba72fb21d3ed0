import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { newContext } from '../../../gateway/pipeline/context.js'
import { auditRecord, writeAudit } from '../../../gateway/pipeline/audit.js'
import { AuditChain } from '../../../gateway/observability/audit-chain.js'
import { createLogger } from '../../../gateway/observability/logger.js'

function sink(): { stream: Writable; lines: string[] } {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      done()
    },
  })
  return { stream, lines }
}

// A request as the onResponse hook sees it, with every audited field set, and strings that need escaping.
function exchange() {
  const gw = newContext({ name: 'rou"te\u2028' } as never)
  gw.principal = {
    tokenKind: 'jwt', issuerName: 'as', issuer: 'https://as.example/', subject: 'ü\\ser\n', clientId: 'agent', scopes: new Set(['a']),
    audience: ['x'], actor: 'bot', delegationChain: ['bot', 'human'], userPresent: true, expiresAt: 1, tokenId: 'jti-1',
    authorizationDetails: undefined, confirmation: undefined,
  } as never
  gw.mcp = { method: 'tools/call', target: 'echo', rpcId: 7, protocolVersion: '2025-06-18', sessionId: 's', body: { batch: false } } as never
  gw.decision = { effect: 'allow', policy: 'p', rule: 'r', reason: 'ok', argumentsDigest: 'sha256:ab' } as never
  gw.credential = { strategy: 'token-exchange', subject: 'jti-1' } as never
  gw.error = { reason: 'denied', code: 'GW_X' } as never
  const request = { id: 'req-1', method: 'POST', headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', authorization: 'Bearer secret-token' }, gw }
  const reply = { statusCode: 403, elapsedTime: 1.23456 }
  return { request: request as never, reply: reply as never }
}

const withoutTime = (line: string) => line.replace(/"time":"[^"]+"/, '"time":"T"')
const withoutChain = (line: string) => line.replace(/,"chain":\{[^}]*\}/, '')

function chained(logger: ReturnType<typeof createLogger>, out: { stream: Writable }): AuditChain {
  return new AuditChain({ replica: 'r', bindings: logger.bindings(), out: (l) => out.stream.write(`${l}\n`) })
}

describe('audit line without the redaction pass', () => {
  it('is byte for byte the line request.log.info({ audit }) wrote (keys, order, escaping), time aside', () => {
    const before = sink()
    const after = sink()
    const { request, reply } = exchange()
    // What Fastify's request.log is: a child of the gateway logger bound to the request id.
    createLogger('info', before.stream).child({ reqId: 'req-1' }).info({ audit: auditRecord(request, reply) }, 'mcp.request')
    const logger = createLogger('info', after.stream)
    writeAudit(logger, chained(logger, after), request, reply, 'mcp.request')
    expect(before.lines).toHaveLength(1)
    expect(after.lines).toHaveLength(1)
    expect(withoutChain(withoutTime(after.lines[0]!))).toBe(withoutTime(before.lines[0]!))
    const parsed = JSON.parse(after.lines[0]!) as Record<string, unknown>
    expect(Object.keys(parsed)).toEqual(['level', 'time', 'service', 'reqId', 'audit', 'chain', 'msg'])
    expect(after.lines[0]).not.toContain('secret-token')
  })

  it('follows the level: nothing is written below info', () => {
    const out = sink()
    const { request, reply } = exchange()
    const logger = createLogger('warn', out.stream)
    writeAudit(logger, chained(logger, out), request, reply, 'mcp.request')
    expect(out.lines).toEqual([])
  })

  it('leaves redaction on for every other line of the gateway logger', () => {
    const out = sink()
    const logger = createLogger('info', out.stream)
    chained(logger, out)
    logger.info({ exchange: { access_token: 'leak-me' } }, 'x')
    expect(out.lines[0]).not.toContain('leak-me')
    expect(out.lines[0]).toContain('[redacted]')
  })
})
