/**
 * Audit lines appended to a local file, rotated by size and/or age: `path` is renamed `path.1`,
 * older ones shift up, and the oldest past `keep` is deleted. Appends are synchronous so a line is
 * in the file before the response is logged as done; `audit verify path.N … path.1 path` checks
 * the rotated files as one chain (with --allow-truncated-start once the oldest was deleted).
 */
import { closeSync, existsSync, fstatSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import type { Logger } from 'pino'
import type { Metrics } from '../metrics.js'
import type { AuditSink } from './sink.js'

export interface FileSinkOptions {
  name: string
  path: string
  maxBytes: number | undefined
  intervalMs: number | undefined
  keep: number
  metrics: Metrics
  logger: Logger
  now?: () => number
}

export class FileSink implements AuditSink {
  readonly name: string
  readonly blocking = false
  readonly #o: FileSinkOptions
  readonly #now: () => number
  #fd: number
  #size: number
  #opened: number

  constructor(o: FileSinkOptions) {
    this.name = o.name
    this.#o = o
    this.#now = o.now ?? Date.now
    this.#fd = openSync(o.path, 'a')
    const st = fstatSync(this.#fd)
    this.#size = st.size
    // An existing file's age counts from its creation, so restarts do not postpone rotation forever.
    this.#opened = st.size > 0 ? st.birthtimeMs || st.mtimeMs : this.#now()
  }

  write(line: string): void {
    const data = Buffer.from(`${line}\n`, 'utf8')
    try {
      const o = this.#o
      if (this.#size > 0 && ((o.maxBytes !== undefined && this.#size + data.length > o.maxBytes) || (o.intervalMs !== undefined && this.#now() - this.#opened >= o.intervalMs))) this.rotate()
      writeSync(this.#fd, data)
      this.#size += data.length
      o.metrics.auditRecords.inc({ sink: this.name, outcome: 'sent' })
    } catch (e) {
      this.#o.metrics.auditRecords.inc({ sink: this.name, outcome: 'lost' })
      this.#o.logger.error({ event: 'audit.sink.lost', sink: this.name, err: e }, 'cannot write the audit file')
    }
  }

  private rotate(): void {
    const { path, keep } = this.#o
    closeSync(this.#fd)
    if (existsSync(`${path}.${keep}`)) unlinkSync(`${path}.${keep}`)
    for (let i = keep - 1; i >= 1; i--) if (existsSync(`${path}.${i}`)) renameSync(`${path}.${i}`, `${path}.${i + 1}`)
    renameSync(path, `${path}.1`)
    this.#fd = openSync(path, 'a')
    this.#size = 0
    this.#opened = this.#now()
  }

  async close(): Promise<void> {
    closeSync(this.#fd)
  }
}
