/**
 * A real OAuth 2.1 authorization server for demos and integration tests, built on
 * oidc-provider 9 and run in-process on 127.0.0.1.
 *
 * What it offers beyond a stock provider:
 * - RFC 8707 resource indicators: every token is audience-restricted to one resource.
 * - Headless interactions: /interaction/:uid logs the user in (login_hint or "alice") and
 *   grants everything requested, so authorization code + PKCE completes without a browser.
 * - RFC 8693 token exchange for the gateway client, adding an `act` claim.
 * - Request counters, so tests can assert caching behaviour (JWKS, introspection...).
 *
 * Signing keys are generated per run and live only in memory.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as jose from 'jose';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const CIBA_GRANT = 'urn:openid:params:grant-type:ciba';

export const GATEWAY_CLIENT_ID = 'mcp-warden';
export const GATEWAY_PKJWT_CLIENT_ID = 'mcp-warden-pkjwt';
export const AGENT_CLIENT_ID = 'demo-agent';
export const OTHER_AGENT_CLIENT_ID = 'other-agent';
export const AGENT_REDIRECT_URI = 'http://127.0.0.1/callback';
export const DEFAULT_SCOPES = ['tools.read', 'tools.write'] as const;

const GATEWAY_CLIENTS = new Set([GATEWAY_CLIENT_ID, GATEWAY_PKJWT_CLIENT_ID]);

export interface ResourceConfig {
  scopes: string[];
  /** Default 'jwt'. Opaque tokens can only be validated through introspection. */
  format?: 'jwt' | 'opaque';
  /** Access token lifetime in seconds; default `accessTokenTTL` option (3600). */
  ttl?: number;
}

export interface AuthorizationServerOptions {
  port?: number;
  /** Private RS256 signing JWKs (with kid). Generated when omitted. The first one signs. */
  keys?: jose.JWK[];
  /**
   * Resources (RFC 8707 indicators) the AS knows. When omitted, any http(s) URL is accepted
   * with scopes `tools.read tools.write`, JWT format.
   */
  resources?: Record<string, ResourceConfig>;
  /** Public keys for the `mcp-warden-pkjwt` client (private_key_jwt authentication). */
  gatewayJwks?: { keys: jose.JWK[] };
  accessTokenTTL?: number;
  /**
   * More confidential clients (client_secret_basic) allowed to exchange tokens, e.g. the workload
   * identity an MCP server's sidecar uses on the egress leg, so `act.sub` names that MCP server.
   */
  exchangeClients?: Array<{ clientId: string; clientSecret: string }>;
  /**
   * Other domains' ASes whose JWT authorization grants this AS redeems (RFC 7523 jwt-bearer,
   * identity chaining). The grant's `aud` must be this issuer; its `sub` and `act` carry over.
   */
  trustedIssuers?: Array<{ issuer: string; jwksUri: string }>;
  /**
   * OpenID CIBA (poll mode) for the `mcp-warden` client, with RFC 9396 rich authorization
   * requests; the user's decision is made through `as.ciba` (the "phone"). Off by default.
   */
  ciba?: boolean;
  /** RFC 9396 authorization_details types accepted (authorization code and CIBA). Default: none (RAR off) unless ciba. */
  rarTypes?: string[];
}

/** A backchannel authentication request as the user's device sees it. */
export interface CibaRequest {
  authReqId: string;
  accountId: string;
  clientId: string;
  bindingMessage: string | undefined;
  authorizationDetails: unknown;
  scope: string;
  resource: string | string[] | undefined;
}

export interface CibaHooks {
  /** Every request triggered so far, oldest first. */
  requests: CibaRequest[];
  /** The next request not yet taken by next() (waits up to timeoutMs). */
  next(timeoutMs?: number): Promise<CibaRequest>;
  /**
   * The user approves on their device: a grant for the requested scope, resource and
   * authorization_details (or, to test the client, other authorization_details than requested).
   */
  approve(authReqId: string, o?: { authorizationDetails?: unknown[]; accountId?: string }): Promise<void>;
  /** The user denies (CIBA access_denied). */
  deny(authReqId: string): Promise<void>;
}

export interface AuthorizationServerCounters {
  jwks: number;
  discovery: number;
  authorization: number;
  interaction: number;
  introspection: number;
  revocation: number;
  registration: number;
  token: { total: number; byGrantType: Record<string, number> };
  /** Successful token exchanges (failed ones only show in token.byGrantType). */
  tokenExchange: number;
  /** Every request by URL path, including the ones above. */
  byPath: Record<string, number>;
}

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope?: string;
  refresh_token?: string;
  id_token?: string;
  issued_token_type?: string;
  [key: string]: unknown;
}

export interface IntrospectionResponse {
  active: boolean;
  [key: string]: unknown;
}

export interface GetTokenOptions {
  resource: string;
  scope?: string;
  /** Account the headless login signs in as (sent as login_hint). Default 'alice'. */
  subject?: string;
  /** 'demo-agent' (default) or 'other-agent'; both are public PKCE clients. */
  clientId?: string;
  /** RFC 9396 authorization_details to request (needs rarTypes or ciba); granted as asked. */
  authorizationDetails?: unknown[];
}

export interface ExchangeTokenOptions {
  subjectToken: string;
  subjectTokenType?: string;
  resource?: string;
  audience?: string;
  scope?: string;
  requestedTokenType?: string;
  actorToken?: string;
  actorTokenType?: string;
}

export interface OAuthErrorBody {
  error: string;
  error_description?: string;
}

export interface AuthorizationServer {
  issuer: string;
  port: number;
  counters: AuthorizationServerCounters;
  resetCounters(): void;
  /** Credentials of the confidential `mcp-warden` client (client_secret_basic). */
  gateway: { clientId: string; clientSecret: string };
  /** Errors the provider swallowed into 500 responses; tests may assert it stays empty. */
  serverErrors: Error[];
  jwksUri: string;
  /** CIBA test hooks (only with the `ciba` option). */
  ciba: CibaHooks;
  tokenEndpoint: string;
  introspectionEndpoint: string;
  revocationEndpoint: string;
  /** Public JWKS as currently published. */
  publicJwks(): jose.JSONWebKeySet;
  /**
   * Generates a new RS256 key that signs from now on and is published first in the JWKS.
   * With keepOld (default true) previous keys stay published, so tokens already issued still
   * verify; with keepOld false they vanish from the JWKS and those tokens stop verifying.
   * The provider is rebuilt on the same port; tokens, grants and registered clients survive.
   */
  rotateKeys(opts?: { keepOld?: boolean }): Promise<{ kid: string }>;
  /** Signs arbitrary claims with the current AS key (for forged-but-validly-signed test tokens). */
  signJwt(claims: jose.JWTPayload, header?: { typ?: string; kid?: string }): Promise<string>;
  getToken(opts: GetTokenOptions): Promise<TokenResponse>;
  /** Client credentials grant; defaults to the `mcp-warden` client. */
  clientCredentialsToken(opts?: {
    resource?: string;
    scope?: string;
    clientId?: string;
    clientSecret?: string;
  }): Promise<TokenResponse>;
  /** RFC 8693 token exchange as `mcp-warden`; returns the raw outcome so errors can be asserted. */
  exchangeToken(opts: ExchangeTokenOptions): Promise<{ status: number; body: TokenResponse | OAuthErrorBody }>;
  /** Introspects as `mcp-warden`. */
  introspect(token: string): Promise<IntrospectionResponse>;
  /** Revokes as `mcp-warden` (allowed for any client's token). JWTs cannot be revoked. */
  revoke(token: string, tokenTypeHint?: 'access_token' | 'refresh_token'): Promise<void>;
  close(): Promise<void>;
}

/*
 * oidc-provider ships no type declarations. Loading it through a non-literal specifier keeps
 * this file self-contained (no ambient .d.ts) and the loose shapes below document what we use.
 */
type OidcClient = { clientId: string; clientAuthMethod: string };
type OidcCtx = {
  oidc: {
    client: OidcClient;
    params: Record<string, string | string[] | undefined>;
    route?: string;
    entity(kind: string, value: unknown): void;
  };
  path: string;
  body: unknown;
  status: number;
  type: string;
};
type Next = () => Promise<void>;
type ProviderInstance = any;
type OidcModule = { Provider: new (issuer: string, config: unknown) => ProviderInstance; errors: Record<string, any> };

const OIDC_PROVIDER_SPECIFIER: string = 'oidc-provider';
let oidcModule: Promise<OidcModule> | undefined;

function loadOidcProvider(): Promise<OidcModule> {
  oidcModule ??= (async () => {
    // oidc-provider warns on import about Node 20 not being its preferred LTS; keep test output clean.
    const original = console.warn;
    console.warn = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].includes('oidc-provider WARNING: Unsupported runtime')) return;
      original(...args);
    };
    try {
      return (await import(OIDC_PROVIDER_SPECIFIER)) as OidcModule;
    } finally {
      console.warn = original;
    }
  })();
  return oidcModule;
}

/**
 * In-memory adapter shared across provider rebuilds (key rotation), so rotating keys does not
 * forget tokens, grants, sessions or dynamically registered clients. Also avoids the stock
 * memory adapter's console warning.
 */
class SharedStore {
  readonly entries = new Map<string, { payload: Record<string, unknown>; expiresAt?: number }>();
  readonly grantMembers = new Map<string, Set<string>>();
  readonly uids = new Map<string, string>();
  readonly userCodes = new Map<string, string>();

  adapterFor(model: string) {
    const store = this;
    const key = (id: string) => `${model}:${id}`;
    return {
      async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
        store.entries.set(key(id), {
          payload,
          expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined,
        });
        if (model === 'Session' && typeof payload.uid === 'string') store.uids.set(payload.uid, id);
        if (typeof payload.userCode === 'string') store.userCodes.set(payload.userCode, id);
        if (typeof payload.grantId === 'string' && model !== 'Grant') {
          let members = store.grantMembers.get(payload.grantId);
          if (!members) store.grantMembers.set(payload.grantId, (members = new Set()));
          members.add(key(id));
        }
      },
      async find(id: string | undefined) {
        if (id === undefined) return undefined;
        const entry = store.entries.get(key(id));
        if (!entry) return undefined;
        if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
          store.entries.delete(key(id));
          return undefined;
        }
        return entry.payload;
      },
      async findByUid(uid: string) {
        return this.find(store.uids.get(uid));
      },
      async findByUserCode(userCode: string) {
        return this.find(store.userCodes.get(userCode));
      },
      async consume(id: string) {
        const entry = store.entries.get(key(id));
        if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id: string) {
        store.entries.delete(key(id));
      },
      async revokeByGrantId(grantId: string) {
        for (const member of store.grantMembers.get(grantId) ?? []) store.entries.delete(member);
        store.grantMembers.delete(grantId);
      },
    };
  }
}

async function generateSigningKey(): Promise<jose.JWK> {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

function toPublicJwk({ kty, n, e, kid, alg, use }: jose.JWK): jose.JWK {
  return { kty, n, e, kid, alg, use };
}

const b64url = (buf: Buffer) => buf.toString('base64url');

export function createPkcePair(): { verifier: string; challenge: string } {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

/**
 * Drives an authorization request like a browser would, but without one: follows redirects
 * manually with a private cookie jar (the interaction and resume steps are cookie-bound) until
 * the AS redirects away to the client's redirect_uri, and returns that final URL (which carries
 * `code`, or `error`). Any non-redirect response from the AS is a failure.
 */
export async function followAuthorizationRedirects(url: URL, opts: { maxHops?: number } = {}): Promise<URL> {
  const asOrigin = url.origin;
  const jar = new Map<string, string>();
  let current = url;
  for (let hop = 0; hop < (opts.maxHops ?? 20); hop++) {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(current, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    for (const setCookie of res.headers.getSetCookie()) {
      const [pair = '', ...attrs] = setCookie.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k = '', v = ''] = a.trim().split('=');
        if (k.toLowerCase() === 'max-age') return Number(v) <= 0;
        if (k.toLowerCase() === 'expires') return Date.parse(v) <= Date.now();
        return false;
      });
      if (expired || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    const location = res.headers.get('location');
    if (res.status < 300 || res.status >= 400 || !location) {
      const text = await res.text();
      throw new Error(`authorization flow stopped at ${current.href} with HTTP ${res.status}: ${text.slice(0, 500)}`);
    }
    await res.body?.cancel();
    const next = new URL(location, current);
    if (next.origin !== asOrigin || next.searchParams.has('code') || next.searchParams.has('error')) {
      return next;
    }
    current = next;
  }
  throw new Error('authorization flow exceeded the redirect limit');
}

function basicAuth(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

async function postForm(
  url: string,
  form: Record<string, string | undefined>,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) if (v !== undefined) body.set(k, v);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...headers },
    body,
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // non-JSON bodies are returned as text for the error message
  }
  return { status: res.status, body: parsed };
}

function expectOk<T>(what: string, res: { status: number; body: any }): T {
  if (res.status < 200 || res.status >= 300) {
    throw new Error(`${what} failed with HTTP ${res.status}: ${JSON.stringify(res.body)}`);
  }
  return res.body as T;
}

function splitScope(scope: unknown): string[] {
  return typeof scope === 'string' ? scope.split(' ').filter(Boolean) : [];
}

function newCounters(): AuthorizationServerCounters {
  return {
    jwks: 0,
    discovery: 0,
    authorization: 0,
    interaction: 0,
    introspection: 0,
    revocation: 0,
    registration: 0,
    token: { total: 0, byGrantType: {} },
    tokenExchange: 0,
    byPath: {},
  };
}

export async function startAuthorizationServer(opts: AuthorizationServerOptions = {}): Promise<AuthorizationServer> {
  const { Provider, errors } = await loadOidcProvider();
  const defaultTTL = opts.accessTokenTTL ?? 3600;
  const gatewaySecret = b64url(randomBytes(32));
  const cookieKeys = [b64url(randomBytes(32))];
  const store = new SharedStore();
  const counters = newCounters();
  const exchangeClients = new Set([...GATEWAY_CLIENTS, ...(opts.exchangeClients ?? []).map((c) => c.clientId)]);
  const serverErrors: Error[] = [];
  const rarTypes = opts.rarTypes ?? (opts.ciba ? ['mcp_tool_call', 'payment'] : []);
  const cibaRequests: CibaRequest[] = [];
  const cibaQueue: CibaRequest[] = [];
  const cibaWaiters: Array<(r: CibaRequest) => void> = [];
  const cibaTriggered = (r: CibaRequest) => {
    cibaRequests.push(r);
    const waiter = cibaWaiters.shift();
    if (waiter) waiter(r);
    else cibaQueue.push(r);
  };
  let signingKeys: jose.JWK[] = opts.keys?.length ? [...opts.keys] : [await generateSigningKey()];

  const knownResources = opts.resources
    ? new Map(Object.entries(opts.resources).map(([k, v]) => [k.replace(/\/+$/, ''), v]))
    : undefined;
  const resourceConfig = (indicator: string): ResourceConfig | undefined => {
    if (knownResources) return knownResources.get(indicator.replace(/\/+$/, ''));
    const parsed = URL.parse(indicator);
    return parsed && (parsed.protocol === 'http:' || parsed.protocol === 'https:')
      ? { scopes: [...DEFAULT_SCOPES] }
      : undefined;
  };
  const allResourceScopes = new Set<string>(
    knownResources ? [...knownResources.values()].flatMap((r) => r.scopes) : DEFAULT_SCOPES,
  );

  async function getResourceServerInfo(_ctx: unknown, resourceIndicator: string) {
    const cfg = resourceConfig(resourceIndicator);
    if (!cfg) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
    const format = cfg.format ?? 'jwt';
    return {
      scope: cfg.scopes.join(' '),
      audience: resourceIndicator,
      accessTokenTTL: cfg.ttl ?? defaultTTL,
      accessTokenFormat: format,
      ...(format === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
    };
  }

  // oidc-provider recomputes token.extra from extraTokenClaims() when serializing, so claims a
  // grant handler wants on a token are handed over through this map instead of token.extra.
  const pendingExtraClaims = new WeakMap<object, Record<string, unknown>>();

  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;

  const verifierKeys = () => jose.createLocalJWKSet({ keys: signingKeys.map(toPublicJwk) });

  function buildProvider(): ProviderInstance {
    const staticClients: Record<string, unknown>[] = [
      ...[AGENT_CLIENT_ID, OTHER_AGENT_CLIENT_ID].map((client_id) => ({
        client_id,
        token_endpoint_auth_method: 'none',
        application_type: 'native',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [AGENT_REDIRECT_URI],
        ...(rarTypes.length > 0 ? { authorization_details_types: rarTypes } : {}),
      })),
      {
        client_id: GATEWAY_CLIENT_ID,
        client_secret: gatewaySecret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials', TOKEN_EXCHANGE_GRANT, ...(opts.trustedIssuers ? [JWT_BEARER_GRANT] : []), ...(opts.ciba ? [CIBA_GRANT] : [])],
        response_types: [],
        redirect_uris: [],
        ...(opts.ciba ? { backchannel_token_delivery_mode: 'poll' } : {}),
        ...(rarTypes.length > 0 ? { authorization_details_types: rarTypes } : {}),
      },
    ];
    for (const c of opts.exchangeClients ?? []) {
      staticClients.push({
        client_id: c.clientId,
        client_secret: c.clientSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials', TOKEN_EXCHANGE_GRANT],
        response_types: [],
        redirect_uris: [],
      });
    }
    if (opts.gatewayJwks) {
      staticClients.push({
        client_id: GATEWAY_PKJWT_CLIENT_ID,
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: opts.gatewayJwks,
        grant_types: ['client_credentials', TOKEN_EXCHANGE_GRANT],
        response_types: [],
        redirect_uris: [],
      });
    }

    const ttlFromResource = (fallback: number) => (_ctx: unknown, token: { resourceServer?: { accessTokenTTL?: number } }) =>
      token?.resourceServer?.accessTokenTTL ?? fallback;

    // Every default that oidc-provider flags with a console notice is set explicitly.
    const provider = new Provider(issuer, {
      adapter: (model: string) => store.adapterFor(model),
      jwks: { keys: signingKeys },
      clients: staticClients,
      cookies: { keys: cookieKeys },
      scopes: ['openid', 'offline_access', ...allResourceScopes],
      findAccount: async (_ctx: unknown, sub: string) => ({
        accountId: sub,
        claims: async () => ({ sub }),
      }),
      interactions: { url: async (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
      clientBasedCORS: () => true,
      renderError: async (ctx: OidcCtx, out: Record<string, string>) => {
        ctx.type = 'json';
        ctx.body = out;
      },
      extraTokenClaims: async (_ctx: unknown, token: object) => pendingExtraClaims.get(token),
      ttl: {
        AccessToken: ttlFromResource(defaultTTL),
        ClientCredentials: ttlFromResource(defaultTTL),
        AuthorizationCode: 60,
        // CIBA §7.1 requested_expiry, capped at 10 minutes.
        BackchannelAuthenticationRequest: (ctx: OidcCtx | undefined) => {
          const asked = Number(ctx?.oidc?.params?.requested_expiry);
          return Number.isSafeInteger(asked) && asked > 0 ? Math.min(600, asked) : 600;
        },
        DeviceCode: 600,
        Grant: 3600,
        IdToken: 3600,
        Interaction: 600,
        PreAuthorizedCode: 600,
        RefreshToken: 86400,
        Session: 3600,
      },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        registration: { enabled: true, initialAccessToken: false },
        introspection: {
          enabled: true,
          // The gateway introspects tokens issued to agents; other clients only their own.
          allowedPolicy: async (_ctx: unknown, client: OidcClient, token: { clientId: string }) =>
            GATEWAY_CLIENTS.has(client.clientId) || token.clientId === client.clientId,
        },
        revocation: {
          enabled: true,
          allowedPolicy: async (_ctx: unknown, client: OidcClient, token: { clientId: string }) =>
            GATEWAY_CLIENTS.has(client.clientId) || token.clientId === client.clientId,
        },
        ...(opts.ciba
          ? {
              ciba: {
                enabled: true,
                deliveryModes: ['poll'],
                // The login_hint is the account id (the subject of the caller's token).
                processLoginHint: async (_ctx: unknown, hint: string) => hint,
                processLoginHintToken: async () => undefined,
                verifyUserCode: async () => undefined,
                validateRequestContext: async () => undefined,
                // A person reads it: printable text, bounded; control characters are refused.
                validateBindingMessage: async (_ctx: unknown, message: string | undefined) => {
                  if (message !== undefined && (message.length > 200 || /[\p{Cc}\p{Cf}]/u.test(message))) {
                    throw new errors.InvalidBindingMessage('binding_message must be at most 200 printable characters');
                  }
                },
                triggerAuthenticationDevice: async (_ctx: unknown, request: any, account: { accountId: string }, client: OidcClient) => {
                  let details: unknown;
                  try {
                    details = request.params?.authorization_details ? JSON.parse(request.params.authorization_details) : undefined;
                  } catch {
                    details = undefined;
                  }
                  cibaTriggered({
                    authReqId: request.jti,
                    accountId: account.accountId,
                    clientId: client.clientId,
                    bindingMessage: request.params?.binding_message,
                    authorizationDetails: details,
                    scope: request.scope,
                    resource: request.resource,
                  });
                },
              },
            }
          : {}),
        ...(rarTypes.length > 0
          ? {
              richAuthorizationRequests: {
                enabled: true,
                types: Object.fromEntries(rarTypes.map((t) => [t, { validate: async () => undefined }])),
                // What the user granted is what was asked (interaction and CIBA approval store it).
                authorizationDetailsForGrantSource: async (ctx: { oidc: { grant?: { rar?: unknown[] } } }) => ctx.oidc.grant?.rar,
                authorizationDetailsForAccessToken: async (_ctx: unknown, _token: unknown, source: { rar?: unknown[] } | undefined) => source?.rar,
                authorizationDetailsForIntrospection: async (_ctx: unknown, token: { rar?: unknown[] }) => token.rar,
              },
            }
          : {}),
        resourceIndicators: {
          enabled: true,
          defaultResource: async (ctx: OidcCtx, _client: unknown, oneOf?: string | string[]) => {
            const candidate = oneOf ?? ctx.oidc.params.resource;
            return Array.isArray(candidate) && candidate.length === 1 ? candidate[0] : candidate;
          },
          getResourceServerInfo,
          useGrantedResource: async () => true,
        },
      },
    });

    provider.on('server_error', (_ctx: unknown, err: Error) => {
      serverErrors.push(err);
      if (process.env.DEBUG_AS) console.error('[authorization-server]', err);
    });
    provider.on('error', (err: Error) => {
      serverErrors.push(err);
      if (process.env.DEBUG_AS) console.error('[authorization-server]', err);
    });

    provider.use(async (ctx: OidcCtx, next: Next) => {
      const path = ctx.path.replace(/^\/auth\/[^/]+$/, '/auth/:uid').replace(/^\/reg\/[^/]+$/, '/reg/:clientId');
      counters.byPath[path] = (counters.byPath[path] ?? 0) + 1;
      try {
        await next();
      } finally {
        countRoute(ctx);
      }
    });

    provider.registerGrantType(
      TOKEN_EXCHANGE_GRANT,
      (ctx: OidcCtx) => tokenExchange(provider, ctx),
      [
        'subject_token',
        'subject_token_type',
        'actor_token',
        'actor_token_type',
        'resource',
        'audience',
        'scope',
        'requested_token_type',
      ],
    );
    if (opts.trustedIssuers) {
      provider.registerGrantType(JWT_BEARER_GRANT, (ctx: OidcCtx) => jwtBearer(provider, ctx), ['assertion', 'resource', 'scope']);
    }
    return provider;
  }

  function countRoute(ctx: OidcCtx) {
    const route = (ctx as { oidc?: OidcCtx['oidc'] }).oidc?.route;
    switch (route) {
      case 'jwks':
        counters.jwks++;
        break;
      case 'discovery':
        counters.discovery++;
        break;
      case 'authorization':
      case 'resume':
        counters.authorization++;
        break;
      case 'introspection':
        counters.introspection++;
        break;
      case 'revocation':
        counters.revocation++;
        break;
      case 'registration':
      case 'client':
      case 'client_update':
      case 'client_delete':
        counters.registration++;
        break;
      case 'token': {
        const grantType = ctx.oidc.params?.grant_type;
        const key = typeof grantType === 'string' ? grantType : 'unknown';
        counters.token.total++;
        counters.token.byGrantType[key] = (counters.token.byGrantType[key] ?? 0) + 1;
        break;
      }
      default:
        break;
    }
  }

  interface SubjectInfo {
    sub: string;
    scopes: string[];
    act?: unknown;
    /** RFC 9396 authorization_details of the subject token (e.g. a CIBA-approved call). */
    rar?: unknown[];
  }

  async function resolveSubjectToken(provider: ProviderInstance, token: string): Promise<SubjectInfo> {
    const invalid = (why: string) => new errors.InvalidGrant(`subject_token is invalid: ${why}`);
    let isJwt = false;
    try {
      isJwt = !!jose.decodeProtectedHeader(token);
    } catch {
      isJwt = false;
    }
    if (isJwt) {
      try {
        const { payload } = await jose.jwtVerify(token, verifierKeys(), {
          issuer,
          typ: 'at+jwt',
          algorithms: ['RS256'],
          requiredClaims: ['exp', 'sub'],
        });
        const rar = Array.isArray(payload.authorization_details) ? payload.authorization_details : undefined;
        return { sub: payload.sub as string, scopes: splitScope(payload.scope), act: payload.act, ...(rar ? { rar } : {}) };
      } catch (err) {
        throw invalid((err as Error).message);
      }
    }
    const found =
      (await provider.AccessToken.find(token)) ?? (await provider.ClientCredentials.find(token));
    if (!found?.isValid) throw invalid('not active');
    if (found.grantId) {
      const grant = await provider.Grant.find(found.grantId);
      if (!grant || grant.isExpired) throw invalid('grant no longer exists');
    }
    return { sub: found.accountId ?? found.clientId, scopes: splitScope(found.scope), act: found.extra?.act };
  }

  /**
   * RFC 8693 token exchange, gateway only: trades an agent's token for a new token audience-
   * restricted to the requested resource, same subject, scope narrowed, with
   * `act: { sub: <gateway client_id>, act?: <subject's previous act> }`. The new token's
   * client_id is the gateway's (it is the client that obtained it). Its format follows the
   * target resource's configuration (JWT unless configured opaque).
   */
  async function tokenExchange(provider: ProviderInstance, ctx: OidcCtx): Promise<void> {
    const { client, params } = ctx.oidc;
    const param = (name: string): string | undefined => {
      const value = params[name];
      return Array.isArray(value) ? value[0] : value;
    };
    if (!exchangeClients.has(client.clientId)) {
      throw new errors.UnauthorizedClient('token exchange is reserved for the gateway client');
    }
    const subjectToken = param('subject_token');
    const subjectTokenType = param('subject_token_type');
    if (!subjectToken) throw new errors.InvalidRequest('missing required parameter subject_token');
    if (!subjectTokenType) throw new errors.InvalidRequest('missing required parameter subject_token_type');
    if (subjectTokenType !== ACCESS_TOKEN_TYPE && subjectTokenType !== JWT_TOKEN_TYPE) {
      throw new errors.InvalidRequest('unsupported subject_token_type');
    }
    if (param('actor_token') && !param('actor_token_type')) {
      throw new errors.InvalidRequest('actor_token_type is required with actor_token');
    }
    const requestedType = param('requested_token_type');
    if (requestedType && requestedType !== ACCESS_TOKEN_TYPE && requestedType !== JWT_TOKEN_TYPE) {
      throw new errors.InvalidRequest('unsupported requested_token_type');
    }
    const target = param('resource') ?? param('audience');
    if (!target) throw new errors.InvalidTarget('resource or audience is required');

    const subject = await resolveSubjectToken(provider, subjectToken);
    const info = await getResourceServerInfo(ctx, target);
    const resourceServer = new provider.ResourceServer(target, info);

    const requested = param('scope') !== undefined ? splitScope(param('scope')) : subject.scopes;
    const subjectScopes = new Set(subject.scopes);
    const resourceScopes = new Set(info.scope.split(' '));
    const scopes = requested.filter((s) => subjectScopes.has(s) && resourceScopes.has(s));
    if (param('scope') !== undefined && scopes.length === 0) {
      throw new errors.InvalidScope('requested scope is not covered by the subject token');
    }

    const token = new provider.AccessToken({
      accountId: subject.sub,
      client,
      gty: TOKEN_EXCHANGE_GRANT,
      scope: scopes.join(' ') || undefined,
      resourceServer,
      // What the user approved travels with the delegation (RFC 9396 §7 leaves this to the AS).
      ...(subject.rar ? { rar: subject.rar } : {}),
    });
    const act: Record<string, unknown> = { sub: client.clientId };
    if (subject.act) act.act = subject.act;
    pendingExtraClaims.set(token, { act });

    ctx.oidc.entity('AccessToken', token);
    const value: string = await token.save();
    counters.tokenExchange++;
    // A JWT was asked for (e.g. an identity-chaining grant): say so, and it is no access token here (N_A).
    const asJwt = requestedType === JWT_TOKEN_TYPE;
    ctx.body = {
      access_token: value,
      issued_token_type: asJwt ? JWT_TOKEN_TYPE : ACCESS_TOKEN_TYPE,
      token_type: asJwt ? 'N_A' : 'Bearer',
      expires_in: token.expiration,
      scope: token.scope || undefined,
    };
  }

  const trustedKeys = new Map((opts.trustedIssuers ?? []).map((t) => [t.issuer, jose.createRemoteJWKSet(new URL(t.jwksUri))]));

  /**
   * RFC 7523 §2.1 jwt-bearer for identity chaining: a JWT authorization grant signed by a trusted
   * AS of another domain, audience this issuer, becomes an access token for the requested resource
   * with the same subject and the grant's `act` chain.
   */
  async function jwtBearer(provider: ProviderInstance, ctx: OidcCtx): Promise<void> {
    const { client, params } = ctx.oidc;
    const param = (name: string): string | undefined => {
      const value = params[name];
      return Array.isArray(value) ? value[0] : value;
    };
    const assertion = param('assertion');
    if (!assertion) throw new errors.InvalidRequest('missing required parameter assertion');
    let claims: jose.JWTPayload;
    try {
      const iss = jose.decodeJwt(assertion).iss;
      const keys = typeof iss === 'string' ? trustedKeys.get(iss) : undefined;
      if (!keys) throw new Error('untrusted issuer');
      ({ payload: claims } = await jose.jwtVerify(assertion, keys, { issuer: iss, audience: issuer, requiredClaims: ['exp', 'sub'] }));
    } catch (err) {
      throw new errors.InvalidGrant(`assertion is invalid: ${(err as Error).message}`);
    }
    const target = param('resource');
    if (!target) throw new errors.InvalidTarget('resource is required');
    const info = await getResourceServerInfo(ctx, target);
    const requested = param('scope') !== undefined ? splitScope(param('scope')) : splitScope(info.scope);
    const scopes = requested.filter((x) => info.scope.split(' ').includes(x));
    const token = new provider.AccessToken({
      accountId: claims.sub,
      client,
      gty: JWT_BEARER_GRANT,
      scope: scopes.join(' ') || undefined,
      resourceServer: new provider.ResourceServer(target, info),
    });
    if (claims.act) pendingExtraClaims.set(token, { act: claims.act });
    ctx.oidc.entity('AccessToken', token);
    const value: string = await token.save();
    ctx.body = { access_token: value, token_type: 'Bearer', expires_in: token.expiration, scope: token.scope || undefined };
  }

  async function handleInteraction(provider: ProviderInstance, req: IncomingMessage, res: ServerResponse) {
    counters.interaction++;
    try {
      const details = await provider.interactionDetails(req, res);
      const params = details.params as Record<string, unknown>;
      const loginHint = typeof params.login_hint === 'string' && params.login_hint ? params.login_hint : undefined;
      const accountId: string = details.session?.accountId ?? loginHint ?? 'alice';
      const result: Record<string, unknown> = {};
      if (details.prompt.name === 'login') result.login = { accountId };

      // Grant everything requested in the same round, so no separate consent round is needed.
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId, clientId: params.client_id });
      const scopes = splitScope(params.scope);
      if (scopes.length) grant.addOIDCScope(scopes.join(' '));
      const resources = Array.isArray(params.resource)
        ? (params.resource as string[])
        : typeof params.resource === 'string'
          ? [params.resource]
          : [];
      for (const resource of resources) {
        const cfg = resourceConfig(resource);
        const granted = scopes.filter((s) => cfg?.scopes.includes(s));
        grant.addResourceScope(resource, granted.join(' '));
      }
      if (typeof params.authorization_details === 'string' && rarTypes.length > 0) {
        for (const detail of JSON.parse(params.authorization_details) as unknown[]) grant.addRar(detail);
      }
      result.consent = { grantId: await grant.save() };
      await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    } catch (err) {
      if (!res.headersSent) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'interaction_failed', error_description: (err as Error).message }));
      }
    }
  }

  let provider = buildProvider();
  let callback = provider.callback() as (req: IncomingMessage, res: ServerResponse) => void;

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method === 'GET' && path.startsWith('/interaction/')) {
      counters.byPath['/interaction'] = (counters.byPath['/interaction'] ?? 0) + 1;
      void handleInteraction(provider, req, res);
      return;
    }
    callback(req, res);
  });

  const endpoints = {
    authorization: `${issuer}/auth`,
    token: `${issuer}/token`,
    jwks: `${issuer}/jwks`,
    introspection: `${issuer}/token/introspection`,
    revocation: `${issuer}/token/revocation`,
  };
  const gatewayAuth = { authorization: basicAuth(GATEWAY_CLIENT_ID, gatewaySecret) };

  const as: AuthorizationServer = {
    issuer,
    port,
    counters,
    resetCounters() {
      Object.assign(counters, newCounters());
    },
    gateway: { clientId: GATEWAY_CLIENT_ID, clientSecret: gatewaySecret },
    serverErrors,
    jwksUri: endpoints.jwks,
    ciba: {
      requests: cibaRequests,
      next(timeoutMs = 10_000) {
        const queued = cibaQueue.shift();
        if (queued) return Promise.resolve(queued);
        return new Promise<CibaRequest>((resolve, reject) => {
          const waiter = (r: CibaRequest) => {
            clearTimeout(timer);
            resolve(r);
          };
          const timer = setTimeout(() => {
            cibaWaiters.splice(cibaWaiters.indexOf(waiter), 1);
            reject(new Error(`no CIBA request within ${timeoutMs}ms`));
          }, timeoutMs);
          cibaWaiters.push(waiter);
        });
      },
      async approve(authReqId, o = {}) {
        const request = await provider.BackchannelAuthenticationRequest.find(authReqId);
        if (!request) throw new Error('unknown or expired backchannel authentication request');
        // Someone else approving (a misrouted push, a shared device): the tokens name them.
        if (o.accountId) request.accountId = o.accountId;
        const grant = new provider.Grant({ accountId: request.accountId, clientId: request.clientId });
        grant.addOIDCScope(request.scope);
        const scopes = splitScope(request.scope);
        for (const resource of [request.resource ?? []].flat() as string[]) {
          const granted = scopes.filter((s) => resourceConfig(resource)?.scopes.includes(s));
          if (granted.length) grant.addResourceScope(resource, granted.join(' '));
        }
        const details = o.authorizationDetails ?? (request.params?.authorization_details ? (JSON.parse(request.params.authorization_details) as unknown[]) : undefined);
        if (details) {
          for (const d of details) grant.addRar(d);
          request.rar = details;
        }
        request.grantId = await grant.save();
        await request.save();
      },
      async deny(authReqId) {
        const request = await provider.BackchannelAuthenticationRequest.find(authReqId);
        if (!request) throw new Error('unknown or expired backchannel authentication request');
        request.error = 'access_denied';
        request.errorDescription = 'the user denied the request';
        await request.save();
      },
    },
    tokenEndpoint: endpoints.token,
    introspectionEndpoint: endpoints.introspection,
    revocationEndpoint: endpoints.revocation,

    publicJwks() {
      return { keys: signingKeys.map(toPublicJwk) };
    },

    async rotateKeys({ keepOld = true } = {}) {
      const key = await generateSigningKey();
      signingKeys = keepOld ? [key, ...signingKeys] : [key];
      provider = buildProvider();
      callback = provider.callback();
      return { kid: key.kid as string };
    },

    async signJwt(claims, header = {}) {
      const [current] = signingKeys;
      if (!current) throw new Error('no signing key');
      const key = await jose.importJWK(current, 'RS256');
      return new jose.SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', typ: header.typ ?? 'at+jwt', kid: header.kid ?? current.kid })
        .sign(key);
    },

    async getToken({ resource, scope = DEFAULT_SCOPES.join(' '), subject, clientId = AGENT_CLIENT_ID, authorizationDetails }) {
      const { verifier, challenge } = createPkcePair();
      const state = b64url(randomBytes(16));
      const authUrl = new URL(endpoints.authorization);
      const query: Record<string, string | undefined> = {
        client_id: clientId,
        response_type: 'code',
        redirect_uri: AGENT_REDIRECT_URI,
        scope,
        resource,
        state,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        login_hint: subject,
        authorization_details: authorizationDetails ? JSON.stringify(authorizationDetails) : undefined,
      };
      for (const [k, v] of Object.entries(query)) if (v !== undefined) authUrl.searchParams.set(k, v);
      const final = await followAuthorizationRedirects(authUrl);
      const code = final.searchParams.get('code');
      if (!code) throw new Error(`authorization failed: ${final.search}`);
      if (final.searchParams.get('state') !== state) throw new Error('authorization state mismatch');
      return expectOk<TokenResponse>(
        'authorization_code grant',
        await postForm(endpoints.token, {
          grant_type: 'authorization_code',
          code,
          redirect_uri: AGENT_REDIRECT_URI,
          code_verifier: verifier,
          client_id: clientId,
          resource,
        }),
      );
    },

    async clientCredentialsToken({ resource, scope, clientId = GATEWAY_CLIENT_ID, clientSecret = gatewaySecret } = {}) {
      return expectOk<TokenResponse>(
        'client_credentials grant',
        await postForm(
          endpoints.token,
          { grant_type: 'client_credentials', resource, scope },
          { authorization: basicAuth(clientId, clientSecret) },
        ),
      );
    },

    async exchangeToken(o) {
      return postForm(
        endpoints.token,
        {
          grant_type: TOKEN_EXCHANGE_GRANT,
          subject_token: o.subjectToken,
          subject_token_type: o.subjectTokenType ?? ACCESS_TOKEN_TYPE,
          resource: o.resource,
          audience: o.audience,
          scope: o.scope,
          requested_token_type: o.requestedTokenType,
          actor_token: o.actorToken,
          actor_token_type: o.actorTokenType,
        },
        gatewayAuth,
      );
    },

    async introspect(token) {
      return expectOk<IntrospectionResponse>(
        'introspection',
        await postForm(endpoints.introspection, { token }, gatewayAuth),
      );
    },

    async revoke(token, tokenTypeHint) {
      expectOk('revocation', await postForm(endpoints.revocation, { token, token_type_hint: tokenTypeHint }, gatewayAuth));
    },

    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return as;
}
