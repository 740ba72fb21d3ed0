/**
 * The policy set in force, and its replacement. A reload reads every file, compiles the new set
 * completely and only then swaps one reference, so a request (which reads `current` once)
 * is decided by either the old or the new set, never by a mixture. An invalid new set is refused:
 * the last good one stays, the failure is logged with every problem and counted.
 */
import { watch, type FSWatcher } from 'node:fs'
import type { Logger } from 'pino'
import type { RuntimeConfig } from '../config/load.js'
import { ConfigError, formatProblem } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'
import type { CompileContext, PolicySet } from './compile.js'
import { loadPolicyDir } from './load.js'

/** Quiet time after the last file event before reloading (editors and ConfigMap swaps write in bursts). */
export const RELOAD_DEBOUNCE_MS = 150

export function compileContext(config: RuntimeConfig): CompileContext {
  return {
    routes: config.routes.map((r) => ({ name: r.name, scopesSupported: r.scopesSupported })),
    issuers: [...config.issuers.values()].map((i) => ({ name: i.name, issuer: i.issuer })),
    claims: { groups: config.policies?.claims.groups, roles: config.policies?.claims.roles },
    bindingMessageRules: [...config.issuers.values()].flatMap((i) => (i.approval?.channel === 'ciba' ? [{ issuer: i.name, rule: i.approval.bindingMessagePattern }] : [])),
  }
}

export class PolicyEngine {
  #current: PolicySet
  #watcher: FSWatcher | undefined
  #timer: NodeJS.Timeout | undefined

  private constructor(
    readonly dir: string,
    private readonly ctx: CompileContext,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    initial: PolicySet,
  ) {
    this.#current = initial
    this.#publish(initial, undefined)
  }

  /** Loads the directory; throws ConfigError when the initial set is invalid (refuse to start). */
  static load(dir: string, ctx: CompileContext, logger: Logger, metrics: Metrics): PolicyEngine {
    const { set, warnings } = loadPolicyDir(dir, ctx)
    for (const w of warnings) logger.warn({ event: 'policy.warning' }, formatProblem(w))
    metrics.policyReloads.inc({ outcome: 'ok' })
    return new PolicyEngine(dir, ctx, logger, metrics, set)
  }

  get current(): PolicySet {
    return this.#current
  }

  /** Re-reads the directory. Returns true when a new set is in force. */
  reload(trigger: string): boolean {
    let set: PolicySet
    try {
      const r = loadPolicyDir(this.dir, this.ctx)
      set = r.set
      if (set.version === this.#current.version) {
        this.metrics.policyReloads.inc({ outcome: 'unchanged' })
        this.metrics.policyLastReloadFailed.set(0)
        return false
      }
      for (const w of r.warnings) this.logger.warn({ event: 'policy.warning' }, formatProblem(w))
    } catch (e) {
      const problems = e instanceof ConfigError ? e.problems.filter((p) => p.severity === 'error').map(formatProblem) : [(e as Error).message]
      this.metrics.policyReloads.inc({ outcome: 'error' })
      this.metrics.policyLastReloadFailed.set(1)
      this.logger.error({ event: 'policy.reload_failed', trigger, version: this.#current.version, problems }, `policy reload refused; version ${this.#current.version} stays in force`)
      return false
    }
    const previous = this.#current
    this.#current = set
    this.metrics.policyReloads.inc({ outcome: 'ok' })
    this.metrics.policyLastReloadFailed.set(0)
    this.#publish(set, previous.version, trigger)
    return true
  }

  /** Watches the directory (file edits, renames, and a ConfigMap's `..data` symlink swap). */
  watch(): void {
    if (this.#watcher) return
    try {
      this.#watcher = watch(this.dir, { persistent: false }, () => this.#schedule())
      this.#watcher.on('error', (e) => this.logger.error({ event: 'policy.watch_failed', err: e }, 'policy directory watch failed; SIGHUP still reloads'))
    } catch (e) {
      this.logger.error({ event: 'policy.watch_failed', err: e }, 'cannot watch the policy directory; SIGHUP still reloads')
    }
  }

  close(): void {
    this.#watcher?.close()
    this.#watcher = undefined
    if (this.#timer) clearTimeout(this.#timer)
  }

  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.reload('watch')
    }, RELOAD_DEBOUNCE_MS)
    this.#timer.unref()
  }

  #publish(set: PolicySet, previous: string | undefined, trigger = 'start'): void {
    this.metrics.policyInfo.reset()
    this.metrics.policyInfo.set({ version: set.version }, 1)
    this.logger.info(
      { event: 'policy.loaded', trigger, version: set.version, previous, policies: set.policies.map((p) => `${p.name}${p.shadow ? ' (shadow)' : ''}`), rules: set.rules.length },
      `policy version ${set.version} in force`,
    )
  }
}
