/**
 * The core path: mcp-warden in front of an unauthenticated MCP server makes it an OAuth
 * resource server. Checklist sections 2 (PRM), 3 (CHL), 7 (AUD) and 14 (SHTTP), black-box.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { INIT, MCP_HEADERS, parseChallenge, startStack, type Stack } from '../helpers/stack.js'

let s: Stack
let token: string

beforeAll(async () => {
  s = await startStack()
  token = await s.token()
})
afterAll(async () => s?.close())

const post = (path: string, headers: Record<string, string>, body = INIT) => fetch(`${s.url}${path}`, { method: 'POST', headers: { ...MCP_HEADERS, ...headers }, body })

describe('protected resource metadata', () => {
  it('PRM-01/02/03/04/06/07/12 / path-inserted document names exactly the route resource', async () => {
    const res = await fetch(`${s.url}/.well-known/oauth-protected-resource/mcp/alpha`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(res.headers.get('cache-control')).toMatch(/max-age=/)
    const doc = (await res.json()) as Record<string, unknown>
    expect(doc).toEqual({
      resource: s.resource.alpha,
      authorization_servers: [s.as.issuer],
      bearer_methods_supported: ['header'],
      resource_name: 'MCP server alpha',
      scopes_supported: ['tools.read'],
    })
  })

  it('PRM-02 / ATK-33 / a poisoned Host or X-Forwarded-Host never changes resource or challenge', async () => {
    const prm = await fetch(`${s.url}/.well-known/oauth-protected-resource/mcp/alpha`, { headers: { 'x-forwarded-host': 'evil.example' } })
    expect(((await prm.json()) as { resource: string }).resource).toBe(s.resource.alpha)
    const r = await post('/mcp/alpha', { 'x-forwarded-host': 'evil.example' })
    expect(r.status).toBe(401)
    expect(r.headers.get('www-authenticate')).not.toContain('evil.example')
    // Host itself is checked against the configured public host (SHTTP-02).
    const { request } = await import('node:http')
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${s.url}/.well-known/oauth-protected-resource/mcp/alpha`, { headers: { host: 'evil.example' } }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.on('error', reject)
      req.end()
    })
    expect(status).toBe(421)
  })

  it('PRM-11 / metadata ignores an Authorization header', async () => {
    const res = await fetch(`${s.url}/.well-known/oauth-protected-resource/mcp/alpha`, { headers: { authorization: 'Bearer garbage' } })
    expect(res.status).toBe(200)
  })

  it('PRM-13 / no root document when more than one route exists', async () => {
    expect((await fetch(`${s.url}/.well-known/oauth-protected-resource`)).status).toBe(404)
  })

  it('PRM-14 / other methods get 405 with Allow', async () => {
    const res = await fetch(`${s.url}/.well-known/oauth-protected-resource/mcp/alpha`, { method: 'POST' })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toContain('GET')
  })
})

describe('challenges', () => {
  it('CHL-01/02 / no token → 401 with resource_metadata and scope, without error', async () => {
    s.alpha.reset()
    const res = await post('/mcp/alpha', {})
    expect(res.status).toBe(401)
    const c = parseChallenge(res.headers.get('www-authenticate'))
    expect(c?.scheme).toBe('Bearer')
    expect(c?.params.resource_metadata).toBe(`${s.url}/.well-known/oauth-protected-resource/mcp/alpha`)
    expect(c?.params.scope).toBe('tools.read')
    expect(c?.params.error).toBeUndefined()
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('CHL-03 / invalid token → 401 invalid_token with resource_metadata', async () => {
    const res = await post('/mcp/alpha', { authorization: 'Bearer abc.def.ghi' })
    expect(res.status).toBe(401)
    const c = parseChallenge(res.headers.get('www-authenticate'))
    expect(c?.params.error).toBe('invalid_token')
    expect(c?.params.resource_metadata).toContain('/.well-known/oauth-protected-resource/mcp/alpha')
  })

  it('CHL-04 / the scheme is case-insensitive', async () => {
    const res = await post('/mcp/alpha', { authorization: `bEaReR ${token}` })
    expect(res.status).toBe(200)
  })

  it('CHL-05 / ATK-27 / a token in the query string is ignored and never logged', async () => {
    s.alpha.reset()
    const res = await post(`/mcp/alpha?access_token=${token}`, {})
    expect(res.status).toBe(401)
    expect(parseChallenge(res.headers.get('www-authenticate'))?.params.error).toBeUndefined()
    expect(s.alpha.requests).toHaveLength(0)
    expect(s.logs.join('\n')).not.toContain(token.split('.')[2]!)
  })

  it('CHL-06 / ATK-28 / two Authorization headers → 400 invalid_request', async () => {
    s.alpha.reset()
    const { request } = await import('node:http')
    const u = new URL(`${s.url}/mcp/alpha`)
    const res = await new Promise<{ status: number; challenge: string | undefined }>((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: [['accept', MCP_HEADERS.accept], ['content-type', 'application/json'], ['authorization', `Bearer ${token}`], ['authorization', `Bearer ${token}`], ['host', u.host]].flat() as unknown as Record<string, string> }, (r) => {
        r.resume()
        resolve({ status: r.statusCode ?? 0, challenge: r.headers['www-authenticate'] })
      })
      req.on('error', reject)
      req.end(INIT)
    })
    expect(res.status).toBe(400)
    expect(parseChallenge(res.challenge ?? null)?.params.error).toBe('invalid_request')
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('CHL-07 / another scheme is treated as no credentials', async () => {
    const res = await post('/mcp/alpha', { authorization: 'Basic dTE6cA==' })
    expect(res.status).toBe(401)
    expect(parseChallenge(res.headers.get('www-authenticate'))?.params.error).toBeUndefined()
  })

  it('CHL-08 / GET, DELETE and notifications need a token too, even with a session id', async () => {
    s.alpha.reset()
    const h = { 'mcp-session-id': 'abc' }
    expect((await fetch(`${s.url}/mcp/alpha`, { headers: { ...h, accept: 'text/event-stream' } })).status).toBe(401)
    expect((await fetch(`${s.url}/mcp/alpha`, { method: 'DELETE', headers: h })).status).toBe(401)
    expect((await post('/mcp/alpha', h, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }))).status).toBe(401)
    expect(s.alpha.requests).toHaveLength(0)
  })
})

describe('audience binding', () => {
  it('AUD-01 / ATK-11 / a token for one route is refused at another', async () => {
    s.beta.reset()
    const res = await post('/mcp/beta', { authorization: `Bearer ${token}` })
    expect(res.status).toBe(401)
    expect(parseChallenge(res.headers.get('www-authenticate'))?.params.error).toBe('invalid_token')
    expect(s.beta.requests).toHaveLength(0)
  })
})

describe('proxying', () => {
  it('ATK-31 / the upstream never receives the caller token or cookies', async () => {
    s.alpha.reset()
    // fetch refuses to send Connection, so this one goes through node:http.
    const { request } = await import('node:http')
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${s.url}/mcp/alpha`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, cookie: 'sid=secret-cookie', 'x-mcp-principal': 'admin', x_mcp_principal: 'admin', connection: 'keep-alive, x-secret', 'x-secret': '1' } }, (r) => {
        r.resume()
        resolve(r.statusCode ?? 0)
      })
      req.on('error', reject)
      req.end(INIT)
    })
    expect(status).toBe(200)
    expect(s.alpha.requests.length).toBeGreaterThan(0)
    expect(s.alpha.sawString(token)).toBe(false)
    expect(s.alpha.sawString('secret-cookie')).toBe(false)
    expect(s.alpha.sawString('x-mcp-principal')).toBe(false)
    expect(s.alpha.sawString('x-secret')).toBe(false)
  })

  it('SHTTP-01 / a present but disallowed Origin gets 403 and reaches nothing', async () => {
    s.alpha.reset()
    for (const origin of ['https://evil.example', 'null']) {
      const res = await post('/mcp/alpha', { authorization: `Bearer ${token}`, origin })
      expect(res.status).toBe(403)
    }
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('SHTTP-04 / PUT, PATCH and HEAD get 405 with Allow and are never proxied', async () => {
    s.alpha.reset()
    for (const method of ['PUT', 'PATCH', 'HEAD']) {
      const res = await fetch(`${s.url}/mcp/alpha`, { method, headers: { authorization: `Bearer ${token}` } })
      expect(res.status).toBe(405)
      expect(res.headers.get('allow')).toContain('POST')
    }
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('SHTTP-10 / bodies over the limit get 413', async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(2 * 1024 * 1024) } })
    const res = await post('/mcp/alpha', { authorization: `Bearer ${token}` }, big)
    expect(res.status).toBe(413)
  })

  it('SHTTP-12/13 / wrong Accept → 406, wrong Content-Type → 415', async () => {
    expect((await post('/mcp/alpha', { authorization: `Bearer ${token}`, accept: 'application/json' })).status).toBe(406)
    expect((await post('/mcp/alpha', { authorization: `Bearer ${token}`, 'content-type': 'text/plain' })).status).toBe(415)
    expect((await post('/mcp/alpha', { authorization: `Bearer ${token}`, 'content-type': 'application/json; charset=utf-16' })).status).toBe(415)
  })

  it('SHTTP-14 / ATK-43 / batches are refused for 2025-11-25', async () => {
    const res = await post('/mcp/alpha', { authorization: `Bearer ${token}` }, JSON.stringify([{ jsonrpc: '2.0', id: 2, method: 'ping' }]))
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { code: number } }).error.code).toBe(-32600)
  })

  it('SHTTP-32 / an unsupported protocol version → 400', async () => {
    const res = await post('/mcp/alpha', { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2099-01-01' })
    expect(res.status).toBe(400)
  })

  it('an unknown path is 404 and a trailing slash is not normalised', async () => {
    expect((await post('/mcp/alpha/', { authorization: `Bearer ${token}` })).status).toBe(404)
    expect((await post('/MCP/alpha', { authorization: `Bearer ${token}` })).status).toBe(404)
  })
})
