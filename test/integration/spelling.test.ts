/**
 * Issue 16 items 6, 7, 9 and 10 against a live gateway, AS and MCP SDK upstream: the attacker's
 * request, what the client sees, and proof (the upstream's request log) that nothing arrived.
 */
import { connect } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listenerYaml, MCP_HEADERS, startStack, type Stack } from '../helpers/stack.js'

let s: Stack
let token: string

function policyDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mcpw-spelling-'))
  writeFileSync(
    join(dir, 'main.yaml'),
    `apiVersion: mcp-warden/v1
kind: Policy
name: main
routes: [alpha]
rules:
  - { id: lifecycle, effect: allow, methods: [initialize, ping, "notifications/*", tools/list] }
  - { id: srv, effect: allow, resources: ["file:///srv/*"] }
  - { id: no-secret, effect: deny, resources: ["file:///srv/secret/*"] }
  - { id: web, effect: allow, resources: ["https://*"] }
  - { id: no-internal, effect: deny, resources: ["https://internal.example.com/*"] }
  - { id: small-transfers, effect: allow, tools: [transfer_funds], arguments: { amount: { lte: 100 } } }
`,
  )
  return dir
}

beforeAll(async () => {
  s = await startStack({ extra: `policies:\n  dir: ${policyDir()}` })
  token = await s.token({ scope: 'tools.read' })
}, 60_000)
afterAll(async () => {
  await s?.close()
})

const post = (st: Stack, body: string, headers: Record<string, string> = {}, bearer: string | null = token) =>
  fetch(`${st.url}/mcp/alpha`, { method: 'POST', headers: { ...MCP_HEADERS, ...(bearer !== null ? { authorization: `Bearer ${bearer}` } : {}), ...headers }, body })
const read = (uri: string, id = 5) => JSON.stringify({ jsonrpc: '2.0', id, method: 'resources/read', params: { uri } })
/** Whether the upstream ever received `needle` in a request body since `from`. */
const reached = (st: Stack, from: number, needle: string) => st.alpha.requests.slice(from).some((r) => JSON.stringify(r).includes(needle))

describe('issue 16 item 7: resource rules cannot be escaped by spelling (ATK-54)', () => {
  it.each(['file:///srv//secret/key', 'file:///srv/./secret/key', 'file:///srv/public/../secret/key', 'file:///srv/%73ecret/key', 'https://internal.example.com./admin', 'https://internal.example.com:443/admin', 'https://INTERNAL.example.com/admin'])(
    'ATK-54 / %s is denied like the plain URI; nothing reaches the upstream',
    async (uri) => {
      const before = s.alpha.requests.length
      const r = await post(s, read(uri))
      expect(r.status).toBe(200)
      expect(await r.json()).toMatchObject({ id: 5, error: { code: -31403 } })
      expect(s.alpha.requests.length).toBe(before)
    },
  )

  it.each(['https://x@internal.example.com/admin', 'file:///srv/%2Fsecret/key', 'file:///srv/%252e%252e/secret/key', 'file:///srv/a%00'])('ATK-54 / %s (userinfo, NUL, ambiguous encoding) is refused; nothing reaches the upstream', async (uri) => {
    const before = s.alpha.requests.length
    const r = await post(s, read(uri))
    expect(await r.json()).toMatchObject({ id: 5, error: { code: -31403 } })
    expect(s.alpha.requests.length).toBe(before)
  })

  it('control: an allowed URI is forwarded (the test can see the upstream)', async () => {
    const before = s.alpha.requests.length
    const r = await post(s, read('file:///srv/public/readme.md'))
    await r.text()
    expect(reached(s, before, 'file:///srv/public/readme.md')).toBe(true)
  })
})

describe('issue 16 item 10: numbers mean what the upstream will read', () => {
  const transfer = (amount: string, extra = '') => `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"transfer_funds","arguments":{"amount":${amount},"to":"bob"${extra}}}}`

  it('"amount": 100.00000000000000001 is refused with 400 / -32602 and its id; nothing reaches the upstream', async () => {
    const before = s.alpha.requests.length
    const r = await post(s, transfer('100.00000000000000001'))
    expect(r.status).toBe(400)
    expect(await r.json()).toMatchObject({ jsonrpc: '2.0', id: 9, error: { code: -32602, data: { code: 'GW_MCP_INVALID_PARAMS' } } })
    expect(s.alpha.requests.length).toBe(before)
  })

  it('ATK-71 / a 20-digit account number is refused, not digested as another number', async () => {
    const before = s.alpha.requests.length
    for (const account of ['12345678901234567891', '12345678901234567892']) {
      const r = await post(s, transfer('5', `,"account":${account}`))
      expect(r.status).toBe(400)
      expect(await r.json()).toMatchObject({ id: 9, error: { code: -32602 } })
    }
    expect(s.alpha.requests.length).toBe(before)
  })

  it('1e2, 100.0 and 1E+2 are 100 (forwarded); 1.00000000000000001e2 is refused', async () => {
    const before = s.alpha.requests.length
    for (const spelled of ['1e2', '100.0', '1E+2']) {
      // Forwarded (the upstream answers for itself: this call carries no session).
      const r = await post(s, transfer(spelled))
      expect(await r.text()).not.toContain('GW_MCP_INVALID_PARAMS')
    }
    expect(s.alpha.requests.length - before).toBe(3)
    expect((await post(s, transfer('1.00000000000000001e2'))).status).toBe(400)
    expect(s.alpha.requests.length - before).toBe(3)
  })
})

/**
 * One raw HTTP/1.1 exchange by a client that sends the whole request before it reads (as Python's
 * http.client does): the answer waits in its receive buffer, where a TCP reset from the server
 * discards it. The pauses give the refusal and a reset the time to happen; they assert nothing.
 */
function rawExchange(port: number, head: string, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1')
    sock.pause()
    const chunks: Buffer[] = []
    sock.on('data', (c: Buffer) => chunks.push(c))
    // A reset that wiped the answer shows as an empty result.
    sock.on('error', () => undefined)
    sock.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
    // The rest of the body follows after a moment, as over a slower link: it arrives after the refusal.
    sock.write(head)
    sock.write(body.subarray(0, 65_536), () =>
      setTimeout(() => {
        sock.write(body.subarray(65_536), () => setTimeout(() => sock.resume(), 100))
      }, 50),
    )
  })
}

describe('issue 16 item 6: an early refusal reaches the client (RFC 9112 §9.6)', () => {
  const port = () => Number(new URL(s.url).port)
  const headOf = (headers: Record<string, string>) => `POST /mcp/alpha HTTP/1.1\r\nhost: ${new URL(s.url).host}\r\n${Object.entries({ ...MCP_HEADERS, ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`

  it('ATK-56 / a 2 MiB body refused from its Content-Length: 50 of 50 raw-socket clients read the 413; nothing reaches the upstream', async () => {
    const before = s.alpha.requests.length
    const body = Buffer.alloc(2 * 1024 * 1024, 0x20)
    const statuses: string[] = []
    for (let i = 0; i < 50; i++) {
      const text = await rawExchange(port(), headOf({ authorization: `Bearer ${token}`, 'content-length': String(body.length) }), body)
      statuses.push(text.slice(0, 12))
      expect(text, `try ${i}`).toMatch(/^HTTP\/1\.1 413 /)
      expect(text.toLowerCase()).toContain('connection: close')
    }
    expect(new Set(statuses)).toEqual(new Set(['HTTP/1.1 413']))
    expect(s.alpha.requests.length).toBe(before)
  }, 120_000)

  it('ATK-56 / a chunked 2e6-element array over the limit: 50 of 50 read the 413', async () => {
    const before = s.alpha.requests.length
    const array = Buffer.from(`[${'0,'.repeat(2_000_000 - 1)}0]`)
    const chunked = Buffer.concat([Buffer.from(`${array.length.toString(16)}\r\n`), array, Buffer.from('\r\n0\r\n\r\n')])
    for (let i = 0; i < 50; i++) {
      const text = await rawExchange(port(), headOf({ authorization: `Bearer ${token}`, 'transfer-encoding': 'chunked' }), chunked)
      expect(text, `try ${i}`).toMatch(/^HTTP\/1\.1 413 /)
    }
    expect(s.alpha.requests.length).toBe(before)
  }, 120_000)
})

describe('issue 16 item 9: client addresses an attacker cannot choose (INT-10)', () => {
  let p: Stack
  beforeAll(async () => {
    p = await startStack({
      as: s.as,
      yaml: (x) => `${listenerYaml({ publicUrl: x.publicUrl, port: x.port, adminPort: x.adminPort, serverExtra: 'trustProxy: 1\nauthFailures: { limit: 3, per: 1m }' })}issuers:
  demo:
    issuer: ${x.issuer}
    jwks: { cooldown: 5s }
routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: ${x.alpha}, timeout: 5s }
    issuers: [demo]
    scopesSupported: [tools.read]
logging: { level: info }
`,
    })
  }, 60_000)
  afterAll(async () => {
    await p?.close()
  })

  it('INT-10 / rotating the client-written part of X-Forwarded-For does not escape the budget; another client keeps its own; nothing reaches the upstream', async () => {
    const before = p.alpha.requests.length
    const forged = `${(await p.token()).slice(0, -8)}AAAAAAAA`
    const statuses: number[] = []
    for (let i = 0; i < 8; i++) {
      // The attacker writes 6.6.6.<i>; the one proxy in front (the test's loopback peer) appends the address it saw.
      const r = await post(p, '{"jsonrpc":"2.0","id":1,"method":"ping"}', { 'x-forwarded-for': `6.6.6.${i}, 198.51.100.7` }, forged)
      statuses.push(r.status)
      await r.text()
    }
    expect(statuses).toEqual([401, 401, 401, 429, 429, 429, 429, 429])
    const other = await post(p, '{"jsonrpc":"2.0","id":1,"method":"ping"}', { 'x-forwarded-for': '6.6.6.0, 198.51.100.8' }, forged)
    expect(other.status).toBe(401)
    expect(p.alpha.requests.length).toBe(before)
  })
})
