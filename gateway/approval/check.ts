/**
 * `mcp-warden check` for CIBA issuers that send RFC 9396 authorization_details: an AS whose
 * metadata does not list a type in `authorization_details_types_supported` refuses every
 * backchannel request carrying it (invalid_authorization_details), so the whole feature would
 * fail call by call at run time. Said once, at the issuer's config node, before deployment.
 * Decision logic only; the CLI fetches the metadata.
 */
import type { RuntimeIssuer } from '../config/load.js'

export interface RarCheck {
  issuer: string
  /** Where to point: issuers.<name>.approval.authorizationDetails. */
  path: readonly string[]
  message: string
  severity: 'error' | 'warning'
}

/** The AS metadata as fetched; `unreachable` when it could not be read (a warning, not a verdict). */
export type IssuerMetadataResult = { ok: true; metadata: Record<string, unknown> } | { ok: false; why: string }

/** Issuers whose metadata `check` must read: CIBA with RAR on. */
export const issuersSendingRar = (issuers: Iterable<RuntimeIssuer>): RuntimeIssuer[] =>
  [...issuers].filter((i) => i.approval?.channel === 'ciba' && i.approval.authorizationDetails !== 'none')

/**
 * One problem per issuer and missing type. `types` are the authorization_details types of the
 * require-approval rules (policy `approval.type`); every rule may reach every issuer's callers.
 */
export function rarTypeProblems(issuer: RuntimeIssuer, types: ReadonlySet<string>, md: IssuerMetadataResult): RarCheck[] {
  const path = ['issuers', issuer.name, 'approval', 'authorizationDetails']
  if (!md.ok) return [{ issuer: issuer.name, path, severity: 'warning', message: `could not read the AS metadata to check authorization_details types (${md.why})` }]
  const listed = md.metadata.authorization_details_types_supported
  const supported = new Set(Array.isArray(listed) ? listed.filter((t): t is string => typeof t === 'string') : [])
  const out: RarCheck[] = []
  for (const t of [...types].sort()) {
    if (supported.has(t)) continue
    out.push({
      issuer: issuer.name,
      path,
      severity: 'error',
      message:
        supported.size === 0
          ? `the AS does not support RFC 9396 (its metadata has no authorization_details_types_supported): every approval request carrying type "${t}" would be refused; use authorizationDetails: none`
          : `the AS metadata does not list authorization_details type "${t}" (it lists ${[...supported].map((s) => `"${s}"`).join(', ')}): every approval request carrying it would be refused; enable the type at the AS or use authorizationDetails: none`,
    })
  }
  return out
}
