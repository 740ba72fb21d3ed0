import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/**
 * Every metric the gateway exports, on a registry per gateway instance (tests run several
 * gateways in one process). Label values are bounded: route and issuer names come from config,
 * reasons from the closed `Reason` set in errors.ts. docs/metrics.md lists them; the Grafana
 * dashboard may only use these names.
 */
export function createMetrics() {
  const registry = new Registry()
  // Defaults come out as mcp_warden_process_* and mcp_warden_nodejs_*.
  collectDefaultMetrics({ register: registry, prefix: 'mcp_warden_' })
  const m = {
    registry,
    requests: new Counter({
      name: 'mcp_warden_requests_total',
      help: 'Requests answered, by route, HTTP status and reason ("ok", or the reason of the refusal or failure).',
      labelNames: ['route', 'status', 'reason'] as const,
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'mcp_warden_request_duration_seconds',
      help: 'Time to response headers, by route.',
      labelNames: ['route'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    tokenValidations: new Counter({
      name: 'mcp_warden_token_validations_total',
      help: 'Access-token validations by route, outcome (valid, missing, invalid, unavailable) and reason.',
      labelNames: ['route', 'outcome', 'reason'] as const,
      registers: [registry],
    }),
    tokenCacheHits: new Counter({
      name: 'mcp_warden_token_cache_hits_total',
      help: 'Validated-token cache hits (no signature verification needed).',
      registers: [registry],
    }),
    jwksFetches: new Counter({
      name: 'mcp_warden_jwks_fetches_total',
      help: 'JWKS and discovery fetches by issuer, source (origin/redis) and outcome.',
      labelNames: ['issuer', 'source', 'outcome'] as const,
      registers: [registry],
    }),
    jwksKeys: new Gauge({
      name: 'mcp_warden_jwks_keys',
      help: 'Signing keys currently loaded, by issuer.',
      labelNames: ['issuer'] as const,
      registers: [registry],
    }),
    jwksAge: new Gauge({
      name: 'mcp_warden_jwks_age_seconds',
      help: 'Age of the key set in use, by issuer.',
      labelNames: ['issuer'] as const,
      registers: [registry],
    }),
    introspections: new Counter({
      name: 'mcp_warden_introspections_total',
      help: 'RFC 7662 introspection calls to an AS, by issuer and outcome (active, inactive, error, timeout, shed: refused before calling because too many were in flight).',
      labelNames: ['issuer', 'outcome'] as const,
      registers: [registry],
    }),
    introspectionDuration: new Histogram({
      name: 'mcp_warden_introspection_duration_seconds',
      help: 'Latency of introspection calls to the AS, by issuer.',
      labelNames: ['issuer'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    introspectionCache: new Counter({
      name: 'mcp_warden_introspection_cache_total',
      help: 'Introspection lookups by issuer and layer (the place the answer came from): memory (in-process LRU), redis (shared store), coalesced (joined a call in flight), miss (asked the AS).',
      labelNames: ['issuer', 'layer'] as const,
      registers: [registry],
    }),
    bridgeSessions: new Gauge({
      name: 'mcp_warden_bridge_sessions',
      help: 'Open sessions of a stdio or legacy-SSE bridge, by route (per-session stdio: one process each).',
      labelNames: ['route'] as const,
      registers: [registry],
    }),
    bridgeRestarts: new Counter({
      name: 'mcp_warden_bridge_restarts_total',
      help: 'Upstream processes or legacy SSE connections that died and were restarted, by route.',
      labelNames: ['route'] as const,
      registers: [registry],
    }),
    redisUp: new Gauge({
      name: 'mcp_warden_redis_up',
      help: '1 when the shared Redis answers, 0 when the gateway is serving from memory only.',
      registers: [registry],
    }),
    memoryStoreFull: new Counter({
      name: 'mcp_warden_memory_store_full_total',
      help: 'Writes to a full in-memory store (no redis), by outcome (evicted: a least recently used cache entry made room; dropped: a cache write was not kept; refused: a single-use marker was refused, and so was the request it guarded).',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    redisErrors: new Counter({
      name: 'mcp_warden_redis_errors_total',
      help: 'Redis commands that failed or timed out (the gateway fell back to memory).',
      registers: [registry],
    }),
    upstreamErrors: new Counter({
      name: 'mcp_warden_upstream_errors_total',
      help: 'Upstream failures by route and reason.',
      labelNames: ['route', 'reason'] as const,
      registers: [registry],
    }),
    activeStreams: new Gauge({
      name: 'mcp_warden_active_streams',
      help: 'Open SSE responses being relayed, by route.',
      labelNames: ['route'] as const,
      registers: [registry],
    }),
    credentialRequests: new Counter({
      name: 'mcp_warden_credential_requests_total',
      help: 'Token requests to an AS for upstream credentials, by route, strategy and outcome (ok, unavailable, refused, forbidden, invalid-response, error).',
      labelNames: ['route', 'strategy', 'outcome'] as const,
      registers: [registry],
    }),
    credentialRequestDuration: new Histogram({
      name: 'mcp_warden_credential_request_duration_seconds',
      help: 'Latency of token requests for upstream credentials, by route, strategy and outcome.',
      labelNames: ['route', 'strategy', 'outcome'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    credentialCache: new Counter({
      name: 'mcp_warden_credential_cache_total',
      help: 'Upstream-credential cache lookups by layer (memory, shared) and result (hit, miss).',
      labelNames: ['layer', 'result'] as const,
      registers: [registry],
    }),
    configInfo: new Gauge({
      name: 'mcp_warden_config_info',
      help: 'Constant 1, labelled with the loaded configuration digest.',
      labelNames: ['digest'] as const,
      registers: [registry],
    }),
    rateLimitDecisions: new Counter({
      name: 'mcp_warden_rate_limit_decisions_total',
      help: 'Rate-limit decisions per request, by route, deciding limit (or "-" when allowed) and outcome (allowed, limited, unavailable, fail-open).',
      labelNames: ['route', 'limit', 'outcome'] as const,
      registers: [registry],
    }),
    limitsExceeded: new Counter({
      name: 'mcp_warden_limits_exceeded_total',
      help: 'Requests refused or streams ended by a size or time limit: json-depth, json-array, json-members, body, header, streams (too many per caller), stream-duration.',
      labelNames: ['limit'] as const,
      registers: [registry],
    }),
    policyDecisions: new Counter({
      name: 'mcp_warden_policy_decisions_total',
      help: 'Policy decisions per JSON-RPC message, by route, effect and reason (closed set).',
      labelNames: ['route', 'effect', 'reason'] as const,
      registers: [registry],
    }),
    policyShadowDivergences: new Counter({
      name: 'mcp_warden_policy_shadow_divergences_total',
      help: 'Decisions that shadow rules would have changed, by route and the shadow effect.',
      labelNames: ['route', 'effect'] as const,
      registers: [registry],
    }),
    policyReloads: new Counter({
      name: 'mcp_warden_policy_reloads_total',
      help: 'Policy (re)loads by outcome (ok, unchanged, error). On error the previous set stays in force.',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    policyInfo: new Gauge({
      name: 'mcp_warden_policy_info',
      help: 'Constant 1, labelled with the version (content hash) of the policy set in force.',
      labelNames: ['version'] as const,
      registers: [registry],
    }),
    policyLastReloadFailed: new Gauge({
      name: 'mcp_warden_policy_last_reload_failed',
      help: '1 when the last attempt to load new policies was refused (the previous set is in force), else 0.',
      registers: [registry],
    }),
    toolPinDrift: new Counter({
      name: 'mcp_warden_tool_pin_drift_total',
      help: 'Listed tools whose definition differs from its pin (changed) or has none (new), by route, kind and mode (observe: shown; enforce: hidden). docs/pinning.md.',
      labelNames: ['route', 'kind', 'mode'] as const,
      registers: [registry],
    }),
    auditRecords: new Counter({
      name: 'mcp_warden_audit_records_total',
      help: 'Audit records by sink and outcome: queued (accepted for the sink), sent (delivered), retried (a failed delivery that will be retried), lost (dropped: buffer full with onFull: drop).',
      labelNames: ['sink', 'outcome'] as const,
      registers: [registry],
    }),
    auditBuffered: new Gauge({
      name: 'mcp_warden_audit_buffer_bytes',
      help: 'Bytes in the on-disk buffer of a sink, not yet delivered.',
      labelNames: ['sink'] as const,
      registers: [registry],
    }),
    auditSinkUp: new Gauge({
      name: 'mcp_warden_audit_sink_up',
      help: '1 when the last delivery to the sink succeeded, else 0.',
      labelNames: ['sink'] as const,
      registers: [registry],
    }),
  }
  return m
}

export type Metrics = ReturnType<typeof createMetrics>
