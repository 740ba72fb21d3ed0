/**
 * Transactional authorization (RFC 9396): `when.authorizationDetails` holds when the caller's
 * token carries an `authorization_details` object of the declared type whose fields satisfy every
 * matcher, compared with the call itself (tool name, argument values). An AS that approved "pay
 * 120 EUR to ACME" thereby authorizes that payment and no other: a larger amount, another creditor
 * or another tool finds no covering object and the condition fails.
 */
import { parseArgPath, resolvePath, type ArgPath } from './matchers.js'
import type { AuthorizationDetailsMatchInput } from './schema.js'

export interface RarInput {
  /** The `authorization_details` claim (JWT) or introspection member; anything else never matches. */
  details: unknown
  tool: string | undefined
  arguments: unknown
  /** Discovery filtering: arguments are unknown, so only the type is checked. */
  listing: boolean
}

type FieldTest = (detail: unknown, input: RarInput) => string | undefined

/** Numbers and decimal strings ("123.50", RFC 9396's own examples) compare as numbers; nothing else does. */
export function asNumber(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v
  if (typeof v === 'string' && /^-?[0-9]{1,15}(\.[0-9]{1,15})?$/.test(v)) return Number(v)
  return undefined
}

const sameScalar = (a: unknown, b: unknown) => a !== undefined && a !== null && typeof a !== 'object' && a === b

export interface CompiledRar {
  readonly type: string
  test(input: RarInput): string | undefined
}

/** Builds the matcher; path problems are returned as messages (keyed by the offending path). */
export function compileRar(spec: AuthorizationDetailsMatchInput, problem: (path: string[], message: string) => void): CompiledRar {
  const tests: FieldTest[] = []
  const argPath = (field: string, key: string, text: string): ArgPath | undefined => {
    const p = parseArgPath(text)
    if (!p) problem(['fields', field, key], `invalid argument path "${text}"`)
    return p
  }
  for (const [field, m] of Object.entries(spec.fields ?? {})) {
    const path = parseArgPath(field)
    if (!path) {
      problem(['fields', field], `invalid field path "${field}"`)
      continue
    }
    const value = (detail: unknown) => resolvePath(detail, path)
    if (m.present) tests.push((d) => (value(d).found ? undefined : `${field} is absent`))
    if (m.equals !== undefined) tests.push((d) => (value(d).value === m.equals ? undefined : `${field} is not ${JSON.stringify(m.equals)}`))
    if (m.in) tests.push((d) => (m.in!.includes(value(d).value as never) ? undefined : `${field} is not one of the allowed values`))
    if (m.gte !== undefined) tests.push((d) => ((asNumber(value(d).value) ?? -Infinity) >= m.gte! ? undefined : `${field} is not ≥ ${m.gte}`))
    if (m.lte !== undefined) tests.push((d) => ((asNumber(value(d).value) ?? Infinity) <= m.lte! ? undefined : `${field} is not ≤ ${m.lte}`))
    if (m.equalsTool) tests.push((d, input) => (input.listing || (input.tool !== undefined && value(d).value === input.tool) ? undefined : `${field} is not the called tool`))
    const byArg = (key: 'equalsArgument' | 'gteArgument' | 'lteArgument', cmp: (detail: unknown, arg: unknown) => boolean) => {
      const text = m[key]
      if (text === undefined) return
      const ap = argPath(field, key, text)
      if (!ap) return
      tests.push((d, input) => {
        if (input.listing) return undefined
        const arg = resolvePath(input.arguments, ap)
        // A missing argument is never covered: the approval must say something about it.
        return arg.found && cmp(value(d).value, arg.value) ? undefined : `${field} does not cover argument ${text}`
      })
    }
    byArg('equalsArgument', sameScalar)
    byArg('gteArgument', (dv, av) => {
      const [x, y] = [asNumber(dv), asNumber(av)]
      return x !== undefined && y !== undefined && x >= y
    })
    byArg('lteArgument', (dv, av) => {
      const [x, y] = [asNumber(dv), asNumber(av)]
      return x !== undefined && y !== undefined && x <= y
    })
  }
  return {
    type: spec.type,
    test(input) {
      if (!Array.isArray(input.details)) return 'the token carries no authorization_details'
      let last: string | undefined = `no authorization_details of type ${spec.type}`
      for (const d of input.details) {
        if (!d || typeof d !== 'object' || Array.isArray(d) || (d as Record<string, unknown>).type !== spec.type) continue
        const why = tests.map((t) => t(d, input)).find((w) => w !== undefined)
        if (why === undefined) return undefined
        last = `authorization_details ${spec.type}: ${why}`
      }
      return last
    },
  }
}
