/**
 * Rate-limit semantics, shared by the in-memory limiter and the Redis Lua script (which is a
 * transcription of `decideWindow`): a sliding window of SLICES slices. A window of `per` is cut
 * into 60 slices of per / 60 ms, numbered from the epoch so every replica (and Redis)
 * agrees on them; a key's count is the sum of its last 60 slices. A unit used in slice k is
 * given back when slice k + 60 begins: between 59/60·per and per after it was used.
 * Slice k spans [k·per/60, (k+1)·per/60) in fractional ms, so 60 slices are exactly `per` long
 * whatever `per` is (2s → slices of 33.3 ms). So at most
 * `limit` units are used in any 60 consecutive slices, never more; the window never resets all at
 * once (no burst of 2×limit at a boundary, unlike fixed windows).
 *
 * A request is checked against every limit that applies to it at once: if any would be
 * exceeded, nothing is counted (a refused request consumes no budget).
 */
import { keyDigest } from '../store/keys.js'

export const SLICES = 60

/** Absolute number of the slice holding `now`. */
export const sliceOf = (now: number, perMs: number): number => Math.floor((now * SLICES) / perMs)

/** When slice `idx` leaves the window (its units come back), in ms since the epoch, rounded up. */
export const releaseOf = (idx: number, perMs: number): number => Math.ceil(((idx + SLICES) * perMs) / SLICES)

/** One limit's cost for one request: `cost` units under `key` (already includes the limit identity). */
export interface Charge {
  readonly limit: string
  readonly key: string
  readonly max: number
  readonly perMs: number
  readonly cost: number
}

export type Verdict =
  | { readonly allowed: true }
  /** retryAfterMs: when enough units come back; undefined when the cost can never fit (cost > max). */
  | { readonly allowed: false; readonly limit: string; readonly retryAfterMs: number | undefined }

/** Counts by absolute slice number. */
export type Slices = Map<number, number>

/**
 * Would `cost` more fit under `max` at `now`? Drops slices that left the window (mutates `slices`).
 * Returns undefined when it fits, else the ms until it would (or Infinity when it never can).
 */
export function checkWindow(slices: Slices, max: number, perMs: number, cost: number, now: number): number | undefined {
  const oldest = sliceOf(now, perMs) - SLICES + 1
  let total = 0
  for (const [idx, c] of slices) {
    if (idx < oldest) slices.delete(idx)
    else total += c
  }
  if (total + cost <= max) return undefined
  if (cost > max) return Infinity
  // Slices come back oldest first; find the one whose departure frees enough.
  const need = total + cost - max
  let freed = 0
  for (const idx of [...slices.keys()].sort((a, b) => a - b)) {
    freed += slices.get(idx)!
    if (freed >= need) return releaseOf(idx, perMs) - now
  }
  return Infinity
}

export function addToWindow(slices: Slices, perMs: number, cost: number, now: number): void {
  const current = sliceOf(now, perMs)
  slices.set(current, (slices.get(current) ?? 0) + cost)
}

/** Units in use at `now` (for tests and introspection). */
export function usedInWindow(slices: Slices, perMs: number, now: number): number {
  const oldest = sliceOf(now, perMs) - SLICES + 1
  let total = 0
  for (const [idx, c] of slices) if (idx >= oldest) total += c
  return total
}

/**
 * Storage key of one budget: the limit's identity (name and window length, so changing `per` starts
 * a fresh budget while changing `limit` keeps the count) and the key values, hashed so no subject
 * or tool name lands in Redis key names. Fields are length-prefixed: ("ab","c") ≠ ("a","bc").
 */
export function budgetKey(limit: string, perMs: number, values: readonly string[]): string {
  return keyDigest('rl', [limit, String(perMs), ...values], 32)
}

/** Where decisions are made: memory (per replica) or Redis (shared). */
export interface Limiter {
  readonly kind: 'memory' | 'redis'
  /** Checks every charge and, only if all fit, counts them all. Throws LimiterUnavailable when the store cannot answer. */
  consume(charges: readonly Charge[]): Promise<Verdict>
  close?(): void
}

export class LimiterUnavailable extends Error {
  constructor(cause: unknown) {
    super('rate-limit store unavailable', { cause })
    this.name = 'LimiterUnavailable'
  }
}
