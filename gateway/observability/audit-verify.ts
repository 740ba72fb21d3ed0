/**
 * `audit verify`: checks the hash chains of audit lines read from one or more files (in the order
 * given, so rotated files verify as one chain) and the signatures of their checkpoints. Pure: the
 * caller reads the files; every finding names the line (file:line) it is about.
 *
 * What it can prove: within a chain, a record whose bytes changed, a gap (removed records), a
 * record out of its place (reordered), a record that does not belong (inserted: a duplicate
 * sequence number, or an audit line without chain fields), and checkpoints whose signature does
 * not verify. What it cannot: records removed after the last checkpoint, or a whole chain removed
 * (compare the replica's chain ids with the gateway.started log lines or the SIEM).
 */
import { verify, type KeyObject } from 'node:crypto'
import { keyId } from './audit-key.js'
import { checkpointPayload, GENESIS, lineHash } from './audit-chain.js'

export interface InputFile {
  name: string
  text: string
}

export interface Finding {
  kind: 'changed' | 'removed' | 'reordered' | 'inserted' | 'forged-checkpoint' | 'unverified-checkpoint' | 'malformed' | 'truncated-start' | 'unsigned-tail'
  at: string
  message: string
  /** Warnings do not fail verification (e.g. a tail after the last checkpoint, a crashed replica). */
  warning?: boolean
}

export interface VerifyResult {
  ok: boolean
  records: number
  chains: number
  checkpoints: number
  findings: Finding[]
}

interface Rec {
  at: string
  order: number
  hash: string
  seq: number
  prev: string
  checkpoint: { kid?: string; sig?: string; final?: boolean } | undefined
}

export interface VerifyOptions {
  key?: KeyObject | undefined
  /** Rotation with `keep` deletes the oldest files: accept a chain that does not start at seq 0. */
  allowTruncatedStart?: boolean
}

export function verifyAudit(files: readonly InputFile[], options: VerifyOptions = {}): VerifyResult {
  const findings: Finding[] = []
  const chains = new Map<string, { replica: string; id: string; recs: Rec[] }>()
  let order = 0
  let records = 0
  let checkpoints = 0
  for (const f of files) {
    const lines = f.text.split('\n')
    if (lines.at(-1) === '') lines.pop()
    lines.forEach((line, i) => {
      const at = `${f.name}:${i + 1}`
      let o: { audit?: unknown; checkpoint?: Rec['checkpoint']; chain?: { replica?: unknown; id?: unknown; seq?: unknown; prev?: unknown } }
      try {
        o = JSON.parse(line) as typeof o
      } catch {
        // Other log lines share stdout with audit lines; only JSON can be either.
        if (line.trim() !== '') findings.push({ kind: 'malformed', at, message: 'not a JSON line (an edited or inserted line?)' })
        return
      }
      if (o === null || typeof o !== 'object') return
      const c = o.chain
      if (c === undefined) {
        if (o.audit !== undefined || o.checkpoint !== undefined) findings.push({ kind: 'inserted', at, message: 'audit record without chain fields: not written by a chained gateway' })
        return
      }
      if (typeof c.replica !== 'string' || typeof c.id !== 'string' || typeof c.seq !== 'number' || !Number.isInteger(c.seq) || typeof c.prev !== 'string' || !/^[0-9a-f]{64}$/.test(c.prev)) {
        findings.push({ kind: 'malformed', at, message: 'chain fields malformed' })
        return
      }
      records++
      const key = `${c.replica}\u0000${c.id}`
      let chain = chains.get(key)
      if (!chain) chains.set(key, (chain = { replica: c.replica, id: c.id, recs: [] }))
      chain.recs.push({ at, order: order++, hash: lineHash(line), seq: c.seq, prev: c.prev, checkpoint: o.checkpoint })
    })
  }

  const kid = options.key && keyId(options.key)
  for (const { replica, id, recs } of chains.values()) {
    const name = `chain ${replica}/${id}`
    // Inserted: a second record claiming a sequence number. The one that links to its predecessor stays.
    const bySeq = new Map<number, Rec>()
    const extra: Rec[] = []
    for (const r of recs) {
      const first = bySeq.get(r.seq)
      if (!first) bySeq.set(r.seq, r)
      else extra.push(r)
    }
    for (const r of extra) {
      const first = bySeq.get(r.seq)!
      const pred = bySeq.get(r.seq - 1)
      // Keep whichever of the two the chain links to (the next record's prev names it).
      const next = bySeq.get(r.seq + 1)
      if (next && next.prev === r.hash && next.prev !== first.hash) {
        bySeq.set(r.seq, r)
        findings.push({ kind: 'inserted', at: first.at, message: `${name}: seq ${r.seq} appears twice; this one is not linked (the genuine one is at ${r.at})` })
      } else if (r.hash === first.hash) findings.push({ kind: 'inserted', at: r.at, message: `${name}: seq ${r.seq} duplicated (copy of ${first.at})` })
      else findings.push({ kind: 'inserted', at: r.at, message: `${name}: seq ${r.seq} already at ${first.at}${pred && r.prev === pred.hash ? '' : '; not linked to its predecessor'}` })
    }
    const kept = [...bySeq.values()]
    // Reordered: file order must follow sequence order.
    let maxSeq = -1
    let maxAt = ''
    for (const r of kept.sort((a, b) => a.order - b.order)) {
      if (r.seq < maxSeq) findings.push({ kind: 'reordered', at: r.at, message: `${name}: seq ${r.seq} comes after seq ${maxSeq} (${maxAt})` })
      if (r.seq > maxSeq) {
        maxSeq = r.seq
        maxAt = r.at
      }
    }
    const sorted = kept.sort((a, b) => a.seq - b.seq)
    const head = sorted[0]!
    if (head.seq !== 0) {
      findings.push({ kind: options.allowTruncatedStart ? 'truncated-start' : 'removed', at: head.at, message: `${name}: starts at seq ${head.seq}; records 0..${head.seq - 1} are not in the files${options.allowTruncatedStart ? ' (accepted: --allow-truncated-start)' : ''}`, ...(options.allowTruncatedStart ? { warning: true } : {}) })
    } else if (head.prev !== GENESIS) findings.push({ kind: 'changed', at: head.at, message: `${name}: the first record's prev is not the genesis hash` })
    for (let i = 1; i < sorted.length; i++) {
      const a = sorted[i - 1]!
      const b = sorted[i]!
      if (b.seq !== a.seq + 1) findings.push({ kind: 'removed', at: b.at, message: `${name}: seq ${a.seq + 1}${b.seq - 1 > a.seq + 1 ? `..${b.seq - 1}` : ''} missing between ${a.at} and ${b.at}` })
      else if (b.prev !== a.hash) findings.push({ kind: 'changed', at: a.at, message: `${name}: record seq ${a.seq} changed (the next record, ${b.at}, holds the hash of other bytes)` })
    }
    let lastSigned = -1
    for (const r of sorted) {
      if (!r.checkpoint) continue
      checkpoints++
      if (!options.key) {
        findings.push({ kind: 'unverified-checkpoint', at: r.at, message: `${name}: checkpoint signature not checked (no --key)`, warning: true })
        lastSigned = r.seq
        continue
      }
      const sig = typeof r.checkpoint.sig === 'string' ? Buffer.from(r.checkpoint.sig, 'base64url') : Buffer.alloc(0)
      if (verify(null, checkpointPayload(replica, id, r.seq, r.prev), options.key, sig)) lastSigned = r.seq
      else findings.push({ kind: 'forged-checkpoint', at: r.at, message: `${name}: checkpoint signature does not verify${r.checkpoint.kid !== kid ? ` (signed with key ${String(r.checkpoint.kid)}, given key ${kid})` : ''}` })
    }
    const last = sorted.at(-1)!
    if (last.seq > lastSigned) {
      const crashed = !last.checkpoint?.final
      findings.push({ kind: 'unsigned-tail', at: last.at, message: `${name}: ${last.seq - lastSigned} record(s) after the last ${options.key ? 'valid ' : ''}checkpoint are not covered by a signature${crashed ? ' (the chain has no final checkpoint: the replica was killed, or its tail was removed)' : ''}`, warning: true })
    }
  }
  return { ok: !findings.some((f) => !f.warning), records, chains: chains.size, checkpoints, findings }
}
