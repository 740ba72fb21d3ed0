/**
 * The CLI as operators use it: `check` reports every problem with file:line:column and exits
 * non-zero; `serve` drains in-flight requests, SSE streams included, on SIGTERM.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../demo/authorization-server.js'
import { startMcpServer, type McpUpstream } from '../../demo/mcp-server.js'
import { freePort } from '../helpers/ports.js'
import { runCli, waitFor } from '../helpers/process.js'
import { listenerYaml } from '../helpers/stack.js'

const dir = mkdtempSync(join(tmpdir(), 'mcpw-cli-'))
let as: AuthorizationServer
let upstream: McpUpstream
beforeAll(async () => {
  ;[as, upstream] = await Promise.all([startAuthorizationServer(), startMcpServer()])
})
afterAll(async () => {
  await Promise.all([as?.close(), upstream?.close()])
})

const config = (port: number, adminPort: number) => `# a comment line
${listenerYaml({ port, adminPort, shutdownGrace: '4s' })}issuers:
  demo:
    issuer: ${as.issuer}
routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: ${upstream.url} }
    issuers: [demo]
`

describe('mcp-warden check', () => {
  it('prints every problem as file:line:column and exits 1', async () => {
    const file = join(dir, 'bad.yaml')
    writeFileSync(file, config(8080, 9090).replace('    issuers: [demo]', '    issuers: [demo, missing]\n    colour: red').replace('  shutdownGrace: 4s', '  shutdownGrace: soon'))
    const p = runCli(['check', '--config', file])
    expect(await p.exited).toBe(1)
    const lines = p.stderr().trim().split('\n')
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^${file}:5:18  server\\.shutdownGrace: does not match`)),
        expect.stringMatching(new RegExp(`^${file}:16:5  routes\\[0\\]\\.colour: unknown key "colour"`)),
      ]),
    )
  })

  it('accepts a valid file and exits 0', async () => {
    const file = join(dir, 'good.yaml')
    writeFileSync(file, config(8080, 9090))
    const p = runCli(['check', '--config', file])
    expect(await p.exited).toBe(0)
    expect(p.stdout()).toContain('ok')
  })

  it('serve refuses to start with an invalid configuration', async () => {
    const file = join(dir, 'bad2.yaml')
    writeFileSync(file, config(8080, 9090).replace('issuers: [demo]', 'issuers: [nope]'))
    const p = runCli(['serve', '--config', file])
    expect(await p.exited).toBe(1)
    expect(p.stderr()).toMatch(/unknown issuer "nope"/)
  })
})

describe('mcp-warden help and version (the process as an operator runs it)', () => {
  it('--version, policy explain --help, policy test --help exit 0 on stdout; an unknown option exits 2 without a stack trace', async () => {
    // One process each, started together: the unit tests (test/unit/cli.test.ts) cover the rest.
    const [version, explain, test, bad] = [['--version'], ['policy', 'explain', '--help'], ['policy', 'test', '--help'], ['policy', 'explain', '--rout', 'x']].map((argv) => runCli(argv))
    expect(await Promise.all([version, explain, test, bad].map((p) => p!.exited))).toEqual([0, 0, 0, 2])
    expect(version!.stdout()).toMatch(/^mcp-warden \d+\.\d+\.\d+\n$/)
    for (const p of [explain!, test!]) {
      expect(p.stdout()).toContain('mcp-warden policy explain')
      expect(p.stderr()).toBe('')
    }
    expect(bad!.stderr()).toMatch(/^mcp-warden policy explain: Unknown option '--rout'/)
    expect(bad!.stderr()).not.toMatch(/\n\s+at /)
    // Four tsx start-ups on a shared machine: a generous limit, not a timing assertion.
  }, 60_000)
})

describe('mcp-warden serve', () => {
  it('SIGTERM drains: an in-flight SSE tool call completes, readiness drops, the process exits 0', async () => {
    const [port, adminPort] = [await freePort(), await freePort()]
    const file = join(dir, 'serve.yaml')
    writeFileSync(file, config(port, adminPort))
    const p = runCli(['serve', '--config', file])
    try {
      // Generous: tsx compiles the CLI on start, and CI machines may be busy.
      await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200, 60_000)
      const token = (await as.getToken({ resource: `http://127.0.0.1:${port}/mcp/alpha`, scope: 'tools.read' })).access_token
      const client = new Client({ name: 'drain', version: '1' })
      await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp/alpha`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }))
      const progress: number[] = []
      let signalled = false
      const result = client.callTool({ name: 'count_slowly', arguments: { n: 6, delayMs: 250 } }, undefined, {
        onprogress: (e) => {
          progress.push(e.progress)
          if (!signalled) {
            signalled = true
            p.child.kill('SIGTERM')
          }
        },
      })
      const r = await result
      expect(r.content).toEqual([{ type: 'text', text: 'counted to 6' }])
      expect(progress).toEqual([1, 2, 3, 4, 5, 6])
      // The client's standalone GET stream is still open, so the process is still draining:
      // it tells the orchestrator to stop sending traffic.
      expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(503)
      expect(await p.exited).toBe(0)
      expect(p.stdout()).toContain('"event":"gateway.stopping"')
      expect(p.stdout()).not.toContain(token.split('.')[2]!)
      await client.close().catch(() => undefined)
    } finally {
      p.child.kill('SIGKILL')
    }
  }, 120_000)
})
