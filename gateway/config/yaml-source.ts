/**
 * YAML documents with positions: parse, interpolate ${ENV}, validate against a JSON Schema and
 * report every problem as file:line:column. Shared by gateway.yaml and policy files so both
 * fail the same way.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'
import type { TSchema } from '@sinclair/typebox'
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml'
import type { ConfigProblem } from '../errors.js'

// ajv-formats ships CJS with a default export; under NodeNext it arrives wrapped.
const addFormats = ((m: unknown) => (m as { default?: unknown }).default ?? m)(addFormatsModule) as (ajv: Ajv) => Ajv

export type PathSegment = string | number

export interface YamlSource {
  file: string
  doc: Document.Parsed
  lines: LineCounter
  value: unknown
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, coerceTypes: false, strict: false, removeAdditional: false })
addFormats(ajv)
// ajv-formats' `uri` is RFC 3986 syntax; the gateway parses URLs with WHATWG URL, which refuses
// some of those (`https://:host`). A URL the gateway cannot parse is refused here, with a position,
// instead of failing later in normalisation.
ajv.addFormat('uri', (s: string) => {
  try {
    const u = new URL(s)
    return !/^(https?|wss?|rediss?):$/.test(u.protocol) || u.host !== ''
  } catch {
    return false
  }
})
const compiled = new WeakMap<TSchema, ValidateFunction>()

/**
 * TypeBox lists every non-Optional property as required, including those with a default. The
 * TypeScript types describe data after defaults are applied (so they stay non-optional), while
 * the JSON Schema that validates and that editors see must not demand a key that has a default.
 */
export function publishedSchema<T>(schema: T): T {
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk)
    if (!node || typeof node !== 'object') return node
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(node)) out[k] = walk(v)
    const props = out.properties as Record<string, { default?: unknown }> | undefined
    if (props && Array.isArray(out.required)) {
      const required = (out.required as string[]).filter((k) => props[k]?.default === undefined)
      if (required.length > 0) out.required = required
      else delete out.required
    }
    return out
  }
  return walk(schema) as T
}

function validatorFor(schema: TSchema): ValidateFunction {
  let v = compiled.get(schema)
  if (!v) {
    v = ajv.compile(publishedSchema(schema))
    compiled.set(schema, v)
  }
  return v
}

export function parseYamlSource(file: string, text: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[]): YamlSource | undefined {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, merge: false })
  // One syntax error cascades into dozens; the first few are the useful ones.
  for (const e of doc.errors.slice(0, 3)) {
    const [start] = e.pos
    const { line, col } = lines.linePos(start)
    problems.push({ file, line, column: col, path: '', message: e.message.split('\n')[0] ?? e.message, severity: 'error' })
  }
  if (doc.errors.length > 0) return undefined
  interpolateEnv(file, doc, lines, env, problems)
  const at = (node: { range?: [number, number, number?] | null } | null | undefined) => lines.linePos(node?.range?.[0] ?? 0)
  let unsafe = false
  visit(doc, {
    Pair(_key, pair) {
      // A `__proto__` key would set the prototype of the object toJS builds, not a member, and
      // validation would never see it.
      const k = pair.key as { value?: unknown; range?: [number, number, number?] | null } | null
      if (k && typeof k.value === 'string' && FORBIDDEN_KEYS.has(k.value)) {
        const { line, col } = at(k)
        problems.push({ file, line, column: col, path: '', message: `key ${JSON.stringify(k.value)} is not allowed`, severity: 'error' })
        unsafe = true
      }
    },
  })
  if (unsafe) return undefined
  try {
    return { file, doc, lines, value: doc.toJS({ maxAliasCount: 50 }) }
  } catch (e) {
    // An alias without an anchor, or an alias bomb: the yaml library throws instead of listing an error.
    let node: { range?: [number, number, number?] | null } | undefined
    visit(doc, {
      Alias(_key, alias) {
        if (!alias.resolve(doc)) {
          node = alias
          return visit.BREAK
        }
        return undefined
      },
    })
    const { line, col } = at(node)
    problems.push({ file, line, column: col, path: '', message: (e as Error).message.split('\n')[0] ?? 'invalid alias', severity: 'error' })
    return undefined
  }
}

const FORBIDDEN_KEYS = new Set(['__proto__'])

/** `${NAME}` in any string scalar is replaced by the environment variable; unset is an error. */
function interpolateEnv(file: string, doc: Document.Parsed, lines: LineCounter, env: NodeJS.ProcessEnv, problems: ConfigProblem[]): void {
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return
      const value = node.value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
        const v = env[name]
        if (v === undefined) {
          const { line, col } = lines.linePos(node.range?.[0] ?? 0)
          problems.push({ file, line, column: col, path: '', message: `environment variable ${name} is not set`, severity: 'error' })
          return ''
        }
        return v
      })
      // An unquoted `port: ${PORT}` means the number, as if the value had been written there.
      node.value = node.type === 'PLAIN' && /^-?[0-9]+$/.test(value) ? Number(value) : node.type === 'PLAIN' && (value === 'true' || value === 'false') ? value === 'true' : value
    },
  })
}

/** Position of the node at `path`; `key` points at the mapping key instead of its value. */
export function positionOf(src: YamlSource, path: readonly PathSegment[], key = false): { line: number; column: number } {
  let node: Node | null = src.doc.contents as Node | null
  let best = node?.range?.[0] ?? 0
  for (let i = 0; i < path.length && node; i++) {
    const seg = path[i]
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg))
      if (!pair) break
      const keyNode = pair.key as Node
      if (key && i === path.length - 1) {
        best = keyNode.range?.[0] ?? best
        break
      }
      best = keyNode.range?.[0] ?? best
      node = (pair.value as Node | null) ?? null
      if (node?.range) best = node.range[0]
    } else if (isSeq(node) && typeof seg === 'number') {
      node = (node.items[seg] as Node | undefined) ?? null
      if (node?.range) best = node.range[0]
    } else break
  }
  const { line, col } = src.lines.linePos(best)
  return { line, column: col }
}

export function formatPath(path: readonly PathSegment[]): string {
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('')
}

export function problemAt(src: YamlSource, path: readonly PathSegment[], message: string, severity: 'error' | 'warning' = 'error', key = false): ConfigProblem {
  return { file: src.file, ...positionOf(src, path, key), path: formatPath(path), message, severity }
}

const pointerToPath = (pointer: string): PathSegment[] =>
  pointer === ''
    ? []
    : pointer
        .slice(1)
        .split('/')
        .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
        .map((s) => (/^[0-9]+$/.test(s) ? Number(s) : s))

/** Validate `src.value` (defaults are filled in place) and report every error with its position. */
export function validateAgainst(src: YamlSource, schema: TSchema, problems: ConfigProblem[]): boolean {
  const validate = validatorFor(schema)
  if (validate(src.value)) return true
  for (const p of describeErrors(validate.errors ?? [])) {
    problems.push(problemAt(src, p.path, p.message, 'error', p.key))
  }
  return false
}

interface Described {
  path: PathSegment[]
  message: string
  key: boolean
}

function describeErrors(errors: ErrorObject[]): Described[] {
  // A failed anyOf reports one error per branch; collapse them into one readable line.
  const unionPaths = errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath)
  const out: Described[] = []
  const seen = new Set<string>()
  for (const e of errors) {
    const inUnion = unionPaths.some((u) => e.keyword !== 'anyOf' && (e.instancePath === u || e.instancePath.startsWith(`${u}/`)))
    if (inUnion) continue
    const d = describe(e, errors)
    const id = `${formatPath(d.path)}|${d.message}`
    if (!seen.has(id)) {
      seen.add(id)
      out.push(d)
    }
  }
  return out
}

function describe(e: ErrorObject, all: ErrorObject[]): Described {
  const path = pointerToPath(e.instancePath)
  switch (e.keyword) {
    case 'additionalProperties': {
      const prop = String((e.params as { additionalProperty: string }).additionalProperty)
      return { path: [...path, prop], message: `unknown key "${prop}"`, key: true }
    }
    case 'required':
      return { path, message: `missing required key "${String((e.params as { missingProperty: string }).missingProperty)}"`, key: false }
    case 'anyOf': {
      const consts = all
        .filter((x) => x.keyword === 'const' && x.instancePath === e.instancePath)
        .map((x) => JSON.stringify((x.params as { allowedValue: unknown }).allowedValue))
      return { path, message: consts.length > 0 ? `must be one of ${consts.join(', ')}` : 'does not match any allowed form', key: false }
    }
    case 'pattern':
      return { path, message: `does not match the expected format (${e.parentSchema && typeof e.parentSchema === 'object' && 'description' in e.parentSchema ? String(e.parentSchema.description) : String((e.params as { pattern: string }).pattern)})`, key: false }
    default:
      return { path, message: e.message ?? 'invalid', key: false }
  }
}
