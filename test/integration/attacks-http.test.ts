/**
 * HTTP-layer attacks and upstream failures (checklist 19.2, CHL-13, SHTTP): request smuggling on
 * a raw socket, header injection, duplicate MCP headers, encodings, methods, an upstream that
 * spoofs challenges, one that is down, one that is slow, one that dies mid-stream.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { request } from 'node:http'
import { connect } from 'node:net'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startPeer, type Peer, type PeerHandler } from '../helpers/peer.js'
import { expectNoTokenInLogs } from '../helpers/probe.js'
import { freePort } from '../helpers/ports.js'
import { INIT, listenerYaml, MCP_HEADERS, type Stack, startStack } from '../helpers/stack.js'

let s: Stack
let fake: Peer
let slow: Peer
let token: string
const tokens: string[] = []
const fakeHandler: { current: PeerHandler } = { current: (_q, r) => void r.writeHead(500).end() }

beforeAll(async () => {
  fake = await startPeer((q, r, b) => fakeHandler.current(q, r, b))
  // Headers come after the route's 500 ms upstream timeout.
  slow = await startPeer((_q, res) => void setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'), 1500))
  const downPort = await freePort()
  s = await startStack({
    yaml: (c) => `${listenerYaml({ publicUrl: c.publicUrl, port: c.port, adminPort: c.adminPort, shutdownGrace: '1s' })}issuers:
  demo: { issuer: ${c.issuer} }
routes:
  - { name: alpha, path: /mcp/alpha, upstream: { url: ${c.alpha} }, issuers: [demo], scopesSupported: [tools.read] }
  - { name: beta, path: /mcp/beta, upstream: { url: ${c.beta} }, issuers: [demo] }
  - { name: fake, path: /mcp/fake, upstream: { url: ${fake.url}/mcp }, issuers: [demo] }
  - { name: down, path: /mcp/down, upstream: { url: 'http://127.0.0.1:${downPort}/mcp' }, issuers: [demo] }
  - { name: slow, path: /mcp/slow, upstream: { url: ${slow.url}/mcp, timeout: 500ms }, issuers: [demo] }
`,
  })
  token = await s.token()
  tokens.push(token)
})
afterAll(async () => {
  await s?.close()
  await Promise.all([fake?.close(), slow?.close()])
})
beforeEach(() => s.alpha.reset())

const tokenFor = async (path: string) => {
  const t = (await s.as.getToken({ resource: `${new URL(s.url).origin}${path}`, scope: 'tools.read' })).access_token
  tokens.push(t)
  return t
}

/** A raw HTTP/1.1 exchange: what a smuggler writes, and whether the server closes the connection. */
function raw(text: string): Promise<{ response: string; closed: boolean }> {
  const { hostname, port } = new URL(s.url)
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname)
    let response = ''
    const timer = setTimeout(() => {
      sock.destroy()
      resolve({ response, closed: false })
    }, 2000)
    sock.on('data', (d) => (response += d.toString('latin1')))
    sock.on('error', reject)
    sock.on('close', () => {
      clearTimeout(timer)
      resolve({ response, closed: true })
    })
    sock.write(text)
  })
}

/**
 * node:http request with a header list (duplicates kept) and the raw answer. Content-Length is
 * always explicit: node sends OPTIONS bodies unframed otherwise, desynchronising the connection.
 */
function send(path: string, headers: Array<[string, string]>, body?: string | Buffer, method = 'POST'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(`${s.url}${path}`)
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: [['host', u.host], ...headers, ...(body === undefined ? [] : [['content-length', String(Buffer.byteLength(body))]])].flat() as unknown as Record<string, string> }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
    })
    req.on('error', reject)
    req.end(body)
  })
}
const base = (): Array<[string, string]> => [
  ['accept', MCP_HEADERS.accept],
  ['content-type', 'application/json'],
  ['authorization', `Bearer ${token}`],
]

describe('ATK-31 / no token passthrough', () => {
  it('ATK-31 / a streaming tools/call through the SDK client: progress arrives, the upstream never sees the token', async () => {
    const client = new Client({ name: 'attack-probe', version: '1' })
    await client.connect(new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }))
    const progress: number[] = []
    const result = await client.callTool({ name: 'count_slowly', arguments: { n: 3, delayMs: 30 } }, undefined, { onprogress: (p) => progress.push(p.progress) })
    await client.close()
    expect(progress).toEqual([1, 2, 3])
    expect(JSON.stringify(result)).toContain('counted to 3')
    expect(s.alpha.requests.length).toBeGreaterThanOrEqual(3)
    expect(s.alpha.sawString(token)).toBe(false)
    expect(s.alpha.sawString(token.split('.')[2]!)).toBe(false)
    expect(s.alpha.requests.some((r) => r.rawHeaders.some(([k]) => k === 'authorization'))).toBe(false)
  })
})

describe('19.2 header attacks', () => {
  it('ATK-35 / request smuggling on a raw socket: CL+TE, two Content-Lengths, xchunked, obs-fold → 400 and closed, nothing forwarded', async () => {
    const { host } = new URL(s.url)
    const head = `POST /mcp/alpha HTTP/1.1\r\nHost: ${host}\r\nAccept: ${MCP_HEADERS.accept}\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\n`
    const smuggled = `GET /mcp/beta HTTP/1.1\r\nHost: ${host}\r\n\r\n`
    const chunked = `${INIT.length.toString(16)}\r\n${INIT}\r\n0\r\n\r\n`
    const cases = {
      'CL+TE': `${head}Content-Length: ${INIT.length}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}${smuggled}`,
      'TE+CL': `${head}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${chunked}${smuggled}`,
      'two Content-Lengths': `${head}Content-Length: ${INIT.length}\r\nContent-Length: ${INIT.length + smuggled.length}\r\n\r\n${INIT}${smuggled}`,
      'TE xchunked': `${head}Transfer-Encoding: xchunked\r\n\r\n${chunked}`,
      'TE chunked, identity': `${head}Transfer-Encoding: chunked, identity\r\n\r\n${chunked}`,
      'obs-fold': `${head}Content-Length: ${INIT.length}\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\n${INIT}`,
      'space before colon': `${head}Content-Length : ${INIT.length}\r\n\r\n${INIT}`,
    }
    for (const [name, text] of Object.entries(cases)) {
      const { response, closed } = await raw(text)
      expect(response, name).toMatch(/^HTTP\/1\.1 400 /)
      expect(response.match(/^HTTP\/1\.1 /gm), name).toHaveLength(1)
      expect(closed, name).toBe(true)
    }
    expect(s.alpha.requests).toHaveLength(0)
    expect(s.beta.requests).toHaveLength(0)
  })

  it('RFC 9112 §3.2.2 / absolute-form targets: the authority is the host that is checked; a foreign or mismatched one → 421, a bad one → 400; never 500', async () => {
    const { host } = new URL(s.url)
    const req = (target: string, hostHeader = host, auth = `Authorization: Bearer ${token}\r\n`) =>
      `POST ${target} HTTP/1.1\r\nHost: ${hostHeader}\r\nAccept: ${MCP_HEADERS.accept}\r\nContent-Type: application/json\r\n${auth}Content-Length: ${INIT.length}\r\nConnection: close\r\n\r\n${INIT}`
    // Unauthenticated: the 500 this used to be is now the route's ordinary 401 challenge.
    const anon = await raw(req(`http://${host}/mcp/alpha`, host, ''))
    expect(anon.response).toMatch(/^HTTP\/1\.1 401 /)
    expect(anon.response.toLowerCase()).toContain('www-authenticate: bearer')
    // The target's authority replaces Host: a foreign authority is refused even with an allowed Host header.
    for (const target of [`http://evil.example/mcp/alpha`, `http://${new URL(s.url).hostname}:1/mcp/alpha`]) {
      const r = await raw(req(target))
      expect(r.response, target).toMatch(/^HTTP\/1\.1 421 /)
    }
    // ...and an allowed authority does not launder a foreign Host header: it is the authority that counts.
    const laundered = await raw(req(`http://${host}/mcp/alpha`, 'evil.example'))
    expect(laundered.response).toMatch(/^HTTP\/1\.1 200 /)
    for (const target of ['ftp://x/mcp/alpha', `http://u:p@${host}/mcp/alpha`, 'http:///mcp/alpha', `http://${host}/mcp/alpha#f`, '/mcp/alpha#f', '*', 'mcp/alpha']) {
      const r = await raw(req(target))
      expect(r.response, target).toMatch(/^HTTP\/1\.1 400 /)
    }
    // An empty path is "/" (§3.2.1): not a route, and not a 500 either.
    expect((await raw(req(`http://${host}`))).response).toMatch(/^HTTP\/1\.1 404 /)
    expect(s.alpha.requests.filter((q) => q.method === 'POST')).toHaveLength(1)
    expect(s.beta.requests).toHaveLength(0)
    expect(s.logLines().filter((l) => Number(l.level) >= 50)).toEqual([])
  })

  it('ATK-36 / hop-by-hop abuse: Connection-listed and Proxy-* headers never reach the upstream', async () => {
    const r = await send('/mcp/alpha', [...base(), ['connection', 'keep-alive, x-mcp-principal, authorization'], ['x-mcp-principal', 'admin-smuggled'], ['proxy-authorization', 'Basic cHJveHk6c2VjcmV0'], ['proxy-connection', 'keep-alive'], ['te', 'trailers'], ['upgrade', 'h2c']], INIT)
    expect(r.status).toBe(200)
    expect(s.alpha.requests).toHaveLength(1)
    for (const needle of ['admin-smuggled', 'cHJveHk6c2VjcmV0', 'proxy-', 'h2c', token]) expect(s.alpha.sawString(needle), needle).toBe(false)
  })

  it('ATK-37 / identity-header injection: the upstream sees only what the gateway sets', async () => {
    const injected: Array<[string, string]> = [
      ['x-mcp-principal', 'admin'],
      ['x_mcp_principal', 'admin'],
      ['x-forwarded-user', 'admin'],
      ['x-user-id', 'admin'],
      ['forwarded', 'for=1.2.3.4;host=evil.example'],
      ['x-forwarded-for', '6.6.6.6'],
      ['x-forwarded-host', 'evil.example'],
      ['x-request-id', 'attacker-chosen-id'],
      ['cookie', 'session=admin'],
    ]
    const r = await send('/mcp/alpha', [...base(), ...injected], INIT)
    expect(r.status).toBe(200)
    const [seen] = s.alpha.requests
    expect(seen).toBeDefined()
    for (const needle of ['admin', '6.6.6.6', '1.2.3.4', 'evil.example', 'attacker-chosen-id', 'x_mcp_principal', 'x-mcp-principal', 'x-user-id']) {
      expect(s.alpha.sawString(needle), needle).toBe(false)
    }
    expect(seen!.headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(seen!.headers['x-request-id']).toBe(r.headers['x-request-id'])
  })

  it('ATK-38 / duplicate MCP-Session-Id, MCP-Protocol-Version, Mcp-Method, Mcp-Name → 400', async () => {
    const call = JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' })
    for (const [name, a, b] of [
      ['mcp-session-id', 'aaa', 'bbb'],
      ['mcp-protocol-version', '2025-11-25', '2025-03-26'],
      ['mcp-method', 'tools/list', 'tools/call'],
      ['mcp-name', 'search', 'delete_repo'],
    ] as const) {
      const r = await send('/mcp/alpha', [...base(), [name, a], [name, b]], call)
      expect(r.status, name).toBe(400)
      expect(JSON.parse(r.body)).toMatchObject({ jsonrpc: '2.0', error: { code: -32600 } })
    }
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('ATK-39 / SHTTP-11 / gzip bodies, BOM, other charsets and media types are refused, never forwarded', async () => {
    const gz = gzipSync(Buffer.from(INIT))
    expect((await send('/mcp/alpha', [...base(), ['content-encoding', 'gzip']], gz)).status).toBe(415)
    expect((await send('/mcp/alpha', [...base(), ['content-encoding', 'identity, gzip']], gz)).status).toBe(415)
    expect((await send('/mcp/alpha', [...base(), ['content-encoding', 'br']], INIT)).status).toBe(415)
    const bom = await send('/mcp/alpha', base(), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(INIT)]))
    expect(bom.status).toBe(400)
    expect(JSON.parse(bom.body)).toMatchObject({ error: { code: -32700 } })
    const utf16 = await send('/mcp/alpha', [['accept', MCP_HEADERS.accept], ['content-type', 'application/json; charset=utf-16le'], ['authorization', `Bearer ${token}`]], Buffer.from(INIT, 'utf16le'))
    expect(utf16.status).toBe(415)
    for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/jsonx']) {
      const r = await send('/mcp/alpha', [['accept', MCP_HEADERS.accept], ['content-type', ct], ['authorization', `Bearer ${token}`]], INIT)
      expect(r.status, ct).toBe(415)
    }
    expect(s.alpha.requests).toHaveLength(0)
  })

  it('ATK-40 / SHTTP-04/05 / HEAD, PUT, PATCH → 405; OPTIONS with a body is answered locally; other verbs never proxied', async () => {
    for (const method of ['HEAD', 'PUT', 'PATCH']) {
      const r = await send('/mcp/alpha', base(), method === 'HEAD' ? undefined : INIT, method)
      expect(r.status, method).toBe(405)
      expect(r.headers.allow).toContain('POST')
    }
    const opt = await send('/mcp/alpha', base(), INIT, 'OPTIONS')
    expect(opt.status, opt.body).toBe(204)
    for (const method of ['TRACE', 'PROPFIND', 'CONNECT']) {
      const r = await send('/mcp/alpha', base(), undefined, method).catch(() => ({ status: 400 }))
      expect(r.status, method).toBeGreaterThanOrEqual(400)
      expect(r.status, method).toBeLessThan(500)
    }
    expect(s.alpha.requests).toHaveLength(0)
  })
})

describe('upstream failures', () => {
  const rpcError = (body: string) => JSON.parse(body) as { jsonrpc: string; id: unknown; error: { code: number; data: { code: string; requestId: string } } }

  it('ATK-41 / CHL-13 / an upstream 401 with a spoofed challenge and Set-Cookie → 502, no evil, no cookie', async () => {
    const t = await tokenFor('/mcp/fake')
    const evil = { 'www-authenticate': 'Bearer resource_metadata="https://evil.example/prm"', 'set-cookie': 'sid=evil; Path=/', 'proxy-authenticate': 'Basic realm="evil.example"' }
    for (const status of [401, 407]) {
      fakeHandler.current = (_q, res) => void res.writeHead(status, { 'content-type': 'application/json', ...evil }).end('{"error":"evil.example says no"}')
      const r = await send('/mcp/fake', [...base().slice(0, 2), ['authorization', `Bearer ${t}`]], INIT)
      expect(r.status, String(status)).toBe(502)
      expect(JSON.stringify(r.headers) + r.body).not.toContain('evil')
      expect(r.headers['set-cookie']).toBeUndefined()
      expect(rpcError(r.body)).toMatchObject({ id: 1, error: { code: -32603, data: { code: 'GW_UPSTREAM_INVALID_RESPONSE' } } })
    }
  })

  it('ATK-41 / an upstream 403 challenge (insufficient_scope at another AS) → 502; a plain 403 is relayed', async () => {
    const t = await tokenFor('/mcp/fake')
    fakeHandler.current = (_q, res) => void res.writeHead(403, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="insufficient_scope", resource_metadata="https://evil.example/prm"' }).end('{}')
    const r = await send('/mcp/fake', [...base().slice(0, 2), ['authorization', `Bearer ${t}`]], INIT)
    expect(r.status).toBe(502)
    expect(JSON.stringify(r.headers) + r.body).not.toContain('evil')
    // A 403 without a challenge is the upstream's own decision and is relayed as such.
    fakeHandler.current = (_q, res) => void res.writeHead(403, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"forbidden"}}')
    const plain = await send('/mcp/fake', [...base().slice(0, 2), ['authorization', `Bearer ${t}`]], INIT)
    expect(plain.status).toBe(403)
    expect(plain.body).toContain('forbidden')
  })

  it('ATK-41 / on a successful answer the upstream Set-Cookie and WWW-Authenticate are dropped', async () => {
    const t = await tokenFor('/mcp/fake')
    fakeHandler.current = (_q, res) =>
      void res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': 'sid=evil', 'www-authenticate': 'Bearer resource_metadata="https://evil.example/prm"' }).end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: {} }))
    const r = await send('/mcp/fake', [...base().slice(0, 2), ['authorization', `Bearer ${t}`]], INIT)
    expect(r.status).toBe(200)
    expect(r.headers['set-cookie']).toBeUndefined()
    expect(r.headers['www-authenticate']).toBeUndefined()
  })

  it('SHTTP / an upstream that is down → 502 with a JSON-RPC error carrying the request id', async () => {
    const t = await tokenFor('/mcp/down')
    const r = await send('/mcp/down', [...base().slice(0, 2), ['authorization', `Bearer ${t}`]], INIT)
    expect(r.status).toBe(502)
    const e = rpcError(r.body)
    expect(e).toMatchObject({ jsonrpc: '2.0', id: 1, error: { code: -32603, data: { code: 'GW_UPSTREAM_UNAVAILABLE' } } })
    expect(e.error.data.requestId).toBe(r.headers['x-request-id'])
  })

  it('SHTTP / an upstream slower than upstream.timeout → 504 with a JSON-RPC error', async () => {
    const t = await tokenFor('/mcp/slow')
    const r = await send('/mcp/slow', [...base().slice(0, 2), ['authorization', `Bearer ${t}`]], JSON.stringify({ jsonrpc: '2.0', id: 'slow-1', method: 'ping' }))
    expect(r.status).toBe(504)
    expect(rpcError(r.body)).toMatchObject({ id: 'slow-1', error: { data: { code: 'GW_UPSTREAM_TIMEOUT' } } })
  })

  it('SHTTP / an upstream killed mid SSE stream: the client stream ends, nothing hangs, the gateway keeps serving', async () => {
    const t = await tokenFor('/mcp/fake')
    fakeHandler.current = (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}\n\n')
      setTimeout(() => res.socket?.destroy(), 100)
    }
    const res = await fetch(`${s.url}/mcp/fake`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${t}` }, body: INIT, signal: AbortSignal.timeout(5000) })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    let text = ''
    const outcome = await (async () => {
      try {
        for await (const chunk of res.body!) text += Buffer.from(chunk).toString('utf8')
        return 'ended'
      } catch (e) {
        return (e as Error).name === 'TimeoutError' ? 'hung' : 'errored'
      }
    })()
    expect(outcome).not.toBe('hung')
    expect(text).toContain('notifications/progress')
    // The stream gauge returns to zero and the gateway still answers.
    await new Promise((r) => setTimeout(r, 50))
    const metrics = await (await fetch(`${s.adminUrl}/metrics`)).text()
    expect(metrics).toMatch(/mcp_warden_active_streams\{route="fake"\} 0/)
    expect((await send('/mcp/alpha', base(), INIT)).status).toBe(200)
  })

  it('no token reached a log line in any of these cases', () => {
    expectNoTokenInLogs(s, tokens)
  })
})
