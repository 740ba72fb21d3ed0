/**
 * The one error catalogue. Every failure the gateway answers with has a stable code listed
 * here and in docs/errors.md (a unit test keeps the two in sync). This module knows nothing
 * about HTTP bodies: `pipeline/error-handler.ts` is the one place where errors become responses.
 */

/** Bounded label used in metrics and audit lines; never free text. */
export type Reason =
  | 'auth-missing'
  | 'auth-malformed'
  | 'auth-invalid'
  | 'auth-expired'
  | 'auth-audience'
  | 'auth-issuer'
  | 'auth-signature'
  | 'auth-unknown-key'
  | 'auth-type'
  | 'auth-too-large'
  | 'auth-unavailable'
  | 'auth-scope'
  | 'origin'
  | 'host'
  | 'method'
  | 'media-type'
  | 'not-acceptable'
  | 'body-too-large'
  | 'mcp-invalid'
  | 'mcp-version'
  | 'session'
  | 'policy-deny'
  | 'limit'
  | 'rate-limited'
  | 'rate-limit-unavailable'
  | 'json-limit'
  | 'policy-method'
  | 'policy-approval'
  | 'approval-denied'
  | 'approval-pending'
  | 'approval-expired'
  | 'approval-unavailable'
  | 'audit-unavailable'
  | 'approval-unbound'
  | 'approval-refused'
  | 'approval-callback'
  | 'route-not-found'
  | 'upstream-unavailable'
  | 'upstream-timeout'
  | 'upstream-invalid'
  | 'exchange-failed'
  | 'exchange-unavailable'
  | 'exchange-refused'
  | 'exchange-forbidden'
  | 'path-invalid'
  | 'egress-target'
  | 'egress-address'
  | 'internal'
  | 'auth-dpop'
  | 'auth-dpop-nonce'
  | 'tool-pin'

export type Protocol = 'oauth' | 'jsonrpc' | 'plain'

interface ErrorSpec {
  readonly status: number
  readonly reason: Reason
  /** Whether the body is an OAuth error (`error`, `error_description`) or a JSON-RPC error. */
  readonly protocol: Protocol
  /** JSON-RPC error code used when the body is JSON-RPC. */
  readonly rpcCode?: number
  /** Public message. Never includes request data; 5xx messages say nothing internal. */
  readonly message: string
}

export const ERROR_CATALOGUE = {
  GW_AUTH_TOKEN_MISSING: { status: 401, reason: 'auth-missing', protocol: 'oauth', message: 'Authorization required' },
  GW_AUTH_INVALID_REQUEST: { status: 400, reason: 'auth-malformed', protocol: 'oauth', message: 'Malformed Authorization header' },
  GW_AUTH_INVALID_TOKEN: { status: 401, reason: 'auth-invalid', protocol: 'oauth', message: 'The access token is invalid' },
  GW_AUTH_INSUFFICIENT_SCOPE: { status: 403, reason: 'auth-scope', protocol: 'oauth', message: 'The access token lacks the required scope' },
  GW_AUTH_UNAVAILABLE: { status: 503, reason: 'auth-unavailable', protocol: 'oauth', message: 'Token verification is temporarily unavailable' },
  GW_HTTP_ORIGIN_FORBIDDEN: { status: 403, reason: 'origin', protocol: 'jsonrpc', rpcCode: -32600, message: 'Origin not allowed' },
  GW_HTTP_MISDIRECTED: { status: 421, reason: 'host', protocol: 'plain', message: 'Misdirected request' },
  GW_HTTP_METHOD_NOT_ALLOWED: { status: 405, reason: 'method', protocol: 'jsonrpc', rpcCode: -32600, message: 'Method not allowed' },
  GW_HTTP_UNSUPPORTED_MEDIA_TYPE: { status: 415, reason: 'media-type', protocol: 'jsonrpc', rpcCode: -32600, message: 'Content-Type must be application/json' },
  GW_HTTP_NOT_ACCEPTABLE: { status: 406, reason: 'not-acceptable', protocol: 'jsonrpc', rpcCode: -32600, message: 'Accept must list application/json and text/event-stream' },
  GW_HTTP_BODY_TOO_LARGE: { status: 413, reason: 'body-too-large', protocol: 'jsonrpc', rpcCode: -32600, message: 'Request body too large' },
  GW_HTTP_NOT_FOUND: { status: 404, reason: 'route-not-found', protocol: 'plain', message: 'Not found' },
  GW_MCP_PARSE_ERROR: { status: 400, reason: 'mcp-invalid', protocol: 'jsonrpc', rpcCode: -32700, message: 'Parse error' },
  GW_MCP_INVALID_REQUEST: { status: 400, reason: 'mcp-invalid', protocol: 'jsonrpc', rpcCode: -32600, message: 'Invalid request' },
  GW_MCP_INVALID_PARAMS: { status: 400, reason: 'mcp-invalid', protocol: 'jsonrpc', rpcCode: -32602, message: 'Invalid params' },
  GW_MCP_SESSION_NOT_FOUND: { status: 404, reason: 'session', protocol: 'jsonrpc', rpcCode: -32001, message: 'Session not found' },
  // V26-05: UnsupportedProtocolVersionError (-32022) with data.supported/requested, which dual-era clients recognise.
  GW_MCP_UNSUPPORTED_VERSION: { status: 400, reason: 'mcp-version', protocol: 'jsonrpc', rpcCode: -32022, message: 'Unsupported protocol version' },
  GW_MCP_HEADER_MISMATCH: { status: 400, reason: 'mcp-invalid', protocol: 'jsonrpc', rpcCode: -32020, message: 'Header mismatch' },
  GW_MCP_METHOD_NOT_FOUND: { status: 404, reason: 'mcp-invalid', protocol: 'jsonrpc', rpcCode: -32601, message: 'Method not found' },
  GW_HTTP_TOO_MANY_STREAMS: { status: 429, reason: 'limit', protocol: 'jsonrpc', rpcCode: -32600, message: 'Too many open streams' },
  // Application-defined code next to GW_POLICY_DENIED's -31403; HTTP 429 + Retry-After (RFC 6585).
  GW_RATE_LIMITED: { status: 429, reason: 'rate-limited', protocol: 'jsonrpc', rpcCode: -31429, message: 'Rate limit exceeded' },
  GW_RATE_LIMIT_UNAVAILABLE: { status: 503, reason: 'rate-limit-unavailable', protocol: 'jsonrpc', rpcCode: -32603, message: 'Rate limiting is temporarily unavailable' },
  GW_MCP_JSON_LIMIT: { status: 400, reason: 'json-limit', protocol: 'jsonrpc', rpcCode: -32600, message: 'JSON structure exceeds gateway limits' },
  // POL-12: an application-defined code outside the ranges MCP reserves; HTTP 200 so MCP clients
  // surface it as a JSON-RPC error of the call rather than a transport failure.
  GW_POLICY_DENIED: { status: 200, reason: 'policy-deny', protocol: 'jsonrpc', rpcCode: -31403, message: 'Forbidden by gateway policy' },
  GW_POLICY_METHOD_DENIED: { status: 200, reason: 'policy-method', protocol: 'jsonrpc', rpcCode: -32601, message: 'Method not found' },
  // Human approval (docs/approvals.md): application-defined codes next to POL-12's, HTTP 200 so the
  // client sees an error of the call; the retry of the same call is what completes an approval.
  GW_APPROVAL_DENIED: { status: 200, reason: 'approval-denied', protocol: 'jsonrpc', rpcCode: -31460, message: 'The user denied this call' },
  GW_APPROVAL_PENDING: { status: 200, reason: 'approval-pending', protocol: 'jsonrpc', rpcCode: -31461, message: 'Awaiting the user\'s approval; retry the same call' },
  GW_APPROVAL_EXPIRED: { status: 200, reason: 'approval-expired', protocol: 'jsonrpc', rpcCode: -31462, message: 'The approval request expired without a decision' },
  GW_APPROVAL_NOT_BOUND: { status: 200, reason: 'approval-unbound', protocol: 'jsonrpc', rpcCode: -31463, message: 'The approval does not cover this call' },
  // The AS said no to the request itself (not the user): data.asError names its OAuth error code so an
  // operator can fix the AS or gateway.yaml; retrying the same call cannot help.
  GW_APPROVAL_REFUSED: { status: 200, reason: 'approval-refused', protocol: 'jsonrpc', rpcCode: -31464, message: 'The authorization server refused the approval request' },
  GW_APPROVAL_UNAVAILABLE: { status: 503, reason: 'approval-unavailable', protocol: 'jsonrpc', rpcCode: -32603, message: 'Human approval is temporarily unavailable' },
  GW_AUDIT_UNAVAILABLE: { status: 503, reason: 'audit-unavailable', protocol: 'plain', message: 'Audit log unavailable: requests are refused until it can record them' },
  GW_APPROVAL_CALLBACK_INVALID: { status: 400, reason: 'approval-callback', protocol: 'plain', message: 'Invalid approval callback' },
  GW_APPROVAL_CALLBACK_SIGNATURE: { status: 401, reason: 'approval-callback', protocol: 'plain', message: 'Invalid approval callback signature' },
  GW_APPROVAL_CALLBACK_REPLAYED: { status: 409, reason: 'approval-callback', protocol: 'plain', message: 'Approval callback already processed' },
  GW_UPSTREAM_UNAVAILABLE: { status: 502, reason: 'upstream-unavailable', protocol: 'jsonrpc', rpcCode: -32603, message: 'Upstream unavailable' },
  GW_UPSTREAM_TIMEOUT: { status: 504, reason: 'upstream-timeout', protocol: 'jsonrpc', rpcCode: -32603, message: 'Upstream timed out' },
  GW_UPSTREAM_INVALID_RESPONSE: { status: 502, reason: 'upstream-invalid', protocol: 'jsonrpc', rpcCode: -32603, message: 'Upstream returned an invalid response' },
  GW_EXCHANGE_FAILED: { status: 502, reason: 'exchange-failed', protocol: 'jsonrpc', rpcCode: -32603, message: 'Could not obtain a credential for the upstream' },
  GW_EXCHANGE_UNAVAILABLE: { status: 503, reason: 'exchange-unavailable', protocol: 'jsonrpc', rpcCode: -32603, message: 'The authorization server is temporarily unavailable' },
  GW_EXCHANGE_FORBIDDEN: { status: 403, reason: 'exchange-forbidden', protocol: 'jsonrpc', rpcCode: -32003, message: 'No credential for this upstream may be issued to this caller' },
  GW_HTTP_PATH_INVALID: { status: 400, reason: 'path-invalid', protocol: 'plain', message: 'Invalid request path' },
  GW_EGRESS_TARGET_FORBIDDEN: { status: 403, reason: 'egress-target', protocol: 'plain', message: 'Target not allowed' },
  GW_EGRESS_ADDRESS_FORBIDDEN: { status: 403, reason: 'egress-address', protocol: 'plain', message: 'Target address not allowed' },
  GW_INTERNAL: { status: 500, reason: 'internal', protocol: 'jsonrpc', rpcCode: -32603, message: 'Internal error' },
  // RFC 9449 §7.1: a DPoP proof defect (invalid_dpop_proof) and the server-nonce demand (use_dpop_nonce).
  GW_AUTH_INVALID_DPOP_PROOF: { status: 401, reason: 'auth-dpop', protocol: 'oauth', message: 'The DPoP proof is invalid' },
  GW_AUTH_USE_DPOP_NONCE: { status: 401, reason: 'auth-dpop-nonce', protocol: 'oauth', message: 'A DPoP proof with the server nonce is required' },
  // docs/pinning.md: HTTP 200 so the client sees an error of the call, next to the approval codes.
  GW_PINS_UNAVAILABLE: { status: 503, reason: 'tool-pin', protocol: 'jsonrpc', rpcCode: -32603, message: 'Tool pins are temporarily unavailable' },
  GW_TOOL_NOT_APPROVED: { status: 200, reason: 'tool-pin', protocol: 'jsonrpc', rpcCode: -31470, message: 'This tool definition changed or is new and awaits an operator\'s approval' },
} as const satisfies Record<string, ErrorSpec>

export type GatewayErrorCode = keyof typeof ERROR_CATALOGUE

export interface GatewayErrorOptions {
  /** Detail for logs and audit only; never sent to the client. */
  detail?: string
  /** Narrower reason than the catalogue default (e.g. auth-expired for GW_AUTH_INVALID_TOKEN). */
  reason?: Reason
  /** Short client-safe description (RFC 6750 `error_description`); must not echo input. */
  description?: string
  /** Scope the client needs (insufficient_scope challenges). */
  scope?: string
  /** Seconds, for 429 and 503 answers (Retry-After). */
  retryAfter?: number
  /** Client-safe members added to a JSON-RPC error's `data` (e.g. the supported versions). */
  data?: Record<string, unknown>
  cause?: unknown
  /** The scheme the client used, so the error goes into that challenge (RFC 9449 §7.1). */
  scheme?: 'Bearer' | 'DPoP'
  /** A fresh server nonce for the DPoP-Nonce header (RFC 9449 §9). */
  dpopNonce?: string
}

export class GatewayError extends Error {
  readonly code: GatewayErrorCode
  readonly statusCode: number
  readonly reason: Reason
  readonly detail: string | undefined
  readonly description: string | undefined
  readonly scope: string | undefined
  readonly retryAfter: number | undefined
  readonly data: Record<string, unknown> | undefined
  /** Mutable: the auth stage learns the scheme of the request only after the token was judged. */
  scheme: 'Bearer' | 'DPoP' | undefined
  readonly dpopNonce: string | undefined

  constructor(code: GatewayErrorCode, options: GatewayErrorOptions = {}) {
    const spec: ErrorSpec = ERROR_CATALOGUE[code]
    super(spec.message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'GatewayError'
    this.code = code
    this.statusCode = spec.status
    this.reason = options.reason ?? spec.reason
    this.detail = options.detail
    this.description = options.description
    this.scope = options.scope
    this.retryAfter = options.retryAfter
    this.data = options.data
    this.scheme = options.scheme
    this.dpopNonce = options.dpopNonce
  }

  get spec(): ErrorSpec {
    return ERROR_CATALOGUE[this.code]
  }

  /** 4xx explain themselves; 5xx never leak what went wrong. */
  get expose(): boolean {
    return this.statusCode < 500
  }
}

export const isGatewayError = (e: unknown): e is GatewayError => e instanceof GatewayError

/** A config or policy problem, with the position of the offending YAML node. */
export interface ConfigProblem {
  file: string
  line: number
  column: number
  /** JSON path of the offending node, e.g. `routes[0].upstream`. */
  path: string
  message: string
  severity: 'error' | 'warning'
}

export class ConfigError extends Error {
  readonly problems: ConfigProblem[]
  constructor(problems: ConfigProblem[]) {
    const errors = problems.filter((p) => p.severity === 'error')
    super(
      `invalid configuration (${errors.length} problem${errors.length === 1 ? '' : 's'}):\n` +
        errors.map(formatProblem).map((l) => `  ${l}`).join('\n'),
    )
    this.name = 'ConfigError'
    this.problems = problems
  }
}

export const formatProblem = (p: ConfigProblem): string =>
  `${p.file}:${p.line}:${p.column}  ${p.severity === 'warning' ? 'warning: ' : ''}${p.path ? `${p.path}: ` : ''}${p.message}`
