import { Writable } from 'node:stream'
import fc from 'fast-check'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import type { AuditRecord } from '../../../gateway/observability/audit.js'
import { auditLogger } from '../../../gateway/observability/audit.js'
import { auditWriter } from '../../../gateway/observability/audit-line.js'
import { createLogger } from '../../../gateway/observability/logger.js'

function sink(): { stream: Writable; chunks: string[] } {
  const chunks: string[] = []
  const stream = new Writable({
    decodeStrings: false,
    write(chunk, _enc, done) {
      chunks.push(String(chunk))
      done()
    },
  })
  return { stream, chunks }
}

const withoutTime = (line: string) => line.replace(/^(\{"level":30,"time":)"[^"]+"/, '$1"T"')

// Any UTF-16 code unit, lone surrogates and control characters included, plus the usual suspects.
const text = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 120 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('', '"', '\\', '\u2028', '\u0000', '\ud800', 'a\udc00b', '</script>', 'é', '😀', 'x'.repeat(101) + '"'),
)
const number = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(Number.MAX_SAFE_INTEGER + 2, 1e21, -0, 5e-324, Number.NaN, Number.POSITIVE_INFINITY, -1e308))
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined })
const record: fc.Arbitrary<AuditRecord> = fc.record({
  requestId: text,
  route: opt(text),
  httpMethod: text,
  status: number,
  reason: text,
  code: opt(text),
  principal: opt(fc.dictionary(text, fc.jsonValue())),
  mcp: opt(fc.record({ method: opt(text), target: opt(text), rpcId: opt(fc.oneof(text, number)), protocolVersion: opt(text), session: opt(fc.constant(true)), batch: opt(fc.constant(true)) })),
  decision: opt(fc.record({ effect: text, policy: opt(text), rule: opt(text), reason: text, argumentsDigest: opt(text), version: opt(text) })) as fc.Arbitrary<AuditRecord['decision']>,
  approval: opt(text),
  rateLimit: opt(fc.record({ limit: text, outcome: text })),
  streaming: fc.boolean(),
  credential: opt(fc.record({ strategy: text, subject: opt(text) })) as fc.Arbitrary<AuditRecord['credential']>,
  http: opt(fc.record({ path: text })),
  traceId: opt(text),
  causedBy: opt(text),
  latencyMs: number,
})

describe('audit line serialiser', () => {
  it('writes the same bytes as pino for any record, request id and message (time aside)', () => {
    fc.assert(
      fc.property(record, text, fc.oneof(text, fc.constant('mcp.request')), (audit, reqId, msg) => {
        const viaPino = sink()
        const direct = sink()
        auditLogger(createLogger('info', viaPino.stream)).info({ reqId, audit }, msg)
        const write = auditWriter(auditLogger(createLogger('info', direct.stream)))
        expect(write).toBeDefined()
        write!(reqId, audit, msg)
        expect(direct.chunks).toHaveLength(1)
        expect(withoutTime(direct.chunks[0]!)).toBe(withoutTime(viaPino.chunks[0]!))
      }),
      { numRuns: 3000 },
    )
  })

  it('is not used where the logger does something it does not reproduce', () => {
    const out = sink()
    const base = createLogger('info', out.stream)
    expect(auditWriter(auditLogger(base))).toBeDefined()
    expect(auditWriter(pino({ mixin: () => ({ extra: 1 }) }, out.stream))).toBeUndefined()
    expect(auditWriter(pino({ nestedKey: 'payload' }, out.stream))).toBeUndefined()
    expect(auditWriter(pino({ messageKey: 'message' }, out.stream))).toBeUndefined()
    expect(auditWriter(pino({ formatters: { level: (label) => ({ level: label }) } }, out.stream))).toBeUndefined()
    expect(auditWriter(pino({ msgPrefix: '[x] ' }, out.stream))).toBeUndefined()
    expect(auditWriter(pino({ hooks: { streamWrite: (s) => s } }, out.stream))).toBeUndefined()
    expect(auditWriter(pino({}, pino.multistream([{ stream: out.stream }])))).toBeUndefined()
  })

  it('writes the child bindings of the logger it is given', () => {
    const a = sink()
    const b = sink()
    const audit = { requestId: 'r', route: 'x', httpMethod: 'POST', status: 200, reason: 'ok', streaming: false, latencyMs: 1 } as AuditRecord
    auditLogger(createLogger('info', a.stream)).child({ replica: 'é"1' }).info({ reqId: 'r', audit }, 'mcp.request')
    auditWriter(auditLogger(createLogger('info', b.stream)).child({ replica: 'é"1' }))!('r', audit, 'mcp.request')
    expect(withoutTime(b.chunks[0]!)).toBe(withoutTime(a.chunks[0]!))
    expect(b.chunks[0]).toContain('"replica":"é\\"1"')
  })
})
