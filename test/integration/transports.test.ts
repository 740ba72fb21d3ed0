/**
 * Upstreams that do not speak Streamable HTTP (issue 10, checklist LEG, SHTTP-27, ATK-60/70):
 * a stdio program run by the gateway (per session and shared) and a legacy 2024-11-05 HTTP+SSE
 * server, both reached by the real MCP SDK client over Streamable HTTP with tokens.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startLegacySseServer, type LegacySseServer } from '../helpers/legacy-sse-server.js'
import { waitFor } from '../helpers/process.js'
import { INIT, listenerYaml, MCP_HEADERS, parseChallenge, type Stack, startStack } from '../helpers/stack.js'

const ROOT = join(import.meta.dirname, '..', '..')
const STDIO_SERVER = join(ROOT, 'demo', 'mcp-stdio-server.ts')
const API_KEY = 'demo-key-0d9f8a7c6b5e'

let s: Stack
let legacy: LegacySseServer
let closed = false

beforeAll(async () => {
  process.env.MCPW_TEST_DEMO_API_KEY = API_KEY
  legacy = await startLegacySseServer()
  const stdio = (name: string, mode: string) => `  - name: ${name}
    path: /mcp/${name}
    upstream:
      stdio:
        command: ${JSON.stringify(process.execPath)}
        args: [--import, tsx, ${JSON.stringify(STDIO_SERVER)}]
        env: { DEMO_API_KEY: { fromEnv: MCPW_TEST_DEMO_API_KEY }, MCP_DEMO_NAME: ${name} }
        cwd: ${JSON.stringify(ROOT)}
        mode: ${mode}
        restart: { backoff: 100ms, maxBackoff: 1s }
    issuers: [demo]
`
  s = await startStack({
    yaml: (c) => `${listenerYaml({ publicUrl: c.publicUrl, port: c.port, adminPort: c.adminPort, shutdownGrace: '1s' })}issuers:
  demo:
    issuer: ${c.issuer}
routes:
  - name: legacy
    path: /mcp/legacy
    upstream: { sse: ${legacy.url} }
    issuers: [demo]
${stdio('local', 'per-session')}${stdio('shared', 'shared')}logging: { level: debug }
`,
  })
})

afterAll(async () => {
  if (!closed) await s?.close()
  await legacy?.close()
})

const token = (route: string, subject = 'alice') => s.as.getToken({ resource: `${new URL(s.url).origin}/mcp/${route}`, scope: 'tools.read', subject }).then((t) => t.access_token)

async function connect(route: string, subject = 'alice') {
  const client = new Client({ name: 'transports-test', version: '1' })
  const transport = new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/${route}`), { requestInit: { headers: { authorization: `Bearer ${await token(route, subject)}` } } })
  await client.connect(transport)
  return { client, transport, sessionId: transport.sessionId! }
}

async function progressCall(client: Client, n: number) {
  const progress: number[] = []
  const result = await client.callTool({ name: 'count_slowly', arguments: { n, delayMs: 50 } }, undefined, { onprogress: (p) => progress.push(p.progress) })
  return { progress, result }
}

const raw = (route: string, bearer: string | undefined, sessionId: string, method: string) =>
  fetch(`${s.url}/mcp/${route}`, {
    method,
    headers: { ...MCP_HEADERS, ...(method === 'GET' ? { accept: 'text/event-stream' } : {}), ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), 'mcp-session-id': sessionId },
    ...(method === 'POST' ? { body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'add', arguments: { a: 1, b: 2 } } }) } : {}),
  })

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe.each(['local', 'legacy'])('%s upstream through the gateway (Streamable HTTP client)', (route) => {
  it('lists and calls tools; progress notifications reach the stream of their request', async () => {
    const { client, transport } = await connect(route)
    const { tools } = await client.listTools()
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['search', 'add', 'count_slowly']))
    expect((await client.callTool({ name: 'add', arguments: { a: 20, b: 22 } })).content).toEqual([{ type: 'text', text: '42' }])
    const { progress, result } = await progressCall(client, 3)
    expect(progress).toEqual([1, 2, 3])
    expect(result.content).toEqual([{ type: 'text', text: 'counted to 3' }])
    await transport.terminateSession()
    await client.close()
  })

  it('LEG-01 / CHL-01 / no token → 401 with a challenge; nothing reaches the upstream', async () => {
    const before = legacy.requests.length
    const pids = s.gateway.bridges.get('local')!.pids().length
    const res = await fetch(`${s.url}/mcp/${route}`, { method: 'POST', headers: MCP_HEADERS, body: INIT })
    expect(res.status).toBe(401)
    expect(parseChallenge(res.headers.get('www-authenticate'))?.params.resource_metadata).toContain(`/mcp/${route}`)
    expect(legacy.requests.length).toBe(before)
    expect(s.gateway.bridges.get('local')!.pids().length).toBe(pids)
  })

  it('SHTTP-27 / ATK-60 / ATK-70 / another caller cannot use, stream or delete a bridged session', async () => {
    const { client, sessionId } = await connect(route, 'alice')
    const bob = await token(route, 'bob')
    const before = legacy.requests.length
    for (const method of ['POST', 'GET', 'DELETE']) expect((await raw(route, bob, sessionId, method)).status, method).toBe(404)
    expect((await raw(route, undefined, sessionId, 'POST')).status).toBe(401)
    expect(legacy.requests.length).toBe(before)
    expect((await client.callTool({ name: 'add', arguments: { a: 1, b: 1 } })).content).toEqual([{ type: 'text', text: '2' }])
    await client.close()
  })
})

describe('stdio upstream', () => {
  it('the program gets its secret from the gateway config; its stderr is logged with the secret redacted', async () => {
    const { client, transport } = await connect('local')
    expect((await client.callTool({ name: 'api_key_status', arguments: {} })).content).toEqual([{ type: 'text', text: 'api key present' }])
    await waitFor(async () => s.logs.some((l) => l.includes('bridge.stderr') && l.includes('stdio demo server ready')))
    expect(s.logs.join('\n')).not.toContain(API_KEY)
    expect(s.logs.some((l) => l.includes('bridge.stderr') && l.includes('[redacted]'))).toBe(true)
    await transport.terminateSession()
    await client.close()
  })

  it('per-session: one process per session, stopped when the session ends', async () => {
    const bridge = s.gateway.bridges.get('local')!
    const before = new Set(bridge.pids())
    const a = await connect('local')
    const b = await connect('local', 'bob')
    const mine = bridge.pids().filter((p) => !before.has(p))
    expect(mine).toHaveLength(2)
    await a.transport.terminateSession()
    await b.transport.terminateSession()
    await Promise.all([a.client.close(), b.client.close()])
    await waitFor(async () => mine.every((p) => !alive(p)), 8000)
  })

  it('a crash answers the call in flight with a JSON-RPC error (no hang); the process is restarted and the session goes on', async () => {
    const bridge = s.gateway.bridges.get('local')!
    const before = new Set(bridge.pids())
    const { client, transport } = await connect('local')
    const pid = bridge.pids().find((p) => !before.has(p))!
    const call = client.callTool({ name: 'count_slowly', arguments: { n: 100, delayMs: 50 } }, undefined, {
      onprogress: (p) => {
        if (p.progress === 2) process.kill(pid, 'SIGKILL')
      },
    })
    const error = await call.then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(McpError)
    expect((error as McpError).code).toBe(-32603)
    // Same session, new process: the gateway replayed the initialize handshake.
    await waitFor(async () => (await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })).content !== undefined, 8000)
    const next = bridge.pids().find((p) => !before.has(p))
    expect(next).toBeDefined()
    expect(next).not.toBe(pid)
    expect(alive(pid)).toBe(false)
    expect(await s.gateway.metrics.registry.getSingleMetricAsString('mcp_warden_bridge_restarts_total')).toMatch(/route="local"} [1-9]/)
    await transport.terminateSession()
    await client.close()
  })

  it('shared: one process serves every caller; ids and progress tokens never cross sessions', async () => {
    const bridge = s.gateway.bridges.get('shared')!
    const a = await connect('shared', 'alice')
    const b = await connect('shared', 'bob')
    expect(bridge.pids()).toHaveLength(1)
    // Both SDK clients number their requests alike: the relay must keep them apart.
    const [ra, rb] = await Promise.all([progressCall(a.client, 4), progressCall(b.client, 2)])
    expect(ra.progress).toEqual([1, 2, 3, 4])
    expect(rb.progress).toEqual([1, 2])
    expect(ra.result.content).toEqual([{ type: 'text', text: 'counted to 4' }])
    expect(rb.result.content).toEqual([{ type: 'text', text: 'counted to 2' }])
    // Bob cannot use Alice's session even though they share the process.
    expect((await raw('shared', await token('shared', 'bob'), a.sessionId, 'POST')).status).toBe(404)
    await Promise.all([a.client.close(), b.client.close()])
  })

  it('the bridge port refuses anyone but the gateway', async () => {
    const bridge = s.gateway.bridges.get('local')!
    const pids = bridge.pids().length
    const res = await fetch(bridge.url, { method: 'POST', headers: MCP_HEADERS, body: INIT })
    expect(res.status).toBe(403)
    expect(bridge.pids().length).toBe(pids)
  })
})

describe('legacy HTTP+SSE upstream', () => {
  it('the client token never reaches the legacy server', async () => {
    const bearer = await token('legacy')
    legacy.requests.length = 0
    const client = new Client({ name: 't', version: '1' })
    await client.connect(new StreamableHTTPClientTransport(new URL(`${s.url}/mcp/legacy`), { requestInit: { headers: { authorization: `Bearer ${bearer}` } } }))
    await client.listTools()
    expect(legacy.requests.length).toBeGreaterThan(0)
    expect(legacy.requests.every((r) => r.headers.authorization === undefined && !r.url.includes(bearer))).toBe(true)
    await client.close()
  })

  it('a dropped legacy stream fails the call in flight cleanly, then reconnects and re-initializes', async () => {
    const { client } = await connect('legacy')
    const call = client.callTool({ name: 'count_slowly', arguments: { n: 100, delayMs: 50 } }, undefined, {
      onprogress: (p) => {
        if (p.progress === 2) legacy.dropStreams()
      },
    })
    const error = await call.then(() => undefined, (e: unknown) => e)
    expect((error as McpError).code).toBe(-32603)
    await waitFor(async () => (await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })).content !== undefined, 8000)
    await client.close()
  })
})

describe('shutdown', () => {
  it('no child process outlives the gateway', async () => {
    const a = await connect('local')
    const b = await connect('shared')
    const pids = [...s.gateway.bridges.values()].flatMap((br) => br.pids())
    expect(pids.length).toBeGreaterThanOrEqual(2)
    await Promise.all([a.client.close(), b.client.close()])
    closed = true
    await s.close()
    for (const pid of pids) expect(alive(pid), String(pid)).toBe(false)
  })
})
