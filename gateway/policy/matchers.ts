/**
 * Precompiled matchers. Names are compared by exact code points: no case folding, trimming or
 * Unicode normalisation, so `Delete_Repo`, `delete_repo ` and `delete_rep\u043e` are different
 * names (POL-05/06, ATK-47/48). `*` is the only wildcard.
 */
import type { ArgumentMatcherInput } from './schema.js'

export interface NameMatcher {
  readonly source: readonly string[]
  test(name: string): boolean
  /** True when the matcher matches every name (`*`). */
  readonly all: boolean
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

export function nameMatcher(entries: readonly string[]): NameMatcher {
  const exact = new Set(entries.filter((e) => !e.includes('*')))
  const globs = entries.filter((e) => e.includes('*')).map((g) => new RegExp(`^${g.split('*').map(escapeRe).join('[\\s\\S]*')}$`, 'u'))
  const all = entries.includes('*')
  return {
    source: entries,
    all,
    test: (name) => all || exact.has(name) || globs.some((re) => re.test(name)),
  }
}

/** Whether every name `b` can match is matched by `a` (conservative: unknown → false). */
export function covers(a: NameMatcher | undefined, b: NameMatcher | undefined): boolean {
  if (!a || a.all) return true
  if (!b || b.all) return false
  return b.source.every((n) => !n.includes('*') ? a.test(n) : a.source.includes(n))
}

/** Path into tool arguments: `amount`, `$.a.b`, `items[0].id`, `["odd key"]`. */
export type ArgPath = readonly (string | number)[]

export function parseArgPath(text: string): ArgPath | undefined {
  let s = text.startsWith('$.') ? text.slice(2) : text.startsWith('$[') ? text.slice(1) : text
  const out: (string | number)[] = []
  const re = /^(?:\.?([A-Za-z_$][A-Za-z0-9_$-]*)|\[([0-9]+)\]|\["((?:[^"\\]|\\.)*)"\])/
  let first = true
  while (s.length > 0) {
    const m = re.exec(s)
    if (!m || (first && s.startsWith('.'))) return undefined
    if (m[1] !== undefined) out.push(m[1])
    else if (m[2] !== undefined) out.push(Number(m[2]))
    else out.push(JSON.parse(`"${m[3]}"`) as string)
    s = s.slice(m[0].length)
    first = false
  }
  return out.length > 0 ? out : undefined
}

export function resolvePath(root: unknown, path: ArgPath): { found: boolean; value: unknown } {
  let cur = root
  for (const seg of path) {
    if (typeof seg === 'number') {
      if (!Array.isArray(cur) || seg >= cur.length) return { found: false, value: undefined }
      cur = cur[seg]
    } else {
      // Own members only: a missing key must never resolve through Object.prototype.
      if (!cur || typeof cur !== 'object' || Array.isArray(cur) || !Object.prototype.hasOwnProperty.call(cur, seg)) return { found: false, value: undefined }
      cur = (cur as Record<string, unknown>)[seg]
    }
  }
  return { found: true, value: cur }
}

/** yes / no, or `mismatch` when the value has the wrong type for a typed condition. */
export type Tri = 'yes' | 'no' | 'mismatch'

/** Strings longer than this never match a regex (bounded matching time on attacker input). */
export const MAX_REGEX_INPUT = 65_536

export interface ArgMatcher {
  readonly key: string
  readonly path: ArgPath
  /** `why` is built only when asked (explain). */
  test(args: unknown): { result: Tri; why: () => string }
}

export function argMatcher(key: string, path: ArgPath, m: ArgumentMatcherInput, regex: RegExp | undefined): ArgMatcher {
  const show = (v: unknown) => {
    const s = JSON.stringify(v) ?? String(v)
    return s.length > 40 ? `${s.slice(0, 37)}...` : s
  }
  const presentOnly = m.present === true && Object.keys(m).length === 1
  return {
    key,
    path,
    test(args) {
      const { found, value } = resolvePath(args, path)
      if (m.absent) return found ? { result: 'no', why: () => `${key} is present` } : { result: 'yes', why: () => '' }
      if (!found) return { result: 'no', why: () => `${key} is absent` }
      if (presentOnly) return { result: 'yes', why: () => '' }
      if (m.equals !== undefined && value !== m.equals) {
        return typeof value !== typeof m.equals ? { result: 'mismatch', why: () => `${key} is not a ${typeof m.equals}` } : { result: 'no', why: () => `${key} = ${show(value)}, not ${show(m.equals)}` }
      }
      if (m.in !== undefined && !m.in.some((x) => x === value)) {
        return m.in.every((x) => typeof x !== typeof value) ? { result: 'mismatch', why: () => `${key} has the wrong type` } : { result: 'no', why: () => `${key} = ${show(value)} not in the list` }
      }
      if (regex) {
        if (typeof value !== 'string' || value.length > MAX_REGEX_INPUT) return { result: 'mismatch', why: () => `${key} is not a (short enough) string` }
        if (!regex.test(value)) return { result: 'no', why: () => `${key} = ${show(value)} does not match /${m.regex}/` }
      }
      if (m.gte !== undefined || m.gt !== undefined || m.lte !== undefined || m.lt !== undefined) {
        if (typeof value !== 'number') return { result: 'mismatch', why: () => `${key} is not a number` }
        if (m.gte !== undefined && !(value >= m.gte)) return { result: 'no', why: () => `${key} = ${value} < ${m.gte}` }
        if (m.gt !== undefined && !(value > m.gt)) return { result: 'no', why: () => `${key} = ${value} ≤ ${m.gt}` }
        if (m.lte !== undefined && !(value <= m.lte)) return { result: 'no', why: () => `${key} = ${value} > ${m.lte}` }
        if (m.lt !== undefined && !(value < m.lt)) return { result: 'no', why: () => `${key} = ${value} ≥ ${m.lt}` }
      }
      return { result: 'yes', why: () => '' }
    },
  }
}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const
const formatters = new Map<string, Intl.DateTimeFormat>()

/** Weekday and minute of day of `ms` in `timeZone` (throws RangeError on an unknown zone). */
const lastLocal = new Map<string, { at: number; value: { day: string; minute: number } }>()

export function localTime(ms: number, timeZone: string): { day: string; minute: number } {
  // Intl formatting costs microseconds; decisions within the same minute share one result.
  const at = Math.floor(ms / 60_000)
  const hit = lastLocal.get(timeZone)
  if (hit?.at === at) return hit.value
  const value = formatLocal(ms, timeZone)
  lastLocal.set(timeZone, { at, value })
  return value
}

function formatLocal(ms: number, timeZone: string): { day: string; minute: number } {
  let f = formatters.get(timeZone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
    formatters.set(timeZone, f)
  }
  const parts = Object.fromEntries(f.formatToParts(new Date(ms)).map((p) => [p.type, p.value]))
  const day = String(parts.weekday).slice(0, 3).toLowerCase()
  return { day: DAYS.find((d) => d === day) ?? day, minute: Number(parts.hour) * 60 + Number(parts.minute) }
}

export const minutesOf = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5))

/** Claim values as a set: an array of strings, or a space-separated string. Dotted names walk objects. */
export function claimValues(claims: Readonly<Record<string, unknown>>, name: string): ReadonlySet<string> {
  let cur: unknown = claims
  for (const seg of name.split('.')) {
    if (!cur || typeof cur !== 'object' || Array.isArray(cur) || !Object.prototype.hasOwnProperty.call(cur, seg)) return new Set()
    cur = (cur as Record<string, unknown>)[seg]
  }
  if (typeof cur === 'string') return new Set(cur.split(' ').filter(Boolean))
  if (Array.isArray(cur)) return new Set(cur.filter((v): v is string => typeof v === 'string'))
  return new Set()
}

const URI_HEAD = /^([A-Za-z][A-Za-z0-9+.-]*:)(\/\/[^/?#]*)?/
/** Dot segments, and percent-encoded `.`, `/` or `\`: forms that could step out of a prefix rule. */
const URI_ESCAPES = /(^|\/)\.\.?(\/|$|[?#])|%2e|%2f|%5c|\\/i

/**
 * A resource URI as policies compare it (POL-07): scheme and authority lower-cased, the rest
 * exact. URIs with dot segments or percent-encoded `.`, `/`, `\` are refused (undefined), so
 * `file:///srv/docs/*` cannot be escaped with `../` or `%2e%2e`.
 */
export function canonicalResourceUri(uri: string): string | undefined {
  const head = URI_HEAD.exec(uri)
  if (!head) return undefined
  const rest = uri.slice(head[0].length)
  if (URI_ESCAPES.test(rest) || /%2e|%2f|%5c|\\/i.test(head[0])) return undefined
  return head[0].toLowerCase() + rest
}
