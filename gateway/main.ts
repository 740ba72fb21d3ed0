/**
 * Process lifecycle: load and freeze the config, build the gateway, listen, and drain on
 * SIGTERM/SIGINT within the configured grace period.
 */
import type { Logger } from 'pino'
import { loadConfigFile } from './config/load.js'
import { createLogger } from './observability/logger.js'
import { buildGateway, type Gateway } from './server.js'
import { formatProblem } from './errors.js'

export async function serve(configFile: string, logger?: Logger): Promise<Gateway> {
  const { config, warnings } = loadConfigFile(configFile)
  const log = logger ?? createLogger(config.logging.level)
  for (const w of warnings) log.warn({ event: 'config.warning' }, formatProblem(w))
  for (const w of config.warnings) log.warn({ event: 'config.insecure' }, w)
  const gateway = await buildGateway(config, { logger: log })
  await gateway.start()
  return gateway
}

export function handleSignals(gateway: Gateway): void {
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    gateway.logger.info({ event: 'gateway.stopping', signal, graceMs: gateway.config.server.shutdownGraceMs }, 'draining')
    gateway
      .close()
      .then(() => {
        gateway.logger.info({ event: 'gateway.stopped' }, 'stopped')
        gateway.logger.flush?.()
        setTimeout(() => process.exit(0), 50).unref()
      })
      .catch((e: unknown) => {
        gateway.logger.error({ event: 'gateway.stop_failed', err: e }, 'shutdown failed')
        process.exit(1)
      })
  }
  // SIGHUP reloads the policies; an invalid set is refused and the current one stays.
  process.on('SIGHUP', () => gateway.policies?.reload('SIGHUP'))
  process.once('SIGTERM', () => stop('SIGTERM'))
  process.once('SIGINT', () => stop('SIGINT'))
}
