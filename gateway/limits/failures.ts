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
import { isIPv6 } from 'node:net'
import { addToWindow, checkWindow, releaseOf, sliceOf, type Slices } from './window.js'

const SWEEP_EVERY = 1024
/** Addresses tracked at once (a few hundred bytes each). */
export const DEFAULT_MAX_ADDRESSES = 65_536

/**
 * The budget an address draws on. One IPv6 host usually holds a whole /64 and can rotate through
 * it at will, so IPv6 addresses share their /64; IPv4-mapped IPv6 is the IPv4 address.
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
  if (mapped) return mapped[1]!
  if (!isIPv6(ip)) return ip
  const [head = '', tail = ''] = ip.toLowerCase().split('%')[0]!.split('::') as [string, string?]
  const left = head === '' ? [] : head.split(':')
  const right = ip.includes('::') && tail !== '' ? tail.split(':') : []
  const groups = ip.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`
}

export class AddressFailures {
  readonly #byAddress = new Map<string, { slices: Slices; expiresAt: number }>()
  readonly #perMs: number
  #ops = 0

  constructor(
    readonly limit: number,
    perMs: number,
    private readonly now: () => number = Date.now,
    /** Addresses come from the network (or from a proxy's header): the map must not grow with them. */
    readonly maxAddresses: number = DEFAULT_MAX_ADDRESSES,
  ) {
    this.#perMs = Math.max(1000, perMs)
  }

  /**
   * The entry of `address`, made the most recently used. A new one past the cap first drops the
   * expired entries, then the least recently used: forgetting an old address gives it a fresh
   * budget, which costs less than running out of memory.
   */
  #entry(address: string, now: number, create: boolean): { slices: Slices; expiresAt: number } | undefined {
    const e = this.#byAddress.get(address)
    if (e) {
      this.#byAddress.delete(address)
      this.#byAddress.set(address, e)
      return e
    }
    if (!create) return undefined
    if (this.#byAddress.size >= this.maxAddresses) {
      this.#sweep(now)
      for (const k of this.#byAddress.keys()) {
        if (this.#byAddress.size < this.maxAddresses) break
        this.#byAddress.delete(k)
      }
    }
    const fresh = { slices: new Map() as Slices, expiresAt: 0 }
    this.#byAddress.set(address, fresh)
    return fresh
  }

  /** Takes a unit for `address`: the slice it was counted in, or the ms to wait when none is left. */
  acquire(ip: string): { slice: number } | { retryAfterMs: number } {
    const address = addressKey(ip)
    const now = this.now()
    if (++this.#ops % SWEEP_EVERY === 0) this.#sweep(now)
    const known = this.#entry(address, now, false)
    const wait = checkWindow(known?.slices ?? new Map(), this.limit, this.#perMs, 1, now)
    if (wait !== undefined) return { retryAfterMs: Number.isFinite(wait) ? wait : this.#perMs }
    const e = known ?? this.#entry(address, now, true)!
    addToWindow(e.slices, this.#perMs, 1, now)
    const slice = sliceOf(now, this.#perMs)
    e.expiresAt = releaseOf(slice, this.#perMs)
    return { slice }
  }

  /** Gives back a unit taken by `acquire` (the request authenticated). */
  release(ip: string, slice: number): void {
    const e = this.#byAddress.get(addressKey(ip))
    const c = e?.slices.get(slice)
    if (!e || c === undefined) return
    if (c <= 1) e.slices.delete(slice)
    else e.slices.set(slice, c - 1)
  }

  /** Counts a failure found after authentication (an unknown or foreign session id). */
  record(ip: string): void {
    const now = this.now()
    const e = this.#entry(addressKey(ip), now, true)!
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
