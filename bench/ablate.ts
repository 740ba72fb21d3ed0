/**
 * Where the gateway's CPU per request goes, by switching one stage off at a time in the same run:
 * the full configuration, then without audit logging, without the policy, without token exchange,
 * and with all three off (authentication and forwarding only). Alternating rounds, like run.ts.
 *
 *   npx tsx bench/ablate.ts [--rounds 3] [--duration 5]
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startAuthorizationServer } from '../demo/authorization-server.js'
import { freePort } from '../test/helpers/ports.js'
import { benchPolicy, gatewayYaml, UPSTREAM_RESOURCE } from './lib/configs.js'
import { cpuSeconds, pinned, pinSelf, startService, waitForPort, type Service } from './lib/processes.js'
import { BODY } from './lib/request.js'
import { fmt, median } from './lib/stats.js'
import { runWrk, wrkArgs, writeWrkScript } from './lib/wrk.js'

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, duration: { type: 'string', default: '5' } } })
const root = join(import.meta.dirname, '..')

const variants: Record<string, (yaml: string) => string> = {
  full: (y) => y,
  'no audit': (y) => y.replace('logging: { level: info }', 'logging: { level: warn }'),
  'no policy': (y) => y.replace(/policies:\n(  .*\n)+/, ''),
  'no exchange': (y) => y.replace(/ {4}credentials: .*\n/g, ''),
  'auth + forward only': (y) => y.replace('logging: { level: info }', 'logging: { level: warn }').replace(/policies:\n(  .*\n)+/, '').replace(/ {4}credentials: .*\n/g, ''),
}

pinSelf(1)
const work = mkdtempSync(join(tmpdir(), 'mcp-warden-ablate-'))
const upPort = await freePort()
const up = startService('upstream', pinned(1, [process.execPath, join(root, 'bench/servers/upstream.mjs')]), { env: { PORT: String(upPort) } })
await waitForPort(up, upPort)
const base = `http://127.0.0.1:${await freePort()}`
const resource = `${base}/mcp/bench`
const scopes = ['tools.read']
const as = await startAuthorizationServer({ resources: { [resource]: { scopes }, [`${base}/mcp/sse`]: { scopes }, [`${base}/mcp/opaque`]: { scopes, format: 'opaque' }, [UPSTREAM_RESOURCE]: { scopes } } })
const token = (await as.getToken({ resource, scope: 'tools.read' })).access_token
mkdirSync(join(work, 'policies'))
writeFileSync(join(work, 'policies/bench.yaml'), benchPolicy())
const script = join(work, 'call.lua')
writeWrkScript(script, BODY, { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}` })

const gws: { name: string; svc: Service; port: number }[] = []
for (const [name, edit] of Object.entries(variants)) {
  const [port, admin] = [await freePort(), await freePort()]
  const yaml = edit(gatewayYaml({ publicUrl: base, port, adminPort: admin, issuer: as.issuer, upstream: `http://127.0.0.1:${upPort}`, client: { id: as.gateway.clientId, secret: as.gateway.clientSecret }, policyDir: join(work, 'policies') }))
  const file = join(work, `${gws.length}.yaml`)
  writeFileSync(file, yaml)
  const fd = openSync(join(work, `${gws.length}.log`), 'w')
  const svc = startService(name, pinned(0, [process.execPath, join(root, 'dist/gateway/cli.js'), 'serve', '--config', file]), { stdout: fd })
  closeSync(fd)
  await waitForPort(svc, port)
  gws.push({ name, svc, port })
}
const cpu = new Map<string, number[]>(gws.map((g) => [g.name, []]))
for (const g of gws) await runWrk(pinned(1, wrkArgs({ url: `http://127.0.0.1:${g.port}/mcp/bench`, script, connections: 32, seconds: 2 })))
for (let r = 0; r < Number(args.rounds); r++) {
  for (const g of r % 2 ? [...gws].reverse() : gws) {
    const before = cpuSeconds(g.svc.pid)
    const w = await runWrk(pinned(1, wrkArgs({ url: `http://127.0.0.1:${g.port}/mcp/bench`, script, connections: 32, seconds: Number(args.duration) })))
    if (w.errors > 0) throw new Error(`${g.name}: ${w.errors} errors`)
    cpu.get(g.name)!.push(((cpuSeconds(g.svc.pid) - before) * 1e6) / w.requests)
  }
}
const full = median(cpu.get('full')!)
console.log('| variant | CPU µs/req | × full |\n|---|---:|---:|')
for (const g of gws) console.log(`| ${g.name} | ${fmt(median(cpu.get(g.name)!), 1)} | ${(median(cpu.get(g.name)!) / full).toFixed(2)}× |`)
await Promise.all([...gws.map((g) => g.svc.stop()), up.stop()])
await as.close()
process.exit(0)
