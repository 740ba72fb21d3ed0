/**
 * The hash chain of audit records (docs/audit.md). Every record carries `chain`: replica id, chain
 * id (new at each process start), sequence number and the SHA-256 of the previous line's exact
 * bytes, so an edit, removal, reordering or insertion breaks a link that `audit verify` reports.
 * Checkpoint records sign the head of the chain with Ed25519: without them an attacker could
 * rewrite the chain from the edit onwards; with them, only the tail after the last checkpoint.
 *
 * Lines are serialised here, not by pino: the hash must be over the bytes that are written, and
 * one JSON.stringify per record is cheaper than pino's per-key serialisation.
 */
import { createHash, randomUUID, sign, type KeyObject } from 'node:crypto'
import { keyId } from './audit-key.js'

export const GENESIS = '0'.repeat(64)

/** What a checkpoint signs; the verifier rebuilds exactly this. */
export function checkpointPayload(replica: string, chainId: string, seq: number, prev: string): Buffer {
  return Buffer.from(`mcp-warden audit checkpoint v1\n${replica}\n${chainId}\n${seq}\n${prev}`, 'utf8')
}

export function lineHash(line: string): string {
  return createHash('sha256').update(line, 'utf8').digest('hex')
}

export interface LineOut {
  /** One line without its newline. */
  (line: string): void
}

export interface AuditChainOptions {
  replica: string
  /** Static fields of every line (the logger's bindings, e.g. service). */
  bindings: Record<string, unknown>
  out: LineOut
  signingKey?: KeyObject | undefined
  now?: () => Date
}

export class AuditChain {
  readonly replica: string
  readonly id = randomUUID()
  #seq = 0
  #prev = GENESIS
  #sinceCheckpoint = 0
  readonly #prefix: string
  readonly #chainPrefix: string
  readonly #out: LineOut
  readonly #key: KeyObject | undefined
  readonly #kid: string | undefined
  readonly #now: () => Date

  constructor(o: AuditChainOptions) {
    this.replica = o.replica
    this.#out = o.out
    this.#key = o.signingKey
    this.#kid = o.signingKey && keyId(o.signingKey)
    this.#now = o.now ?? (() => new Date())
    const b = JSON.stringify(o.bindings)
    this.#prefix = b === '{}' ? '' : `,${b.slice(1, -1)}`
    this.#chainPrefix = `"chain":{"replica":${JSON.stringify(o.replica)},"id":"${this.id}","seq":`
  }

  get seq(): number {
    return this.#seq
  }

  /** Appends a record: `fields` is the JSON of the record's own keys without braces (e.g. `"reqId":…,"audit":{…}`). */
  append(fields: string, msg: string): void {
    const line = `{"level":30,"time":"${this.#now().toISOString()}"${this.#prefix},${fields},${this.#chainPrefix}${this.#seq},"prev":"${this.#prev}"},"msg":${JSON.stringify(msg)}}`
    this.#prev = lineHash(line)
    this.#seq++
    this.#sinceCheckpoint++
    this.#out(line)
  }

  /** Signs the chain head; `final` marks the end of a chain that was closed, not crashed. No-op without a key or new records. */
  checkpoint(final = false): boolean {
    if (!this.#key || (this.#sinceCheckpoint === 0 && !final)) return false
    const sig = sign(null, checkpointPayload(this.replica, this.id, this.#seq, this.#prev), this.#key).toString('base64url')
    const covered = this.#sinceCheckpoint
    this.#sinceCheckpoint = 0
    this.append(`"checkpoint":{"kid":"${this.#kid}","records":${covered},"sig":"${sig}"${final ? ',"final":true' : ''}}`, 'audit.checkpoint')
    // The checkpoint itself is a record; it is covered by the next one.
    this.#sinceCheckpoint = 0
    return true
  }
}
