/**
 * An MCP SDK OAuthClientProvider that completes the browser step headlessly against the demo AS,
 * so the SDK's own flow (401 → PRM → AS metadata → DCR → PKCE with resource → token) can run in tests.
 */
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js'
import type { OAuthClientInformationMixed, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js'
import { followAuthorizationRedirects } from '../../demo/authorization-server.js'

export interface HeadlessOAuth {
  provider: OAuthClientProvider
  /** The authorization code of the last redirect, for transport.finishAuth(). */
  code(): string | undefined
  tokens(): OAuthTokens | undefined
  authorizationUrls: URL[]
}

/**
 * `client`: a pre-registered public client instead of dynamic registration. The SDK registers the
 * first challenge's scope, and an AS that enforces registered scopes (oidc-provider does) refuses
 * any later step-up; a step-up test needs a client registered for more (docs/policies.md).
 */
export function headlessOAuth(scope?: string, client?: { clientId: string; redirectUri: string }): HeadlessOAuth {
  let clientInfo: OAuthClientInformationMixed | undefined = client ? { client_id: client.clientId } : undefined
  let tokens: OAuthTokens | undefined
  let verifier = ''
  let callback: URL | undefined
  const authorizationUrls: URL[] = []
  const redirect = client?.redirectUri ?? 'http://127.0.0.1:1/callback'
  const provider: OAuthClientProvider = {
    redirectUrl: redirect,
    clientMetadata: {
      client_name: 'mcp-warden test agent',
      redirect_uris: [redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...(scope ? { scope } : {}),
    },
    clientInformation: () => clientInfo,
    saveClientInformation: (info) => {
      clientInfo = info
    },
    tokens: () => tokens,
    saveTokens: (t) => {
      tokens = t
    },
    redirectToAuthorization: async (url) => {
      authorizationUrls.push(url)
      callback = await followAuthorizationRedirects(url)
    },
    saveCodeVerifier: (v) => {
      verifier = v
    },
    codeVerifier: () => verifier,
  }
  return { provider, code: () => callback?.searchParams.get('code') ?? undefined, tokens: () => tokens, authorizationUrls }
}
