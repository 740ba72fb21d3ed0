/**
 * Bookkeeping for long-lived SSE responses: how many GET streams each caller holds (per
 * replica), and when a stream must end — at the latest when the token that opened it expires
 * (CHL-10: a stream must not outlive its authorization), or after the route's maximum duration.
 */
import type { Principal } from '../auth/principal.js'

export const callerKey = (p: Principal): string => `${p.issuer.length}:${p.issuer}|${p.subject.length}:${p.subject}|${p.clientId}`

export class StreamCounter {
  readonly #open = new Map<string, number>()

  /** Count one more stream for `key`; false (and nothing counted) when `max` are already open. */
  acquire(key: string, max: number): boolean {
    const n = this.#open.get(key) ?? 0
    if (n >= max) return false
    this.#open.set(key, n + 1)
    return true
  }

  release(key: string): void {
    const n = (this.#open.get(key) ?? 1) - 1
    if (n <= 0) this.#open.delete(key)
    else this.#open.set(key, n)
  }

  open(key: string): number {
    return this.#open.get(key) ?? 0
  }
}

/** Milliseconds until a stream opened now must end. */
export function streamDeadlineMs(principal: Principal | undefined, maxDurationMs: number, now = Date.now()): number {
  const byToken = principal ? principal.expiresAt * 1000 - now : Infinity
  return Math.max(0, Math.min(byToken, maxDurationMs))
}
