/**
 * The gateway.yaml contract. This TypeBox schema is the single source of the TypeScript types,
 * of validation (ajv) and of the published JSON Schema in policies/schema/gateway.schema.json.
 * Descriptions are the documentation editors show on hover; they state units and defaults.
 */
import { Type, type Static } from '@sinclair/typebox'

const Strict = { additionalProperties: false } as const

export const Duration = Type.String({
  pattern: '^[0-9]+(ms|s|m|h)$',
  description: 'A duration such as 500ms, 30s, 5m or 1h.',
})

export const ByteSize = Type.String({
  pattern: '^[0-9]+(b|kb|mb)$',
  description: 'A size such as 8kb or 1mb (powers of 1024).',
})

/** A secret is never written inline in production configs: it names an env var or a file. */
export const SecretSource = Type.Union(
  [
    Type.Object({ fromEnv: Type.String({ minLength: 1, description: 'Name of the environment variable that holds the secret.' }) }, Strict),
    Type.Object({ fromFile: Type.String({ minLength: 1, description: 'Path of a file whose content (trimmed) is the secret.' }) }, Strict),
    Type.Object({ value: Type.String({ minLength: 1, description: 'Inline secret. For development only; logged as a warning at start-up.' }) }, Strict),
  ],
  { description: 'Where a secret comes from: fromEnv, fromFile or (development only) value.' },
)

const AuditBuffer = Type.Object(
  {
    dir: Type.String({ minLength: 1, description: 'Directory of the on-disk buffer (append-only segment files); one per sink, never shared by two replicas.' }),
    maxSize: Type.String({ ...ByteSize, default: '64mb', description: 'Most bytes the buffer may hold. Default 64mb.' }),
    onFull: Type.Union([Type.Literal('block'), Type.Literal('drop')], { default: 'block', description: 'block: requests get 503 until the buffer has room (no record lost). drop: new records are dropped and counted (mcp_warden_audit_lost_total). Default block.' }),
  },
  { ...Strict, description: 'Records the sink has not delivered yet; replayed in order when it is back, and after a restart.' },
)

const AuditSink = Type.Union(
  [
    Type.Object(
      {
        type: Type.Literal('file'),
        path: Type.String({ minLength: 1, description: 'File audit lines are appended to; rotated files get .1, .2, … (newest first).' }),
        rotate: Type.Optional(
          Type.Object(
            {
              maxSize: Type.Optional(Type.String({ ...ByteSize, description: 'Rotate when the file would grow past this size.' })),
              interval: Type.Optional(Type.String({ ...Duration, description: 'Rotate when the file is older than this.' })),
              keep: Type.Integer({ minimum: 1, default: 5, description: 'Rotated files kept. Default 5.' }),
            },
            Strict,
          ),
        ),
      },
      Strict,
    ),
    Type.Object(
      {
        type: Type.Literal('syslog'),
        host: Type.String({ minLength: 1, description: 'Syslog server (RFC 5424 over TCP with TLS, octet-counting framing of RFC 6587).' }),
        port: Type.Integer({ minimum: 1, maximum: 65535, default: 6514, description: 'Default 6514.' }),
        ca: Type.Optional(Type.Union([SecretSource], { description: 'PEM of the CA that signed the server certificate; default: the system roots.' })),
        serverName: Type.Optional(Type.String({ description: 'Name the certificate must carry; default: host.' })),
        appName: Type.String({ default: 'mcp-warden', maxLength: 48, description: 'APP-NAME of the syslog messages.' }),
        facility: Type.Integer({ minimum: 0, maximum: 23, default: 13, description: 'Syslog facility number. Default 13 (log audit).' }),
        buffer: AuditBuffer,
      },
      Strict,
    ),
    Type.Object(
      {
        type: Type.Literal('http'),
        url: Type.String({ format: 'uri', pattern: '^https?://', description: 'Endpoint batches are POSTed to.' }),
        format: Type.Union([Type.Literal('json-lines'), Type.Literal('splunk-hec'), Type.Literal('elasticsearch-bulk')], { default: 'json-lines', description: 'json-lines: the audit lines as they are; splunk-hec: HEC event envelopes; elasticsearch-bulk: _bulk create actions.' }),
        token: Type.Optional(Type.Union([SecretSource], { description: 'Sent as Authorization: Splunk <token> (splunk-hec) or Bearer <token>.' })),
        index: Type.Optional(Type.String({ minLength: 1, description: 'Splunk index or Elasticsearch index / data stream.' })),
        ca: Type.Optional(Type.Union([SecretSource], { description: 'PEM of the CA of an https endpoint; default: the system roots.' })),
        batch: Type.Integer({ minimum: 1, maximum: 10000, default: 500, description: 'Most records per request. Default 500.' }),
        flushInterval: Type.String({ ...Duration, default: '1s', description: 'Longest a record waits for a batch. Default 1s.' }),
        timeout: Type.String({ ...Duration, default: '10s', description: 'Timeout of one request. Default 10s.' }),
        buffer: AuditBuffer,
      },
      Strict,
    ),
  ],
  { description: 'An audit sink.' },
)

const HttpUrl = Type.String({ format: 'uri', pattern: '^https?://', description: 'An absolute http(s) URL.' })

const Listen = Type.Object(
  {
    host: Type.String({ default: '127.0.0.1', description: 'Address to bind. Default 127.0.0.1 (loopback only).' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, description: 'TCP port.' }),
  },
  Strict,
)

const RedisNode = Type.Object(
  {
    host: Type.String({ minLength: 1, description: 'Host name or address.' }),
    port: Type.Integer({ minimum: 1, maximum: 65535, description: 'TCP port.' }),
  },
  Strict,
)

/** Sentinel and Cluster connections (docs/deployment.md#scaling-out-and-redis); ioredis options by the same names. */
const RedisHaFields = {
  sentinels: Type.Optional(
    Type.Array(RedisNode, { minItems: 1, description: 'Redis Sentinel: the sentinels to ask for the current master (list at least two in production). Needs name.' }),
  ),
  name: Type.Optional(Type.String({ minLength: 1, description: 'Master group name the sentinels monitor (the name in `sentinel monitor <name> …`). Only with sentinels.' })),
  sentinelUsername: Type.Optional(Type.String({ minLength: 1, description: 'ACL user for the sentinels. Only with sentinels.' })),
  sentinelPassword: Type.Optional(Type.Union([SecretSource], { description: 'Password of the sentinels (requirepass of sentinel.conf). Only with sentinels.' })),
  cluster: Type.Optional(
    Type.Object(
      {
        nodes: Type.Array(RedisNode, { minItems: 1, description: 'Some nodes of the cluster to discover it from (the others are learned from CLUSTER SLOTS).' }),
        maxRedirections: Type.Integer({ minimum: 1, maximum: 64, default: 16, description: 'MOVED/ASK redirections followed per command. Default 16.' }),
      },
      { ...Strict, description: 'Redis Cluster. Every read and write goes to the master of its slot; rate-limit budgets share one hash slot (docs/limits.md).' },
    ),
  ),
  username: Type.Optional(Type.String({ minLength: 1, description: 'ACL user on the Redis data nodes. Only with sentinels or cluster (a url carries its own).' })),
  password: Type.Optional(Type.Union([SecretSource], { description: 'Password of the Redis data nodes. Only with sentinels or cluster (a url carries its own).' })),
  tls: Type.Optional(
    Type.Object(
      {
        ca: Type.Optional(Type.Union([SecretSource], { description: 'PEM of the CA that signed the Redis certificates; default: the system roots.' })),
        serverName: Type.Optional(Type.String({ minLength: 1, description: 'Name checked in the Redis certificates (SNI), when it differs from the host.' })),
      },
      { ...Strict, description: 'TLS to the data nodes and, with sentinels, to the sentinels too. Only with sentinels or cluster (a url says rediss://).' },
    ),
  ),
  natMap: Type.Optional(
    Type.Record(Type.String({ pattern: '^[^:]+:[0-9]+$' }), RedisNode, {
      description: 'Address rewriting for nodes announced under addresses the gateway cannot reach (Docker, NAT): "announced-host:port" → {host, port}. Only with sentinels or cluster.',
    }),
  ),
}

/** mcp-warden's own client registration at an AS, used for introspection and token requests. */
export const OAuthClientSchema = Type.Object(
  {
    id: Type.String({ minLength: 1, description: 'client_id of mcp-warden at this authorization server.' }),
    auth: Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post'), Type.Literal('private_key_jwt')], {
      default: 'client_secret_basic',
      description: 'How mcp-warden authenticates to the AS. private_key_jwt (RFC 7523) needs no shared secret. Default client_secret_basic.',
    }),
    secret: Type.Optional(SecretSource),
    privateKey: Type.Optional(Type.Union([SecretSource], { description: 'PEM (PKCS#8) or JWK of the private key for private_key_jwt.' })),
    keyId: Type.Optional(Type.String({ minLength: 1, description: 'kid placed in the client assertion header.' })),
    algorithm: Type.Union(['RS256', 'PS256', 'ES256', 'EdDSA'].map((a) => Type.Literal(a)), { default: 'RS256', description: 'Signing algorithm of the client assertion. Default RS256.' }),
  },
  { ...Strict, description: 'Client credentials of mcp-warden at this authorization server.' },
)

export const IssuerSchema = Type.Object(
  {
    issuer: Type.String({ minLength: 1, description: 'The issuer identifier, compared byte for byte with the `iss` claim.' }),
    jwksUri: Type.Optional(HttpUrl),
    discovery: Type.Optional(
      Type.Boolean({
        description:
          'Fetch RFC 8414 / OIDC metadata from the issuer to find jwks_uri (and introspection/token endpoints). Default true when jwksUri is not set.',
      }),
    ),
    algorithms: Type.Array(Type.Union([Type.Literal('RS256'), Type.Literal('RS384'), Type.Literal('RS512'), Type.Literal('PS256'), Type.Literal('PS384'), Type.Literal('PS512'), Type.Literal('ES256'), Type.Literal('ES384'), Type.Literal('ES512'), Type.Literal('EdDSA')]), {
      minItems: 1,
      uniqueItems: true,
      default: ['RS256'],
      description: 'Accepted JWS algorithms. Asymmetric only: `none` and HS* are never accepted. Default [RS256] (RFC 9068 requires RS256 support).',
    }),
    audience: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        description: 'Audiences accepted in addition to the route resource, for issuers that cannot mint per-resource audiences. A deviation from RFC 8707 audience binding: a token with such an audience is valid on every route that lists this issuer.',
      }),
    ),
    clockSkew: Type.String({ ...Duration, default: '30s', description: 'Leeway for exp/nbf/iat. Default 30s, at most 60s.' }),
    requireTyp: Type.Union([Type.Literal('at+jwt'), Type.Literal('any')], {
      default: 'at+jwt',
      description:
        'RFC 9068 `typ` check. `at+jwt` (default) rejects anything else. `any` is a compatibility switch for issuers that mint `typ: JWT`; ID tokens are still refused (nonce/at_hash present or aud equal to client_id).',
    }),
    strictAudience: Type.Boolean({ default: false, description: 'Reject tokens with more than one audience (RFC 9068 §5). Default false.' }),
    maxTokenSize: Type.String({ ...ByteSize, default: '8kb', description: 'Tokens longer than this are refused before any decoding. Default 8kb.' }),
    tokenEndpoint: Type.Optional(Type.String({ ...HttpUrl, description: 'Token endpoint (token exchange, client credentials). Default: from discovery.' })),
    introspectionEndpoint: Type.Optional(Type.String({ ...HttpUrl, description: 'RFC 7662 introspection endpoint. Default: from discovery.' })),
    client: Type.Optional(OAuthClientSchema),
    validation: Type.Union([Type.Literal('jwt'), Type.Literal('introspection'), Type.Literal('both')], {
      default: 'jwt',
      description:
        'How this issuer\'s tokens are checked. `jwt` (default): JWS access tokens verified locally with its JWKS. `introspection`: every token is sent to its RFC 7662 introspection endpoint (no JWKS is loaded). `both`: JWS tokens naming this issuer are verified locally and never introspected; other (opaque) tokens are introspected. Introspection needs `client`. See docs/introspection.md.',
    }),
    introspection: Type.Object(
      {
        timeout: Type.String({ ...Duration, default: '3s', description: 'Timeout of one introspection call; slower answers count as failures (503). Default 3s.' }),
        maxConcurrent: Type.Integer({ minimum: 1, maximum: 1024, default: 16, description: 'Introspection calls in flight to this AS at once, per replica. Default 16.' }),
        maxQueued: Type.Integer({ minimum: 0, maximum: 100_000, default: 64, description: 'Calls allowed to wait for a free slot; beyond that a request gets 503 with Retry-After at once. Default 64.' }),
        cache: Type.Object(
          {
            enabled: Type.Boolean({ default: true, description: 'Cache introspection results (in process and in the shared store). Default true.' }),
            maxTtl: Type.String({ ...Duration, default: '30s', description: 'The revocation window: an active result is reused at most this long (and never past the token exp). Default 30s.' }),
            negativeTtl: Type.String({ ...Duration, default: '5s', description: 'How long an inactive or refused result is reused, at most 10s. Default 5s.' }),
          },
          { ...Strict, default: {} },
        ),
      },
      { ...Strict, default: {}, description: 'RFC 7662 introspection settings, used when validation is introspection or both.' },
    ),
    approval: Type.Optional(
      Type.Object(
        {
          channel: Type.Union([Type.Literal('ciba'), Type.Literal('webhook')], {
            description: 'ciba: OpenID CIBA poll mode at this AS, as mcp-warden (`client`, granted urn:openid:params:grant-type:ciba). webhook: a signed POST to `webhook.url`, decided by a signed callback.',
          }),
          backchannelEndpoint: Type.Optional(Type.String({ ...HttpUrl, description: 'ciba: backchannel_authentication_endpoint. Default: from discovery.' })),
          loginHintClaim: Type.String({ minLength: 1, default: 'sub', description: 'ciba: the caller token claim sent as login_hint. Default sub.' }),
          scope: Type.String({ minLength: 1, default: 'openid', description: 'ciba: scope of the backchannel request (must include openid). Default openid.' }),
          interval: Type.String({ ...Duration, default: '5s', description: 'ciba: polling interval when the AS names none (CIBA §7.3 default 5s); an `interval` from the AS and slow_down (+5s) always win.' }),
          timeout: Type.String({ ...Duration, default: '5s', description: 'Timeout of one request to the AS or the webhook. Default 5s.' }),
          exchangeSubject: Type.Union([Type.Literal('caller'), Type.Literal('approved')], {
            default: 'caller',
            description:
              "ciba: the subject_token of the route's token exchange for an approved call. caller (default): the caller's token, as for any call. approved: the token the AS issued for the approval (it carries the approved authorization_details), so the upstream credential derives from the approval; needs cache.redis.encryptionKey to work across replicas.",
          }),
          authorizationDetails: Type.Union([Type.Literal('none'), Type.Literal('digest'), Type.Literal('arguments')], {
            default: 'none',
            description:
              "ciba: the RFC 9396 authorization_details sent with the backchannel request. none (default): no RAR; the approval is bound by the auth_req_id the gateway asked for this call and the ID token's sub. digest: the call's binding and argument digest. arguments: also the arguments (a rule's `details: digest` still narrows it). With digest or arguments, the AS must allow the rule's type for this client, and when it echoes authorization_details they must name the call. `check` reports a type the AS metadata does not list.",
          }),
          resource: Type.Optional(
            Type.String({
              minLength: 1,
              description: "ciba: RFC 8707 resource of the backchannel request. Absent (default): none is sent. `route`: the route's own resource (needed by exchangeSubject: approved, so the approved token is audience-bound to the route). Or an absolute URI the AS knows.",
            }),
          ),
          // Same text as DEFAULT_BINDING_MESSAGE_PATTERN in policy/approval-message.ts (a unit test ties them).
          bindingMessagePattern: Type.String({
            minLength: 1,
            default: '^[a-zA-Z0-9-._+/!?#]{1,20}$',
            description:
              "ciba: the JavaScript regular expression the AS validates binding_message with. Default: oidc-provider's default rule. Every require-approval message must render inside it (checked when policies load).",
          }),
          webhook: Type.Optional(
            Type.Object(
              {
                url: Type.Union([HttpUrl], { description: 'Where approval requests are POSTed (signed).' }),
                secret: Type.Union([SecretSource], { description: 'HMAC-SHA256 key signing requests and verifying callbacks (at least 32 characters).' }),
                maxSkew: Type.String({ ...Duration, default: '5m', description: 'Callbacks whose signed timestamp is further from now are refused. Default 5m.' }),
              },
              Strict,
            ),
          ),
        },
        { ...Strict, description: 'How require-approval policy rules reach the user of this issuer (docs/approvals.md).' },
      ),
    ),
    jwks: Type.Object(
      {
        cooldown: Type.String({ ...Duration, default: '30s', description: 'Minimum time between two JWKS fetches caused by unknown kids. Default 30s.' }),
        maxAge: Type.String({ ...Duration, default: '10m', description: 'Refresh the key set in the background after this age. Default 10m.' }),
        maxStale: Type.String({ ...Duration, default: '24h', description: 'Keep using the last good key set this long while the AS is unreachable, then fail closed (503). Default 24h.' }),
        timeout: Type.String({ ...Duration, default: '5s', description: 'Timeout of one JWKS or discovery fetch. Default 5s.' }),
      },
      { ...Strict, default: {} },
    ),
    dpop: Type.Optional(
      Type.Object(
        {
          required: Type.Boolean({ default: false, description: 'Refuse tokens of this issuer that are not DPoP-bound (no cnf.jkt). Default false: bound tokens need a proof, unbound ones stay bearer tokens.' }),
          algorithms: Type.Array(Type.Union([Type.Literal('ES256'), Type.Literal('ES384'), Type.Literal('ES512'), Type.Literal('EdDSA'), Type.Literal('PS256'), Type.Literal('PS384'), Type.Literal('PS512'), Type.Literal('RS256')]), {
            minItems: 1,
            uniqueItems: true,
            default: ['ES256', 'EdDSA', 'PS256', 'RS256'],
            description: 'Accepted DPoP proof algorithms (RFC 9449 §11.6: asymmetric only; none and HS* cannot be listed).',
          }),
          maxAge: Type.String({ ...Duration, default: '60s', description: 'How old a proof (its iat) may be, plus clockSkew; its jti is remembered this long. At most 300s. Default 60s.' }),
          nonce: Type.Boolean({ default: false, description: 'Require a server nonce in every proof (RFC 9449 §9): DPoP-Nonce header with use_dpop_nonce. Default false.' }),
          nonceRotation: Type.String({ ...Duration, default: '5m', description: 'How often the shared nonce changes; the previous one stays valid for one more period. Default 5m.' }),
        },
        { ...Strict, description: 'Sender-constrained tokens (RFC 9449 DPoP): see docs/dpop.md. Without this, any token with cnf is refused.' },
      ),
    ),
  },
  { ...Strict, description: 'An authorization server whose access tokens the gateway accepts.' },
)

const HeaderName = Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$', description: 'An HTTP header name.' })

/**
 * One way of obtaining the credential mcp-warden presents to a route's upstream. A single flat
 * object keyed by `strategy` (rather than a schema union) so that a mistake is reported as the
 * one key that is wrong, not as "does not match any allowed form"; load.ts checks which keys
 * each strategy takes.
 */
export const CredentialStrategySchema = Type.Object(
  {
    strategy: Type.Union(['token-exchange', 'identity-chaining', 'client-credentials', 'static', 'identity-headers', 'passthrough'].map((s) => Type.Literal(s)), {
      description:
        'token-exchange (RFC 8693, per user), identity-chaining (cross-domain: a JWT grant from the home AS redeemed at targetIssuer with RFC 7523 jwt-bearer), client-credentials (mcp-warden itself), static (a secret header), identity-headers (verified caller facts), passthrough (unsafe, violates MCP).',
    }),
    when: Type.Union([Type.Literal('user'), Type.Literal('app'), Type.Literal('any')], {
      default: 'any',
      description: 'In a chain: user = the token has a user behind it, app = app-only (client credentials) token, any. The first matching entry is used. Default any.',
    }),
    issuer: Type.Optional(Type.String({ description: 'Issuer (name under `issuers:`) whose token endpoint and `client` registration are used. Default: the first issuer of the route that has a client.' })),
    targetIssuer: Type.Optional(
      Type.String({ description: "identity-chaining: the target domain's AS (name under `issuers:`, with a `client`): the JWT grant is made for its issuer and redeemed at its token endpoint." }),
    ),
    resource: Type.Optional(Type.String({ format: 'uri', description: 'RFC 8707 resource indicator of the upstream, sent as `resource`; the issued token must name it in `aud`.' })),
    audience: Type.Optional(Type.String({ minLength: 1, description: 'RFC 8693 `audience` of the upstream (a logical name), sent as `audience`.' })),
    scopes: Type.Optional(
      Type.Record(Type.String({ minLength: 1 }), Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' })), {
        additionalProperties: false,
        description: 'token-exchange: inbound scope → upstream scopes. The requested scope is the union for the scopes the caller holds; none → 403. Without it no scope is sent (the AS decides).',
      }),
    ),
    scope: Type.Optional(Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' }), { description: 'client-credentials: scopes requested.' })),
    subjectTokenType: Type.Union([Type.Literal('access_token'), Type.Literal('jwt')], {
      default: 'access_token',
      description: 'token-exchange: subject_token_type for a JWT inbound token (urn:ietf:params:oauth:token-type:…). Opaque tokens are always access_token. Default access_token.',
    }),
    requestedTokenType: Type.Union([Type.Literal('access_token'), Type.Literal('jwt')], { default: 'access_token', description: 'token-exchange: requested_token_type. Default access_token.' }),
    actorToken: Type.Boolean({ default: false, description: 'token-exchange: send an actor_token (a JWT signed with the client key, needs private_key_jwt) identifying mcp-warden. Default false.' }),
    safetyMargin: Type.String({ ...Duration, default: '30s', description: 'Issued tokens are reused until expires_in minus this (never beyond the caller token exp). Default 30s.' }),
    timeout: Type.String({ ...Duration, default: '5s', description: 'Timeout of one token request. Default 5s.' }),
    header: Type.Optional(HeaderName),
    scheme: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9-]+$', description: 'static: prefix of the header value, e.g. Bearer.' })),
    value: Type.Optional(SecretSource),
    headers: Type.Optional(
      Type.Object(
        { subject: Type.Optional(HeaderName), agent: Type.Optional(HeaderName), scopes: Type.Optional(HeaderName), issuer: Type.Optional(HeaderName), actor: Type.Optional(HeaderName) },
        { ...Strict, description: 'identity-headers: header name per verified caller fact. Values are percent-encoded.' },
      ),
    ),
    jwt: Type.Optional(
      Type.Object(
        {
          header: Type.String({ ...HeaderName, default: 'x-mcp-identity' }),
          key: Type.Union([SecretSource], { description: 'PEM (PKCS#8) or JWK private key that signs the identity JWT.' }),
          keyId: Type.Optional(Type.String({ minLength: 1 })),
          algorithm: Type.Union(['RS256', 'PS256', 'ES256', 'EdDSA'].map((a) => Type.Literal(a)), { default: 'ES256' }),
          ttl: Type.String({ ...Duration, default: '60s', description: 'Lifetime of the identity JWT (never beyond the caller token). Default 60s.' }),
          audience: Type.Optional(Type.String({ minLength: 1, description: 'aud of the identity JWT. Default: the upstream URL.' })),
        },
        { ...Strict, description: 'identity-headers: send the facts as one short-lived JWT signed by mcp-warden instead of plain headers.' },
      ),
    ),
    unsafe: Type.Optional(Type.Boolean({ description: 'passthrough only: must be true. Forwarding the caller token violates the MCP specification.' })),
  },
  { ...Strict, description: 'How mcp-warden obtains the credential for this upstream.' },
)

const { strategy: strategyKey, ...strategyOptions } = CredentialStrategySchema.properties

/** A route's `credentials`: one strategy, or `chain:` (the first entry whose `when` fits is used). */
export const CredentialsSchema = Type.Object(
  {
    strategy: Type.Optional(strategyKey),
    ...strategyOptions,
    chain: Type.Optional(Type.Array(CredentialStrategySchema, { minItems: 1, description: 'Strategies tried in order by `when` (never as a fallback after a failure).' })),
  },
  { ...Strict, description: 'How mcp-warden obtains the credential it presents to this upstream. Without it the upstream receives no credential at all.' },
)

/** A local MCP server program that speaks stdio, run by the gateway (docs/transports.md). */
const StdioUpstream = Type.Object(
  {
    command: Type.String({ minLength: 1, description: 'Program to run (no shell). Resolved on PATH.' }),
    args: Type.Array(Type.String(), { default: [], description: 'Arguments. Put secrets in env, never here (arguments are logged and visible in ps).' }),
    env: Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.Union([Type.String(), SecretSource]), {
      // A key outside the pattern would otherwise be neither validated nor refused.
      additionalProperties: false,
      default: {},
      description: 'Environment of the program, on top of a minimal inherited set (PATH, HOME, USER, LOGNAME, SHELL, TERM). Values may be secret references (fromEnv/fromFile), so the agent never sees them.',
    }),
    cwd: Type.Optional(Type.String({ minLength: 1, description: 'Working directory, relative to the config file. Default: the gateway working directory.' })),
    mode: Type.Union([Type.Literal('per-session'), Type.Literal('shared')], {
      default: 'per-session',
      description: 'per-session (default): one process per MCP session, stopped when the session ends. shared: one process for every session of the route (requests are multiplexed; server-initiated requests are refused).',
    }),
    restart: Type.Object(
      {
        backoff: Type.String({ ...Duration, default: '500ms', description: 'First delay before restarting a process that died; doubles on each crash in a row. Default 500ms.' }),
        maxBackoff: Type.String({ ...Duration, default: '30s', description: 'Largest restart delay. Default 30s.' }),
      },
      { ...Strict, default: {} },
    ),
  },
  { ...Strict, description: 'Run an MCP server that speaks stdio as a child process and expose it over Streamable HTTP behind the same auth and policy.' },
)

export const RouteSchema = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'Route name, used in metrics, logs and policies.' }),
    kind: Type.Union([Type.Literal('mcp'), Type.Literal('api')], {
      default: 'mcp',
      description: 'mcp (default): an MCP server, matched on its exact path, bodies parsed as JSON-RPC. api: a plain HTTP API, matched on a path prefix (path and path/…), bodies and responses passed through untouched. See docs/egress.md.',
    }),
    path: Type.String({
      pattern: '^/[A-Za-z0-9._~!$&\'()*+,;=:@/-]*[^/]$|^/$',
      description: 'MCP routes: exact request path, e.g. /mcp/github. API routes: the path prefix, e.g. /api/orders (serves /api/orders and /api/orders/…). No trailing slash; no normalisation.',
    }),
    upstream: Type.Object(
      {
        url: Type.Optional(Type.String({ ...HttpUrl, description: 'Streamable HTTP MCP endpoint of the upstream. Exactly one of url, sse, stdio.' })),
        sse: Type.Optional(Type.String({ ...HttpUrl, description: 'SSE endpoint of a legacy (2024-11-05) HTTP+SSE upstream; clients still speak Streamable HTTP to the gateway. Exactly one of url, sse, stdio.' })),
        stdio: Type.Optional(StdioUpstream),
        maxSessions: Type.Optional(Type.Integer({ minimum: 1, description: 'sse and stdio only: most bridged sessions open at once; further initialize requests get 503. Default 64.' })),
        sessionIdle: Type.Optional(Type.String({ ...Duration, description: 'sse and stdio only: a bridged session without traffic for this long is closed (and its process stopped). Default 30m.' })),
        timeout: Type.String({ ...Duration, default: '60s', description: 'Time to wait for the upstream response headers. 504 after. Default 60s.' }),
        idleTimeout: Type.String({ ...Duration, default: '5m', description: 'Maximum silence on a streaming response before it is cut. Default 5m.' }),
        connections: Type.Integer({ minimum: 1, default: 64, description: 'Pooled connections to this upstream. Default 64.' }),
        ca: Type.Optional(
          Type.String({ minLength: 1, description: 'https upstreams: PEM file (path relative to this file) of a CA trusted for this upstream in addition to the system store. Certificates are always verified.' }),
        ),
      },
      Strict,
    ),
    resource: Type.Optional(
      Type.String({ format: 'uri', description: 'The route resource identifier (RFC 8707). Default: server.publicUrl + path.' }),
    ),
    sharedResource: Type.Optional(
      Type.Boolean({
        description:
          'Let this route share its `resource` with other routes that also set sharedResource (one API registration at the AS for several routes). A token for that resource is then valid on every one of them; each route still serves its own metadata at /.well-known/oauth-protected-resource<path>.',
      }),
    ),
    resourceName: Type.Optional(Type.String({ description: 'Human readable name published in protected-resource metadata.' })),
    issuers: Type.Array(Type.String(), { minItems: 1, description: 'Names of issuers (under `issuers:`) whose tokens this route accepts.' }),
    scopesSupported: Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' }), {
      default: [],
      description: 'Scopes published in metadata (scopes_supported), and in 401 challenges unless challengeScopes is set. Do not list offline_access.',
    }),
    requiredScopes: Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' }), {
      default: [],
      description: 'Scopes every token must carry to use this route at all; missing → 403 insufficient_scope.',
    }),
    challengeScopes: Type.Optional(
      Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' }), {
        description: 'Scopes named in 401 challenges: what a first token needs (least privilege); more is asked for by step-up (403 insufficient_scope). Default: scopesSupported. Must include requiredScopes.',
      }),
    ),
    allowedOrigins: Type.Array(Type.String(), {
      default: [],
      description: 'Browser origins allowed to call this route. A request with any other Origin gets 403 (DNS-rebinding defence). Requests without Origin are not affected.',
    }),
    bodyLimit: Type.String({ ...ByteSize, default: '1mb', description: 'Largest accepted request body. Default 1mb.' }),
    streams: Type.Object(
      {
        maxDuration: Type.String({ ...Duration, default: '1h', description: 'An SSE response is ended after this long (the client reconnects). Streams also end when the token that opened them expires. Default 1h.' }),
        maxPerCaller: Type.Integer({ minimum: 1, default: 8, description: 'Concurrent GET streams one caller (issuer, subject, agent) may hold on this route, per replica; more get 429. Default 8.' }),
      },
      { ...Strict, default: {}, description: 'Limits on long-lived server-sent-event streams.' },
    ),
    legacyClients: Type.Optional(
      Type.Boolean({
        description:
          'Also serve 2024-11-05 HTTP+SSE clients: GET <path>/sse opens the stream, whose endpoint event names <path>/message?sessionId=… (bound to the caller). Every message passes the same pipeline. Default false. See docs/transports.md.',
      }),
    ),
    credentials: Type.Optional(CredentialsSchema),
    modernClients: Type.Union([Type.Literal('caller'), Type.Literal('request'), Type.Literal('native'), Type.Literal('refuse')], {
      default: 'caller',
      description:
        'How clients speaking MCP 2026-07-28 (stateless, Mcp-Method/Mcp-Name headers) are served. caller (default): the gateway opens one upstream session per caller and route and bridges to the revision the upstream speaks. request: a fresh upstream session per request. native: the upstream speaks 2026-07-28 itself; requests are checked and forwarded. refuse: 400 UnsupportedProtocolVersionError listing the other versions. See docs/transports.md.',
    }),
    pinning: Type.Optional(
      Type.Union([Type.Literal('off'), Type.Literal('observe'), Type.Literal('enforce')], {
        description: 'Tool-definition pinning (docs/pinning.md). observe: a changed or new tool is logged, audited and counted. enforce: it is also hidden from tools/list and its calls refused until an operator approves it (mcp-warden pins approve). Default off.',
      }),
    ),
    requireDpop: Type.Optional(Type.Boolean({ description: 'Accept only DPoP-bound tokens on this route, whatever the issuer allows; every issuer of the route needs `dpop`. Default false. See docs/dpop.md.' })),
  },
  { ...Strict, description: 'One protected endpoint: a path on the gateway in front of one upstream MCP server (or plain HTTP API with kind: api).' },
)

const Cidr = Type.String({ pattern: '^[0-9a-fA-F:.]+(/[0-9]{1,3})?$', description: 'An IPv4 or IPv6 address or CIDR range, e.g. 10.0.0.0/8 or 127.0.0.1.' })

/** One API an MCP server may call through the egress listener. */
export const EgressTargetSchema = Type.Object(
  {
    name: Type.String({
      pattern: '^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$',
      description: 'First path segment that selects this target on the egress listener (GET http://<egress>/<name>/rest). Often the API host name, e.g. orders.example.com.',
    }),
    url: Type.String({ ...HttpUrl, description: 'Base URL of the API; the rest of the request path is appended to its path.' }),
    allowAddresses: Type.Array(Cidr, {
      default: [],
      description: 'Loopback, private or link-local addresses this target may resolve to. Default none: such addresses are refused (SSRF defence), checked on the resolved address of every connection.',
    }),
    timeout: Type.String({ ...Duration, default: '30s', description: 'Time to wait for the API response headers. Default 30s.' }),
    idleTimeout: Type.String({ ...Duration, default: '5m', description: 'Maximum silence on a streaming response. Default 5m.' }),
    connections: Type.Integer({ minimum: 1, default: 16, description: 'Pooled connections to this API. Default 16.' }),
    credentials: Type.Optional(CredentialsSchema),
  },
  { ...Strict, description: 'An allow-listed API. Requests for anything else are refused (no open proxy).' },
)

export const EgressSchema = Type.Object(
  {
    listen: Listen,
    issuers: Type.Array(Type.String(), { minItems: 1, description: 'Issuers whose tokens the MCP server may present on the egress listener.' }),
    resource: Type.String({
      format: 'uri',
      description: "The MCP server's own resource identifier: a presented token must name it in aud (it is the resource of the token-exchange credential on the MCP server's route).",
    }),
    correlationHeader: Type.String({ ...HeaderName, default: 'x-request-id', description: 'Header the MCP server copies from the inbound request it is serving, recorded as the cause of the egress call (besides traceparent). Default x-request-id.' }),
    targets: Type.Array(EgressTargetSchema, { minItems: 1 }),
  },
  { ...Strict, description: "Egress mode: a local listener for the MCP server's own outbound API calls. See docs/egress.md." },
)

export const GatewayConfigSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    server: Type.Object(
      {
        publicUrl: Type.String({
          format: 'uri',
          pattern: '^https?://[^/?#]+$',
          description: 'Public origin of the gateway (scheme://host[:port], no path). Resource identifiers and metadata URLs are built from it, never from the Host header.',
        }),
        listen: Listen,
        allowedHosts: Type.Optional(
          Type.Array(Type.String({ minLength: 1 }), {
            description: 'Host header values accepted (DNS-rebinding defence); others get 421. Default: the host of publicUrl.',
          }),
        ),
        trustProxy: Type.Union(
          [
            Type.Boolean(),
            Type.Integer({ minimum: 1, maximum: 32 }),
            Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
          ],
          {
            default: false,
            description:
              'Which X-Forwarded-For entries are client addresses (logs, audit, the authFailures budget): false (default) uses the peer address; a number of proxies in front of the gateway (the address that many hops back); or the addresses/CIDRs of the proxies (also loopback, linklocal, uniquelocal). `true` is refused: it would take the address a client writes. Never used to build URLs.',
          },
        ),
        shutdownGrace: Type.String({ ...Duration, default: '10s', description: 'How long SIGTERM waits for in-flight requests and streams. Default 10s.' }),
        maxHeaderSize: Type.String({ ...ByteSize, default: '16kb', description: 'Largest total request header size; 431 after. Default 16kb.' }),
        authFailures: Type.Optional(
          Type.Object(
            {
              limit: Type.Integer({ minimum: 1, description: 'Failed authentications (and unknown sessions) one client address may cause per window.' }),
              per: Type.String({ ...Duration, default: '1m', description: 'Window. Default 1m.' }),
            },
            { ...Strict, description: 'Per client address (per replica): after this many failed authentications or unknown session ids, further requests get 429 before any token is verified or introspected (docs/limits.md). Off when absent.' },
          ),
        ),
      },
      Strict,
    ),
    admin: Type.Object(
      {
        listen: Listen,
      },
      { ...Strict, description: 'Health and metrics listener; keep it off the public network.' },
    ),
    issuers: Type.Record(Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }), IssuerSchema, {
      additionalProperties: false,
      minProperties: 1,
      description: 'Authorization servers, by name.',
    }),
    routes: Type.Array(RouteSchema, { minItems: 1 }),
    egress: Type.Optional(EgressSchema),
    cache: Type.Object(
      {
        redis: Type.Optional(
          Type.Object(
            {
              url: Type.Optional(
                Type.Union([Type.String({ pattern: '^rediss?://' }), SecretSource], { description: 'A single Redis: redis:// or rediss:// URL, or a secret reference holding one. Set exactly one of url, sentinels, cluster.' }),
              ),
              ...RedisHaFields,
              keyPrefix: Type.String({ default: 'mcpw:', description: 'Prefix for every key the gateway writes. Default mcpw:' }),
              commandTimeout: Type.String({ ...Duration, default: '250ms', description: 'A Redis command slower than this counts as a miss. Default 250ms.' }),
              encryptionKey: Type.Optional(
                Type.Union([SecretSource], { description: '32 bytes (base64 or 64 hex digits) encrypting issued upstream tokens in Redis (AES-256-GCM). Without it issued tokens are cached per replica only.' }),
              ),
            },
            Strict,
          ),
        ),
        memory: Type.Object(
          {
            maxEntries: Type.Integer({ minimum: 1000, maximum: 10_000_000, default: 100_000, description: 'Without redis: entries the in-memory store holds at most (keys come from client input). At capacity the least recently used cache entry is evicted; live single-use markers (approvals, DPoP replay) are never evicted, and a new one is refused (fail closed) when they fill the store. Default 100000.' }),
          },
          { ...Strict, default: {}, description: 'The in-memory store used without redis (one per replica).' },
        ),
      },
      { ...Strict, default: {}, description: 'Shared state. Without redis, an in-memory cache per replica is used.' },
    ),
    sessions: Type.Object(
      {
        ttl: Type.String({ ...Duration, default: '24h', description: 'How long the gateway remembers which caller owns an upstream session id. Default 24h.' }),
        signingKey: Type.Optional(
          Type.Union([SecretSource], {
            description:
              'HMAC-SHA256 key (at least 32 characters, the same on every replica). With it the gateway issues session ids that carry a MAC of their owner and expiry, so every replica can serve every session while Redis is down (docs/sessions.md).',
          }),
        ),
      },
      { ...Strict, default: {}, description: 'MCP sessions are bound to the caller that opened them; others get 404.' },
    ),
    policies: Type.Optional(
      Type.Object(
        {
          dir: Type.String({ minLength: 1, description: 'Directory of policy documents (*.yaml; *_test.yaml suites are skipped), relative to this file. Watched for changes and reloaded on SIGHUP.' }),
          watch: Type.Boolean({ default: true, description: 'Reload when files in dir change (Kubernetes ConfigMap symlink swaps included). Default true.' }),
          claims: Type.Object(
            {
              groups: Type.Optional(Type.String({ minLength: 1, description: 'Claim holding the caller groups (array or space-separated string; dots walk nested objects). Needed by when.groups.' })),
              roles: Type.Optional(Type.String({ minLength: 1, description: 'Claim holding the caller roles, e.g. roles or realm_access.roles. Needed by when.roles.' })),
            },
            { ...Strict, default: {} },
          ),
          limits: Type.Object(
            {
              onRedisDown: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('local')], {
                default: 'closed',
                description:
                  'When Redis cannot answer a rate-limit decision: closed (default) refuses with 503 GW_RATE_LIMIT_UNAVAILABLE; open lets the request through, logged and counted; local charges each replica at floor(limit / replicas) while Redis is down and for one window after it returns (docs/limits.md).',
              }),
              replicas: Type.Optional(Type.Integer({ minimum: 1, description: 'How many replicas share the limits; needed by onRedisDown: local (each replica then allows floor(limit / replicas)).' })),
            },
            { ...Strict, default: {}, description: 'Rate limits and quotas declared in policy documents (limits:).' },
          ),
          audit: Type.Object(
            {
              rawArguments: Type.Boolean({ default: false, description: 'Put raw tool arguments in audit lines. Default false: only a SHA-256 digest.' }),
            },
            { ...Strict, default: {} },
          ),
        },
        { ...Strict, description: 'Declarative MCP policies (docs/policies.md). Without this section every authenticated request is forwarded; with it, default deny.' },
      ),
    ),
    observability: Type.Object(
      {
        tracing: Type.Object(
          {
            enabled: Type.Boolean({ default: false, description: 'Export OpenTelemetry traces (docs/observability.md). Default false: the SDK is not even loaded.' }),
            endpoint: Type.Optional(
              Type.String({ pattern: '^https?://', description: 'OTLP collector: base URL for http/protobuf (/v1/traces is added), http(s)://host:port for grpc. Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, else the exporter default (localhost).' }),
            ),
            protocol: Type.Optional(Type.Union([Type.Literal('http/protobuf'), Type.Literal('grpc')], { description: 'OTLP transport. Default: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.' })),
            sampler: Type.Object(
              {
                ratio: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Share of new traces kept (trace-id ratio). Default: OTEL_TRACES_SAMPLER(_ARG), else 1.' })),
                parentBased: Type.Optional(Type.Boolean({ description: "Follow the client's sampled flag when it sends a traceparent. Default: OTEL_TRACES_SAMPLER, else true." })),
              },
              { ...Strict, default: {} },
            ),
            serviceName: Type.Optional(Type.String({ minLength: 1, description: 'service.name of the spans. Default: OTEL_SERVICE_NAME, else mcp-warden.' })),
            principal: Type.Array(Type.Union([Type.Literal('subject'), Type.Literal('client'), Type.Literal('issuer'), Type.Literal('actor')]), {
              default: ['client', 'issuer'],
              uniqueItems: true,
              description: 'Which principal ids go into span attributes. Default [client, issuer]; add subject or actor only where traces may hold user ids.',
            }),
          },
          { ...Strict, default: {} },
        ),
      },
      { ...Strict, default: {}, description: 'Traces (docs/observability.md).' },
    ),
    audit: Type.Optional(
      Type.Object(
        {
          replica: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Name of this replica in the audit chain. Default: the host name (the pod name in Kubernetes).' })),
          stdout: Type.Boolean({ default: true, description: 'Also write audit lines to stdout with the other log lines. Default true.' }),
          checkpoint: Type.Optional(
            Type.Object(
              {
                signingKey: Type.Union([SecretSource], { description: 'Ed25519 private key (PEM PKCS#8 or JWK) that signs checkpoints (docs/audit.md). Verify with its public key: mcp-warden audit verify --key.' }),
                interval: Type.String({ ...Duration, default: '1m', description: 'How often a checkpoint is written when records were added. Default 1m; one is always written at shutdown.' }),
              },
              Strict,
            ),
          ),
          sinks: Type.Array(AuditSink, { default: [], description: 'Where audit lines go besides stdout: file, syslog, http (docs/audit.md).' }),
        },
        { ...Strict, description: 'The tamper-evident audit log: hash chain, signed checkpoints, sinks (docs/audit.md).' },
      ),
    ),
    logging: Type.Object(
      {
        level: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info' }),
      },
      { ...Strict, default: {} },
    ),
  },
  { ...Strict, title: 'mcp-warden gateway configuration' },
)

export type GatewayConfigInput = Static<typeof GatewayConfigSchema>
export type IssuerInput = Static<typeof IssuerSchema>
export type RouteInput = Static<typeof RouteSchema>
export type EgressInput = Static<typeof EgressSchema>
export type SecretSourceInput = Static<typeof SecretSource>
export type CredentialsInput = Static<typeof CredentialsSchema>
export type CredentialStrategyInput = Static<typeof CredentialStrategySchema>
export type AuditInput = Static<typeof GatewayConfigSchema>['audit']
