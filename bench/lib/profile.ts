/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and sums self time per function and per area
 * (framework, HTTP client, logging, crypto, gateway code, node internals, GC).
 */
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}

interface CpuProfile {
  startTime: number
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

export interface SelfTime {
  name: string
  where: string
  area: string
  ms: number
  share: number
}

export interface ProfileSummary {
  totalMs: number
  /** Time not spent idle, the base for shares. */
  busyMs: number
  functions: SelfTime[]
  areas: { area: string; ms: number; share: number }[]
}

const AREAS: [RegExp, string][] = [
  [/node_modules\/(fastify|find-my-way|avvio|light-my-request|@fastify\/(?!reply-from)[^/]+|fast-json-stringify|secure-json-parse|toad-cache)\//, 'fastify'],
  [/node_modules\/@fastify\/reply-from\//, 'reply-from'],
  [/node_modules\/undici\//, 'undici'],
  [/node_modules\/(pino|sonic-boom|fast-redact|thread-stream|pino-std-serializers|quick-format-unescaped)\//, 'pino (logging)'],
  [/node_modules\/prom-client\//, 'prom-client (metrics)'],
  [/node_modules\/jose\//, 'jose'],
  [/\/dist\/gateway\//, 'gateway code'],
  [/node_modules\//, 'other packages'],
  [/^node:|^internal\//, 'node internals'],
]

function areaOf(url: string, fn: string): string {
  if (url === '') return fn === '(garbage collector)' ? 'GC' : fn.startsWith('(') ? fn : 'native / builtins'
  for (const [re, area] of AREAS) if (re.test(url)) return area
  return 'other'
}

const shortUrl = (url: string) => url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/')

/**
 * `window` (µs on CLOCK_MONOTONIC, the clock of both V8's profile timestamps and
 * process.hrtime) keeps only the samples taken under load, not start-up or shutdown.
 */
export function summarizeProfile(file: string, window?: { fromUs: number; toUs: number }, top = 30): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const selfUs = new Map<number, number>()
  let t = profile.startTime
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0
    t += dt
    if (window && (t < window.fromUs || t > window.toUs)) return
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt)
  })

  const fns = new Map<string, { name: string; where: string; area: string; us: number }>()
  const areas = new Map<string, number>()
  let total = 0
  let idle = 0
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame
    total += us
    if (functionName === '(idle)') {
      idle += us
      continue
    }
    const name = functionName || '(anonymous)'
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : ''
    const key = `${name}@${where}`
    const area = areaOf(url, name)
    const f = fns.get(key) ?? { name, where, area, us: 0 }
    f.us += us
    fns.set(key, f)
    areas.set(area, (areas.get(area) ?? 0) + us)
  }
  const busy = total - idle
  return {
    totalMs: total / 1000,
    busyMs: busy / 1000,
    functions: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, area: f.area, ms: f.us / 1000, share: f.us / busy })),
    areas: [...areas].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, ms: us / 1000, share: us / busy })),
  }
}
