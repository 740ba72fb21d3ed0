/**
 * mcp-warden as an OAuth client of an authorization server: client authentication
 * (client_secret_basic, client_secret_post, private_key_jwt per RFC 7523) and form POSTs to the
 * AS's endpoints. Shared by introspection (RFC 7662) and token requests (RFC 8693 exchange,
 * client credentials). No secret or token ever appears in an error message.
 */
import { randomUUID } from 'node:crypto'
import { importJWK, importPKCS8, SignJWT, type JWK } from 'jose'
import type { RuntimeOAuthClient } from '../config/load.js'
import { fetchJson, FetchError } from '../lib/fetch-json.js'

export type SigningKey = Awaited<ReturnType<typeof importPKCS8>>

/** A private key from config: a JWK (JSON) or PEM PKCS#8. */
export function importPrivateKey(material: string, algorithm: string): Promise<SigningKey> {
  if (material.trimStart().startsWith('{')) return importJWK(JSON.parse(material) as JWK, algorithm) as Promise<SigningKey>
  return importPKCS8(material, algorithm)
}

export class OAuthRequestError extends Error {
  constructor(
    message: string,
    /** `unreachable`, `timeout`, `http-<status>`, `malformed`, or the AS's OAuth `error` code. */
    readonly kind: string,
    readonly status?: number,
  ) {
    super(message)
    this.name = 'OAuthRequestError'
  }
}

const formEncode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+')

export class OAuthClient {
  readonly #client: RuntimeOAuthClient
  #key: Promise<SigningKey> | undefined

  constructor(client: RuntimeOAuthClient) {
    this.#client = client
  }

  get clientId(): string {
    return this.#client.id
  }

  #signingKey(): Promise<SigningKey> {
    this.#key ??= importPrivateKey(this.#client.privateKey!.reveal(), this.#client.algorithm)
    return this.#key
  }

  /**
   * A short-lived JWT with iss = sub = this client, signed with its private_key_jwt key: the
   * RFC 7523 client assertion, and the actor_token naming mcp-warden in a token exchange.
   */
  async signAssertion(audience: string): Promise<string> {
    const c = this.#client
    if (c.auth !== 'private_key_jwt') throw new Error('signing needs a private_key_jwt client')
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT({})
      .setProtectedHeader({ alg: c.algorithm, ...(c.keyId ? { kid: c.keyId } : {}) })
      .setIssuer(c.id)
      .setSubject(c.id)
      .setAudience(audience)
      .setJti(randomUUID())
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(await this.#signingKey())
  }

  /** Headers and form fields that authenticate this client for a request to `endpoint`. */
  async authenticate(endpoint: string): Promise<{ headers: Record<string, string>; form: Record<string, string> }> {
    const c = this.#client
    switch (c.auth) {
      case 'client_secret_basic': {
        // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
        const basic = Buffer.from(`${formEncode(c.id)}:${formEncode(c.secret!.reveal())}`).toString('base64')
        return { headers: { authorization: `Basic ${basic}` }, form: {} }
      }
      case 'client_secret_post':
        return { headers: {}, form: { client_id: c.id, client_secret: c.secret!.reveal() } }
      case 'private_key_jwt': {
        const assertion = await this.signAssertion(endpoint)
        return {
          headers: {},
          form: { client_id: c.id, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion },
        }
      }
    }
  }

  /**
   * RFC 7662 §2.1 introspection request. The token travels only in the form body of a POST,
   * never in a URL; the response is returned unjudged (the caller decides what `active` means).
   */
  introspect(endpoint: string, token: string, timeoutMs: number): Promise<Record<string, unknown>> {
    return this.postForm(endpoint, { token, token_type_hint: 'access_token' }, timeoutMs)
  }

  /**
   * POST an authenticated form to an AS endpoint and return the JSON body of a 200. OAuth error
   * bodies become OAuthRequestError with the AS's `error` code as `kind`.
   */
  async postForm(endpoint: string, fields: Record<string, string>, timeoutMs: number): Promise<Record<string, unknown>> {
    const auth = await this.authenticate(endpoint)
    const body = new URLSearchParams({ ...fields, ...auth.form })
    let result: { status: number; body: unknown }
    try {
      result = await fetchJson(endpoint, {
        timeoutMs,
        maxBytes: 256 * 1024,
        init: { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...auth.headers }, body },
      })
    } catch (e) {
      const kind = e instanceof FetchError ? (e.message === 'timeout' ? 'timeout' : e.status ? `http-${e.status}` : e.message === 'response is not JSON' ? 'malformed' : 'unreachable') : 'unreachable'
      throw new OAuthRequestError(`request to the authorization server failed (${kind})`, kind, e instanceof FetchError ? e.status : undefined)
    }
    const { status, body: json } = result
    if (!json || typeof json !== 'object' || Array.isArray(json)) throw new OAuthRequestError('authorization server answered with a non-object', 'malformed', status)
    const obj = json as Record<string, unknown>
    if (status !== 200) {
      const code = typeof obj.error === 'string' && /^[\x20-\x7e]{1,64}$/.test(obj.error) ? obj.error : `http-${status}`
      throw new OAuthRequestError(`authorization server refused the request (${code})`, code, status)
    }
    return obj
  }
}
