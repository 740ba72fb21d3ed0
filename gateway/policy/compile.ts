/**
 * Policy documents → PolicySet. Every matcher is built once here (globs to RegExps, regexes
 * compiled, paths parsed, time zones checked), references are checked against gateway.yaml
 * (routes, issuers, claim names), and rules that can never match or can never decide produce
 * warnings. Every problem carries file:line:column; an invalid set is never returned.
 */
import { createHash } from 'node:crypto'
import type { ConfigProblem } from '../errors.js'
import { problemAt, type YamlSource } from '../config/yaml-source.js'
import { argMatcher, canonicalResourcePattern, claimValues, covers, localTime, minutesOf, nameMatcher, parseArgPath, type ArgMatcher, type NameMatcher } from './matchers.js'
import { parseDuration } from '../config/units.js'
import { MCP_METHODS, isMcpMethod } from '../mcp/methods.js'
import { compileRar } from './rar.js'
import { DEFAULT_APPROVAL_MESSAGE, templateProblem } from './approval-message.js'
import type { EffectName, LimitKeyName, PolicyDocument, RuleInput, WhenInput } from './schema.js'

/** A require-approval rule's settings, resolved (docs/approvals.md). */
export interface CompiledApproval {
  readonly message: string
  readonly waitMs: number
  readonly expiryMs: number
  readonly windowMs: number | undefined
  readonly details: 'arguments' | 'digest'
  readonly type: string
}


/** What the caller looks like to a policy; auth's Principal satisfies it. */
export interface PolicyPrincipal {
  readonly issuer: string
  readonly issuerName?: string
  readonly subject: string
  readonly clientId: string
  readonly scopes: ReadonlySet<string>
  /** Current actor only (`act.sub`); never the nested chain (JWT-17, ATK-24). */
  readonly actor: string | undefined
  readonly userPresent: boolean
  readonly claims: Readonly<Record<string, unknown>>
}

const DOT_SEGMENT = /(^|\/)(?:\.|%2e){1,2}(?=\/|$|[?#])/i

export type TargetKind = 'tool' | 'prompt' | 'resource'

/** The methods whose `params` name a target of each kind. */
export const TARGET_METHODS: Record<TargetKind, readonly string[]> = {
  tool: ['tools/call'],
  prompt: ['prompts/get'],
  resource: ['resources/read', 'resources/subscribe', 'resources/unsubscribe'],
}

export interface EvalInput {
  method: string
  name: string | undefined
  arguments: unknown
  principal: PolicyPrincipal | undefined
  now: number
  /** Discovery filtering: arguments are unknown, so argument conditions are undecided. */
  listing: boolean
}

/** A condition on the input: undefined when it holds, else why not (built only when asked: explain). */
export type Why = () => string
type Check = (input: EvalInput, effect: EffectName) => Why | undefined

export interface CompiledRule {
  readonly policy: string
  readonly id: string
  readonly effect: EffectName
  readonly shadow: boolean
  readonly file: string
  readonly line: number
  readonly scopes: readonly string[]
  /** require-approval only. */
  readonly approval: CompiledApproval | undefined
  readonly routes: ReadonlySet<string> | 'all'
  readonly methods: NameMatcher | undefined
  readonly target: { kind: TargetKind; names: NameMatcher } | undefined
  readonly args: readonly ArgMatcher[]
  /** Rule has conditions on the caller, the clock or arguments (not a pure method/name rule). */
  readonly conditional: boolean
  /** Every condition, in the order they are checked. */
  readonly checks: readonly Check[]
}

/** A rate limit or quota (docs/limits.md); counted by gateway/limits. */
export interface CompiledLimit {
  readonly name: string
  readonly policy: string
  readonly routes: ReadonlySet<string> | 'all'
  readonly methods: NameMatcher | undefined
  readonly names: NameMatcher | undefined
  readonly key: readonly LimitKeyName[]
  readonly limit: number
  readonly perMs: number
}

export interface PolicySet {
  /** Content hash of the documents (first 12 hex of SHA-256). */
  readonly version: string
  readonly policies: readonly { name: string; file: string; shadow: boolean; rules: number }[]
  readonly rules: readonly CompiledRule[]
  rulesFor(route: string): readonly CompiledRule[]
  /** Rate limits and quotas; empty when no document has `limits:`. */
  readonly limits: readonly CompiledLimit[]
  limitsFor(route: string): readonly CompiledLimit[]
}

/** Shortest window: below it 60 slices would be under 17 ms, finer than the clocks agree. */
export const MIN_LIMIT_WINDOW_MS = 1000

export interface CompileContext {
  /** Route names from gateway.yaml; undefined = not checked (CLI without --config). */
  routes?: readonly { name: string; scopesSupported: readonly string[] }[]
  /** Issuer names and URLs from gateway.yaml; undefined = not checked. */
  issuers?: readonly { name: string; issuer: string }[]
  /** Claim names for groups and roles (policies.claims in gateway.yaml). */
  claims: { groups?: string | undefined; roles?: string | undefined }
  /** The binding_message rule of each CIBA issuer: every approval message must render inside all of them. */
  bindingMessageRules?: readonly { issuer: string; rule: RegExp }[]
}

export interface LoadedDocument {
  src: YamlSource
  doc: PolicyDocument
  /** Raw file text, for the version hash. */
  text: string
}

export function policyVersion(files: readonly { file: string; text: string }[]): string {
  const h = createHash('sha256')
  for (const f of [...files].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0))) {
    h.update(`${Buffer.byteLength(f.file)}:${f.file}\n${Buffer.byteLength(f.text)}:`)
    h.update(f.text)
  }
  return h.digest('hex').slice(0, 12)
}

/** An argument matcher's regex (anchored, Unicode mode), or why it is invalid. */
export function compileArgRegex(source: string): RegExp | string {
  try {
    return new RegExp(`^(?:${source})$`, 'u')
  } catch (e) {
    return `invalid regular expression (${(e as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /, '')})`
  }
}

export function compilePolicies(docs: readonly LoadedDocument[], ctx: CompileContext, problems: ConfigProblem[], version: string): PolicySet | undefined {
  const rules: CompiledRule[] = []
  const policies: PolicySet['policies'][number][] = []
  const names = new Map<string, string>()
  const limits: CompiledLimit[] = []
  const limitNames = new Map<string, string>()
  for (const { src, doc } of docs) {
    if (names.has(doc.name)) problems.push(problemAt(src, ['name'], `duplicate policy name "${doc.name}" (also in ${names.get(doc.name)})`))
    names.set(doc.name, src.file)
    const routes = compileRoutes(src, doc, ctx, problems)
    const ids = new Map<string, number>()
    doc.rules.forEach((rule, i) => {
      if (ids.has(rule.id)) problems.push(problemAt(src, ['rules', i, 'id'], `duplicate rule id "${rule.id}" (first at rules[${ids.get(rule.id)}])`))
      ids.set(rule.id, i)
      const compiled = compileRule(src, doc, rule, i, routes, ctx, problems)
      if (compiled) rules.push(compiled)
    })
    policies.push({ name: doc.name, file: src.file, shadow: doc.mode === 'shadow', rules: doc.rules.length })
    doc.limits?.forEach((l, i) => {
      const at = (...p: (string | number)[]) => ['limits', i, ...p]
      if (limitNames.has(l.name)) problems.push(problemAt(src, at('name'), `duplicate limit name "${l.name}" (also in ${limitNames.get(l.name)})`))
      limitNames.set(l.name, src.file)
      let perMs = 0
      try {
        perMs = parseDuration(l.per)
      } catch (e) {
        problems.push(problemAt(src, at('per'), (e as Error).message))
      }
      if (perMs > 0 && perMs < MIN_LIMIT_WINDOW_MS) problems.push(problemAt(src, at('per'), `a window shorter than ${MIN_LIMIT_WINDOW_MS / 1000}s is not supported`))
      if (l.methods) warnUnknownMethods(src, at('methods'), l.methods, problems)
      limits.push({ name: l.name, policy: doc.name, routes, methods: l.methods ? nameMatcher(l.methods) : undefined, names: l.tools ? nameMatcher(l.tools) : undefined, key: l.key, limit: l.limit, perMs })
    })
  }
  if (problems.some((p) => p.severity === 'error')) return undefined
  warnShadowed(docs, rules, problems)
  const byRoute = new Map<string, readonly CompiledRule[]>()
  for (const r of ctx.routes ?? []) byRoute.set(r.name, rules.filter((x) => x.routes === 'all' || x.routes.has(r.name)))
  for (const r of ctx.routes ?? []) {
    if (byRoute.get(r.name)!.length === 0) problems.push({ file: '(policies)', line: 1, column: 1, path: '', message: `no policy applies to route "${r.name}": every request to it is denied`, severity: 'warning' })
  }
  const limitsByRoute = new Map<string, readonly CompiledLimit[]>()
  return Object.freeze({
    version,
    policies,
    rules,
    rulesFor: (route: string) => {
      let r = byRoute.get(route)
      // Routes unknown at compile time (suites, explain without --config) are resolved once.
      if (!r) byRoute.set(route, (r = rules.filter((x) => x.routes === 'all' || x.routes.has(route))))
      return r
    },
    limits,
    limitsFor: (route: string) => {
      let l = limitsByRoute.get(route)
      if (!l) limitsByRoute.set(route, (l = limits.filter((x) => x.routes === 'all' || x.routes.has(route))))
      return l
    },
  })
}

function compileRoutes(src: YamlSource, doc: PolicyDocument, ctx: CompileContext, problems: ConfigProblem[]): ReadonlySet<string> | 'all' {
  if (doc.routes.includes('*')) return 'all'
  if (ctx.routes) {
    const known = ctx.routes.map((r) => r.name)
    doc.routes.forEach((r, j) => {
      if (!known.includes(r)) problems.push(problemAt(src, ['routes', j], `unknown route "${r}" (known: ${known.join(', ')})`))
    })
  }
  return new Set(doc.routes)
}

function compileRule(src: YamlSource, doc: PolicyDocument, rule: RuleInput, i: number, routes: ReadonlySet<string> | 'all', ctx: CompileContext, problems: ConfigProblem[]): CompiledRule | undefined {
  const at = (...p: (string | number)[]) => ['rules', i, ...p]
  const err = (path: (string | number)[], message: string) => problems.push(problemAt(src, path, message))
  const warn = (path: (string | number)[], message: string) => problems.push(problemAt(src, path, message, 'warning'))
  const before = problems.filter((p) => p.severity === 'error').length

  const targets = (['tools', 'prompts', 'resources'] as const).filter((k) => rule[k] !== undefined)
  if (targets.length > 1) err(at(targets[1]!), `a rule names one kind of target; this one has ${targets.join(' and ')} (split it into two rules)`)
  const kind: TargetKind | undefined = targets[0] === 'tools' ? 'tool' : targets[0] === 'prompts' ? 'prompt' : targets[0] === 'resources' ? 'resource' : undefined
  let entries = kind ? rule[targets[0]!]! : []
  if (kind === 'resource') {
    // Rules compare against canonical URIs, like requests (matchers.ts). A pattern is written by the
    // operator: a dot segment there (next to a `*` it would swallow) is a mistake, not a spelling.
    entries = entries.map((e, j) => {
      if (e === '*') return e
      const c = DOT_SEGMENT.test(e) ? undefined : canonicalResourcePattern(e)
      if (c === undefined) err(at('resources', j), 'a resource pattern must be an absolute URI without userinfo, dot segments, control characters, \\ or ambiguous percent-encodings (%2F, %5C, %00, %25xx)')
      return c ?? e
    })
  }
  const target = kind ? { kind, names: nameMatcher(entries) } : undefined
  const methods = rule.methods ? nameMatcher(rule.methods) : undefined
  if (rule.methods) warnUnknownMethods(src, at('methods'), rule.methods, problems)
  if (target && methods && !TARGET_METHODS[target.kind].some((m) => methods.test(m))) {
    warn(at('methods'), `this rule can never match: ${targets[0]} are only named by ${TARGET_METHODS[target.kind].join(', ')}`)
  }
  if (rule.arguments && target?.kind !== 'tool' && !(methods?.test('tools/call') ?? false)) {
    warn(at('arguments'), 'this rule can never match: arguments exist only on tools/call (add tools:)')
  }

  if (rule.effect === 'require-scopes' && !rule.scopes) err(at('effect'), 'require-scopes needs scopes: [...]')
  if (rule.effect !== 'require-scopes' && rule.scopes) err(at('scopes'), `scopes: is only for effect require-scopes (this rule is ${rule.effect}; use when.scopes to match on scopes)`)
  for (const s of rule.scopes ?? []) {
    if (s === 'offline_access') err(at('scopes'), 'offline_access is never requested in a challenge (SCP-06)')
    for (const r of ctx.routes ?? []) {
      if ((routes === 'all' || routes.has(r.name)) && !r.scopesSupported.includes(s)) warn(at('scopes'), `scope "${s}" is not in scopesSupported of route "${r.name}"; clients will not find it in metadata`)
    }
  }

  if (rule.effect !== 'require-approval' && rule.approval) err(at('approval'), `approval: is only for effect require-approval (this rule is ${rule.effect})`)
  let approval: CompiledApproval | undefined
  if (rule.effect === 'require-approval') {
    const a = rule.approval
    const waitMs = parseDuration(a?.wait ?? '30s')
    const expiryMs = parseDuration(a?.expiry ?? '5m')
    if (expiryMs < 1000) err(at('approval', 'expiry'), 'expiry must be at least 1s')
    if (waitMs > expiryMs) warn(at('approval', 'wait'), 'wait is longer than expiry: the call is refused as expired before the wait ends')
    if (target?.kind !== 'tool') warn(at('effect'), 'require-approval holds tools/call only; other methods it matches are refused')
    const message = a?.message ?? DEFAULT_APPROVAL_MESSAGE
    for (const { issuer, rule: pattern } of ctx.bindingMessageRules ?? []) {
      const why = templateProblem(message, pattern)
      if (why) err(a?.message ? at('approval', 'message') : at('effect'), `${a?.message ? '' : 'the default '}${why} (issuers.${issuer}.approval.bindingMessagePattern); the AS would refuse the approval request`)
    }
    approval = { message, waitMs, expiryMs, windowMs: a?.window === undefined ? undefined : parseDuration(a.window), details: a?.details ?? 'arguments', type: a?.type ?? 'mcp_tool_call' }
  }

  const args: ArgMatcher[] = []
  for (const [key, m] of Object.entries(rule.arguments ?? {})) {
    const path = parseArgPath(key)
    if (!path) {
      err(at('arguments', key), `invalid argument path "${key}" (use name, a.b, items[0] or ["odd key"])`)
      continue
    }
    if (m.present && m.absent) err(at('arguments', key), 'present and absent together never match')
    if (m.absent && Object.keys(m).length > 1) err(at('arguments', key), 'absent cannot be combined with value conditions')
    let regex: RegExp | undefined
    if (m.regex !== undefined) {
      const r = compileArgRegex(m.regex)
      if (typeof r === 'string') err(at('arguments', key, 'regex'), r)
      else regex = r
    }
    const lo = m.gte ?? m.gt
    const hi = m.lte ?? m.lt
    if (lo !== undefined && hi !== undefined && (lo > hi || (lo === hi && (m.gt !== undefined || m.lt !== undefined)))) warn(at('arguments', key), 'this numeric range is empty: the rule can never match')
    args.push(argMatcher(key, path, m, regex))
  }

  const when = rule.when ? compileWhen(src, rule.when, at('when'), ctx, problems) : []
  if (problems.filter((p) => p.severity === 'error').length > before) return undefined

  const checks: Check[] = []
  if (methods) checks.push((input) => (methods.test(input.method) ? undefined : () => `method ${input.method} is not in [${methods.source.join(', ')}]`))
  if (target) {
    const ms = TARGET_METHODS[target.kind]
    checks.push((input) => {
      if (!methods && !ms.includes(input.method)) return () => `method ${input.method} names no ${target.kind}`
      const name = input.name
      if (name === undefined) return () => `the request names no ${target.kind}`
      return target.names.test(name) ? undefined : () => `${target.kind} ${JSON.stringify(name)} is not in [${target.names.source.join(', ')}]`
    })
  }
  for (const a of args) {
    checks.push((input, effect) => {
      // While listing, arguments are unknown: allow rules (and require-scopes rules the caller
      // satisfies, see evaluate.ts) stay possible, the others do not fire, so a tool is listed
      // when some call of it could be allowed.
      if (input.listing) return effect === 'allow' || effect === 'require-scopes' ? undefined : () => `argument ${a.key} unknown while listing`
      const r = a.test(input.arguments)
      if (r.result === 'yes') return undefined
      // A value of the wrong type cannot slip past a deny by being a string (fail closed).
      if (r.result === 'mismatch' && effect !== 'allow') return undefined
      return () => `argument ${r.why()}`
    })
  }
  checks.push(...when)

  return {
    policy: doc.name,
    id: rule.id,
    effect: rule.effect,
    shadow: (rule.mode ?? doc.mode) === 'shadow',
    file: src.file,
    ...lineOf(src, at()),
    scopes: rule.scopes ?? [],
    approval,
    routes,
    methods,
    target,
    args,
    conditional: when.length > 0 || args.length > 0,
    checks,
  }
}

const lineOf = (src: YamlSource, path: (string | number)[]) => ({ line: problemAt(src, path, '').line })

const setCheck = (label: string, values: (input: EvalInput) => ReadonlySet<string>, m: { allOf?: string[]; anyOf?: string[]; noneOf?: string[] }): Check => (input) => {
  const have = values(input)
  if (m.allOf && !m.allOf.every((s) => have.has(s))) return () => `${label}: missing ${m.allOf!.filter((s) => !have.has(s)).join(' ')} (allOf)`
  if (m.anyOf && !m.anyOf.some((s) => have.has(s))) return () => `${label}: none of ${m.anyOf!.join(' ')} (anyOf)`
  if (m.noneOf && m.noneOf.some((s) => have.has(s))) return () => `${label}: has ${m.noneOf!.filter((s) => have.has(s)).join(' ')} (noneOf)`
  return undefined
}

function compileWhen(src: YamlSource, w: WhenInput, base: (string | number)[], ctx: CompileContext, problems: ConfigProblem[]): Check[] {
  const checks: Check[] = []
  const p = (input: EvalInput) => input.principal
  // No principal never satisfies a condition on the principal.
  const need = (f: (pr: PolicyPrincipal, input: EvalInput) => Why | undefined): Check => (input) => {
    const pr = p(input)
    return pr ? f(pr, input) : () => 'no authenticated caller'
  }
  const inList = (label: string, list: string[] | undefined, get: (pr: PolicyPrincipal) => string | undefined) => {
    if (!list) return
    const set = new Set(list)
    checks.push(need((pr) => {
      const v = get(pr)
      return v !== undefined && set.has(v) ? undefined : () => `${label} ${v === undefined ? '(none)' : JSON.stringify(v)} is not in [${list.join(', ')}]`
    }))
  }
  inList('subject', w.subjects, (pr) => pr.subject)
  inList('agent', w.agents, (pr) => pr.clientId)
  inList('actor', w.actors, (pr) => pr.actor)
  if (w.issuers) {
    if (ctx.issuers) {
      w.issuers.forEach((name, j) => {
        if (!ctx.issuers!.some((i) => i.name === name || i.issuer === name)) {
          problems.push(problemAt(src, [...base, 'issuers', j], `unknown issuer "${name}" (known: ${ctx.issuers!.map((i) => i.name).join(', ')})`))
        }
      })
    }
    const set = new Set(w.issuers)
    checks.push(need((pr) => (set.has(pr.issuer) || (pr.issuerName !== undefined && set.has(pr.issuerName)) ? undefined : () => `issuer ${pr.issuerName ?? pr.issuer} is not in [${w.issuers!.join(', ')}]`)))
  }
  const because = (text: string): Why => () => text
  if (w.delegated !== undefined) checks.push(need((pr) => ((pr.actor !== undefined) === w.delegated ? undefined : because(w.delegated ? 'the token has no act claim' : 'the token is delegated (act)'))))
  if (w.userPresent !== undefined) checks.push(need((pr) => (pr.userPresent === w.userPresent ? undefined : because(w.userPresent ? 'app-only token (no user)' : 'a user is present'))))
  if (w.scopes) {
    const overlap = w.scopes.allOf?.filter((s) => w.scopes!.noneOf?.includes(s)) ?? []
    if (overlap.length > 0) problems.push(problemAt(src, [...base, 'scopes'], `this rule can never match: ${overlap.join(' ')} both required and forbidden`, 'warning'))
    const c = setCheck('scopes', (input) => input.principal!.scopes, w.scopes)
    checks.push(need((_pr, input) => c(input, 'allow')))
  }
  for (const kind of ['groups', 'roles'] as const) {
    const m = w[kind]
    if (!m) continue
    const claim = ctx.claims[kind]
    if (!claim) {
      problems.push(problemAt(src, [...base, kind], `${kind} needs the claim name: set policies.claims.${kind} in gateway.yaml (e.g. ${kind === 'groups' ? 'groups' : 'roles or realm_access.roles'})`))
      continue
    }
    const c = setCheck(kind, (input) => claimValues(input.principal!.claims, claim), m)
    checks.push(need((_pr, input) => c(input, 'allow')))
  }
  if (w.authorizationDetails) {
    const rar = compileRar(w.authorizationDetails, (path, message) => problems.push(problemAt(src, [...base, 'authorizationDetails', ...path], message)))
    checks.push(need((pr, input) => {
      const why = rar.test({ details: pr.claims.authorization_details, tool: input.method === 'tools/call' ? input.name : undefined, arguments: input.arguments, listing: input.listing })
      return why === undefined ? undefined : () => why
    }))
  }
  if (w.time) {
    const t = w.time
    try {
      localTime(0, t.timezone)
    } catch {
      problems.push(problemAt(src, [...base, 'time', 'timezone'], `unknown time zone "${t.timezone}"`))
      return checks
    }
    const from = t.from === undefined ? 0 : minutesOf(t.from)
    const to = t.to === undefined ? 24 * 60 : minutesOf(t.to)
    if (from === to) problems.push(problemAt(src, [...base, 'time'], 'this time window is empty (from = to): the rule can never match', 'warning'))
    const days = t.days ? new Set<string>(t.days) : undefined
    checks.push((input) => {
      const { day, minute } = localTime(input.now, t.timezone)
      if (days && !days.has(day)) return () => `${day} is outside the time window`
      const inside = from <= to ? minute >= from && minute < to : minute >= from || minute < to
      return inside ? undefined : () => `${String(Math.floor(minute / 60)).padStart(2, '0')}:${String(minute % 60).padStart(2, '0')} ${t.timezone} is outside the time window`
    })
  }
  return checks
}

const PRECEDENCE: Record<EffectName, number> = { deny: 3, 'require-scopes': 2, 'require-approval': 1, allow: 0 }

/**
 * A rule that can never be the deciding rule: an earlier unconditional rule matches at least
 * everything it matches, on at least its routes, with an effect that takes precedence.
 */
/**
 * A method name that MCP does not define (or a glob that matches none) is most likely a typo:
 * the rule silently never matches and the method it meant stays closed (or open). A warning, not
 * an error: a server may implement methods of its own (give those a glob or accept the warning).
 */
function warnUnknownMethods(src: YamlSource, path: (string | number)[], entries: readonly string[], problems: ConfigProblem[]): void {
  entries.forEach((m, j) => {
    if (m === '*') return
    const known = m.includes('*') ? nameMatcher([m]) : undefined
    if (known ? MCP_METHODS.some((x) => known.test(x)) : isMcpMethod(m)) return
    const near = known ? undefined : closestMethod(m)
    problems.push(problemAt(src, [...path, j], `"${m}" is no MCP method${known ? ' (the pattern matches none)' : ''}${near ? `; did you mean "${near}"?` : ''}`, 'warning'))
  })
}

/** The MCP method within edit distance 2 of `name`, if any (the suggestion of a warning). */
function closestMethod(name: string): string | undefined {
  let best: string | undefined
  let bestD = 3
  for (const m of MCP_METHODS) {
    const d = editDistance(name.toLowerCase(), m.toLowerCase(), bestD)
    if (d < bestD) [best, bestD] = [m, d]
  }
  return best
}

function editDistance(a: string, b: string, cap: number): number {
  if (Math.abs(a.length - b.length) >= cap) return cap
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = cur
  }
  return prev[b.length]!
}

function warnShadowed(docs: readonly LoadedDocument[], rules: readonly CompiledRule[], problems: ConfigProblem[]): void {
  const srcOf = new Map(docs.map((d) => [d.doc.name, d]))
  rules.forEach((later, j) => {
    for (const earlier of rules.slice(0, j)) {
      if (earlier.conditional || earlier.shadow !== later.shadow || earlier.effect === 'require-scopes') continue
      if (PRECEDENCE[earlier.effect] < PRECEDENCE[later.effect]) continue
      if (earlier.routes !== 'all' && (later.routes === 'all' || [...later.routes].some((r) => !(earlier.routes as ReadonlySet<string>).has(r)))) continue
      if (earlier.target && (!later.target || later.target.kind !== earlier.target.kind || !covers(earlier.target.names, later.target.names))) continue
      if (!covers(earlier.methods, later.methods)) continue
      const d = srcOf.get(later.policy)
      const idx = d?.doc.rules.findIndex((r) => r.id === later.id) ?? -1
      if (d && idx >= 0) {
        problems.push(problemAt(d.src, ['rules', idx, 'id'], `rule "${later.id}" can never decide: rule "${earlier.policy}/${earlier.id}" (${earlier.file}:${earlier.line}) matches everything it matches and takes precedence`, 'warning'))
      }
      break
    }
  })
}
