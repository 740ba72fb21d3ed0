/**
 * The credential stage's decision logic, called directly: config checks, token-response
 * acceptance (TX-05, TX-09), cache keys and sealing, strategy selection, scope narrowing.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { Principal } from '../../gateway/auth/principal.js'
import { loadConfigText } from '../../gateway/config/load.js'
import { ConfigError } from '../../gateway/errors.js'
import { CredentialBroker, narrowScope } from '../../gateway/exchange/broker.js'
import { cacheKey } from '../../gateway/exchange/cache.js'
import { seal, unseal } from '../../gateway/store/seal.js'
import { acceptTokenResponse, InvalidTokenResponse, TOKEN_TYPE_URN } from '../../gateway/exchange/issued.js'

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
const jwt = (claims: object) => `${b64({ alg: 'RS256', typ: 'at+jwt' })}.${b64(claims)}.c2ln`
const NOW = 1_700_000_000_000
const UP = 'https://upstream-a.internal/mcp'

function why(f: () => unknown): string {
  try {
    f()
  } catch (e) {
    if (e instanceof InvalidTokenResponse) return e.why
    throw e
  }
  return 'accepted'
}

describe('token response acceptance', () => {
  const ok = { access_token: jwt({ aud: UP, sub: 'u1', exp: NOW / 1000 + 600, jti: 'j1' }), token_type: 'Bearer', issued_token_type: TOKEN_TYPE_URN.access_token, expires_in: 300 }
  const exchange = { requestedTokenType: 'access_token' as const, audiences: [UP], subjectToken: 'caller.token.sig', subject: 'u1', now: NOW }

  it('TX-05 / accepts a Bearer access token and bounds its lifetime by expires_in and exp', () => {
    const t = acceptTokenResponse(ok, exchange)
    expect(t.expiresAt).toBe(NOW + 300_000)
    expect(t.tokenId).toBe('j1')
    expect(acceptTokenResponse({ ...ok, expires_in: 3600 }, exchange).expiresAt).toBe(NOW + 600_000)
    expect(acceptTokenResponse({ ...ok, token_type: 'bearer' }, exchange).digest).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })

  it('TX-09 / ATK-32 / refuses the subject token echoed back, another audience, another subject', () => {
    expect(why(() => acceptTokenResponse({ ...ok, access_token: 'caller.token.sig' }, exchange))).toMatch(/subject token itself/)
    expect(why(() => acceptTokenResponse({ ...ok, access_token: jwt({ aud: 'https://other/mcp', sub: 'u1', exp: NOW / 1000 + 60 }) }, exchange))).toMatch(/audience/)
    expect(why(() => acceptTokenResponse({ ...ok, access_token: jwt({ sub: 'u1', exp: NOW / 1000 + 60 }) }, exchange))).toMatch(/audience/)
    expect(why(() => acceptTokenResponse({ ...ok, access_token: jwt({ aud: [UP], sub: 'admin', exp: NOW / 1000 + 60 }) }, exchange))).toMatch(/subject/)
  })

  it('TX-05 / refuses wrong issued_token_type, N_A or DPoP for an access token, missing lifetime, unsafe token text', () => {
    expect(why(() => acceptTokenResponse({ ...ok, issued_token_type: 'urn:ietf:params:oauth:token-type:id_token' }, exchange))).toMatch(/issued_token_type/)
    expect(why(() => acceptTokenResponse({ ...ok, token_type: 'N_A' }, exchange))).toMatch(/token_type/)
    expect(why(() => acceptTokenResponse({ ...ok, token_type: 'DPoP' }, exchange))).toMatch(/token_type/)
    expect(why(() => acceptTokenResponse({ ...ok, token_type: 'N_A', issued_token_type: TOKEN_TYPE_URN.jwt }, { ...exchange, requestedTokenType: 'jwt' }))).toBe('accepted')
    expect(why(() => acceptTokenResponse({ access_token: 'opaque', token_type: 'Bearer', issued_token_type: TOKEN_TYPE_URN.access_token }, exchange))).toMatch(/lifetime/)
    expect(why(() => acceptTokenResponse({ ...ok, expires_in: -1 }, exchange))).toMatch(/expires_in/)
    expect(why(() => acceptTokenResponse({ ...ok, access_token: 'a\r\nx-evil: 1' }, exchange))).toMatch(/header-safe/)
    expect(why(() => acceptTokenResponse({ ...ok, access_token: '' }, exchange))).toMatch(/missing/)
  })
})

describe('credential cache primitives', () => {
  it('keys are length-prefixed digests: no concatenation collisions, no raw input', () => {
    expect(cacheKey(['ab', 'c'])).not.toBe(cacheKey(['a', 'bc']))
    expect(cacheKey(['a', 'b'])).toBe(cacheKey(['a', 'b']))
    expect(cacheKey(['secret-token'])).not.toContain('secret')
  })

  it('sealed values open only with the same key and the same cache key (AAD)', () => {
    const key = randomBytes(32)
    const sealed = seal(key, 'cred:k1', 'the-token')
    expect(sealed).not.toContain('the-token')
    expect(unseal(key, 'cred:k1', sealed)).toBe('the-token')
    expect(unseal(key, 'cred:k2', sealed)).toBeUndefined()
    expect(unseal(randomBytes(32), 'cred:k1', sealed)).toBeUndefined()
    // Flip one bit of the last ciphertext byte (replacing base64url characters can touch only padding bits).
    const raw = Buffer.from(sealed.slice(3), 'base64url')
    raw.writeUInt8(raw.readUInt8(raw.length - 1) ^ 1, raw.length - 1)
    const tampered = `${sealed.slice(0, 3)}${raw.toString('base64url')}`
    expect(unseal(key, 'cred:k1', tampered)).toBeUndefined()
    expect(unseal(key, 'cred:k1', 'plain')).toBeUndefined()
  })
})

describe('strategy selection and scope narrowing', () => {
  const principal = (userPresent: boolean) => ({ userPresent }) as Principal
  const strategies = [
    { kind: 'passthrough', when: 'user' },
    { kind: 'passthrough', when: 'app' },
  ] as const

  it('the first entry whose when fits; none fitting selects nothing', () => {
    expect(CredentialBroker.select({ strategies }, principal(true))).toBe(strategies[0])
    expect(CredentialBroker.select({ strategies }, principal(false))).toBe(strategies[1])
    expect(CredentialBroker.select({ strategies: [strategies[0]] }, principal(false))).toBeUndefined()
  })

  it('maps held scopes to upstream scopes, union, sorted', () => {
    const map = new Map([
      ['tools.read', ['files.read']],
      ['tools.write', ['files.write', 'files.read']],
    ])
    expect(narrowScope(map, new Set(['tools.write', 'tools.read', 'other']))).toEqual(['files.read', 'files.write'])
    expect(narrowScope(map, new Set(['other']))).toEqual([])
  })
})

describe('credentials config', () => {
  const yaml = (credentials: string, extra = '') => `server:
  publicUrl: http://127.0.0.1:8080
  listen: { port: 8080 }
admin:
  listen: { port: 9090 }
issuers:
  demo:
    issuer: http://127.0.0.1:9000
    client: { id: mcp-warden, secret: { value: s3cret } }
  bare:
    issuer: http://127.0.0.1:9001
routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: http://127.0.0.1:7000/mcp }
    issuers: [bare, demo]
    credentials:
${credentials.replace(/^/gm, '      ')}
${extra}`
  const problems = (text: string) => {
    try {
      return loadConfigText('g.yaml', text).warnings.map((w) => `${w.line}:${w.column} ${w.path}: warning: ${w.message}`)
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map((p) => `${p.line}:${p.column} ${p.path}: ${p.severity === 'warning' ? 'warning: ' : ''}${p.message}`)
      throw e
    }
  }

  it('a token-exchange route picks the issuer that has a client registration', () => {
    const { config } = loadConfigText('g.yaml', yaml(`strategy: token-exchange\nresource: ${UP}\nscopes: { tools.read: [files.read] }`))
    const s = config.routes[0]!.credentials!.strategies[0]!
    expect(s).toMatchObject({ kind: 'token-exchange', issuer: 'demo', resource: UP, when: 'any', safetyMarginMs: 30_000, subjectTokenType: 'access_token' })
  })

  it('reports each mistake at its position', () => {
    expect(problems(yaml('strategy: token-exchange'))).toEqual(expect.arrayContaining([expect.stringMatching(/^\d+:\d+ routes\[0\]\.credentials: token-exchange needs resource and\/or audience/)]))
    expect(problems(yaml(`strategy: token-exchange\nresource: ${UP}\nheader: x-a`))).toEqual(expect.arrayContaining([expect.stringMatching(/routes\[0\]\.credentials\.header: "header" does not apply to strategy token-exchange/)]))
    expect(problems(yaml(`strategy: client-credentials\nresource: ${UP}\nissuer: bare`))).toEqual(expect.arrayContaining([expect.stringMatching(/issuers\.bare has no client registration/)]))
    expect(problems(yaml(`strategy: token-exchange\nresource: ${UP}\nactorToken: true`))).toEqual(expect.arrayContaining([expect.stringMatching(/actorToken .* private_key_jwt/)]))
    expect(problems(yaml('strategy: static\nheader: mcp-session-id\nvalue: { fromEnv: NOPE_NOT_SET }'))).toEqual(
      expect.arrayContaining([expect.stringMatching(/credentials\.header: header "mcp-session-id" is reserved/), expect.stringMatching(/credentials\.value: environment variable NOPE_NOT_SET is not set/)]),
    )
    expect(problems(yaml(`resource: ${UP}\nchain:\n  - { when: user, strategy: token-exchange, resource: ${UP} }`))).toEqual(expect.arrayContaining([expect.stringMatching(/"resource" cannot be used next to chain/)]))
    expect(problems(yaml('when: user'))).toEqual(expect.arrayContaining([expect.stringMatching(/set strategy, or chain/)]))
  })

  it('passthrough is refused without unsafe: true and warned about with it', () => {
    expect(problems(yaml('strategy: passthrough'))).toEqual([expect.stringMatching(/^\d+:\d+ routes\[0\]\.credentials\.strategy: passthrough .* needs unsafe: true/)])
    expect(problems(yaml('strategy: passthrough\nunsafe: true'))).toEqual(expect.arrayContaining([expect.stringMatching(/warning: passthrough is enabled.*violates the MCP specification/)]))
  })

  it('the Redis encryption key must be 32 bytes; without one, tokens are not shared and a warning says so', () => {
    const cc = `strategy: client-credentials\nresource: ${UP}`
    expect(problems(yaml(cc, 'cache:\n  redis: { url: "redis://127.0.0.1:1", encryptionKey: { value: short } }'))).toEqual(expect.arrayContaining([expect.stringMatching(/encryptionKey must be 32 bytes/)]))
    expect(problems(yaml(cc, 'cache:\n  redis: { url: "redis://127.0.0.1:1" }'))).toEqual(expect.arrayContaining([expect.stringMatching(/warning: no encryptionKey/)]))
    const hex = randomBytes(32).toString('hex')
    const { config } = loadConfigText('g.yaml', yaml(cc, `cache:\n  redis: { url: "redis://127.0.0.1:1", encryptionKey: { value: "${hex}" } }`))
    expect(Buffer.from(config.cache.redis!.encryptionKey!.reveal(), 'base64').toString('hex')).toBe(hex)
  })
})
