/**
 * Hostile input through a live gateway (issue 9): fast-check generates headers, tokens, JSON-RPC
 * bodies and upstream SSE framing, thousands of cases per run, against a real oidc-provider AS and
 * a real MCP SDK upstream. Every case asserts no 5xx and no hang; at the end the gateway still
 * answers and its heap stayed bounded. Differential check: every tools/call the upstream executed
 * is re-decided by an independent oracle (written here, not the gateway's evaluator) for the
 * principal the gateway vouched for, and must be allowed. Discovery filtering is checked with the
 * same SSE parser the MCP SDK client uses (eventsource-parser), so what we inspect is what a client reads.
 * FUZZ_LIVE_RUNS sets the cases per property (soak: more).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createParser } from 'eventsource-parser'
import fc from 'fast-check'
import * as jose from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFaultyUpstream, type Execution, type FaultyUpstream } from '../helpers/faulty-upstream.js'
import { listenerYaml, MCP_HEADERS, type Stack, startStack } from '../helpers/stack.js'

const RUNS = Number(process.env.FUZZ_LIVE_RUNS ?? 500)

const POLICY = `apiVersion: mcp-warden/v1
kind: Policy
name: main
routes: [fz]
rules:
  - { id: lifecycle, effect: allow, methods: [initialize, ping, "notifications/*", tools/list] }
  - { id: read, effect: allow, tools: [search, add], when: { scopes: { allOf: [tools.read] } } }
  - { id: admin-transfer, effect: allow, tools: [transfer_funds], when: { subjects: [admin] }, arguments: { amount: { gt: 0, lte: 100 } } }
  - { id: no-deletes, effect: deny, tools: ["delete_*"] }
`

/** The same policy, written independently: what may run for whom. */
function oracleAllows(e: Execution): boolean {
  const subject = decodeURIComponent(e.identity['x-mcp-subject'] ?? '')
  const scopes = decodeURIComponent(e.identity['x-mcp-scopes'] ?? '').split(' ')
  if ((e.tool === 'search' || e.tool === 'add') && scopes.includes('tools.read')) return true
  const amount = (e.arguments as { amount?: unknown } | undefined)?.amount
  return e.tool === 'transfer_funds' && subject === 'admin' && typeof amount === 'number' && amount > 0 && amount <= 100
}

let up: FaultyUpstream
let s: Stack
let dir: string
let tokens: { alice: string; admin: string }
let jwks: ReturnType<typeof jose.createLocalJWKSet>
const stats = { requests: 0, executed: 0, byStatus: new Map<number, number>(), clientSkipped: 0 }
let heap0 = 0

beforeAll(async () => {
  up = await startFaultyUpstream()
  dir = mkdtempSync(join(tmpdir(), 'mcpw-fuzz-'))
  writeFileSync(join(dir, 'main.yaml'), POLICY)
  s = await startStack({
    yaml: (c) => `${listenerYaml({ publicUrl: c.publicUrl, port: c.port, adminPort: c.adminPort })}issuers:
  demo: { issuer: ${c.issuer} }
routes:
  - name: fz
    path: /mcp/fz
    upstream: { url: ${up.url}, timeout: 5s }
    issuers: [demo]
    scopesSupported: [tools.read]
    credentials: { strategy: identity-headers, headers: { subject: X-MCP-Subject, scopes: X-MCP-Scopes } }
policies:
  dir: ${dir}
logging: { level: warn }
`,
  })
  const resource = `${s.url}/mcp/fz`
  tokens = {
    alice: (await s.as.getToken({ resource, scope: 'tools.read', subject: 'alice' })).access_token,
    admin: (await s.as.getToken({ resource, scope: 'tools.read', subject: 'admin' })).access_token,
  }
  jwks = jose.createLocalJWKSet(s.as.publicJwks())
  heap0 = process.memoryUsage().heapUsed
}, 60_000)

afterAll(async () => {
  const heap1 = process.memoryUsage().heapUsed
  console.log(
    `[reliability] fuzz: ${stats.requests} requests, ${stats.executed} tool calls executed upstream (all allowed by the oracle), statuses ${JSON.stringify(Object.fromEntries([...stats.byStatus].sort()))}, ${stats.clientSkipped} cases rejected by the client library, heap ${(heap0 / 2 ** 20).toFixed(0)} → ${(heap1 / 2 ** 20).toFixed(0)} MiB`,
  )
  await s?.close()
  await up?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

interface Sent {
  status: number
  text: string
  executions: Execution[]
}

/** One request; asserts the invariants every case shares. */
async function send(headers: Record<string, string>, body: string | undefined, method = 'POST'): Promise<Sent | undefined> {
  const before = up.executions.length
  let res: Response
  try {
    res = await fetch(`${s.url}/mcp/fz`, { method, headers, ...(body !== undefined && method === 'POST' ? { body } : {}), signal: AbortSignal.timeout(15_000) })
  } catch (e) {
    // undici refuses to send some generated header values at all: nothing reached the gateway.
    const code = ((e as Error).cause as { code?: string } | undefined)?.code
    if (((e as Error).name === 'TypeError' && !String((e as Error).message).includes('fetch failed')) || code === 'UND_ERR_NOT_SUPPORTED' || code === 'UND_ERR_INVALID_ARG') {
      stats.clientSkipped++
      return undefined
    }
    throw e
  }
  const text = await res.text()
  stats.requests++
  stats.byStatus.set(res.status, (stats.byStatus.get(res.status) ?? 0) + 1)
  expect(res.status, text).toBeLessThan(500)
  const executions = up.executions.slice(before)
  stats.executed += executions.length
  for (const e of executions) expect(oracleAllows(e), JSON.stringify(e)).toBe(true)
  return { status: res.status, text, executions }
}

const auth = (who: 'alice' | 'admin') => ({ ...MCP_HEADERS, authorization: `Bearer ${tokens[who]}` })

const TOOL_NAMES = ['search', 'add', 'transfer_funds', 'delete_repo', 'whoami', 'count_slowly', 'delete_rep\u043e', 'DELETE_REPO', 'transfer_funds ', 'transfer_funds\u0000', 'search/../delete_repo']
const METHODS = ['tools/call', 'Tools/Call', 'tools/call ', 'tools\\/call', 'tools／call', 'tools/list', 'initialize', 'ping', 'notifications/initialized', 'resources/read', 'prompts/get', 'tasks/result', 'completion/complete']
const jsonValue = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.constant(null), fc.boolean(), fc.integer(), fc.double(), fc.string({ maxLength: 8 }), fc.array(tie('v'), { maxLength: 3 }), fc.dictionary(fc.oneof(fc.string({ maxLength: 5 }), fc.constantFrom('__proto__', 'constructor', 'amount', 'name')), tie('v'), { maxKeys: 3 })),
})).v

const message = fc.record(
  {
    jsonrpc: fc.oneof(fc.constant('2.0'), fc.constant('1.0'), jsonValue),
    id: fc.oneof(fc.integer(), fc.string({ maxLength: 6 }), fc.constant(null), fc.double(), fc.boolean()),
    method: fc.oneof(fc.constantFrom(...METHODS), fc.string({ maxLength: 12 })),
    params: fc.oneof(
      fc.record({
        name: fc.oneof(fc.constantFrom(...TOOL_NAMES), jsonValue),
        arguments: fc.oneof(fc.record({ amount: fc.oneof(fc.integer({ min: -10, max: 1000 }), fc.double(), fc.string({ maxLength: 4 }), jsonValue), to: fc.string({ maxLength: 4 }) }), jsonValue),
        _meta: fc.oneof(fc.constant(undefined), jsonValue),
      }),
      jsonValue,
    ),
  },
  { requiredKeys: ['method'] },
)

/** Well-formed calls with hostile names and arguments: the cases that reach the policy decision. */
const wellFormedCall = fc.record({
  jsonrpc: fc.constant('2.0'),
  id: fc.integer({ min: 1, max: 1e6 }),
  method: fc.constant('tools/call'),
  params: fc.record({
    name: fc.constantFrom(...TOOL_NAMES),
    arguments: fc.record({ amount: fc.oneof(fc.integer({ min: -10, max: 300 }), fc.double({ min: -1, max: 200 }), fc.string({ maxLength: 4 })), to: fc.string({ maxLength: 4 }), query: fc.string({ maxLength: 4 }), a: fc.integer(), b: fc.integer() }, { requiredKeys: [] }),
  }),
})

/** A body: a message, a batch, or JSON text with a duplicate key or an edit the parser must survive. */
const body = fc.oneof(
  { arbitrary: wellFormedCall.map((m) => JSON.stringify(m)), weight: 3 },
  message.map((m) => JSON.stringify(m)),
  fc.array(message, { maxLength: 3 }).map((a) => JSON.stringify(a)),
  message.map((m) => JSON.stringify(m).replace(/^\{/, '{"method":"tools/list",')),
  fc.tuple(message, fc.nat(200), fc.nat(4), fc.string({ maxLength: 4 })).map(([m, pos, del, ins]) => {
    const t = JSON.stringify(m)
    return t.slice(0, pos) + ins + t.slice(pos + del)
  }),
  fc.nat(3000).map((n) => '['.repeat(n) + ']'.repeat(n)),
)

describe('live fuzz', () => {
  it(`POL / ATK-43..55 / JSON-RPC bodies (${RUNS} cases): no 5xx, and every executed call is allowed for its principal`, async () => {
    await fc.assert(
      fc.asyncProperty(body, fc.constantFrom('alice' as const, 'admin' as const), async (b, who) => {
        const r = await send(auth(who), b)
        for (const e of r?.executions ?? []) expect(decodeURIComponent(e.identity['x-mcp-subject'] ?? '')).toBe(who)
        // A JSON-RPC error answer names the request it answers (or null when none could be read).
        if (r && r.status >= 400 && r.text.startsWith('{"jsonrpc"')) expect(JSON.parse(r.text)).toHaveProperty('id')
      }),
      { numRuns: RUNS },
    )
  }, 300_000)

  it(`ATK-01..20 / mutated tokens (${RUNS} cases): accepted only if independently verifiable; nothing runs otherwise`, async () => {
    const [h, p, sig] = tokens.alice.split('.') as [string, string, string]
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')
    const header = jose.decodeProtectedHeader(tokens.alice)
    const token = fc.oneof(
      fc.tuple(fc.nat(tokens.alice.length - 1), fc.string({ minLength: 1, maxLength: 3 })).map(([i, c]) => tokens.alice.slice(0, i) + c + tokens.alice.slice(i + 1)),
      fc.nat(tokens.alice.length).map((n) => tokens.alice.slice(0, n)),
      fc.constantFrom('none', 'None', 'HS256', 'ES256', 'PS256', 'RS512').map((alg) => `${b64({ ...header, alg })}.${p}.${alg.toLowerCase() === 'none' ? '' : sig}`),
      jsonValue.map((v) => `${b64({ ...header, kid: v })}.${p}.${sig}`),
      jsonValue.map((v) => `${h}.${b64({ ...jose.decodeJwt(tokens.alice), aud: v })}.${sig}`),
      fc.constantFrom(`${h}.${p}`, `${h}.${p}.${sig}.x.y`, `${p}.${h}.${sig}`, `${h}..${sig}`, '.', '...', `${h}.${p}.${sig}=`),
      fc.string({ maxLength: 40 }),
    )
    const call = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search', arguments: { query: 'q' } } })
    await fc.assert(
      fc.asyncProperty(token, async (t) => {
        const r = await send({ ...MCP_HEADERS, authorization: `Bearer ${t}` }, call)
        if (!r) return
        if (r.status === 200) {
          // Accepted: an independent verifier must agree (same key, issuer, audience).
          await jose.jwtVerify(t, jwks, { issuer: s.as.issuer, audience: `${s.url}/mcp/fz` })
        } else {
          expect([400, 401, 403]).toContain(r.status)
          expect(r.executions).toEqual([])
          expect(r.text).not.toContain(t.length > 16 ? t : '\u0000never')
        }
      }),
      { numRuns: RUNS },
    )
  }, 300_000)

  it(`ATK-33..42 / hostile headers (${RUNS} cases): no 5xx; client-sent identity headers never reach the upstream`, async () => {
    const printable = fc.string({ unit: fc.constantFrom(...' !"#$%&\'()*+,-./0123456789:;<=>?@ABCXYZ[\\]^_`abcxyz{|}~\t'), maxLength: 30 })
    const names = fc.constantFrom('mcp-protocol-version', 'mcp-session-id', 'content-type', 'accept', 'origin', 'last-event-id', 'mcp-method', 'mcp-name', 'x-mcp-subject', 'x-mcp-scopes', 'x-forwarded-host', 'x-forwarded-for', 'forwarded', 'cookie', 'te', 'expect', 'x-http-method-override', 'authorization')
    const call = (name: string, args: unknown) => JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name, arguments: args } })
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(names, fc.oneof(printable, fc.constantFrom('2025-11-25', '2025-03-26', 'application/json', 'text/plain', 'application/json, text/event-stream', 'admin', 'tools.read tools.write', 'Bearer x', 'null', 'http://evil.example')), { maxKeys: 4 }),
        fc.constantFrom('POST', 'GET', 'DELETE'),
        fc.constantFrom(call('search', { query: 'x' }), call('transfer_funds', { amount: 50, to: 'x' }), call('delete_repo', { repo: 'x' })),
        async (extra, method, b) => {
          const r = await send({ ...auth('alice'), ...extra }, b, method)
          // Alice stays Alice whatever she claims in headers.
          for (const e of r?.executions ?? []) {
            expect(decodeURIComponent(e.identity['x-mcp-subject'] ?? '')).toBe('alice')
            expect(e.tool).not.toBe('transfer_funds')
          }
        },
      ),
      { numRuns: RUNS },
    )
  }, 300_000)

  it(`ATK-59 / upstream SSE framing (${RUNS} cases): a tools/list answer is filtered whatever its framing, or not delivered`, async () => {
    const list = (id: number) => JSON.stringify({ jsonrpc: '2.0', id, result: { tools: ['search', 'delete_repo', 'whoami'].map((name) => ({ name, inputSchema: { type: 'object' } })) } })
    const eol = fc.constantFrom('\n', '\r\n', '\r')
    const field = fc.constantFrom('event: message', 'id: 1', 'retry: 10', ': comment', 'data', 'bogus: x', '\uFEFFevent: message', 'event:message')
    const frame = fc.tuple(fc.array(field, { maxLength: 2 }), eol, eol, fc.boolean(), fc.constantFrom('data: ', 'data:', 'data:  ')).map(([fields, e1, e2, split, prefix]) => {
      const json = list(1)
      const data = split ? `${prefix}${json.slice(0, 40)}${e1}${prefix}${json.slice(40)}` : `${prefix}${json}`
      return [...fields, data].join(e1) + e1 + e2
    })
    up.mode = 'script'
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 3 }), fc.boolean(), async (frames, bom) => {
          up.script = (bom ? '\uFEFF' : '') + frames.join('')
          const r = await send(auth('alice'), JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }))
          if (!r || r.status !== 200) return
          // Read the answer the way the MCP SDK client does.
          const seen: string[] = []
          const parser = createParser({ onEvent: (ev) => seen.push(ev.data) })
          parser.feed(r.text)
          for (const d of seen) {
            let msg: { result?: { tools?: Array<{ name: string }> } } | undefined
            try {
              msg = JSON.parse(d) as typeof msg
            } catch {
              continue
            }
            const names = msg?.result?.tools?.map((t) => t.name) ?? []
            expect(names, JSON.stringify(up.script)).not.toContain('delete_repo')
            expect(names).not.toContain('whoami')
          }
        }),
        { numRuns: RUNS },
      )
    } finally {
      up.mode = 'normal'
    }
  }, 300_000)

  it('after the fuzz: the gateway still serves, and its heap stayed bounded', async () => {
    const r = await send(auth('admin'), JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'transfer_funds', arguments: { amount: 5, to: 'x' } } }))
    expect(r?.status).toBe(200)
    expect(r?.executions.map((e) => e.tool)).toEqual(['transfer_funds'])
    expect(process.memoryUsage().heapUsed - heap0).toBeLessThan(256 * 2 ** 20)
  })
})
