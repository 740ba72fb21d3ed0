/**
 * A sink that delivers through a Sender from its on-disk buffer (buffer.ts), in order, one batch
 * at a time: a failed batch is retried with back-off until it is accepted, so no record is
 * skipped and none overtakes another. When the buffer is full, `block` refuses new requests (the
 * records of requests already answered are still written, up to a reserve above maxBytes) and
 * `drop` drops and counts.
 */
import type { Logger } from 'pino'
import type { Metrics } from '../metrics.js'
import { DiskBuffer } from './buffer.js'
import type { AuditSink, Sender } from './sink.js'

export interface QueuedOptions {
  name: string
  dir: string
  maxBytes: number
  onFull: 'block' | 'drop'
  batch: number
  /** Longest a record waits for a batch to fill. */
  flushIntervalMs: number
  sender: Sender
  metrics: Metrics
  logger: Logger
}

const MIN_BACKOFF_MS = 100
const MAX_BACKOFF_MS = 5000

export class QueuedSink implements AuditSink {
  readonly name: string
  readonly #o: QueuedOptions
  readonly #buffer: DiskBuffer
  #timer: NodeJS.Timeout | undefined
  #pumping = false
  #closed = false
  #backoff = 0
  #lostSinceLog = 0
  #up = true

  constructor(o: QueuedOptions) {
    this.name = o.name
    this.#o = o
    this.#buffer = new DiskBuffer(o.dir, o.maxBytes)
    o.metrics.auditSinkUp.set({ sink: o.name }, 1)
    // A buffer persisted by a previous process (SIGTERM during an outage, or kill -9) is replayed first.
    if (this.#buffer.size > 0) {
      o.logger.info({ event: 'audit.sink.replay', sink: o.name, bytes: this.#buffer.size }, 'replaying the audit buffer of a previous run')
      this.schedule(0)
    }
    this.gauge()
  }

  get blocking(): boolean {
    return this.#o.onFull === 'block' && this.#buffer.size >= this.#o.maxBytes
  }

  write(line: string): void {
    const m = this.#o.metrics
    const size = this.#buffer.size
    // block: requests in flight when the buffer filled, and the 503s refusing new ones, still get
    // their records, into a reserve of 1/8 above maxBytes; past it even block loses (and counts).
    const limit = this.#o.onFull === 'block' ? this.#o.maxBytes * 1.125 : this.#o.maxBytes
    if (size + line.length + 1 > limit) {
      m.auditRecords.inc({ sink: this.name, outcome: 'lost' })
      if (this.#lostSinceLog++ === 0) this.#o.logger.error({ event: 'audit.sink.lost', sink: this.name, bufferBytes: size }, 'audit buffer full: records are being dropped')
      return
    }
    try {
      this.#buffer.append(line)
    } catch (e) {
      m.auditRecords.inc({ sink: this.name, outcome: 'lost' })
      this.#o.logger.error({ event: 'audit.sink.lost', sink: this.name, err: e }, 'cannot write the audit buffer')
      return
    }
    m.auditRecords.inc({ sink: this.name, outcome: 'queued' })
    this.gauge()
    if (!this.#timer && !this.#pumping && this.#backoff === 0) this.schedule(size === 0 ? this.#o.flushIntervalMs : 0)
  }

  private gauge(): void {
    this.#o.metrics.auditBuffered.set({ sink: this.name }, this.#buffer.size)
  }

  private schedule(ms: number): void {
    if (this.#closed || this.#timer) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      void this.pump()
    }, ms)
    this.#timer.unref()
  }

  /** Sends batches until the buffer is empty or a send fails. */
  private async pump(deadline = Infinity): Promise<boolean> {
    if (this.#pumping) return false
    this.#pumping = true
    try {
      for (;;) {
        const { lines, next } = this.#buffer.peek(this.#o.batch)
        if (lines.length === 0) return true
        if (Date.now() > deadline) return false
        try {
          await this.#o.sender.send(lines)
        } catch (e) {
          this.#o.metrics.auditRecords.inc({ sink: this.name, outcome: 'retried' }, lines.length)
          if (this.#up) this.#o.logger.warn({ event: 'audit.sink.down', sink: this.name, err: { message: (e as Error).message } }, 'audit sink unreachable: buffering on disk')
          this.#up = false
          this.#o.metrics.auditSinkUp.set({ sink: this.name }, 0)
          this.#backoff = Math.min(MAX_BACKOFF_MS, Math.max(MIN_BACKOFF_MS, this.#backoff * 2))
          this.schedule(this.#backoff)
          return false
        }
        this.#buffer.commit(next)
        this.#o.metrics.auditRecords.inc({ sink: this.name, outcome: 'sent' }, lines.length)
        if (!this.#up) this.#o.logger.info({ event: 'audit.sink.up', sink: this.name }, 'audit sink reachable again')
        this.#up = true
        this.#backoff = 0
        this.#lostSinceLog = 0
        this.#o.metrics.auditSinkUp.set({ sink: this.name }, 1)
        this.gauge()
      }
    } finally {
      this.#pumping = false
    }
  }

  async close(deadlineMs: number): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
    const deadline = Date.now() + deadlineMs
    // One last attempt; whatever is left stays in the buffer for the next start.
    while (this.#pumping && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    if (!this.#pumping && this.#up) await this.pump(deadline)
    this.#closed = true
    const left = this.#buffer.size
    if (left > 0) this.#o.logger.warn({ event: 'audit.sink.persisted', sink: this.name, bytes: left, dir: this.#o.dir }, 'undelivered audit records kept on disk for the next start')
    this.#buffer.close()
    this.#o.sender.close()
  }
}
