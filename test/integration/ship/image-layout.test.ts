/**
 * The container image without Docker: builds the runtime layout the Dockerfile describes
 * (compiled gateway, package.json, production dependencies only — the set `npm ci --omit=dev`
 * installs, read from package-lock.json) in a temporary directory, mounts the gateway.yaml the
 * Helm chart renders with its default values (issuer and upstream pointed at a real AS and MCP
 * server on loopback) and runs the image's ENTRYPOINT + CMD from there.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../../demo/authorization-server.js'
import { startMcpServer, type McpUpstream } from '../../../demo/mcp-server.js'
import { loadChart } from '../../helpers/chart.js'
import { freePort } from '../../helpers/ports.js'
import { INIT, MCP_HEADERS } from '../../helpers/stack.js'

const ROOT = join(import.meta.dirname, '..', '..', '..')
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '))
const jsonArray = (instr: string) => JSON.parse(new RegExp(`^${instr} (\\[.*\\])$`, 'm').exec(runtimeStage)![1]!) as string[]
const ENTRYPOINT = jsonArray('ENTRYPOINT')
const CMD = jsonArray('CMD')
const WORKDIR = /^WORKDIR (\S+)$/m.exec(runtimeStage)![1]!

/** Top-level packages `npm ci --omit=dev` installs: lockfile entries not marked dev. */
function productionPackages(): string[] {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; devOptional?: boolean }> }
  return Object.entries(lock.packages)
    .filter(([k, p]) => k.startsWith('node_modules/') && !k.slice('node_modules/'.length).includes('node_modules/') && !p.dev && !p.devOptional)
    .map(([k]) => k)
}

describe('image layout (Dockerfile runtime stage, no Docker engine)', () => {
  let tmp: string
  let image: string
  let as: AuthorizationServer
  let upstream: McpUpstream
  let proc: ChildProcess | undefined
  let output = ''
  let ports: { http: number; admin: number }

  // Host paths standing in for the image's absolute paths and the pod's mounts.
  const inImage = (p: string) => join(image, p.slice(WORKDIR.length))

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'mcpw-image-'))
    image = join(tmp, 'app')
    // COPY --from=build /src/dist/gateway ./dist/gateway  (npm run build = tsc -p tsconfig.build.json;
    // the type check itself runs in `npm test`, so it is skipped here to keep this test short).
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--noCheck', '--outDir', join(image, 'dist')], { stdio: 'pipe' })
    // COPY --from=prod-deps /app/node_modules ./node_modules, COPY package.json, COPY policies/schema
    for (const pkg of productionPackages()) if (existsSync(join(ROOT, pkg))) cpSync(join(ROOT, pkg), join(image, pkg), { recursive: true, dereference: true })
    cpSync(join(ROOT, 'package.json'), join(image, 'package.json'))
    cpSync(join(ROOT, 'policies', 'schema'), join(image, 'policies', 'schema'), { recursive: true })

    ;[as, upstream] = await Promise.all([startAuthorizationServer(), startMcpServer({ name: 'legacy' })])
    ports = { http: await freePort(), admin: await freePort() }
    const { manifests } = loadChart().render([
      {
        ports,
        gateway: {
          publicUrl: `http://127.0.0.1:${ports.http}`,
          issuers: { corp: { issuer: as.issuer } },
          routes: [{ name: 'example', path: '/mcp/example', upstream: { url: upstream.url }, issuers: ['corp'], scopesSupported: ['tools.read'] }],
        },
      },
    ])
    const configMap = manifests.find((m) => m.kind === 'ConfigMap' && m.metadata.name.endsWith('-config')) as unknown as { data: Record<string, string> }
    const etc = join(tmp, 'etc', 'mcp-warden')
    mkdirSync(join(etc, 'policies'), { recursive: true })
    writeFileSync(join(etc, 'gateway.yaml'), configMap.data['gateway.yaml']!)

    const args = [...ENTRYPOINT.slice(1).map((a) => (a.startsWith(WORKDIR) ? inImage(a) : a)), ...CMD.map((a) => a.replace('/etc/mcp-warden', etc))]
    // Only what the image and the pod set: no test-runner environment leaks in.
    proc = spawn(process.execPath, args, { cwd: image, env: { PATH: process.env.PATH, NODE_ENV: 'production' }, stdio: ['ignore', 'pipe', 'pipe'] })
    proc.stdout!.on('data', (d) => (output += d))
    proc.stderr!.on('data', (d) => (output += d))
  }, 120_000)

  afterAll(async () => {
    if (proc && proc.exitCode === null) proc.kill('SIGKILL')
    await Promise.all([as?.close(), upstream?.close()])
    if (tmp) rmSync(tmp, { recursive: true, force: true })
  })

  it('holds production dependencies only', () => {
    expect(ENTRYPOINT[0]).toBe('node')
    // The MCP SDK is a runtime dependency since the stdio and legacy-SSE bridges (gateway/transports/bridge/).
    expect(existsSync(join(image, 'node_modules', '@modelcontextprotocol', 'sdk')), 'sdk').toBe(true)
    for (const dev of ['typescript', 'vitest', 'tsx', 'oidc-provider', 'kubernetes-models']) expect(existsSync(join(image, 'node_modules', dev)), dev).toBe(false)
    for (const dep of ['fastify', 'jose', 'ioredis', 'prom-client']) expect(existsSync(join(image, 'node_modules', dep)), dep).toBe(true)
  })

  it('starts with the chart default config and becomes ready (/readyz 200) against a real AS', async () => {
    const admin = `http://127.0.0.1:${ports.admin}`
    let last = 0
    for (let i = 0; i < 100 && last !== 200; i++) {
      if (proc!.exitCode !== null) throw new Error(`gateway exited ${proc!.exitCode}:\n${output}`)
      last = await fetch(`${admin}/readyz`).then((r) => r.status, () => 0)
      if (last !== 200) await new Promise((r) => setTimeout(r, 100))
    }
    expect(last, output).toBe(200)
    expect((await fetch(`${admin}/healthz`)).status).toBe(200)
    expect(await (await fetch(`${admin}/metrics`)).text()).toContain('mcp_warden_requests_total')
  })

  it('protects the MCP server: 401 without a token, proxied with one', async () => {
    const url = `http://127.0.0.1:${ports.http}/mcp/example`
    const anon = await fetch(url, { method: 'POST', headers: MCP_HEADERS, body: INIT })
    expect(anon.status).toBe(401)
    expect(anon.headers.get('www-authenticate')).toContain('resource_metadata=')
    const { access_token } = await as.getToken({ resource: url, scope: 'tools.read' })
    const ok = await fetch(url, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${access_token}` }, body: INIT })
    expect(ok.status).toBe(200)
    await ok.text()
    expect(upstream.requests.length).toBeGreaterThan(0)
    expect(upstream.sawString(access_token)).toBe(false)
  })

  it('`mcp-warden check` runs from the image on deploy/examples/gateway.yaml', () => {
    const out = execFileSync(process.execPath, [inImage(ENTRYPOINT[1]!), 'check', '--config', join(ROOT, 'deploy', 'examples', 'gateway.yaml')], {
      env: { PATH: process.env.PATH, MCP_WARDEN_REDIS_URL: 'redis://127.0.0.1:1' },
      encoding: 'utf8',
    })
    expect(out).toContain('gateway.yaml: ok')
  })

  it('stops on the STOPSIGNAL (SIGTERM) with exit code 0', async () => {
    expect(runtimeStage).toMatch(/^STOPSIGNAL SIGTERM$/m)
    const exited = new Promise<number | null>((r) => proc!.once('exit', (code) => r(code)))
    proc!.kill('SIGTERM')
    expect(await exited).toBe(0)
  }, 20_000)
})
