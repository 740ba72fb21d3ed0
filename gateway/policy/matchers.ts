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

/**
 * Characters that are no part of an RFC 3986 URI and that URL parsers silently drop or rewrite
 * (WHATWG strips tabs and newlines, trims C0 and space, reads `\\` as `/` in special schemes): a
 * parser differential with the upstream, so refused before parsing.
 */
const RAW_REFUSED = /[\u0000-\u0020\u007f\\]/
/**
 * Encodings that mean different things to different readers: an encoded `/` or `\` (a separator
 * to some, a name character to others), an encoded NUL, and double encoding (`%252e` is `%2e` to
 * a server that decodes twice). A `%` not followed by two hex digits is ambiguous too.
 */
const AMBIGUOUS = /%(?:2f|5c|00|25[0-9a-f]{2})|%(?![0-9a-f]{2})|\\/i
const UNRESERVED = /[A-Za-z0-9\-._~]/

/**
 * A resource URI as policies compare it (POL-07, ATK-54), built from what a WHATWG URL parser
 * resolves it to, so that two spellings of one target are one string: scheme and host
 * lower-cased, default port dropped, trailing dots of the host dropped, dot segments (`.`, `..`,
 * `%2e%2e`) resolved, runs of `/` in the path collapsed, percent-encoded unreserved characters
 * decoded and other percent-encodings upper-cased. Refused (undefined): relative URIs, userinfo
 * (`https://x@internal.example.com/` names a host after the `@` that a naive matcher misses),
 * control characters and the ambiguous encodings above. Requests and policy patterns go through
 * the same function, so a rule and a request can only agree or disagree on the target itself.
 */
export function canonicalResourceUri(uri: string): string | undefined {
  if (RAW_REFUSED.test(uri) || !/^[A-Za-z][A-Za-z0-9+.-]*:/.test(uri)) return undefined
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    return undefined
  }
  if (url.username !== '' || url.password !== '' || AMBIGUOUS.test(url.href)) return undefined
  const hierarchical = url.href.startsWith(`${url.protocol}//`)
  let host = url.host.toLowerCase()
  if (url.hostname.endsWith('.')) host = url.hostname.replace(/\.+$/, '').toLowerCase() + (url.port ? `:${url.port}` : '')
  if (hierarchical && url.hostname !== '' && host === '') return undefined
  const path = hierarchical ? url.pathname.replace(/\/{2,}/g, '/') : url.pathname
  const text = `${url.protocol}${hierarchical ? `//${host}` : ''}${path}${url.search}${url.hash}`
  return text.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16))
    return UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`
  })
}

/** Stands in for `*` while a pattern is canonicalised: lower-case letters survive host folding, IDNA and percent rules. */
const STAR = 'x0star0x'

/**
 * A resource pattern canonicalised like the URIs it is matched against, its `*` kept. A `*` that
 * ends a pattern with no path (`https://*`) keeps matching every path: the `/` the parser adds for
 * the empty path is not appended after it.
 */
export function canonicalResourcePattern(pattern: string): string | undefined {
  if (pattern.includes(STAR)) return undefined
  const c = canonicalResourceUri(pattern.replaceAll('*', STAR))
  if (c === undefined) return undefined
  const out = c.replaceAll(STAR, '*')
  return out.endsWith('*/') && !pattern.endsWith('/') ? out.slice(0, -1) : out
}
