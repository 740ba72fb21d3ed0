/** What the audit output needs from a sink. */
export interface AuditSink {
  readonly name: string
  /** Takes one line (no newline). Never throws: a sink that cannot take it counts the loss. */
  write(line: string): void
  /** True while the sink asks for new requests to be refused (buffer full, onFull: block). */
  readonly blocking: boolean
  /** Delivers what it can within `deadlineMs`, then persists the rest (it is already on disk). */
  close(deadlineMs: number): Promise<void>
}

/** Delivers a batch of lines; throws when they were not accepted (the batch is retried). */
export interface Sender {
  send(lines: readonly string[]): Promise<void>
  close(): void
}
