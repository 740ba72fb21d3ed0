import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { auth, type OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { OAuthClientInformationMixed, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import * as jose from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  followAuthorizationRedirects,
  startAuthorizationServer,
  type AuthorizationServer,
} from '../../demo/authorization-server.js';
import { startMcpServer, UPSTREAM_TOOLS, type McpUpstream } from '../../demo/mcp-server.js';
import { pingRedis, startRedis } from '../helpers/redis.js';

const MCP_RESOURCE = 'http://127.0.0.1:18080/mcp';
const OPAQUE_RESOURCE = 'http://opaque.example/api';
const OTHER_RESOURCE = 'http://billing.example/mcp';

describe('testbed', () => {
  let as: AuthorizationServer;
  let upstream: McpUpstream;

  beforeAll(async () => {
    [as, upstream] = await Promise.all([
      startAuthorizationServer({
        resources: {
          [MCP_RESOURCE]: { scopes: ['tools.read', 'tools.write'] },
          [OTHER_RESOURCE]: { scopes: ['tools.read', 'billing.read'] },
          [OPAQUE_RESOURCE]: { scopes: ['tools.read'], format: 'opaque' },
        },
      }),
      startMcpServer(),
    ]);
  });

  afterAll(async () => {
    await Promise.all([as?.close(), upstream?.close()]);
  });

  describe('authorization server', () => {
    it('issues an RS256 at+jwt bound to the requested resource via authorization code + PKCE', async () => {
      const jwks = jose.createRemoteJWKSet(new URL(as.jwksUri));
      const jwksBefore = as.counters.jwks;

      const token = await as.getToken({ resource: MCP_RESOURCE, scope: 'tools.read tools.write', subject: 'bob' });
      expect(token.token_type).toBe('Bearer');
      expect(token.expires_in).toBeGreaterThan(0);

      const { payload, protectedHeader } = await jose.jwtVerify(token.access_token, jwks, {
        issuer: as.issuer,
        audience: MCP_RESOURCE,
        typ: 'at+jwt',
        algorithms: ['RS256'],
      });
      expect(protectedHeader.kid).toBe(as.publicJwks().keys[0]?.kid);
      expect(payload).toMatchObject({ sub: 'bob', client_id: 'demo-agent', scope: 'tools.read tools.write' });
      expect(payload.jti).toEqual(expect.any(String));
      expect(as.counters.jwks).toBe(jwksBefore + 1);
      expect(as.counters.token.byGrantType.authorization_code).toBeGreaterThanOrEqual(1);

      const other = await as.getToken({ resource: OTHER_RESOURCE, scope: 'tools.read billing.read tools.write', clientId: 'other-agent' });
      expect(jose.decodeJwt(other.access_token)).toMatchObject({
        sub: 'alice',
        client_id: 'other-agent',
        aud: OTHER_RESOURCE,
        scope: 'tools.read billing.read',
      });
    });

    it('supports client credentials for the gateway client', async () => {
      const token = await as.clientCredentialsToken({ resource: MCP_RESOURCE, scope: 'tools.read' });
      const { payload } = await jose.jwtVerify(token.access_token, jose.createLocalJWKSet(as.publicJwks()), {
        issuer: as.issuer,
        audience: MCP_RESOURCE,
        typ: 'at+jwt',
      });
      expect(payload).toMatchObject({ sub: 'mcp-warden', client_id: 'mcp-warden', scope: 'tools.read' });
      expect(as.counters.token.byGrantType.client_credentials).toBeGreaterThanOrEqual(1);
    });

    it('introspects an agent opaque token for the gateway, and reports it inactive after revocation', async () => {
      const token = await as.getToken({ resource: OPAQUE_RESOURCE, scope: 'tools.read', subject: 'carol' });
      expect(token.access_token.split('.')).toHaveLength(1);

      const before = as.counters.introspection;
      const active = await as.introspect(token.access_token);
      expect(active).toMatchObject({
        active: true,
        aud: OPAQUE_RESOURCE,
        iss: as.issuer,
        sub: 'carol',
        client_id: 'demo-agent',
        scope: 'tools.read',
      });
      expect(active.exp).toEqual(expect.any(Number));

      await as.revoke(token.access_token);
      expect(await as.introspect(token.access_token)).toEqual({ active: false });
      expect(as.counters.introspection).toBe(before + 2);
      expect(as.counters.revocation).toBeGreaterThanOrEqual(1);
    });

    it('exchanges an agent token for a resource-bound token carrying act (RFC 8693)', async () => {
      const agent = await as.getToken({ resource: MCP_RESOURCE, scope: 'tools.read tools.write', subject: 'dave' });
      const exchangesBefore = as.counters.tokenExchange;

      const res = await as.exchangeToken({ subjectToken: agent.access_token, resource: OTHER_RESOURCE, scope: 'tools.read billing.read' });
      expect(res.status).toBe(200);
      const body = res.body as { access_token: string; issued_token_type: string; scope: string };
      expect(body.issued_token_type).toBe('urn:ietf:params:oauth:token-type:access_token');
      // billing.read is not in the subject token, so it is narrowed away.
      expect(body.scope).toBe('tools.read');

      const { payload, protectedHeader } = await jose.jwtVerify(body.access_token, jose.createLocalJWKSet(as.publicJwks()), {
        issuer: as.issuer,
        audience: OTHER_RESOURCE,
        typ: 'at+jwt',
      });
      expect(protectedHeader.alg).toBe('RS256');
      expect(payload).toMatchObject({ sub: 'dave', scope: 'tools.read', act: { sub: 'mcp-warden' } });
      expect(as.counters.tokenExchange).toBe(exchangesBefore + 1);

      // Exchanging an exchanged token nests the previous actor.
      const again = await as.exchangeToken({ subjectToken: body.access_token, audience: MCP_RESOURCE });
      expect(again.status).toBe(200);
      expect(jose.decodeJwt((again.body as { access_token: string }).access_token)).toMatchObject({
        sub: 'dave',
        aud: MCP_RESOURCE,
        act: { sub: 'mcp-warden', act: { sub: 'mcp-warden' } },
      });

      // Opaque subject tokens are accepted too.
      const opaque = await as.getToken({ resource: OPAQUE_RESOURCE, scope: 'tools.read', subject: 'erin' });
      const fromOpaque = await as.exchangeToken({ subjectToken: opaque.access_token, resource: MCP_RESOURCE });
      expect(fromOpaque.status).toBe(200);
      expect(jose.decodeJwt((fromOpaque.body as { access_token: string }).access_token)).toMatchObject({ sub: 'erin', aud: MCP_RESOURCE });
    });

    it('rejects token exchange with bad subject tokens or unknown targets', async () => {
      const garbage = await as.exchangeToken({ subjectToken: 'garbage', resource: MCP_RESOURCE });
      expect(garbage).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });

      const foreignKey = (await jose.generateKeyPair('RS256')).privateKey;
      const forged = await new jose.SignJWT({ sub: 'mallory', scope: 'tools.read' })
        .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: as.publicJwks().keys[0]?.kid })
        .setIssuer(as.issuer)
        .setAudience(MCP_RESOURCE)
        .setExpirationTime('5m')
        .sign(foreignKey);
      expect(await as.exchangeToken({ subjectToken: forged, resource: MCP_RESOURCE })).toMatchObject({
        status: 400,
        body: { error: 'invalid_grant' },
      });

      const expired = await as.signJwt({ iss: as.issuer, sub: 'bob', aud: MCP_RESOURCE, exp: Math.floor(Date.now() / 1000) - 60 });
      expect(await as.exchangeToken({ subjectToken: expired, resource: MCP_RESOURCE })).toMatchObject({
        status: 400,
        body: { error: 'invalid_grant' },
      });

      const agent = await as.getToken({ resource: MCP_RESOURCE });
      expect(await as.exchangeToken({ subjectToken: agent.access_token, resource: 'http://unknown.example/mcp' })).toMatchObject({
        status: 400,
        body: { error: 'invalid_target' },
      });
      expect(await as.exchangeToken({ subjectToken: agent.access_token })).toMatchObject({
        status: 400,
        body: { error: 'invalid_target' },
      });
      expect(as.serverErrors).toEqual([]);
    });

    it('authenticates the gateway with private_key_jwt when gatewayJwks is configured', async () => {
      const { privateKey, publicKey } = await jose.generateKeyPair('ES256');
      const publicJwk = { ...(await jose.exportJWK(publicKey)), kid: 'gw-1', alg: 'ES256', use: 'sig' };
      const pkAs = await startAuthorizationServer({ gatewayJwks: { keys: [publicJwk] } });
      try {
        const assertion = await new jose.SignJWT({})
          .setProtectedHeader({ alg: 'ES256', kid: 'gw-1' })
          .setIssuer('mcp-warden-pkjwt')
          .setSubject('mcp-warden-pkjwt')
          .setAudience(pkAs.issuer)
          .setJti(crypto.randomUUID())
          .setIssuedAt()
          .setExpirationTime('1m')
          .sign(privateKey);
        const res = await fetch(pkAs.tokenEndpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({
            grant_type: 'client_credentials',
            resource: MCP_RESOURCE,
            client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
            client_assertion: assertion,
          }),
        });
        expect(res.status).toBe(200);
        const { access_token } = (await res.json()) as { access_token: string };
        expect(jose.decodeJwt(access_token)).toMatchObject({ client_id: 'mcp-warden-pkjwt', aud: MCP_RESOURCE });
      } finally {
        await pkAs.close();
      }
    });

    it('rotates signing keys, keeping old ones published', async () => {
      const before = await as.getToken({ resource: MCP_RESOURCE });
      const oldKid = jose.decodeProtectedHeader(before.access_token).kid;

      const { kid } = await as.rotateKeys();
      expect(kid).not.toBe(oldKid);
      const published = (await (await fetch(as.jwksUri)).json()) as jose.JSONWebKeySet;
      expect(published.keys.map((k) => k.kid)).toEqual([kid, oldKid]);
      expect(published.keys.every((k) => k.d === undefined)).toBe(true);

      const after = await as.getToken({ resource: MCP_RESOURCE });
      expect(jose.decodeProtectedHeader(after.access_token).kid).toBe(kid);
      const jwks = jose.createLocalJWKSet(published);
      await expect(jose.jwtVerify(before.access_token, jwks)).resolves.toBeTruthy();
      await expect(jose.jwtVerify(after.access_token, jwks)).resolves.toBeTruthy();

      const { kid: newest } = await as.rotateKeys({ keepOld: false });
      const onlyNew = jose.createLocalJWKSet(as.publicJwks());
      expect(as.publicJwks().keys.map((k) => k.kid)).toEqual([newest]);
      await expect(jose.jwtVerify(after.access_token, onlyNew)).rejects.toThrow();
      // Stored state survives the rebuild: opaque tokens issued earlier still introspect.
      const opaque = await as.getToken({ resource: OPAQUE_RESOURCE, scope: 'tools.read' });
      await as.rotateKeys();
      expect(await as.introspect(opaque.access_token)).toMatchObject({ active: true });
    });

    it("lets the MCP SDK's OAuth client discover, register and complete PKCE headlessly", async () => {
      // Default configuration: any http(s) resource is known, with tools.read/tools.write.
      const openAs = await startAuthorizationServer();
      // A stand-in protected resource: only what the SDK needs to find the AS.
      const prm: Server = createServer((req, res) => {
        if (req.url?.startsWith('/.well-known/oauth-protected-resource')) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ resource: resourceUrl, authorization_servers: [openAs.issuer], scopes_supported: ['tools.read'] }));
          return;
        }
        res.writeHead(401, { 'www-authenticate': `Bearer resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"` });
        res.end();
      });
      await new Promise<void>((resolve) => prm.listen(0, '127.0.0.1', resolve));
      const origin = `http://127.0.0.1:${(prm.address() as AddressInfo).port}`;
      const resourceUrl = `${origin}/mcp`;

      let clientInfo: OAuthClientInformationMixed | undefined;
      let tokens: OAuthTokens | undefined;
      let verifier = '';
      let callback: URL | undefined;
      const provider: OAuthClientProvider = {
        redirectUrl: 'http://127.0.0.1:1/callback',
        clientMetadata: {
          client_name: 'testbed sdk client',
          redirect_uris: ['http://127.0.0.1:1/callback'],
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          token_endpoint_auth_method: 'none',
        },
        clientInformation: () => clientInfo,
        saveClientInformation: (info) => {
          clientInfo = info;
        },
        tokens: () => tokens,
        saveTokens: (t) => {
          tokens = t;
        },
        redirectToAuthorization: async (url) => {
          callback = await followAuthorizationRedirects(url);
        },
        saveCodeVerifier: (v) => {
          verifier = v;
        },
        codeVerifier: () => verifier,
      };

      try {

        expect(await auth(provider, { serverUrl: resourceUrl })).toBe('REDIRECT');
        const code = callback?.searchParams.get('code');
        expect(code).toEqual(expect.any(String));
        expect(openAs.counters.registration).toBe(1);

        expect(await auth(provider, { serverUrl: resourceUrl, authorizationCode: code! })).toBe('AUTHORIZED');
        const claims = jose.decodeJwt(tokens!.access_token);
        expect(claims).toMatchObject({ aud: resourceUrl, sub: 'alice', client_id: clientInfo!.client_id, scope: 'tools.read' });
      } finally {
        prm.closeAllConnections();
        await Promise.all([new Promise<void>((resolve) => prm.close(() => resolve())), openAs.close()]);
      }
    });
  });

  describe('mcp upstream', () => {
    it('serves a real MCP session with progress notifications streamed before the result', async () => {
      upstream.reset();
      const client = new Client({ name: 'testbed', version: '1.0.0' });
      const transport = new StreamableHTTPClientTransport(new URL(upstream.url), {
        requestInit: { headers: { 'x-test-user': 'zed' } },
      });
      await client.connect(transport);
      expect(transport.sessionId).toEqual(expect.any(String));

      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual([...UPSTREAM_TOOLS].sort());
      expect((await client.listPrompts()).prompts.length).toBeGreaterThan(0);
      expect((await client.listResources()).resources.length).toBeGreaterThan(0);

      expect(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })).toMatchObject({
        content: [{ type: 'text', text: '5' }],
      });

      const whoami = await client.callTool({ name: 'whoami', arguments: {} });
      const echoed = JSON.parse((whoami.content as Array<{ text: string }>)[0]!.text) as Record<string, string>;
      expect(echoed['x-test-user']).toBe('zed');
      expect(echoed.authorization).toBeUndefined();

      const events: Array<{ kind: 'progress' | 'result'; at: number; progress?: number }> = [];
      const call = client
        .callTool({ name: 'count_slowly', arguments: { n: 3, delayMs: 150 } }, undefined, {
          onprogress: (p) => events.push({ kind: 'progress', at: Date.now(), progress: p.progress }),
        })
        .then((r) => {
          events.push({ kind: 'result', at: Date.now() });
          return r;
        });
      const result = await call;
      expect(result).toMatchObject({ content: [{ type: 'text', text: 'counted to 3' }] });
      expect(events.map((e) => e.kind)).toEqual(['progress', 'progress', 'progress', 'result']);
      expect(events.slice(0, 3).map((e) => e.progress)).toEqual([1, 2, 3]);
      // Streamed, not batched: the first progress arrived well before the result.
      expect(events[3]!.at - events[0]!.at).toBeGreaterThanOrEqual(200);

      const sessionId = transport.sessionId!;
      await transport.terminateSession();
      await client.close();

      const methods = upstream.requests.map((r) => r.method);
      expect(methods).toContain('POST');
      expect(methods).toContain('DELETE');
      expect(upstream.requests.every((r) => r.headers['x-test-user'] === 'zed' || r.method === 'GET')).toBe(true);
      expect(upstream.sawString(sessionId)).toBe(true);
      expect(upstream.sawString('not-a-token-anyone-sent')).toBe(false);
      expect(upstream.activeSessions).toBe(0);
    });

    it('also runs stateless with JSON responses', async () => {
      const stateless = await startMcpServer({ stateless: true, enableJsonResponse: true, name: 'stateless' });
      try {
        const client = new Client({ name: 'testbed', version: '1.0.0' });
        const transport = new StreamableHTTPClientTransport(new URL(stateless.url));
        await client.connect(transport);
        expect(transport.sessionId).toBeUndefined();
        expect(await client.callTool({ name: 'search', arguments: { query: 'q' } })).toMatchObject({
          content: [{ type: 'text', text: expect.stringContaining('"q"') }],
        });
        await client.close();
        const post = stateless.requests.find((r) => r.body.includes('"tools/call"'));
        expect(post?.method).toBe('POST');
      } finally {
        await stateless.close();
      }
    });
  });

  describe('redis helper', () => {
    it('starts a private redis-server, survives kill/restart, and stops', async () => {
      const redis = await startRedis();
      try {
        expect(redis.port).not.toBe(6379);
        expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
        expect(await pingRedis(redis.port)).toBe(true);

        await redis.kill();
        expect(await pingRedis(redis.port)).toBe(false);

        await redis.restart();
        expect(await pingRedis(redis.port)).toBe(true);
      } finally {
        await redis.stop();
      }
      expect(await pingRedis(redis.port)).toBe(false);
    });
  });
});
