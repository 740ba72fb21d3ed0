import type { RuntimeConfig, RuntimeRoute } from '../config/load.js'

/**
 * RFC 9728 protected-resource metadata for one route. `resource` is the configured identifier,
 * never anything from the request; members with no value are omitted (RFC 9728 §3.2).
 */
export function protectedResourceMetadata(config: RuntimeConfig, route: RuntimeRoute): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    resource: route.resource,
    authorization_servers: route.issuers.map((n) => config.issuers.get(n)!.issuer),
    bearer_methods_supported: ['header'],
    resource_name: route.resourceName,
  }
  if (route.scopesSupported.length > 0) doc.scopes_supported = [...route.scopesSupported]
  // PRM-08 (RFC 9728 §2): only when DPoP is accepted; `required` is the route's own policy.
  if (route.dpop) {
    doc.dpop_signing_alg_values_supported = [...route.dpop.algorithms]
    doc.dpop_bound_access_tokens_required = !route.dpop.bearer
  }
  return doc
}

/** Cache lifetime for metadata documents (RFC 9728 §7.10); short, config changes should show quickly. */
export const METADATA_MAX_AGE_SECONDS = 300
