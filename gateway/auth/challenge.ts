/**
 * WWW-Authenticate values (RFC 6750 §3, RFC 9728 §5.1, MCP 2025-11-25 authorization).
 * Values are quoted-strings; inputs come from config or the catalogue, never from the request,
 * but are escaped anyway so a bad config cannot break the header grammar.
 */
export interface ChallengeParams {
  /** Absent only where no metadata is published (the egress listener). */
  resourceMetadata?: string | undefined
  error?: 'invalid_request' | 'invalid_token' | 'insufficient_scope' | undefined
  description?: string | undefined
  scope?: string | undefined
}

const quote = (v: string): string => `"${v.replace(/[\\"]/g, '\\$&').replace(/[^\x20-\x7e]/g, '')}"`

export interface DpopChallengeParams {
  resourceMetadata?: string | undefined
  algs: readonly string[]
  error?: 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | 'use_dpop_nonce' | undefined
  description?: string | undefined
  scope?: string | undefined
}

/** RFC 9449 §7.1: the DPoP scheme's challenge carries the accepted proof algorithms. */
export function dpopChallenge(p: DpopChallengeParams): string {
  const parts: string[] = []
  if (p.error) parts.push(`error=${quote(p.error)}`)
  if (p.error && p.description) parts.push(`error_description=${quote(p.description)}`)
  if (p.scope) parts.push(`scope=${quote(p.scope)}`)
  if (p.resourceMetadata) parts.push(`resource_metadata=${quote(p.resourceMetadata)}`)
  parts.push(`algs=${quote(p.algs.join(' '))}`)
  return `DPoP ${parts.join(', ')}`
}

export function bearerChallenge(p: ChallengeParams): string {
  const parts: string[] = []
  // RFC 6750 §3.1: no error information when the request carried no credentials.
  if (p.error) parts.push(`error=${quote(p.error)}`)
  if (p.error && p.description) parts.push(`error_description=${quote(p.description)}`)
  if (p.scope) parts.push(`scope=${quote(p.scope)}`)
  if (p.resourceMetadata) parts.push(`resource_metadata=${quote(p.resourceMetadata)}`)
  return parts.length > 0 ? `Bearer ${parts.join(', ')}` : 'Bearer'
}
