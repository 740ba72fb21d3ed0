/**
 * Failed-authentication budget per client address (checklist INT-10, ATK-64): token guessing,
 * introspection flooding and session-id guessing all fail authentication or present unknown
 * sessions, so an address that causes too many failures is refused before any signature check,
 * JWKS fetch or introspection. Per replica and in memory on purpose: it must cost less than
 * what it protects, and it guards against one address, not against a spread-out attack.
 *
 * Every request holds one unit while it is being authenticated and gives it back once the token
 * is accepted, so concurrent bad tokens cannot slip in before their failures are counted: at most
 * `limit` failures (plus requests still in authentication) per window.
 */
import { addToWindow, checkWindow, releaseOf, sliceOf, type Slices } from './window.js'

const SWEEP_EVERY = 1024

export class AddressFailures {
  readonly #byAddress = new Map<string, { slices: Slices; expiresAt: number }>()
  readonly #perMs: number
  #ops = 0

  constructor(
    readonly limit: number,
    perMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.#perMs = Math.max(1000, perMs)
  }

  /** Takes a unit for `address`: the slice it was counted in, or the ms to wait when none is left. */
  acquire(address: string): { slice: number } | { retryAfterMs: number } {
    const now = this.now()
    if (++this.#ops % SWEEP_EVERY === 0) this.#sweep(now)
    let e = this.#byAddress.get(address)
    const wait = checkWindow(e?.slices ?? new Map(), this.limit, this.#perMs, 1, now)
    if (wait !== undefined) return { retryAfterMs: Number.isFinite(wait) ? wait : this.#perMs }
    if (!e) this.#byAddress.set(address, (e = { slices: new Map(), expiresAt: 0 }))
    addToWindow(e.slices, this.#perMs, 1, now)
    const slice = sliceOf(now, this.#perMs)
    e.expiresAt = releaseOf(slice, this.#perMs)
    return { slice }
  }

  /** Gives back a unit taken by `acquire` (the request authenticated). */
  release(address: string, slice: number): void {
    const e = this.#byAddress.get(address)
    const c = e?.slices.get(slice)
    if (!e || c === undefined) return
    if (c <= 1) e.slices.delete(slice)
    else e.slices.set(slice, c - 1)
  }

  /** Counts a failure found after authentication (an unknown or foreign session id). */
  record(address: string): void {
    const now = this.now()
    let e = this.#byAddress.get(address)
    if (!e) this.#byAddress.set(address, (e = { slices: new Map(), expiresAt: 0 }))
    addToWindow(e.slices, this.#perMs, 1, now)
    e.expiresAt = releaseOf(sliceOf(now, this.#perMs), this.#perMs)
  }

  #sweep(now: number): void {
    for (const [k, e] of this.#byAddress) if (e.expiresAt <= now) this.#byAddress.delete(k)
  }

  get size(): number {
    return this.#byAddress.size
  }
}
