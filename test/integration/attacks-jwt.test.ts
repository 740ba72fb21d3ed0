/**
 * Token and JWT attacks (checklist 19.1, sections 3 and 4), black-box through the gateway. The
 * real AS signs with K1 (RSA, kid "k1"), a key this file also holds, so forged tokens can carry
 * exactly the bytes an attacker would send. Every refusal must be the spec's answer and reach
 * nothing upstream; every family has a positive control so a broken forger cannot pass.
 */
import { CompactEncrypt, FlattenedSign, importJWK, type JWK } from 'jose'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { atClaims, b64u, forge, newKey, publicJwk, publicKeyEncodings, signRaw } from '../helpers/forge.js'
import { json, startPeer, type Peer } from '../helpers/peer.js'
import { expectNoTokenInLogs, expectWellFormedChallenge, probe, type Probe } from '../helpers/probe.js'
import { parseChallenge, startStack, type Stack } from '../helpers/stack.js'

let s: Stack
let p: Probe
let k1: JWK
let attacker: Peer
let attackerKey: JWK
let base: { iss: string; aud: string }

const AT_HEADER = { alg: 'RS256', kid: 'k1', typ: 'at+jwt' }
const at = (overrides: Record<string, unknown> = {}, header: Record<string, unknown> = AT_HEADER) => forge(header, atClaims(base, overrides), k1)

beforeAll(async () => {
  k1 = await newKey('RS256', 'k1')
  attackerKey = await newKey('RS256', 'k1')
  attacker = await startPeer((_req, res) => json(res, 200, { keys: [publicJwk(attackerKey)] }))
  s = await startStack({ asOptions: { keys: [k1] }, issuerExtra: 'algorithms: [RS256, PS256, ES256]' })
  p = probe(s)
  base = { iss: s.as.issuer, aud: s.resource.alpha }
})
afterAll(async () => {
  await s?.close()
  await attacker?.close()
})
beforeEach(() => {
  s.alpha.reset()
  s.beta.reset()
})

/** Every refusal in this file: the spec's 401 and no upstream request. */
async function refused(token: string, path = '/mcp/alpha'): Promise<void> {
  p.expectInvalidToken(await p.send(token, { path }), path)
  expect(s.alpha.requests).toHaveLength(0)
  expect(s.beta.requests).toHaveLength(0)
}
/** The log detail of the most recent refusal: proves a test failed for the reason it targets. */
function lastErrorDetail(): unknown {
  return s.logLines().filter((l) => l.event === 'request.error').at(-1)?.detail
}
async function accepted(token: string): Promise<void> {
  expect((await p.send(token)).status).toBe(200)
}

describe('controls', () => {
  it('JWT-20 / a forged-but-correct AT{} signed by K1 is accepted, and so is a real AS token', async () => {
    await accepted(at())
    await accepted(await s.token())
    expect(s.alpha.requests.length).toBeGreaterThan(0)
  })
})

describe('algorithm attacks', () => {
  it('ATK-01 / JWT-04 / alg none with an empty signature → 401', async () => {
    const none = `${b64u(JSON.stringify({ alg: 'none', typ: 'at+jwt' }))}.${b64u(JSON.stringify(atClaims(base)))}.`
    await refused(none)
  })

  it('ATK-02 / alg None, NONE, nOnE, "none " → 401 each, with or without a signature', async () => {
    for (const alg of ['None', 'NONE', 'nOnE', 'none ']) {
      const unsigned = `${b64u(JSON.stringify({ alg, typ: 'at+jwt', kid: 'k1' }))}.${b64u(JSON.stringify(atClaims(base)))}.`
      await refused(unsigned)
      await refused(forge({ alg, typ: 'at+jwt', kid: 'k1' }, atClaims(base), k1, 'RS256'))
    }
  })

  it('ATK-03 / JWT-04 / HS256 keyed with K1 public key as PEM, DER, JWK JSON, n bytes → 401 each', async () => {
    const encodings = publicKeyEncodings(k1)
    expect(Object.keys(encodings)).toEqual(['spki PEM', 'pkcs1 PEM', 'spki DER', 'JWK JSON', 'n bytes'])
    for (const hmac of Object.values(encodings)) {
      for (const alg of ['HS256', 'HS384', 'HS512']) await refused(forge({ alg, kid: 'k1', typ: 'at+jwt' }, atClaims(base), { hmac }))
    }
  })

  it('ATK-04 / JWT-05 / the key found by kid must fit alg: ES256 or PS256 with kid k1 (JWK alg RS256) → 401', async () => {
    const ec = await newKey('ES256', 'k1')
    await refused(forge({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' }, atClaims(base), ec))
    // A valid RSA-PSS signature by K1 itself: the signature verifies, the key/alg binding does not.
    await refused(forge({ alg: 'PS256', kid: 'k1', typ: 'at+jwt' }, atClaims(base), k1))
    expect(lastErrorDetail()).toBe('no key for kid/alg')
  })

  it('ATK-05 / JWT-06 / embedded jwk, jku, x5u, x5c are never used or fetched', async () => {
    const before = attacker.hits.length
    const jwksBefore = s.as.counters.jwks
    const evil = (extra: Record<string, unknown>) => forge({ alg: 'RS256', typ: 'at+jwt', ...extra }, atClaims(base), attackerKey)
    await refused(evil({ jwk: publicJwk(attackerKey) }))
    await refused(evil({ kid: 'k1', jwk: publicJwk(attackerKey) }))
    await refused(evil({ kid: 'k1', jku: `${attacker.url}/jwks` }))
    await refused(evil({ jku: `${attacker.url}/jwks` }))
    await refused(evil({ kid: 'k1', x5u: `${attacker.url}/cert.pem` }))
    await refused(evil({ kid: 'k1', x5c: ['MIIBfake'] }))
    // Unknown kid plus jku: a refetch may go to the AS (cooldown-bound), never to the attacker.
    await refused(evil({ kid: 'attacker-kid', jku: `${attacker.url}/jwks` }))
    expect(attacker.hits.length).toBe(before)
    expect(s.as.counters.jwks - jwksBefore).toBeLessThanOrEqual(1)
  })

  it('ATK-06 / JWT-18 / kid injection: paths, quotes, 10 KB, null, non-strings → 401, never 5xx', async () => {
    for (const kid of ['../../dev/null', '../../../../etc/passwd', "' OR 1=1--", '"; DROP TABLE keys; --', '.*', 'x'.repeat(10 * 1024), null, 42, { $ne: null }, ['k1'], '']) {
      await refused(forge({ alg: 'RS256', typ: 'at+jwt', kid }, atClaims(base), k1))
    }
    expect(s.logs.some((l) => /ENOENT|EACCES|SyntaxError/.test(l))).toBe(false)
  })

  it('ATK-07 / ES256 signature of 64 zero bytes (r = s = 0) with kid k1 → 401', async () => {
    const input = `${b64u(JSON.stringify({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' }))}.${b64u(JSON.stringify(atClaims(base)))}`
    await refused(`${input}.${b64u(Buffer.alloc(64))}`)
    // The same against an ES256 key is covered in attacks-jwks.test.ts (second issuer with an EC key).
  })
})

describe('time claims (default clock skew 30 s)', () => {
  const now = () => Math.floor(Date.now() / 1000)

  it('ATK-08 / CHL-03 / JWT-07 / expired beyond the skew → 401', async () => {
    await refused(at({ exp: now() - 45 }))
    await refused(at({ exp: now() - 3600 }))
  })

  it('ATK-09 / JWT-07/08/09 / skew edges: inside passes, outside fails, missing exp/iat fail', async () => {
    await accepted(at({ exp: now() - 15 }))
    await accepted(at({ nbf: now() + 15 }))
    await accepted(at({ iat: now() + 15 }))
    s.alpha.reset()
    await refused(at({ nbf: now() + 45 }))
    await refused(at({ iat: now() + 45 }))
    await refused(at({ iat: now() + 3600 }))
    await refused(at({ exp: undefined }))
    await refused(at({ iat: undefined }))
    await refused(at({ exp: String(now() + 300) }))
    await refused(at({ nbf: 'yesterday' }))
  })
})

describe('audience and issuer', () => {
  it('ATK-10 / JWT-03 / wrong or missing aud → 401', async () => {
    await refused(at({ aud: 'https://other.example/mcp' }))
    await refused(at({ aud: undefined }))
    await refused(at({ aud: [] }))
    await refused(at({ aud: [42] }))
  })

  it('ATK-11 / AUD-01 / a token for beta is refused at alpha (and vice versa); [beta, alpha] is accepted', async () => {
    await refused(at({ aud: s.resource.beta }))
    await refused(at(), '/mcp/beta')
    await accepted(at({ aud: [s.resource.beta, s.resource.alpha] }))
  })

  it('ATK-12 / AUD-02 / aud normalisation tricks → 401 each; an upper-case scheme is the same resource', async () => {
    const r = s.resource.alpha
    const { host } = new URL(r)
    await accepted(at({ aud: r.replace(/^http:/, 'HTTP:') }))
    s.alpha.reset()
    for (const aud of [`${r}/`, r.replace('/mcp/alpha', '/mcp/Alpha'), r.replace('/mcp/alpha', '/mcp/./alpha'), r.replace('/mcp/alpha', '/mcp/%61lpha'), r.replace(host, `${host}:80`), `http://u@${host}/mcp/alpha`, `${r}?x=1`, `${r}#f`, r.replace('/mcp/alpha', '//mcp/alpha'), ` ${r}`]) {
      await refused(at({ aud }))
    }
  })

  it('ATK-13 / a foreign iss signed by a key in its own JWKS → 401, its JWKS never fetched', async () => {
    const before = attacker.hits.length
    await refused(forge({ alg: 'RS256', kid: 'k1', typ: 'at+jwt', jku: `${attacker.url}/jwks` }, atClaims({ iss: attacker.url, aud: base.aud }), attackerKey))
    expect(attacker.hits.length).toBe(before)
  })

  it('ATK-14 / JWT-02 / iss near-misses → 401', async () => {
    const iss = s.as.issuer
    for (const bad of [`${iss}/`, iss.toUpperCase(), iss.replace('http:', 'HTTP:'), ` ${iss}`, `${iss} `, iss.replace('127.0.0.1', 'localhost')]) await refused(at({ iss: bad }))
    await refused(at({ iss: undefined }))
    await refused(at({ iss: [iss] }))
  })
})

describe('token kinds and formats', () => {
  it('ATK-15 / JWT-15 / an OIDC ID token from the same AS is not an access token', async () => {
    const idClaims = { iss: base.iss, sub: 'u1', aud: 'c1', azp: 'c1', nonce: 'n-0S6_WzA2Mj', at_hash: 'abc', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 300, jti: 'id-1' }
    await refused(forge({ alg: 'RS256', kid: 'k1', typ: 'JWT' }, idClaims, k1))
    // Even dressed as at+jwt with our audience, ID-token markers give it away.
    await refused(at({ nonce: 'n-1' }))
    await refused(at({ at_hash: 'x' }))
    await refused(at({ aud: [base.aud, 'c1'] }))
  })

  it('ATK-16 / JWT-01 / typ confusion: JWT, absent, dpop+jwt, oauth-id-jag+jwt → 401; at+JWT, application/AT+jwt → 200', async () => {
    for (const typ of ['JWT', 'jwt', undefined, 'dpop+jwt', 'oauth-id-jag+jwt', 'at+jwt ', 'application/jwt', 'at+jwt;x=1', 42]) {
      const header: Record<string, unknown> = { alg: 'RS256', kid: 'k1' }
      if (typ !== undefined) header.typ = typ
      await refused(at({}, header))
    }
    await accepted(at({}, { ...AT_HEADER, typ: 'at+JWT' }))
    await accepted(at({}, { ...AT_HEADER, typ: 'application/AT+jwt' }))
  })

  it('ATK-17 / JWT-11/12 / JWE (5 parts) and JWS JSON serialization → refused', async () => {
    const jwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(atClaims(base))))
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', typ: 'at+jwt', cty: 'JWT' })
      .encrypt(randomBytes(32))
    expect(jwe.split('.')).toHaveLength(5)
    await refused(jwe)
    // RSA-OAEP to K1's own public key: a JWE the gateway could never have asked for.
    const oaep = await new CompactEncrypt(new TextEncoder().encode(at())).setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A128GCM', kid: 'k1' }).encrypt(await importJWK(publicJwk(k1), 'RSA-OAEP-256'))
    await refused(oaep)

    const flattened = await new FlattenedSign(new TextEncoder().encode(JSON.stringify(atClaims(base)))).setProtectedHeader(AT_HEADER).sign(await importJWK(k1, 'RS256'))
    // Not a token68: 400 invalid_request (CHL-06), never forwarded.
    const jsonAnswer = await p.send(JSON.stringify(flattened))
    expect(jsonAnswer.status).toBe(400)
    expect(jsonAnswer.challenge).toMatch(/error="invalid_request"/)
    await refused(b64u(JSON.stringify(flattened)))
    await refused(`${flattened.protected}.${flattened.payload}.${flattened.signature}`.replace('.', '+.'))
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('ATK-18 / JWT-13 / duplicate claims or header members, in both orders → 401', async () => {
    const claims = atClaims(base)
    const body = JSON.stringify(claims).slice(1, -1)
    const h = JSON.stringify(AT_HEADER)
    const evilAud = JSON.stringify(s.resource.beta)
    const ourAud = JSON.stringify(s.resource.alpha)
    // Control: the raw-text path produces an accepted token when nothing is duplicated.
    await accepted(signRaw(h, `{${body}}`, k1, 'RS256'))
    s.alpha.reset()
    await refused(signRaw(h, `{"aud":${evilAud},${body}}`, k1, 'RS256'))
    await refused(signRaw(h, `{${body},"aud":${evilAud}}`, k1, 'RS256'))
    await refused(signRaw(h, `{"aud":${ourAud},${body}}`, k1, 'RS256'))
    await refused(signRaw(h, `{${body},"sub":"admin"}`, k1, 'RS256'))
    await refused(signRaw(h, `{"sub":"admin",${body}}`, k1, 'RS256'))
    await refused(signRaw(`{"alg":"none",${h.slice(1)}`, `{${body}}`, k1, 'RS256'))
    await refused(signRaw(`{${h.slice(1, -1)},"alg":"HS256"}`, `{${body}}`, k1, 'RS256'))
    // Escaped spellings of the same name are the same name.
    await refused(signRaw(h, `{${body},"\\u0061ud":${evilAud}}`, k1, 'RS256'))
  })

  it('ATK-19 / JWT-14 / unknown or malformed crit → 401', async () => {
    for (const crit of [['x-ext'], ['exp2'], ['b64'], [], 'x-ext', [42]]) await refused(at({}, { ...AT_HEADER, crit, 'x-ext': 1, exp2: 1, b64: true }))
  })

  it('ATK-20 / JWT-19 / oversized tokens are refused unread: 64 KiB → 431 or 401, 9 KiB → 401; no JWKS fetch', async () => {
    const jwksBefore = s.as.counters.jwks
    const huge = at({ pad: 'A'.repeat(64 * 1024) })
    const a = await p.send(huge)
    expect([401, 431]).toContain(a.status)
    if (a.status === 401) p.expectInvalidToken(a)
    // Over maxTokenSize (8kb) but under the 16kb header limit: the token check itself answers.
    const big = await p.send(at({ pad: 'A'.repeat(7 * 1024) }))
    p.expectInvalidToken(big)
    // Unknown kid on an oversized token must not even cause a refetch.
    p.expectInvalidToken(await p.send(forge({ ...AT_HEADER, kid: 'unknown' }, atClaims(base, { pad: 'A'.repeat(7 * 1024) }), k1)))
    expect(s.as.counters.jwks).toBe(jwksBefore)
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('JWT-10 / required claims missing or of the wrong type → 401', async () => {
    for (const o of [{ client_id: undefined }, { sub: 123 }, { sub: '' }, { jti: undefined }, { jti: 7 }, { scope: ['tools.read'] }]) await refused(at(o))
  })

  it('JWT-16 / claims that are not UTF-8 JSON (UTF-16LE, BOM, latin-1) → 401', async () => {
    const text = JSON.stringify(atClaims(base))
    await refused(signRaw(JSON.stringify(AT_HEADER), Buffer.from(text, 'utf16le'), k1, 'RS256'))
    await refused(signRaw(JSON.stringify(AT_HEADER), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]), k1, 'RS256'))
    await refused(signRaw(JSON.stringify(AT_HEADER), Buffer.from(text.replace('"u1"', '"\u00e9"'), 'latin1'), k1, 'RS256'))
  })

  it('RFC 9449 §7.1 / a sender-constrained token (cnf) presented as Bearer → 401', async () => {
    await refused(at({ cnf: { jkt: 'abc' } }))
  })
})

describe('AUD-02 with a named public host', () => {
  let g: Stack
  let q: Probe
  beforeAll(async () => {
    g = await startStack({
      as: s.as,
      yaml: (c) => `server:
  publicUrl: https://gw.example.com
  allowedHosts: ['127.0.0.1:${c.port}']
  listen: { host: 127.0.0.1, port: ${c.port} }
admin:
  listen: { host: 127.0.0.1, port: ${c.adminPort} }
issuers:
  demo: { issuer: ${c.issuer} }
routes:
  - { name: alpha, path: /mcp/alpha, upstream: { url: ${c.alpha} }, issuers: [demo] }
`,
    })
    q = probe(g)
  })
  afterAll(async () => g?.close())

  it('AUD-02 / ATK-12 / HTTPS://GW.EXAMPLE.COM passes; trailing slash, :443, /./, %61, /Alpha fail', async () => {
    const RES = 'https://gw.example.com/mcp/alpha'
    const send = (aud: string) => q.send(forge(AT_HEADER, atClaims({ iss: s.as.issuer, aud }), k1))
    for (const aud of [RES, 'HTTPS://GW.EXAMPLE.COM/mcp/alpha', 'https://Gw.Example.com/mcp/alpha']) expect((await send(aud)).status, aud).toBe(200)
    g.alpha.reset()
    for (const aud of [`${RES}/`, 'https://gw.example.com:443/mcp/alpha', 'https://gw.example.com/mcp/./alpha', 'https://gw.example.com/mcp/%61lpha', 'https://gw.example.com/mcp/Alpha', 'http://gw.example.com/mcp/alpha', 'https://gw.example.com./mcp/alpha']) {
      const a = await send(aud)
      expect(a.status, aud).toBe(401)
      expect(parseChallenge(a.challenge)).toMatchObject({ scheme: 'Bearer', params: { error: 'invalid_token', resource_metadata: 'https://gw.example.com/.well-known/oauth-protected-resource/mcp/alpha' } })
    }
    expect(g.alpha.requests).toHaveLength(0)
    expectNoTokenInLogs(g, q.tokens)
  })
})

describe('challenges and logs', () => {
  it('CHL-11 / a failure whose input holds quotes and newlines still yields one well-formed challenge', async () => {
    await refused(at({ iss: 'x"y\n\\z' }))
    await refused(at({ aud: 'a"b\r\nSet-Cookie: x=1' }))
    const challenges = p.answers.map((a) => a.challenge).filter((c): c is string => c !== null)
    expect(challenges.length).toBeGreaterThan(50)
    for (const c of challenges) expectWellFormedChallenge(c)
  })

  it('no answer in this file was a 5xx', () => {
    expect(p.answers.filter((a) => a.status >= 500)).toEqual([])
  })

  it('no presented token, nor its signature, appears in any log line', () => {
    expect(p.tokens.length).toBeGreaterThan(50)
    expectNoTokenInLogs(s, p.tokens)
  })
})
