/**
 * How a request path under a prefix (an API route, an egress target) maps onto the upstream:
 * `prefix/rest` → upstream path + `/rest`, byte for byte. Nothing is normalised; a path that a
 * URL parser or the upstream could read differently from us is refused instead (`.`/`..`
 * segments, encoded or not; encoded slashes and backslashes; duplicate slashes; NUL), so what
 * policy sees is what the upstream serves.
 */
import { GatewayError } from '../errors.js'

/** Request facts for policy matching on HTTP (API and egress routes). */
export interface HttpFacts {
  readonly method: string
  /** The path after the route prefix, starting with `/` (`/` for the prefix itself). Raw (percent-encoded) as received. */
  readonly path: string
  /** Decoded query parameters, in order; `access_token` is never included (and never forwarded). */
  readonly query: Readonly<Record<string, readonly string[]>>
}

export interface MappedPath {
  /** Path to request at the upstream origin. */
  upstreamPath: string
  /** Query string to forward, without `?`. */
  query: string
  facts: HttpFacts
}

/** RFC 3986 pchar plus `/`; `%` only as the start of an escape (checked below). */
const PATH_CHARS = /^[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/
/** Escapes that decode to a separator, a dot or NUL: a second reading of the path. */
const SMUGGLED = /%(2f|5c|2e|00)/i

/** Query parameters that never travel upstream: a token in a URL is ignored, not used. */
export const DROPPED_QUERY = new Set(['access_token'])

const invalid = (detail: string) => new GatewayError('GW_HTTP_PATH_INVALID', { detail })

/** The part of `rawPath` after `prefix`, or undefined when the path is not under it. */
export function restUnder(rawPath: string, prefix: string): string | undefined {
  if (rawPath === prefix) return ''
  return rawPath.startsWith(`${prefix}/`) ? rawPath.slice(prefix.length) : undefined
}

/** Checks the rest of a path; throws GW_HTTP_PATH_INVALID for anything ambiguous. */
export function checkRest(rest: string): void {
  if (!PATH_CHARS.test(rest)) throw invalid('path has characters outside RFC 3986')
  if (/%(?![0-9A-Fa-f]{2})/.test(rest)) throw invalid('malformed percent-encoding')
  if (SMUGGLED.test(rest)) throw invalid('encoded slash, backslash, dot or NUL in path')
  if (rest.includes('//')) throw invalid('empty path segment')
  for (const seg of rest.split('/')) if (seg === '.' || seg === '..') throw invalid('dot segment in path')
}

/** The raw query without dropped parameters (other bytes untouched), and its decoded facts. */
export function filterQuery(rawQuery: string): { query: string; params: Record<string, string[]> } {
  const kept: string[] = []
  const params: Record<string, string[]> = Object.create(null) as Record<string, string[]>
  for (const pair of rawQuery.split('&')) {
    if (pair === '') continue
    const decoded = new URLSearchParams(pair)
    const [name, value] = [...decoded][0] ?? ['', '']
    if (DROPPED_QUERY.has(name)) continue
    kept.push(pair)
    ;(params[name] ??= []).push(value)
  }
  return { query: kept.join('&'), params }
}

/**
 * Maps `rawUrl` (path and query as received) under `prefix` onto `upstreamBasePath`. The caller
 * has already matched the prefix (router); a mismatch here is a bug, answered as not found.
 */
export function mapPath(method: string, rawUrl: string, prefix: string, upstreamBasePath: string): MappedPath {
  const q = rawUrl.indexOf('?')
  const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q)
  const rest = restUnder(rawPath, prefix)
  if (rest === undefined) throw new GatewayError('GW_HTTP_NOT_FOUND')
  checkRest(rest)
  const { query, params } = filterQuery(q === -1 ? '' : rawUrl.slice(q + 1))
  const base = upstreamBasePath.replace(/\/+$/, '')
  return { upstreamPath: base + rest || '/', query, facts: { method, path: rest || '/', query: params } }
}
