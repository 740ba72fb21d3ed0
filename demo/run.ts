/**
 * `npm run demo`: an authorization server, an MCP server with no auth of its own, and
 * mcp-warden in front of it, all on loopback. Shows a scripted round trip, then stays up and
 * says how to connect your own client. Ports: DEMO_GATEWAY_PORT (8080), DEMO_ADMIN_PORT (9090),
 * DEMO_AS_PORT (9400), DEMO_MCP_PORT (9401); see demo/ui.ts.
 */
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { loadConfigFile } from '../gateway/config/load.js'
import { createLogger } from '../gateway/observability/logger.js'
import { buildGateway } from '../gateway/server.js'
import { startAuthorizationServer } from './authorization-server.js'
import { startMcpServer } from './mcp-server.js'
import { colourEnabled, DemoSetupError, demoPorts, humanLogLine, portProblem, style } from './ui.js'

const here = dirname(fileURLToPath(import.meta.url))
const s = style(colourEnabled(process.env, process.stdout))
const out = (text = '') => process.stdout.write(`${text}\n`)
const step = (n: number, title: string) => out(`\n${s.bold(s.cyan(`▸ ${n}. ${title}`))}`)
const indent = (text: string, by = '    ') => text.replace(/^/gm, by)
const json = (v: unknown, by = '    ') => indent(JSON.stringify(v, null, 2), by)
const statusText = (status: number) => (status < 300 ? s.green(`HTTP ${status}`) : s.yellow(`HTTP ${status}`))
/** Last resort when a close hangs; the gateway's shutdownGrace (1 s in gateway.demo.yaml) ends first. */
const STOP_DEADLINE_MS = 2000

const PINO_LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 }

/**
 * Gateway log records: policy reloads become one human line; other records are shown raw from
 * DEMO_LOG_LEVEL (warn) up. The logger itself runs at info at least so that reloads arrive.
 */
function demoLogger() {
  const shown = PINO_LEVELS[process.env.DEMO_LOG_LEVEL ?? 'warn'] ?? 40
  const level = shown < 30 ? (process.env.DEMO_LOG_LEVEL as string) : 'info'
  return createLogger(level, {
    write(line: string) {
      const human = humanLogLine(line, s)
      if (human) out(human)
      else if (((JSON.parse(line) as { level?: number }).level ?? 0) >= shown) process.stderr.write(line)
    },
  })
}

/** A raw JSON-RPC POST in the SDK client's session, so the demo can show the HTTP status of a refusal. */
async function rawCall(url: string, token: string, transport: StreamableHTTPClientTransport, body: object) {
  const r = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
      ...(transport.sessionId ? { 'mcp-session-id': transport.sessionId } : {}),
      ...(transport.protocolVersion ? { 'mcp-protocol-version': transport.protocolVersion } : {}),
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: Date.now(), ...body }),
  })
  const text = await r.text()
  // An answer relayed from the MCP server may come as SSE: its JSON-RPC message is the last data line.
  const data = r.headers.get('content-type')?.includes('text/event-stream') ? [...text.matchAll(/^data: ?(.*)$/gm)].at(-1)?.[1] ?? '' : text
  let parsed: unknown = text
  try {
    parsed = JSON.parse(data)
  } catch {
    /* not JSON: shown as text */
  }
  return { status: r.status, challenge: r.headers.get('www-authenticate'), body: parsed }
}

async function main(): Promise<void> {
  const ports = demoPorts(process.env)
  const closers: (() => Promise<void>)[] = []
  const stop = async (code: number) => {
    const started = Date.now()
    const deadline = setTimeout(() => process.exit(code), STOP_DEADLINE_MS)
    deadline.unref()
    // Independent servers: closed together, so the slowest (the gateway draining its streams for
    // shutdownGrace) sets the time.
    await Promise.allSettled(closers.map((close) => close()))
    out(s.dim(`stopped in ${Date.now() - started} ms; ports released`))
    process.exit(code)
  }

  try {
    const as = await startAuthorizationServer({ port: ports.DEMO_AS_PORT })
    closers.push(() => as.close())
    const upstream = await startMcpServer({ port: ports.DEMO_MCP_PORT, name: 'demo' })
    closers.push(() => upstream.close())
    process.env.DEMO_GATEWAY_PORT = String(ports.DEMO_GATEWAY_PORT)
    process.env.DEMO_ADMIN_PORT = String(ports.DEMO_ADMIN_PORT)
    process.env.DEMO_ISSUER = as.issuer
    process.env.DEMO_UPSTREAM = upstream.url
    const { config } = loadConfigFile(join(here, 'gateway.demo.yaml'))
    const gateway = await buildGateway(config, { logger: demoLogger() })
    closers.push(() => gateway.close())
    const { url, adminUrl } = await gateway.start()
    await script({ as, upstream, config, url, adminUrl })
  } catch (e) {
    const problem = e instanceof DemoSetupError ? e.message : portProblem(e, ports, process.env)
    process.stderr.write(`${s.red('demo could not start')}: ${problem ?? ((e as Error).stack ?? String(e))}\n`)
    await stop(1)
  }

  process.once('SIGINT', () => {
    out('\nstopping…')
    // A second Ctrl-C does not wait for anything.
    process.once('SIGINT', () => process.exit(130))
    void stop(0)
  })
  process.once('SIGTERM', () => void stop(0))
}

interface Started {
  as: Awaited<ReturnType<typeof startAuthorizationServer>>
  upstream: Awaited<ReturnType<typeof startMcpServer>>
  config: ReturnType<typeof loadConfigFile>['config']
  url: string
  adminUrl: string
}

async function script({ as, upstream, config, url, adminUrl }: Started): Promise<void> {
  const route = config.routes[0]!
  const mcpUrl = `${url}${route.path}`
  const policyDir = config.policies ? relative(process.cwd(), config.policies.dir) || '.' : undefined

  out(`${s.bold('mcp-warden demo')}  ${s.dim('(three servers on loopback; Ctrl-C stops them)')}
  authorization server  ${as.issuer}
  MCP server (no auth)  ${upstream.url}
  mcp-warden            ${s.bold(mcpUrl)}   admin ${adminUrl}`)

  step(1, 'No token: mcp-warden refuses and says where to log in')
  const r401 = await fetch(mcpUrl, { method: 'POST', headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' })
  await r401.body?.cancel()
  out(`  POST ${mcpUrl}  →  ${statusText(r401.status)}`)
  out(`  WWW-Authenticate: ${r401.headers.get('www-authenticate')}`)

  step(2, 'Protected-resource metadata (RFC 9728): which AS issues tokens for this server')
  const prm = await (await fetch(route.metadataUrl)).json()
  out(`  GET ${route.metadataUrl}`)
  out(json(prm))

  step(3, 'A short-lived token from the authorization server, for this resource only')
  const token = await as.getToken({ resource: route.resource, scope: 'tools.read', subject: 'alice' })
  const claims = JSON.parse(Buffer.from(token.access_token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>
  out(json({ aud: claims.aud, sub: claims.sub, client_id: claims.client_id, scope: claims.scope, expires_in: token.expires_in }))

  step(4, 'An MCP SDK client through mcp-warden: initialize, then tools/list (filtered per caller)')
  const client = new Client({ name: 'demo-client', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token.access_token}` } } })
  await client.connect(transport)
  const tools = await client.listTools()
  out(`  tools alice may see: ${tools.tools.map((t) => s.bold(t.name)).join(', ')}`)
  if (policyDir) out(s.dim(`  (the rest are hidden by the policies in ${policyDir})`))

  step(5, 'Policy decisions, with the HTTP status a client gets')
  const calls: [string, Record<string, unknown>][] = [
    ['delete_repo', { repo: 'prod' }],
    ['transfer_funds', { amount: 10, to: 'bob' }],
    ['transfer_funds', { amount: 10000, to: 'bob' }],
  ]
  for (const [name, args] of calls) {
    const r = await rawCall(mcpUrl, token.access_token, transport, { method: 'tools/call', params: { name, arguments: args } })
    const body = r.body as { error?: { message?: string; data?: unknown }; result?: { content?: unknown; isError?: boolean } }
    const verdict = r.status === 200 && body.result && !body.result.isError ? s.green('allowed') : s.red('refused')
    out(`  ${s.bold(name)} ${JSON.stringify(args)}  →  ${statusText(r.status)} ${verdict}`)
    if (r.challenge) out(`    WWW-Authenticate: ${r.challenge}`)
    out(json(typeof body.error === 'object' ? body.error : (body.result?.content ?? body), '      '))
  }
  out(s.dim('  (an OAuth-enabled MCP client answers a 403 insufficient_scope challenge by asking the AS for that scope, then retries)'))

  step(6, 'A streamed tool call: progress arrives through mcp-warden as the tool runs')
  const started = Date.now()
  const result = await client.callTool({ name: 'count_slowly', arguments: { n: 3, delayMs: 300 }, _meta: {} }, undefined, {
    onprogress: (p) => out(`  progress ${p.progress}/${p.total ?? '?'} at +${Date.now() - started} ms`),
  })
  out(json(result.content))
  await client.close()
  const leaked = upstream.sawString(token.access_token)
  out(`  the MCP server received alice's token: ${leaked ? s.red('YES (bug!)') : s.green('no')} (mcp-warden never forwards it)`)

  lastScreen({ mcpUrl, adminUrl, token: token.access_token, expiresIn: token.expires_in, policyDir, routeName: route.name })
}

function lastScreen(o: { mcpUrl: string; adminUrl: string; token: string; expiresIn: number; policyDir?: string; routeName: string }): void {
  const h = (t: string) => `\n${s.bold(t)}`
  // No prompt character: the lines are meant to be copied as they are.
  const cmd = (c: string) => `  ${s.cyan(c)}`
  out(`
${s.bold(s.green('The demo stays up.'))} Connect your own client to ${s.bold(o.mcpUrl)}
${s.dim('OAuth clients discover the AS from the 401 and log in as "alice" with no password (demo AS only).')}
${s.dim('Clients that take a header instead use this token (in the shell you run them from):')}
${cmd(`export TOKEN=${o.token}`)}   ${s.dim(`# valid ${o.expiresIn} s`)}
${h('MCP Inspector 2.x')} ${s.dim('(Node >= 22.19; web UI: transport Streamable HTTP, the URL above, OAuth in the browser)')}
${cmd('npx @modelcontextprotocol/inspector@2.12.0')}
${cmd(`npx @modelcontextprotocol/inspector@2.12.0 --cli --server-url ${o.mcpUrl} --transport http --protocol-era auto --header "Authorization: Bearer $TOKEN" --format json --method tools/list`)}
${h('mcp-remote')} ${s.dim('(stdio bridge for Claude Desktop and other local-program clients; runs the OAuth flow, callback on port 3334)')}
${cmd(`npx -y mcp-remote@0.15.1 ${o.mcpUrl} 3334 --host 127.0.0.1`)}
  client config: { "command": "npx", "args": ["-y", "mcp-remote@0.15.1", "${o.mcpUrl}", "3334", "--host", "127.0.0.1"] }
${h('An SDK (TypeScript)')}
  await client.connect(new StreamableHTTPClientTransport(new URL('${o.mcpUrl}'), { requestInit: { headers: { authorization: \`Bearer \${process.env.TOKEN}\` } } }))
${s.dim('More (Python SDK, VS Code, Claude Desktop, the AS side): docs/connecting-clients.md')}
${h('curl')}
${cmd(`curl -i ${o.mcpUrl} -H "authorization: Bearer $TOKEN" -H 'accept: application/json, text/event-stream' -H 'content-type: application/json' \\`)}
      -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
${cmd(`curl -s ${o.adminUrl}/metrics | grep mcp_warden_requests_total`)}
${
  o.policyDir
    ? `${h('Policies')}
  Edit ${o.policyDir}/*.yaml now: each save is reloaded and reported here in one line (a broken edit is refused, the last good set stays).
${cmd(`npx tsx gateway/cli.ts policy explain --dir ${o.policyDir} --route ${o.routeName} --method tools/call --name delete_repo --scopes tools.read`)}`
    : ''
}
${s.dim('Ports: DEMO_GATEWAY_PORT, DEMO_ADMIN_PORT, DEMO_AS_PORT, DEMO_MCP_PORT (README, "Quick start").')}
Ctrl-C stops everything.`)
}

main().catch((e: unknown) => {
  process.stderr.write(`demo failed: ${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})
