/**
 * A strict RFC 8259 parser for input the gateway makes decisions on (JWT segments, JSON-RPC
 * bodies). Unlike JSON.parse it rejects duplicate member names (JSON.parse keeps the last one,
 * an upstream may keep the first: a parser differential an attacker can use), `__proto__`
 * members, and nesting deeper than a limit. Objects are created without a prototype chain
 * being consulted for `__proto__`.
 */

export class StrictJsonError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message)
    this.name = 'StrictJsonError'
  }
}

export interface StrictJsonOptions {
  /** Maximum nesting of arrays and objects. Default 64. */
  maxDepth?: number
  /** Reject member names that can pollute prototypes (`__proto__`, `constructor.prototype`). Default true. */
  rejectProtoKeys?: boolean
  /** Maximum elements of one array. Default unlimited. */
  maxArrayLength?: number
  /** Maximum members of one object. Default unlimited. */
  maxMembers?: number
  /**
   * Called for a number whose decimal value is not the value of the double it parses to, as
   * JavaScript prints it (`100.00000000000000001` reads as 100, a 20-digit integer loses digits):
   * the caller decides on the double while an exact reader upstream sees another number.
   */
  onInexactNumber?: (text: string) => void
}

/** Which structural limit a StrictJsonError broke, if any (metrics label). */
export const jsonLimitOf = (e: StrictJsonError): 'json-depth' | 'json-array' | 'json-members' | undefined =>
  e.message === 'nesting too deep' ? 'json-depth' : e.message === 'array too long' ? 'json-array' : e.message === 'too many members' ? 'json-members' : undefined

const WS = new Uint8Array(128)
WS[0x20] = WS[0x09] = WS[0x0a] = WS[0x0d] = 1
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y

/** Integers below 10^15 are always doubles exactly: the common case needs no further look. */
const SAFE_INTEGER = /^-?[0-9]{1,15}$/
const DECIMAL = /^-?([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/

/** The decimal value of a JSON number text as `digits e exponent`, digits without leading or trailing zeros; zero (also -0) is `0`. */
export function decimalKey(text: string): string {
  const m = DECIMAL.exec(text)
  if (!m) return 'NaN'
  const frac = m[2] ?? ''
  let digits = (m[1]! + frac).replace(/^0+/, '')
  if (digits === '') return '0'
  let exp = (m[3] ? parseInt(m[3], 10) : 0) - frac.length
  const kept = digits.replace(/0+$/, '')
  exp += digits.length - kept.length
  digits = kept
  return `${text.startsWith('-') ? '-' : ''}${digits}e${exp}`
}

/**
 * Whether `text` denotes exactly the decimal that JavaScript prints for `value` (the shortest
 * round-trip form). Then the number a policy compares, and the digest covers, is the number the
 * client wrote; distinct such texts of distinct values give distinct doubles.
 */
export const readsExactly = (text: string, value: number): boolean => decimalKey(text) === decimalKey(String(value))

export function parseStrictJson(text: string, options: StrictJsonOptions = {}): unknown {
  const maxDepth = options.maxDepth ?? 64
  const rejectProto = options.rejectProtoKeys ?? true
  const maxArray = options.maxArrayLength ?? Infinity
  const maxMembers = options.maxMembers ?? Infinity
  const onInexact = options.onInexactNumber
  let i = 0
  const n = text.length

  const fail = (msg: string): never => {
    throw new StrictJsonError(msg, i)
  }
  const skipWs = () => {
    while (i < n) {
      const c = text.charCodeAt(i)
      if (c < 128 && WS[c] === 1) i++
      else break
    }
  }

  const parseString = (): string => {
    // i is at the opening quote
    const start = ++i
    let escaped = false
    while (i < n) {
      const c = text.charCodeAt(i)
      if (c === 0x22) break
      if (c === 0x5c) {
        escaped = true
        i += 2
        continue
      }
      if (c < 0x20) fail('control character in string')
      i++
    }
    if (i >= n) fail('unterminated string')
    const raw = text.slice(start, i)
    i++
    if (!escaped) return raw
    try {
      return JSON.parse(`"${raw}"`) as string
    } catch {
      return fail('invalid escape in string')
    }
  }

  const parseValue = (depth: number): unknown => {
    skipWs()
    if (i >= n) fail('unexpected end of input')
    const c = text.charCodeAt(i)
    if (c === 0x7b) return parseObject(depth + 1)
    if (c === 0x5b) return parseArray(depth + 1)
    if (c === 0x22) return parseString()
    if (c === 0x74) return literal('true', true)
    if (c === 0x66) return literal('false', false)
    if (c === 0x6e) return literal('null', null)
    NUMBER.lastIndex = i
    const m = NUMBER.exec(text)
    if (!m) return fail('unexpected character')
    i += m[0].length
    const v = Number(m[0])
    if (!Number.isFinite(v)) fail('number out of range')
    if (onInexact && !SAFE_INTEGER.test(m[0]) && !readsExactly(m[0], v)) onInexact(m[0])
    return v
  }

  const literal = (word: string, value: unknown): unknown => {
    if (text.startsWith(word, i)) {
      i += word.length
      return value
    }
    return fail('unexpected token')
  }

  const parseObject = (depth: number): Record<string, unknown> => {
    if (depth > maxDepth) fail('nesting too deep')
    i++
    const out: Record<string, unknown> = {}
    let members = 0
    skipWs()
    if (text.charCodeAt(i) === 0x7d) {
      i++
      return out
    }
    for (;;) {
      skipWs()
      if (text.charCodeAt(i) !== 0x22) fail('expected member name')
      const key = parseString()
      if (rejectProto && (key === '__proto__' || key === 'constructor' || key === 'prototype')) fail(`forbidden member name "${key}"`)
      if (Object.prototype.hasOwnProperty.call(out, key)) fail(`duplicate member name "${key}"`)
      if (++members > maxMembers) fail('too many members')
      skipWs()
      if (text.charCodeAt(i) !== 0x3a) fail('expected ":"')
      i++
      const value = parseValue(depth)
      // Plain assignment is the same as defining the property when nothing named `key` exists up the
      // prototype chain, and keeps the object in V8's fast mode (defineProperty on every member made
      // this parser ~2× slower). `__proto__`, or a key something put on Object.prototype, is defined.
      if (key in Object.prototype) Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
      else out[key] = value
      skipWs()
      const c = text.charCodeAt(i)
      if (c === 0x2c) {
        i++
        continue
      }
      if (c === 0x7d) {
        i++
        return out
      }
      fail('expected "," or "}"')
    }
  }

  const parseArray = (depth: number): unknown[] => {
    if (depth > maxDepth) fail('nesting too deep')
    i++
    const out: unknown[] = []
    skipWs()
    if (text.charCodeAt(i) === 0x5d) {
      i++
      return out
    }
    for (;;) {
      if (out.length >= maxArray) fail('array too long')
      out.push(parseValue(depth))
      skipWs()
      const c = text.charCodeAt(i)
      if (c === 0x2c) {
        i++
        continue
      }
      if (c === 0x5d) {
        i++
        return out
      }
      fail('expected "," or "]"')
    }
  }

  const value = parseValue(0)
  skipWs()
  if (i !== n) fail('trailing data after JSON value')
  return value
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Decode bytes that must be UTF-8 (RFC 8259 §8.1, RFC 8725 §3.7); a BOM is refused. */
export function decodeUtf8Strict(bytes: Uint8Array): string {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) throw new StrictJsonError('byte order mark', 0)
  try {
    return utf8.decode(bytes)
  } catch {
    throw new StrictJsonError('invalid UTF-8', 0)
  }
}
