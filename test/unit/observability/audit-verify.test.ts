import { createHash, generateKeyPairSync, sign } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { AuditChain, checkpointPayload } from '../../../gateway/observability/audit-chain.js'
import { verifyAudit, type Finding } from '../../../gateway/observability/audit-verify.js'

const { privateKey, publicKey } = generateKeyPairSync('ed25519')

/** A log as a gateway writes it: records, a checkpoint every 4, a final checkpoint. */
function log(records = 10, replica = 'pod-a'): string[] {
  const lines: string[] = []
  const chain = new AuditChain({ replica, bindings: { service: 'mcp-warden' }, signingKey: privateKey, out: (l) => lines.push(l) })
  for (let i = 0; i < records; i++) {
    chain.append(`"reqId":"r${i}","audit":{"route":"demo","status":200,"reason":"ok"}`, 'mcp.request')
    if (i % 4 === 3) chain.checkpoint()
  }
  chain.checkpoint(true)
  return lines
}

const file = (lines: string[], name = 'audit.log') => ({ name, text: `${lines.join('\n')}\n` })
const errors = (lines: string[]) => verifyAudit([file(lines)], { key: publicKey }).findings.filter((f) => !f.warning)
const only = (fs: Finding[]) => {
  expect(fs).toHaveLength(1)
  return fs[0]!
}

describe('audit verify', () => {
  it('passes a clean log, with other log lines between the records, and checks every checkpoint', () => {
    const lines = log()
    lines.splice(3, 0, '{"level":30,"msg":"some other log line"}')
    const r = verifyAudit([file(lines)], { key: publicKey })
    expect(r.findings).toEqual([])
    expect(r).toMatchObject({ ok: true, records: 13, chains: 1, checkpoints: 3 })
  })

  it('verifies rotated files as one chain, in the order given', () => {
    const lines = log()
    expect(verifyAudit([file(lines.slice(0, 5), 'audit.log.1'), file(lines.slice(5), 'audit.log')], { key: publicKey }).ok).toBe(true)
    const swapped = verifyAudit([file(lines.slice(5), 'audit.log'), file(lines.slice(0, 5), 'audit.log.1')], { key: publicKey })
    expect(swapped.ok).toBe(false)
    expect(swapped.findings[0]).toMatchObject({ kind: 'reordered', at: 'audit.log.1:1' })
  })

  it('catches an edited record at its line', () => {
    const lines = log()
    lines[2] = lines[2]!.replace('"status":200', '"status":403')
    expect(only(errors(lines))).toMatchObject({ kind: 'changed', at: 'audit.log:3' })
  })

  it('catches a deleted record, between which lines', () => {
    const lines = log()
    lines.splice(6, 1)
    expect(only(errors(lines))).toMatchObject({ kind: 'removed', at: 'audit.log:7', message: expect.stringContaining('seq 6 missing between audit.log:6 and audit.log:7') })
  })

  it('catches the first record deleted, unless a truncated start is allowed (rotation deleted the oldest file)', () => {
    const lines = log().slice(1)
    expect(only(errors(lines))).toMatchObject({ kind: 'removed', at: 'audit.log:1' })
    expect(verifyAudit([file(lines)], { key: publicKey, allowTruncatedStart: true }).ok).toBe(true)
  })

  it('catches two records swapped', () => {
    const lines = log()
    ;[lines[1], lines[2]] = [lines[2]!, lines[1]!]
    expect(only(errors(lines))).toMatchObject({ kind: 'reordered', at: 'audit.log:3', message: expect.stringContaining('seq 1 comes after seq 2') })
  })

  it('catches an inserted copy, an inserted record with a taken seq, and an audit line without chain', () => {
    const base = log()
    const copy = [...base]
    copy.splice(5, 0, base[2]!)
    expect(only(errors(copy))).toMatchObject({ kind: 'inserted', at: 'audit.log:6', message: expect.stringContaining('copy of audit.log:3') })
    const forged = [...base]
    forged.splice(5, 0, base[4]!.replace('"reqId":"r3"', '"reqId":"evil"'))
    expect(only(errors(forged))).toMatchObject({ kind: 'inserted', at: 'audit.log:6' })
    const bare = [...base]
    bare.splice(5, 0, '{"level":30,"reqId":"x","audit":{"status":200},"msg":"mcp.request"}')
    expect(only(errors(bare))).toMatchObject({ kind: 'inserted', at: 'audit.log:6' })
  })

  it('catches a record edited and the whole chain after it rehashed: the checkpoints no longer verify', () => {
    const lines = log()
    const h = (l: string) => createHash('sha256').update(l).digest('hex')
    lines[1] = lines[1]!.replace('"status":200', '"status":500')
    for (let i = 2; i < lines.length; i++) lines[i] = lines[i]!.replace(/"prev":"[0-9a-f]{64}"/, `"prev":"${h(lines[i - 1]!)}"`)
    const fs = errors(lines)
    expect(fs.map((f) => f.kind)).toEqual(['forged-checkpoint', 'forged-checkpoint', 'forged-checkpoint'])
    expect(fs[0]!.at).toBe('audit.log:5')
  })

  it('catches a checkpoint signed with another key, and says which key signed it', () => {
    const lines = log()
    const other = generateKeyPairSync('ed25519').privateKey
    const cp = JSON.parse(lines[4]!) as { chain: { replica: string; id: string; seq: number; prev: string } }
    const sig = sign(null, checkpointPayload(cp.chain.replica, cp.chain.id, cp.chain.seq, cp.chain.prev), other).toString('base64url')
    lines[4] = lines[4]!.replace(/"sig":"[^"]+"/, `"sig":"${sig}"`)
    // The forged checkpoint's own bytes changed too, so the next record no longer links to it.
    expect(errors(lines).map((f) => [f.kind, f.at])).toEqual([['changed', 'audit.log:5'], ['forged-checkpoint', 'audit.log:5']])
  })

  it('warns, without failing, about a tail after the last checkpoint (a replica killed) and about unchecked signatures', () => {
    const lines = log().slice(0, -1)
    const r = verifyAudit([file(lines)], { key: publicKey })
    expect(r.ok).toBe(true)
    expect(r.findings).toEqual([expect.objectContaining({ kind: 'unsigned-tail', warning: true, message: expect.stringContaining('no final checkpoint') })])
    expect(verifyAudit([file(log())]).findings.every((f) => f.kind === 'unverified-checkpoint' && f.warning)).toBe(true)
  })

  it('keeps the chains of several replicas apart in one file', () => {
    const a = log(5, 'pod-a')
    const b = log(5, 'pod-b')
    const mixed = a.flatMap((l, i) => [l, b[i]!]).concat(b.slice(a.length))
    expect(verifyAudit([file(mixed)], { key: publicKey })).toMatchObject({ ok: true, chains: 2 })
    mixed.splice(3, 1)
    expect(only(errors(mixed))).toMatchObject({ kind: 'removed' })
  })
})
