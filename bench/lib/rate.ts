/**
 * Open-loop load at a fixed rate, for "p99 added at 1,000 req/s": Debian's wrk is closed-loop
 * (its p99 at full load is queueing), and wrk2 is not packaged. Each request's latency is counted
 * from the moment it was due, not from when it was sent, so a stalled target cannot hide its
 * stall by delaying the requests behind it (coordinated omission).
 */
import { Pool } from 'undici'
import { quantile } from './stats.js'

export interface RateResult {
  rate: number
  sent: number
  errors: number
  p50Ms: number
  p99Ms: number
  maxMs: number
}

export async function fixedRate(o: { url: string; headers: Record<string, string>; body: string; rate: number; seconds: number }): Promise<RateResult> {
  const u = new URL(o.url)
  const pool = new Pool(u.origin, { connections: 64, pipelining: 1 })
  const total = Math.round(o.rate * o.seconds)
  const latencies: number[] = []
  let errors = 0
  let sent = 0
  const inFlight = new Set<Promise<void>>()
  const t0 = performance.now()
  const one = (due: number) => {
    const p = pool
      .request({ path: u.pathname, method: 'POST', headers: o.headers, body: o.body })
      .then(async (r) => {
        await r.body.text()
        if (r.statusCode !== 200) errors++
        latencies.push(performance.now() - due)
      })
      .catch(() => {
        errors++
      })
      .finally(() => inFlight.delete(p))
    inFlight.add(p)
  }
  while (sent < total) {
    const now = performance.now()
    const due = Math.min(total, Math.floor(((now - t0) / 1000) * o.rate))
    for (; sent < due; sent++) one(t0 + (sent * 1000) / o.rate)
    await new Promise((r) => setTimeout(r, 1))
  }
  await Promise.all(inFlight)
  await pool.close()
  return { rate: o.rate, sent, errors, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), maxMs: Math.max(...latencies) }
}
