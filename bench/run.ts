/**
 * `npm run bench`: the gateway against a plain upstream, a bare Fastify proxy and (where
 * installed) HAProxy, alternately, in the same run. What it reports are ratios between runs
 * of the same round, so a busy machine shifts the absolute numbers but not the comparison.
 *
 *   npm run bench -- [--rounds 5] [--duration 10] [--connections 32] [--sse-events 100]
 *                    [--quick] [--profile] [--no-build] [--baseline DIR] [--only a,b]
 *                    [--out bench/results/DATE.md]
 *
 * --baseline DIR[,DIR…] adds a gateway per older compiled tree (DIR holds gateway/cli.js and sits
 * inside the project), named gw@<basename of DIR>, so changes are measured before/after in one run.
 *
 * Cores: the system under test (upstream-as-direct, bare proxy, gateway, HAProxy) on core 0;
 * wrk, the upstream behind the proxies and this orchestrator (with the AS) on core 1.
 */
import { spawnSync } from 'node:child_process'
import { createPublicKey, randomUUID } from 'node:crypto'
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { startAuthorizationServer, type AuthorizationServer } from '../demo/authorization-server.js'
import { freePort } from '../test/helpers/ports.js'
import { benchPolicy, gatewayYaml, haproxyCfg, UPSTREAM_RESOURCE } from './lib/configs.js'
import { cpuSeconds, hasCommand, memoryMiB, pinned, pinSelf, startService, waitForPort, type Service } from './lib/processes.js'
import { summarizeProfile, type ProfileSummary } from './lib/profile.js'
import { fmt, median, medianRatio, quantile, ratio } from './lib/stats.js'
import { fixedRate, type RateResult } from './lib/rate.js'
import { BODY } from './lib/request.js'
import { runWrk, wrkArgs, writeWrkScript, type WrkResult } from './lib/wrk.js'
import { warmupReport, warmupRun } from './lib/warmup.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string' },
    duration: { type: 'string' },
    connections: { type: 'string', default: '32' },
    'sse-events': { type: 'string', default: '100' },
    'cold-tokens': { type: 'string' },
    rate: { type: 'string', default: '1000' },
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    baseline: { type: 'string' },
    only: { type: 'string' },
    out: { type: 'string' },
    warmup: { type: 'string' },
    'warmup-node-args': { type: 'string' },
    'warmup-window': { type: 'string', default: '10' },
  },
})
const quick = args.quick ?? false
const ROUNDS = Number(args.rounds ?? (quick ? 1 : 5))
const SECONDS = Number(String(args.duration ?? (quick ? '3' : '10')).replace(/s$/, ''))
const CONNECTIONS = Number(args.connections)
const SSE_EVENTS = Number(args['sse-events'])
const RATE = Number(args.rate)
const COLD_TOKENS = Number(args['cold-tokens'] ?? (quick ? 100 : 400))



const MCP_HEADERS = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': '2025-11-25' }

interface Target {
  name: string
  /** The process whose CPU and memory are the system under test. */
  sut: Service
  url: (path: 'json' | 'sse') => string
  /** Its own bearer token (and wrk script) for the JSON path, when not the shared JWT. */
  token?: string
  jsonScript?: string
  /** Not measured on the SSE path (it would repeat another target's). */
  noSse?: boolean
}

interface Sample {
  wrk: WrkResult
  cpuUsPerReq: number
  rss: number
  peak: number
}

const services: Service[] = []
let as: AuthorizationServer | undefined

const log = (s: string) => process.stderr.write(`${s}\n`)

async function measure(t: Target, path: 'json' | 'sse', script: string, seconds = SECONDS): Promise<Sample> {
  const before = cpuSeconds(t.sut.pid)
  const wrk = await runWrk(pinned(LOAD_CORE, wrkArgs({ url: t.url(path), script, connections: CONNECTIONS, seconds })))
  const cpu = cpuSeconds(t.sut.pid) - before
  const mem = memoryMiB(t.sut.pid)
  if (wrk.errors > 0) throw new Error(`${t.name} ${path}: ${wrk.errors} failed responses in ${wrk.requests}; the run is invalid`)
  return { wrk, cpuUsPerReq: (cpu * 1e6) / wrk.requests, rss: mem.rss, peak: mem.peak }
}

/** One real request per target before any load: the right answer, and refusals where there is security. */
async function validate(targets: Target[], token: string, sseToken: string): Promise<string[]> {
  const notes: string[] = []
  const post = (url: string, auth?: string) =>
    fetch(url, { method: 'POST', headers: { ...MCP_HEADERS, ...(auth ? { Authorization: `Bearer ${auth}` } : {}) }, body: BODY })
  const tampered = `${token.slice(0, -6)}${token.slice(-6) === 'AAAAAA' ? 'BBBBBB' : 'AAAAAA'}`
  for (const t of targets) {
    const r = await post(t.url('json'), t.token ?? token)
    const text = await r.text()
    if (r.status !== 200 || !text.includes('"result"') || !text.includes('"id":42')) throw new Error(`${t.name}: expected the upstream's result, got ${r.status} ${text.slice(0, 300)}`)
    if (!t.noSse) {
      const s = await post(t.url('sse'), sseToken)
      const events = (await s.text()).split('\n\n').filter((e) => e.startsWith('event: message')).length
      if (s.status !== 200 || events !== SSE_EVENTS + 1) throw new Error(`${t.name}: SSE gave ${s.status} with ${events} events`)
    }
    if (t.name.startsWith('gateway') || t.name.startsWith('gw@') || t.name === 'haproxy-jwt') {
      const bad = t.token ? (['an unknown opaque token', `${t.token.slice(0, -4)}zzzz`] as const) : (['a tampered signature', tampered] as const)
      for (const [what, auth] of [['no token', undefined], bad] as const) {
        const d = await post(t.url('json'), auth)
        await d.arrayBuffer()
        if (d.status !== 401) throw new Error(`${t.name}: ${what} answered ${d.status}, expected 401`)
      }
      notes.push(`${t.name}: 200 with a valid token; 401 without one and with ${bad[0]}`)
      if (t.name.startsWith('gateway')) {
        // The policy is really evaluated: a tool no rule allows is refused before the upstream.
        const denied = await fetch(t.url('json'), { method: 'POST', headers: { ...MCP_HEADERS, Authorization: `Bearer ${t.token ?? token}` }, body: BODY.replace('search_issues', 'delete_issues') })
        const text = await denied.text()
        if (!text.includes('"error"') || text.includes('"result"')) throw new Error(`${t.name}: a call the policy denies answered ${denied.status} ${text.slice(0, 200)}`)
        notes.push(`${t.name}: a tools/call the policy denies gets a JSON-RPC error (${denied.status})`)
      }
    }
  }
  return notes
}

const LOAD_CORE = cpus().length >= 2 ? 1 : undefined
const SUT_CORE = cpus().length >= 2 ? 0 : undefined

async function main(): Promise<void> {
  const startedAt = new Date()
  const canPin = LOAD_CORE !== undefined && hasCommand('taskset')
  if (!hasCommand('wrk')) throw new Error('wrk is required (Debian/Ubuntu: apt-get install wrk)')
  if (canPin) pinSelf(LOAD_CORE!)
  const sutCore = canPin ? SUT_CORE : undefined
  const loadCore = canPin ? LOAD_CORE : undefined

  if (!args['no-build']) {
    log('building the gateway (npm run build)…')
    const b = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
    if (b.status !== 0) throw new Error('npm run build failed')
  }
  const work = mkdtempSync(join(tmpdir(), 'mcp-warden-bench-'))
  const [upPort, directPort, barePort, dispatchPort, gwPort, adminPort, hpPlain, hpJwt] = await Promise.all(Array.from({ length: 8 }, () => freePort()))

  const resource = `http://127.0.0.1:${gwPort}/mcp/bench`
  const sseResource = `http://127.0.0.1:${gwPort}/mcp/sse`
  const opaqueResource = `http://127.0.0.1:${gwPort}/mcp/opaque`
  const scopes = ['tools.read', 'tools.write']
  as = await startAuthorizationServer({
    resources: { [resource]: { scopes }, [sseResource]: { scopes }, [opaqueResource]: { scopes, format: 'opaque' }, [UPSTREAM_RESOURCE]: { scopes } },
  })
  const token = (await as.getToken({ resource, scope: 'tools.read' })).access_token
  const sseToken = (await as.getToken({ resource: sseResource, scope: 'tools.read' })).access_token
  const opaqueToken = (await as.getToken({ resource: opaqueResource, scope: 'tools.read' })).access_token
  const policyDir = join(work, 'policies')
  mkdirSync(policyDir)
  writeFileSync(join(policyDir, 'bench.yaml'), benchPolicy())

  const node = (file: string) => [process.execPath, join(root, file)]
  const upstream = startService('upstream', pinned(loadCore, node('bench/servers/upstream.mjs')), { env: { PORT: String(upPort), SSE_EVENTS: String(SSE_EVENTS) } })
  const direct = startService('direct', pinned(sutCore, node('bench/servers/upstream.mjs')), { env: { PORT: String(directPort), SSE_EVENTS: String(SSE_EVENTS) } })
  const bare = startService('bare', pinned(sutCore, node('bench/servers/bare-proxy.mjs')), { env: { PORT: String(barePort), UPSTREAM: `http://127.0.0.1:${upPort}` } })
  const bareDispatch = startService('bare-dispatch', pinned(sutCore, node('bench/servers/bare-dispatch.mjs')), { env: { PORT: String(dispatchPort), UPSTREAM: `http://127.0.0.1:${upPort}` } })
  services.push(upstream, direct, bare, bareDispatch)
  // A gateway process from a compiled tree (dist/gateway, or a --baseline copy of an older one),
  // with its audit log in a file. Both share one public URL, so the same tokens serve both.
  const publicUrl = `http://127.0.0.1:${gwPort}`
  const gatewayProcess = (name: string, tree: string, port: number, admin: number, extraNodeArgs: string[] = []) => {
    const configFile = join(work, `${name}.yaml`)
    writeFileSync(configFile, gatewayYaml({ publicUrl, port, adminPort: admin, issuer: as!.issuer, upstream: `http://127.0.0.1:${upPort}`, client: { id: as!.gateway.clientId, secret: as!.gateway.clientSecret }, policyDir }))
    const fd = openSync(join(work, `${name}.audit.log`), 'w')
    const s = startService(name, pinned(sutCore, [process.execPath, ...extraNodeArgs, join(tree, 'gateway/cli.js'), 'serve', '--config', configFile]), { stdout: fd })
    closeSync(fd)
    return s
  }
  const auditFile = join(work, 'gateway.audit.log')
  const startGateway = (extraNodeArgs: string[] = []) => gatewayProcess('gateway', join(root, 'dist'), gwPort!, adminPort!, extraNodeArgs)
  const gateway = startGateway()
  services.push(gateway)
  // Before/after in the same run: each baseline tree must sit inside the project so that its
  // imports resolve to the same node_modules (e.g. `cp -r dist bench/.baseline/original`).
  const baselines: { name: string; service: Service; port: number }[] = []
  for (const dir of args.baseline?.split(',') ?? []) {
    const [port, admin] = await Promise.all([freePort(), freePort()])
    const name = `gw@${basename(resolve(dir))}`
    baselines.push({ name, service: gatewayProcess(name, resolve(dir), port!, admin!), port: port! })
    services.push(baselines.at(-1)!.service)
  }

  // --warmup-node-args: a second fresh gateway from the same tree with extra node flags, so a
  // flag's effect on warm-up is measured in the same run as the default.
  let variant: { name: string; service: Service; port: number } | undefined
  if (args.warmup && args['warmup-node-args']) {
    const [port, admin] = await Promise.all([freePort(), freePort()])
    const name = 'gw+flags'
    variant = { name, service: gatewayProcess(name, join(root, 'dist'), port!, admin!, args['warmup-node-args'].split(' ').filter(Boolean)), port: port! }
    services.push(variant.service)
    baselines.push(variant)
  }

  let haproxy: Service | undefined
  if (hasCommand('haproxy') && !args.warmup) {
    const jwk = as.publicJwks().keys[0]!
    const pem = join(work, 'as-key.pem')
    writeFileSync(pem, createPublicKey({ key: jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }))
    const cfg = join(work, 'haproxy.cfg')
    writeFileSync(cfg, haproxyCfg({ plainPort: hpPlain!, jwtPort: hpJwt!, upstreamPort: upPort!, issuer: as.issuer, audiences: [resource, sseResource], publicKeyPem: pem }))
    haproxy = startService('haproxy', pinned(sutCore, ['haproxy', '-db', '-f', cfg]))
    services.push(haproxy)
  }

  await Promise.all([
    waitForPort(upstream, upPort!),
    waitForPort(direct, directPort!),
    waitForPort(bare, barePort!),
    waitForPort(bareDispatch, dispatchPort!),
    waitForPort(gateway, gwPort!),
    ...baselines.map((b) => waitForPort(b.service, b.port)),
    ...(haproxy ? [waitForPort(haproxy, hpPlain!), waitForPort(haproxy, hpJwt!)] : []),
  ])

  const jsonScript = join(work, 'tools-call.lua')
  const sseScript = join(work, 'tools-call-sse.lua')
  writeWrkScript(jsonScript, BODY, { ...MCP_HEADERS, Authorization: `Bearer ${token}` })
  writeWrkScript(sseScript, BODY, { ...MCP_HEADERS, Authorization: `Bearer ${sseToken}` })
  const opaqueScript = join(work, 'tools-call-opaque.lua')
  writeWrkScript(opaqueScript, BODY, { ...MCP_HEADERS, Authorization: `Bearer ${opaqueToken}` })

  const at = (port: number, json: string, sse: string) => (path: 'json' | 'sse') => `http://127.0.0.1:${port}${path === 'json' ? json : sse}`
  const targets: Target[] = [
    { name: 'direct', sut: direct, url: at(directPort!, '/mcp', '/sse') },
    { name: 'bare', sut: bare, url: at(barePort!, '/mcp/bench', '/mcp/sse') },
    { name: 'bare-dispatch', sut: bareDispatch, url: at(dispatchPort!, '/mcp/bench', '/mcp/sse') },
    { name: 'gateway', sut: gateway, url: at(gwPort!, '/mcp/bench', '/mcp/sse') },
    { name: 'gateway-opaque', sut: gateway, url: at(gwPort!, '/mcp/opaque', '/mcp/sse'), token: opaqueToken, jsonScript: opaqueScript, noSse: true },
    ...baselines.map((b) => ({ name: b.name, sut: b.service, url: at(b.port, '/mcp/bench', '/mcp/sse') })),
    ...(haproxy
      ? [
          { name: 'haproxy', sut: haproxy, url: at(hpPlain!, '/mcp/bench', '/mcp/sse') },
          { name: 'haproxy-jwt', sut: haproxy, url: at(hpJwt!, '/mcp/bench', '/mcp/sse') },
        ]
      : []),
  ]
  if (args.only) {
    const keep = new Set(args.only.split(','))
    targets.splice(0, targets.length, ...targets.filter((t) => keep.has(t.name)))
  }
  const checks = await validate(targets, token, sseToken)

  if (args.warmup) {
    const byName = new Map(targets.map((t) => [t.name, t]))
    const order = ['gateway', ...(variant ? [variant.name] : []), 'bare-dispatch', 'direct'].filter((n) => byName.has(n))
    const result = await warmupRun(
      order.map((n) => ({ name: n, reference: n === 'bare-dispatch' || n === 'direct', run: async (sec: number) => {
        const s = await measure(byName.get(n)!, 'json', byName.get(n)!.jsonScript ?? jsonScript, sec)
        return { cpuUsPerReq: s.cpuUsPerReq, rps: s.wrk.rps }
      } })),
      Number(args.warmup), Number(args['warmup-window']), 3, log,
    )
    const md = warmupReport(result, [
      `# Warm-up from a cold start, ${startedAt.toISOString()}`,
      '',
      `Node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}, load average at start ${loadavg().map((x) => x.toFixed(1)).join(' ')}, ${CONNECTIONS} connections, pinned: ${canPin}.${variant ? ` gw+flags: node ${args['warmup-node-args']}.` : ''}`,
      ...checks.map((c) => `- ${c}`),
    ])
    const out = args.out ?? join(root, 'bench', 'results', `${startedAt.toISOString().slice(0, 10)}-warmup.md`)
    mkdirSync(dirname(out), { recursive: true })
    writeFileSync(out, md)
    process.stdout.write(`${md}\n`)
    log(`written to ${out}`)
    rmSync(work, { recursive: true, force: true })
    return
  }


  log(`warming up ${targets.map((t) => t.name).join(', ')}…`)
  for (const t of targets) await measure(t, 'json', t.jsonScript ?? jsonScript, 2)

  // Alternate targets within a round, reversing the order every other round.
  const json = new Map<string, Sample[]>(targets.map((t) => [t.name, []]))
  const sse = new Map<string, Sample[]>(targets.map((t) => [t.name, []]))
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? targets : [...targets].reverse()
    for (const t of order) {
      const s = await measure(t, 'json', t.jsonScript ?? jsonScript)
      json.get(t.name)!.push(s)
      log(`round ${r + 1}/${ROUNDS} ${t.name.padEnd(12)} ${fmt(s.wrk.rps)} req/s  p99 ${fmt(s.wrk.p99Ms, 2)} ms  ${fmt(s.cpuUsPerReq, 1)} µs/req`)
    }
    for (const t of order.filter((x) => !x.noSse)) {
      const s = await measure(t, 'sse', sseScript)
      sse.get(t.name)!.push(s)
      log(`round ${r + 1}/${ROUNDS} ${t.name.padEnd(12)} SSE ${fmt(s.wrk.rps * (SSE_EVENTS + 1))} events/s`)
    }
  }

  // Latency at a fixed, moderate rate: what an agent sees when the gateway is not saturated.
  const fixed = new Map<string, RateResult[]>(targets.map((t) => [t.name, []]))
  for (let r = 0; r < (quick ? 1 : 3); r++) {
    for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
      const res = await fixedRate({ url: t.url('json'), headers: { ...MCP_HEADERS, authorization: `Bearer ${t.token ?? token}` }, body: BODY, rate: RATE, seconds: quick ? 3 : 10 })
      if (res.errors > 0) throw new Error(`${t.name} at ${RATE} req/s: ${res.errors} failed responses; the run is invalid`)
      fixed.get(t.name)!.push(res)
      log(`fixed rate ${RATE}/s ${t.name.padEnd(14)} p50 ${fmt(res.p50Ms, 2)} ms  p99 ${fmt(res.p99Ms, 2)} ms`)
    }
  }

  const cold = await coldPath(gateway, gwPort!, token)
  const auditBytes = statSync(auditFile).size
  const auditLines = readFileSync(auditFile, 'utf8').split('\n').filter((l) => l.includes('"mcp.request"')).length

  let profile: { file: string; summary: ProfileSummary } | undefined
  if (args.profile) {
    await gateway.stop()
    services.splice(services.indexOf(gateway), 1)
    profile = await profileGateway(startGateway, gwPort!, jsonScript, loadCore, work)
  }

  const md = report({
    startedAt,
    pinned: canPin,
    targets: targets.map((t) => t.name),
    json,
    sse,
    cold,
    fixed,
    checks,
    audit: { bytes: auditBytes, lines: auditLines },
    profile,
  })
  const out = args.out ?? join(root, 'bench', 'results', `${startedAt.toISOString().slice(0, 10)}.md`)
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, md)
  process.stdout.write(`${md}\n`)
  log(`written to ${out}`)
  rmSync(work, { recursive: true, force: true })
}

/** Waits (up to 30 s) until the process uses under 2% of a core over 500 ms; returns the wait. */
async function settle(pid: number): Promise<number> {
  const start = Date.now()
  while (Date.now() - start < 30_000) {
    const before = cpuSeconds(pid)
    await new Promise((r) => setTimeout(r, 500))
    if (cpuSeconds(pid) - before <= 0.01) break
  }
  return Date.now() - start
}

interface ColdResult {
  settleMs: number
  n: number
  cold: { p50Ms: number; p90Ms: number; cpuUsPerReq: number }
  warm: { p50Ms: number; p90Ms: number; cpuUsPerReq: number }
  /** A token exchange at the AS called directly (the orchestrator's own round trip). */
  exchangeP50Ms: number
}

/**
 * First request with a token the gateway has never seen (signature verification) against the
 * same request with a cached token, sequentially over one keep-alive connection. The fresh tokens
 * are the real token's claims with a new jti, signed by the AS's current key.
 */
async function coldPath(gateway: Service, port: number, token: string): Promise<ColdResult> {
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>
  const now = Math.floor(Date.now() / 1000)
  const fresh = await Promise.all(Array.from({ length: COLD_TOKENS }, () => as!.signJwt({ ...claims, jti: randomUUID(), iat: now, exp: now + 3600 })))
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 })
  const once = async (t: string): Promise<number> => {
    const start = process.hrtime.bigint()
    const r = await pool.request({ path: '/mcp/bench', method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${t}` }, body: BODY })
    await r.body.text()
    if (r.statusCode !== 200) throw new Error(`cold path: gateway answered ${r.statusCode}`)
    return Number(process.hrtime.bigint() - start) / 1e6
  }
  const block = async (tokens: string[]) => {
    const before = cpuSeconds(gateway.pid)
    const lat: number[] = []
    for (const t of tokens) lat.push(await once(t))
    return { p50Ms: quantile(lat, 0.5), p90Ms: quantile(lat, 0.9), cpuUsPerReq: ((cpuSeconds(gateway.pid) - before) * 1e6) / tokens.length }
  }
  await block(Array(20).fill(token))
  // The load before this leaves work behind (the async audit log drains, GC): wait for quiet.
  const settleMs = await settle(gateway.pid)
  // Warm and cold blocks alternate so that drift on a busy machine hits both alike.
  const half = Math.floor(COLD_TOKENS / 2)
  const w1 = await block(Array(half).fill(token))
  const c1 = await block(fresh.slice(0, half))
  const c2 = await block(fresh.slice(half))
  const w2 = await block(Array(COLD_TOKENS - half).fill(token))
  await pool.close()
  // One AS round trip, as the gateway makes it on the cold path: a token exchange for the upstream.
  const exchangeMs: number[] = []
  for (const t of fresh.slice(0, 40)) {
    const start = process.hrtime.bigint()
    const x = await as!.exchangeToken({ subjectToken: t, resource: UPSTREAM_RESOURCE })
    if (x.status !== 200) throw new Error(`cold path: direct token exchange answered ${x.status}`)
    exchangeMs.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
  const mean = (a: { p50Ms: number; p90Ms: number; cpuUsPerReq: number }, b: typeof a) => ({ p50Ms: (a.p50Ms + b.p50Ms) / 2, p90Ms: (a.p90Ms + b.p90Ms) / 2, cpuUsPerReq: (a.cpuUsPerReq + b.cpuUsPerReq) / 2 })
  return { n: COLD_TOKENS, cold: mean(c1, c2), warm: mean(w1, w2), settleMs, exchangeP50Ms: quantile(exchangeMs, 0.5) }
}

/** A separate gateway run under `node --cpu-prof`, loaded with the hot-path request. */
async function profileGateway(
  start: (nodeArgs: string[]) => Service,
  port: number,
  script: string,
  loadCore: number | undefined,
  work: string,
): Promise<{ file: string; summary: ProfileSummary }> {
  const dir = join(work, 'profile')
  const gw = start(['--cpu-prof', `--cpu-prof-dir=${dir}`])
  services.push(gw)
  await waitForPort(gw, port)
  log('profiling the gateway…')
  const url = `http://127.0.0.1:${port}/mcp/bench`
  await runWrk(pinned(loadCore, wrkArgs({ url, script, connections: CONNECTIONS, seconds: 2 })))
  const fromUs = Number(process.hrtime.bigint() / 1000n)
  await runWrk(pinned(loadCore, wrkArgs({ url, script, connections: CONNECTIONS, seconds: SECONDS })))
  const toUs = Number(process.hrtime.bigint() / 1000n)
  await gw.stop()
  const name = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))
  if (!name) throw new Error('the gateway wrote no .cpuprofile')
  const file = join(root, 'bench', 'results', `gateway-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`)
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, readFileSync(join(dir, name)))
  return { file, summary: summarizeProfile(file, { fromUs, toUs }) }
}

interface ReportInput {
  startedAt: Date
  pinned: boolean
  targets: string[]
  json: Map<string, Sample[]>
  sse: Map<string, Sample[]>
  cold: ColdResult
  fixed: Map<string, RateResult[]>
  checks: string[]
  audit: { bytes: number; lines: number }
  profile: { file: string; summary: ProfileSummary } | undefined
}

function machine(): string[] {
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown'
  const first = (cmd: string, a: string[]) => spawnSync(cmd, a, { encoding: 'utf8' }).stdout?.split('\n')[0]?.trim() || spawnSync(cmd, a, { encoding: 'utf8' }).stderr?.split('\n')[0]?.trim() || 'n/a'
  return [
    `- CPU: ${cpuModel}, \`nproc --all\` = ${spawnSync('nproc', ['--all'], { encoding: 'utf8' }).stdout.trim()}`,
    `- Node ${process.version}; ${first('wrk', ['-v'])}; ${hasCommand('haproxy') ? first('haproxy', ['-v']) : 'haproxy not installed'}`,
    `- Load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  ]
}

function report(r: ReportInput): string {
  const stat = (name: string, m: Map<string, Sample[]>, f: (s: Sample) => number) => (m.get(name) ?? []).map(f)
  const rps = (s: Sample) => s.wrk.rps
  const cpu = (s: Sample) => s.cpuUsPerReq
  const p50 = (s: Sample) => s.wrk.p50Ms
  const p99 = (s: Sample) => s.wrk.p99Ms
  const rss = (s: Sample) => s.rss
  const lines: string[] = []
  const push = (...l: string[]) => lines.push(...l)

  push(`# mcp-warden benchmark, ${r.startedAt.toISOString()}`, '')
  push(...machine())
  push(
    `- ${ROUNDS} round(s) × ${SECONDS} s per target, wrk 1 thread × ${CONNECTIONS} connections, targets alternating (order reversed every other round)`,
    `- ${r.pinned ? 'System under test pinned to core 0; wrk, the upstream behind the proxies and the orchestrator (with the AS) on core 1' : 'No CPU pinning (fewer than 2 cores or no taskset)'}`,
    `- Request: a ${BODY.length}-byte JSON-RPC \`tools/call\` with an RS256 bearer token from the real AS (demo/authorization-server.ts); \`gateway-opaque\`: the same call with an opaque token (RFC 7662 introspection, warm cache)`,
    '- Gateway configuration (bench/lib/configs.ts): JWT validation, a policy of 36 rules (the call is allowed by one in the middle, with an argument check), RFC 8693 token exchange per upstream (warm cache under load), audit line per request at info (to a file), metrics on',
    '',
    '## Hot path: tools/call',
    '',
    'Medians over the rounds. CPU µs/req is the user+system CPU of the system under test (all its threads) divided by the requests served.',
    '',
    '| target | req/s | p50 ms | p99 ms | CPU µs/req | RSS MiB (peak) |',
    '|---|---:|---:|---:|---:|---:|',
  )
  for (const t of r.targets) {
    const peak = Math.max(...stat(t, r.json, (s) => s.peak), ...stat(t, r.sse, (s) => s.peak))
    push(`| ${t} | ${fmt(median(stat(t, r.json, rps)))} | ${fmt(median(stat(t, r.json, p50)), 2)} | ${fmt(median(stat(t, r.json, p99)), 2)} | ${fmt(median(stat(t, r.json, cpu)), 1)} | ${fmt(median(stat(t, r.json, rss)))} (${fmt(peak)}) |`)
  }
  push('', 'Ratios: the median over rounds of each round\'s ratio.', '', '| target | req/s ×direct | req/s ×bare | CPU/req ×direct | CPU/req ×bare | p99 ×direct | p99 ×bare | RSS ×direct | RSS ×bare |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const t of r.targets) {
    const vs = (f: (s: Sample) => number, base: string) => ratio(medianRatio(stat(t, r.json, f), stat(base, r.json, f)))
    push(`| ${t} | ${vs(rps, 'direct')} | ${vs(rps, 'bare')} | ${vs(cpu, 'direct')} | ${vs(cpu, 'bare')} | ${vs(p99, 'direct')} | ${vs(p99, 'bare')} | ${vs(rss, 'direct')} | ${vs(rss, 'bare')} |`)
  }

  if (r.targets.includes('bare-dispatch') && r.targets.includes('gateway')) {
    const vs = (f: (s: Sample) => number) => ratio(medianRatio(stat('gateway', r.json, f), stat('bare-dispatch', r.json, f)))
    push('', `The security stages on the same forwarding path (gateway ÷ bare-dispatch, same rounds): CPU/req ${vs(cpu)}, req/s ${vs(rps)}, p99 ${vs(p99)}, RSS ${vs(rss)}.`)
  }
  for (const b of r.targets.filter((t) => t.startsWith('gw@'))) {
    const vs = (f: (s: Sample) => number) => ratio(medianRatio(stat('gateway', r.json, f), stat(b, r.json, f)))
    push('', `gateway (this tree) against ${b}, same rounds: req/s ${vs(rps)}, CPU/req ${vs(cpu)}, p99 ${vs(p99)}, RSS ${vs(rss)}.`)
  }

  push('', `## SSE streaming: ${SSE_EVENTS} progress events + the result per tools/call`, '', '| target | streams/s | events/s | CPU µs/event | events/s ×direct | events/s ×bare |', '|---|---:|---:|---:|---:|---:|')
  const events = SSE_EVENTS + 1
  for (const t of r.targets.filter((x) => (r.sse.get(x) ?? []).length > 0)) {
    const evs = (s: Sample) => s.wrk.rps * events
    push(
      `| ${t} | ${fmt(median(stat(t, r.sse, rps)))} | ${fmt(median(stat(t, r.sse, evs)))} | ${fmt(median(stat(t, r.sse, cpu)) / events, 2)} | ${ratio(medianRatio(stat(t, r.sse, evs), stat('direct', r.sse, evs)))} | ${ratio(medianRatio(stat(t, r.sse, evs), stat('bare', r.sse, evs)))} |`,
    )
  }

  push('', `## Latency at a fixed ${RATE} req/s (open loop)`, '', 'Requests are sent on a schedule whatever the answers do; latency counts from when each was due. Medians over the passes.', '', '| target | p50 ms | p99 ms | max ms | p99 added over direct ms |', '|---|---:|---:|---:|---:|')
  const directP99 = median((r.fixed.get('direct') ?? []).map((x) => x.p99Ms))
  for (const t of r.targets) {
    const xs = r.fixed.get(t) ?? []
    const p99f = median(xs.map((x) => x.p99Ms))
    push(`| ${t} | ${fmt(median(xs.map((x) => x.p50Ms)), 2)} | ${fmt(p99f, 2)} | ${fmt(median(xs.map((x) => x.maxMs)), 1)} | ${t === 'direct' ? '' : fmt(p99f - directP99, 2)} |`)
  }

  const c = r.cold
  push(
    '',
    '## Cold path: the first request with a new token',
    '',
    `${c.n} sequential requests over one keep-alive connection, each with a token the gateway has not seen (RS256 signature verified, then a token exchange at the AS for the upstream, both cached), against ${c.n} with a cached token, in alternating blocks, after the gateway had been idle (that took ${fmt(c.settleMs / 1000, 1)} s after the load). Latency is seen by the client; CPU is counted in 1/CLK_TCK steps, so a block's figure is coarse. The gateway's CPU includes its side of the exchange (client authentication, the HTTP call, parsing and caching the answer).`,
    '',
    '| gateway path | p50 ms | p90 ms | gateway CPU µs/req |',
    '|---|---:|---:|---:|',
    `| warm (cached verification and exchanged token) | ${fmt(c.warm.p50Ms, 3)} | ${fmt(c.warm.p90Ms, 3)} | ${fmt(c.warm.cpuUsPerReq, 1)} |`,
    `| cold (verify + token exchange) | ${fmt(c.cold.p50Ms, 3)} | ${fmt(c.cold.p90Ms, 3)} | ${fmt(c.cold.cpuUsPerReq, 1)} |`,
    `| cold − warm | ${fmt(c.cold.p50Ms - c.warm.p50Ms, 3)} | | ${fmt(c.cold.cpuUsPerReq - c.warm.cpuUsPerReq, 1)} |`,
    `| one token exchange at the AS, called directly | ${fmt(c.exchangeP50Ms, 3)} | | |`,
    '',
    `Cold path added latency ÷ one AS round trip: ${fmt((c.cold.p50Ms - c.warm.p50Ms) / c.exchangeP50Ms, 2)} (target: at most one round trip, so ≈ 1 plus the signature check).`,
  )


  push('', '## Checks', '', ...r.checks.map((c) => `- ${c}`))
  const gwRequests = [...(r.json.get('gateway') ?? []), ...(r.sse.get('gateway') ?? [])].reduce((a, s) => a + s.wrk.requests, 0)
  push(`- gateway audit log: ${r.audit.lines} \`mcp.request\` lines, ${fmt(r.audit.bytes / Math.max(1, r.audit.lines))} bytes per line (${gwRequests} requests measured, plus warm-up, checks and cold path)`)

  if (r.profile) {
    const p = r.profile.summary
    push('', '## Gateway CPU profile (node --cpu-prof, hot path under load)', '', `${relative(root, r.profile.file)}: samples from the ${SECONDS} s under load only (after a 2 s warm-up); ${fmt(p.busyMs)} ms busy of ${fmt(p.totalMs)} ms.`, '', '| area | self ms | share of busy |', '|---|---:|---:|')
    for (const a of p.areas) push(`| ${a.area} | ${fmt(a.ms)} | ${fmt(a.share * 100, 1)}% |`)
    push('', '| function | where | area | self ms | share |', '|---|---|---|---:|---:|')
    for (const f of p.functions) push(`| ${f.name} | ${f.where} | ${f.area} | ${fmt(f.ms)} | ${fmt(f.share * 100, 1)}% |`)
  }
  return `${lines.join('\n')}\n`
}

async function cleanup(): Promise<void> {
  await Promise.all(services.map((s) => s.stop().catch(() => undefined)))
  await as?.close().catch(() => undefined)
}

main().then(
  async () => {
    await cleanup()
    process.exit(0)
  },
  async (e: unknown) => {
    log(`bench failed: ${(e as Error).stack ?? String(e)}`)
    await cleanup()
    process.exit(1)
  },
)
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))
