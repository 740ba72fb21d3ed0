/**
 * `npm run bench -- --warmup SECONDS`: CPU per request per window from a cold start. The steady
 * figures of a normal run come after a 2 s warm-up and minutes of earlier rounds; an outside run
 * saw the gateway ≈ 1.7× above its steady state for minutes, so this mode measures the way there.
 *
 * Each cycle gives every gateway (fresh processes) one full window of load and each reference
 * (bare-dispatch, direct) a short one, so a reference's figure in the same cycle says how busy the
 * machine was then: the ratio gateway ÷ bare-dispatch per window is what to read, not the µs.
 */
import { fmt } from './stats.js'

export interface WindowSample {
  cpuUsPerReq: number
  rps: number
}

export interface WarmupTarget {
  name: string
  /** Gateways get `window` seconds per cycle, references `refWindow`. */
  reference: boolean
  run(seconds: number): Promise<WindowSample>
}

export interface WarmupResult {
  window: number
  refWindow: number
  targets: string[]
  /** cycles[i][name] */
  cycles: Record<string, WindowSample>[]
}

export async function warmupRun(targets: WarmupTarget[], totalSeconds: number, window: number, refWindow: number, log: (s: string) => void): Promise<WarmupResult> {
  const cycles: Record<string, WindowSample>[] = []
  const n = Math.max(1, Math.ceil(totalSeconds / window))
  for (let i = 0; i < n; i++) {
    const row: Record<string, WindowSample> = {}
    // Gateways first and in a fixed order: their load history is what is under test.
    for (const t of targets) {
      row[t.name] = await t.run(t.reference ? refWindow : window)
      log(`window ${i + 1}/${n} ${t.name.padEnd(14)} ${fmt(row[t.name]!.rps)} req/s  ${fmt(row[t.name]!.cpuUsPerReq, 1)} µs/req`)
    }
    cycles.push(row)
  }
  return { window, refWindow, targets: targets.map((t) => t.name), cycles }
}

export function warmupReport(r: WarmupResult, header: string[]): string {
  const gws = r.targets.filter((t) => !['bare-dispatch', 'direct'].includes(t))
  const lines = [...header, '', `CPU µs per request per window from a cold start: each gateway ${r.window} s of load per cycle, bare-dispatch and direct ${r.refWindow} s each in the same cycle; "t" is the gateway's seconds of load so far.`, '']
  const ratioCols = r.targets.includes('bare-dispatch') ? gws.map((g) => `${g} ÷ bare-dispatch`) : []
  lines.push(`| window | t s | ${r.targets.map((t) => `${t} µs/req`).join(' | ')} | ${ratioCols.join(' | ')} |`)
  lines.push(`|---:|---:|${r.targets.map(() => '---:').join('|')}|${ratioCols.map(() => '---:').join('|')}|`)
  r.cycles.forEach((c, i) => {
    const ratios = r.targets.includes('bare-dispatch') ? gws.map((g) => `${fmt(c[g]!.cpuUsPerReq / c['bare-dispatch']!.cpuUsPerReq, 2)}×`) : []
    lines.push(`| ${i + 1} | ${(i + 1) * r.window} | ${r.targets.map((t) => fmt(c[t]!.cpuUsPerReq, 1)).join(' | ')} | ${ratios.join(' | ')} |`)
  })
  return `${lines.join('\n')}\n`
}
