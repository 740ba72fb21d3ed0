/**
 * Clients nobody here wrote, run as their users run them, against the demo as shipped
 * (demo/gateway.demo.yaml and its policy, policies/demo): issue 16 items 2 and 3, and the proof
 * that docs/connecting-clients.md works as written.
 * - MCP Inspector CLI 2.12 (needs Node >= 22: `.ci/node 24` provides one) in both protocol eras
 *   and `auto`: tools/list filtered by policy, tools/call allowed and denied. In the legacy era it
 *   sends logging/setLevel after initialize; with modern/auto it starts with server/discover and
 *   validates every 2026-07-28 result (resultType, ttlMs, cacheScope).
 * - mcp-remote 0.15 (the stdio bridge desktop clients use) through the whole OAuth flow: it finds
 *   the AS from the gateway's 401 and RFC 9728 metadata, registers, and prints the authorization
 *   URL; the test plays the user's browser with the demo AS's headless login.
 * - The Python SDK `mcp` 2.x (`Client(mode=...)`), skipped with a message when not importable.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { followAuthorizationRedirects } from '../../demo/authorization-server.js'
import { startDemo, type Demo } from '../helpers/demo.js'
import { freePort } from '../helpers/ports.js'

const ROOT = join(import.meta.dirname, '..', '..')
// The package's bin (`npx @modelcontextprotocol/inspector --cli …`, as docs/connecting-clients.md says).
const INSPECTOR = join(ROOT, 'node_modules', '@modelcontextprotocol', 'inspector', 'clients', 'launcher', 'build', 'index.js')
const MCP_REMOTE = join(ROOT, 'node_modules', 'mcp-remote', 'dist', 'proxy.js')
const PYTHON_CLIENT = join(ROOT, 'test', 'clients', 'python_sdk_client.py')

interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

/** A child process, asynchronously: the gateway under test runs in this process and must keep answering. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

let demo: Demo
let token = ''
let home = ''
beforeAll(async () => {
  demo = await startDemo()
  token = (await demo.as.getToken({ resource: demo.resource, scope: 'tools.read', subject: 'alice' })).access_token
  // The Inspector keeps a catalog and OAuth state under $HOME: a throw-away one per run.
  home = mkdtempSync(join(tmpdir(), 'mcpw-clients-'))
}, 60_000)
afterAll(async () => {
  await demo?.close()
  if (home) rmSync(home, { recursive: true, force: true })
})

/** The upstream methods (and tool names) recorded since the last reset. */
const upstreamSaw = () => demo.upstream.requests.filter((r) => r.method === 'POST').map((r) => JSON.parse(r.body) as { method?: string; params?: { name?: string } })

describe('MCP Inspector CLI 2.12 through the demo with its shipped policy', () => {
  let node = ''
  beforeAll(() => {
    // Downloads a Node 24 from the npm registry once (cached in .cache/).
    node = execFileSync(join(ROOT, '.ci', 'node'), ['24'], { encoding: 'utf8' }).trim()
  }, 120_000)

  const inspector = (era: string, ...args: string[]) =>
    run(node, [INSPECTOR, '--cli', '--server-url', demo.mcpUrl, '--transport', 'http', '--protocol-era', era, '--header', `Authorization: Bearer ${token}`, '--format', 'json', ...args], { HOME: home })

  it.each(['legacy', 'modern', 'auto'])('V26-10 / V26-11 / --protocol-era %s: tools/list is filtered, tools/call works, a denied tool never reaches the upstream', async (era) => {
    demo.upstream.reset()
    const list = await inspector(era, '--method', 'tools/list')
    expect({ code: list.code, stderr: list.stderr }).toEqual({ code: 0, stderr: '' })
    const names = (JSON.parse(list.stdout) as { result: { tools: { name: string }[] } }).result.tools.map((t) => t.name).sort()
    expect(names).toEqual(['add', 'count_slowly', 'search', 'transfer_funds', 'whoami'])

    const add = await inspector(era, '--method', 'tools/call', '--tool-name', 'add', '--tool-arg', 'a=1', 'b=2')
    expect({ code: add.code, stderr: add.stderr }).toEqual({ code: 0, stderr: '' })
    expect(JSON.parse(add.stdout)).toMatchObject({ result: { content: [{ type: 'text', text: '3' }] } })

    if (era === 'legacy') {
      // The Inspector looks a tool up in its (filtered) list first: a hidden tool is not even sent.
      const denied = await inspector(era, '--method', 'tools/call', '--tool-name', 'delete_repo', '--tool-arg', 'repo=prod')
      expect(denied.code).not.toBe(0)
      expect(denied.stderr).toContain("Tool 'delete_repo' not found")
    }

    const saw = upstreamSaw()
    expect(saw.some((m) => m.method === 'tools/call' && m.params?.name === 'add')).toBe(true)
    expect(saw.some((m) => m.params?.name === 'delete_repo')).toBe(false)
    // Legacy: the Inspector's logging/setLevel after initialize was let through by the demo policy.
    if (era === 'legacy') expect(saw.some((m) => m.method === 'logging/setLevel')).toBe(true)
    expect(demo.upstream.sawString(token)).toBe(false)
  })

  it('without a token the Inspector is refused and nothing reaches the upstream', async () => {
    demo.upstream.reset()
    const r = await run(node, [INSPECTOR, '--cli', '--server-url', demo.mcpUrl, '--transport', 'http', '--protocol-era', 'modern', '--stored-auth-only', '--format', 'json', '--method', 'tools/list'], { HOME: home })
    expect(r.code).not.toBe(0)
    expect(demo.upstream.requests).toEqual([])
  })
})

const python = spawnSync('python3', ['-c', 'import mcp'], { stdio: 'ignore' }).status === 0
if (!python) console.warn('clients.test.ts: the Python SDK tests are skipped: python3 cannot import `mcp` (pip install mcp==2.3.0)')

describe.skipIf(!python)('the Python SDK (mcp 2.x) through the demo with its shipped policy', () => {
  it("V26-10 / Client(mode='legacy' | '2026-07-28' | 'auto'): list, call, a denied call is a JSON-RPC error", async () => {
    demo.upstream.reset()
    const modes = ['legacy', '2026-07-28', 'auto']
    // One interpreter for the three modes: its start-up is most of the cost.
    const r = await run('python3', [PYTHON_CLIENT, ...modes], { MCP_URL: demo.mcpUrl, MCP_TOKEN: token })
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
    const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(out).toEqual(modes.map((mode) => ({
      mode,
      protocolVersion: mode === 'legacy' ? '2025-11-25' : '2026-07-28',
      tools: ['add', 'count_slowly', 'search', 'transfer_funds', 'whoami'],
      add: ['5'],
      denied: { code: -31403, message: 'Forbidden by gateway policy' },
    })))
    expect(upstreamSaw().some((m) => m.params?.name === 'delete_repo')).toBe(false)
  })
})

describe('mcp-remote 0.15 through the whole OAuth flow, headlessly', () => {
  it('401 → metadata → DCR → PKCE with resource → token; then tools/list and tools/call over its stdio side; its token never reaches the upstream', async () => {
    demo.upstream.reset()
    const [port, config] = [await freePort(), mkdtempSync(join(tmpdir(), 'mcpw-remote-'))]
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [MCP_REMOTE, demo.mcpUrl, String(port), '--host', '127.0.0.1'],
      env: { ...(process.env as Record<string, string>), MCP_REMOTE_CONFIG_DIR: config },
      stderr: 'pipe',
    })
    let log = ''
    let login: Promise<number> | undefined
    transport.stderr!.on('data', (c: Buffer) => {
      log += c.toString()
      // mcp-remote would open a browser at this URL; the "browser" logs in and follows the redirect to its callback.
      const url = /Please authorize this client by visiting:\s*(\S+)/.exec(log)?.[1]
      if (url && !login) login = followAuthorizationRedirects(new URL(url)).then(async (callback) => (await fetch(callback)).status)
    })
    const client = new Client({ name: 'desktop-client', version: '1.0.0' })
    try {
      await client.connect(transport)
      expect(await login).toBe(200)
      expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(['add', 'count_slowly', 'search', 'transfer_funds', 'whoami'])
      expect(await client.callTool({ name: 'add', arguments: { a: 1, b: 2 } })).toMatchObject({ content: [{ type: 'text', text: '3' }] })
      const denied = await client.callTool({ name: 'delete_repo', arguments: { repo: 'prod' } }).catch((e: Error) => e)
      expect(String(denied)).toContain('Forbidden by gateway policy')
      const dir = join(config, readdirSync(config)[0]!)
      const tokens = JSON.parse(readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith('_tokens.json'))!), 'utf8')) as { access_token: string }
      expect(tokens.access_token.split('.')).toHaveLength(3)
      expect(demo.upstream.sawString(tokens.access_token)).toBe(false)
      expect(upstreamSaw().some((m) => m.params?.name === 'delete_repo')).toBe(false)
    } finally {
      await client.close().catch(() => undefined)
      rmSync(config, { recursive: true, force: true })
    }
  })
})
