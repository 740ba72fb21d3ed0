/**
 * Where chained audit lines go (docs/audit.md): the log destination (stdout) unless turned off,
 * and every configured sink. Owns the chain, the checkpoint timer, and the final checkpoint at
 * shutdown, written before the sinks are flushed so it reaches them too.
 */
import type { Logger } from 'pino'
import { pino } from 'pino'
import type { RuntimeAudit } from '../config/audit.js'
import { AuditChain } from './audit-chain.js'
import type { Metrics } from './metrics.js'
import { FileSink } from './sinks/file.js'
import { HttpSender } from './sinks/http.js'
import { QueuedSink } from './sinks/queued.js'
import type { AuditSink } from './sinks/sink.js'
import { SyslogSender } from './sinks/syslog.js'

export interface AuditOutput {
  readonly chain: AuditChain
  /** True while a sink with onFull: block has no room: new requests are refused with 503. */
  blocking(): boolean
  close(deadlineMs: number): Promise<void>
}

function sinkFor(s: RuntimeAudit['sinks'][number], replica: string, metrics: Metrics, logger: Logger): AuditSink {
  switch (s.type) {
    case 'file':
      return new FileSink({ name: s.name, path: s.path, maxBytes: s.maxBytes, intervalMs: s.intervalMs, keep: s.keep, metrics, logger })
    case 'syslog':
      return new QueuedSink({
        name: s.name, dir: s.buffer.dir, maxBytes: s.buffer.maxBytes, onFull: s.buffer.onFull, batch: 200, flushIntervalMs: 50, metrics, logger,
        sender: new SyslogSender({ host: s.host, port: s.port, ca: s.ca, serverName: s.serverName, appName: s.appName, facility: s.facility, replica, timeoutMs: 10_000 }),
      })
    case 'http':
      return new QueuedSink({
        name: s.name, dir: s.buffer.dir, maxBytes: s.buffer.maxBytes, onFull: s.buffer.onFull, batch: s.batch, flushIntervalMs: s.flushIntervalMs, metrics, logger,
        sender: new HttpSender({ url: s.url, format: s.format, token: s.token, index: s.index, ca: s.ca, timeoutMs: s.timeoutMs, replica }),
      })
  }
}

export function createAuditOutput(config: RuntimeAudit, deps: { logger: Logger; metrics: Metrics }): AuditOutput {
  const { logger, metrics } = deps
  const sinks = config.sinks.map((s) => sinkFor(s, config.replica, metrics, logger))
  // The destination pino writes to: audit lines interleave with the other log lines as before.
  const stream = (logger as unknown as Record<symbol, { write(s: string): void }>)[pino.symbols.streamSym]
  const toStdout = config.stdout && stream
  const chain = new AuditChain({
    replica: config.replica,
    bindings: logger.bindings(),
    signingKey: config.checkpoint?.key,
    out: (line) => {
      if (toStdout) toStdout.write(`${line}\n`)
      for (const s of sinks) s.write(line)
    },
  })
  logger.info({ event: 'audit.chain', replica: chain.replica, chainId: chain.id, checkpoints: config.checkpoint !== undefined, sinks: config.sinks.map((s) => s.name) }, 'audit chain started')
  const timer = config.checkpoint && setInterval(() => chain.checkpoint(), config.checkpoint.intervalMs)
  timer?.unref()
  return {
    chain,
    blocking: () => sinks.some((s) => s.blocking),
    async close(deadlineMs) {
      if (timer) clearInterval(timer)
      chain.checkpoint(true)
      await Promise.allSettled(sinks.map((s) => s.close(deadlineMs)))
    },
  }
}
