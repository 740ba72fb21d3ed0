import { GatewayError } from '../errors.js'

export type Credential = { kind: 'none' } | { kind: 'bearer' | 'dpop'; token: string }

// RFC 6750 §2.1 b64token
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/**
 * Find the bearer token. Only the Authorization header counts (RFC 6750 §2.1; MCP forbids
 * query tokens, so `?access_token=` is ignored, never read). Node folds duplicate
 * Authorization headers into one value, so duplicates are detected on the raw header list.
 */
export function extractCredential(rawHeaders: readonly string[], maxLength: number): Credential {
  let value: string | undefined
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    if (name.length === 13 && name.toLowerCase() === 'authorization') {
      if (value !== undefined) throw new GatewayError('GW_AUTH_INVALID_REQUEST', { detail: 'more than one Authorization header', description: 'Only one Authorization header is allowed' })
      value = rawHeaders[i + 1] ?? ''
    }
  }
  if (value === undefined) return { kind: 'none' }
  const trimmed = value.trim()
  const sp = trimmed.indexOf(' ')
  const scheme = sp === -1 ? trimmed : trimmed.slice(0, sp)
  // RFC 6750 §3.1: another scheme is treated as no credentials (401 without error).
  // RFC 9449 §7.1: the DPoP scheme carries the same token68 syntax.
  const kind = scheme.toLowerCase() === 'bearer' ? 'bearer' : scheme.toLowerCase() === 'dpop' ? 'dpop' : undefined
  if (!kind) return { kind: 'none' }
  const token = sp === -1 ? '' : trimmed.slice(sp + 1).trim()
  if (token.length > maxLength) {
    throw new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'auth-too-large', detail: `token of ${token.length} bytes exceeds ${maxLength}` })
  }
  if (token === '' || !B64TOKEN.test(token)) {
    throw new GatewayError('GW_AUTH_INVALID_REQUEST', { detail: 'malformed bearer token', description: 'Malformed bearer token' })
  }
  return { kind, token }
}

/** Every `DPoP` header value, from the raw list (Node would fold duplicates, hiding a second proof). */
export function dpopProofs(rawHeaders: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.length === 4 && rawHeaders[i]!.toLowerCase() === 'dpop') out.push((rawHeaders[i + 1] ?? '').trim())
  return out
}
