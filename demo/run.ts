/**
 * `npm run demo`: an authorization server, an MCP server with no auth of its own, and
 * mcp-warden in front of it, all on loopback. Shows a scripted round trip, then stays up.
 * Ports: DEMO_GATEWAY_PORT (8080), DEMO_ADMIN_PORT (9090), DEMO_AS_PORT (9400), DEMO_MCP_PORT (9401).
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { loadConfigFile } from '../gateway/config/load.js'
import { createLogger } from '../gateway/observability/logger.js'
import { buildGateway } from '../gateway/server.js'
import { startAuthorizationServer } from './authorization-server.js'
import { startMcpServer } from './mcp-server.js'

const here = dirname(fileURLToPath(import.meta.url))
const port = (name: string, fallback: number) => Number(process.env[name] ?? fallback)
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s)
const step = (s: string) => process.stdout.write(`\n${bold(`▸ ${s}`)}\n`)

async function main(): Promise<void> {
  const gatewayPort = port('DEMO_GATEWAY_PORT', 8080)
  const adminPort = port('DEMO_ADMIN_PORT', 9090)
  const as = await startAuthorizationServer({ port: port('DEMO_AS_PORT', 9400) })
  const upstream = await startMcpServer({ port: port('DEMO_MCP_PORT', 9401), name: 'demo' })
  process.env.DEMO_GATEWAY_PORT = String(gatewayPort)
  process.env.DEMO_ADMIN_PORT = String(adminPort)
  process.env.DEMO_ISSUER = as.issuer
  process.env.DEMO_UPSTREAM = upstream.url
  const { config } = loadConfigFile(join(here, 'gateway.demo.yaml'))
  const logger = createLogger(process.env.DEMO_LOG_LEVEL ?? 'warn')
  const gateway = await buildGateway(config, { logger })
  const { url, adminUrl } = await gateway.start()
  const route = config.routes[0]!
  const mcpUrl = `${url}${route.path}`

  process.stdout.write(`${bold('mcp-warden demo')}
  authorization server  ${as.issuer}
  MCP server (no auth)  ${upstream.url}
  mcp-warden            ${mcpUrl}   (admin ${adminUrl})
`)

  step('1. No token: the gateway answers 401 and points to its metadata')
  const r401 = await fetch(mcpUrl, { method: 'POST', headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' })
  process.stdout.write(`  HTTP ${r401.status}\n  WWW-Authenticate: ${r401.headers.get('www-authenticate')}\n`)

  step('2. Protected-resource metadata (RFC 9728)')
  const prm = await (await fetch(route.metadataUrl)).json()
  process.stdout.write(`  GET ${route.metadataUrl}\n  ${JSON.stringify(prm)}\n`)

  step('3. A short-lived token from the authorization server, for this resource only')
  const token = await as.getToken({ resource: route.resource, scope: 'tools.read', subject: 'alice' })
  const claims = JSON.parse(Buffer.from(token.access_token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>
  process.stdout.write(`  aud=${String(claims.aud)} sub=${String(claims.sub)} client_id=${String(claims.client_id)} scope="${String(claims.scope)}" expires_in=${token.expires_in}s\n`)

  step('4. The MCP SDK client through the gateway: initialize, tools/list (filtered per caller)')
  const client = new Client({ name: 'demo-client', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token.access_token}` } } })
  await client.connect(transport)
  const tools = await client.listTools()
  process.stdout.write(`  tools: ${tools.tools.map((t) => t.name).join(', ')}\n`)
  process.stdout.write(`  (delete_repo is hidden by policies/demo/demo.yaml)\n`)

  step('5. Policy: a denied tool, and a rule on arguments')
  const denied = await client.callTool({ name: 'delete_repo', arguments: { repo: 'prod' } }).catch((e: unknown) => e as Error)
  process.stdout.write(`  delete_repo → ${denied instanceof Error ? denied.message : 'allowed (bug!)'}\n`)
  const small = await client.callTool({ name: 'transfer_funds', arguments: { amount: 10, to: 'bob' } })
  process.stdout.write(`  transfer_funds amount 10 → ${JSON.stringify(small.content)}\n`)
  const large = await client.callTool({ name: 'transfer_funds', arguments: { amount: 10000, to: 'bob' } }).catch((e: unknown) => e as Error)
  process.stdout.write(`  transfer_funds amount 10000 → ${large instanceof Error ? large.message.replace(/"request_id":"[^"]+",?/, '') : 'allowed (bug!)'}\n`)
  process.stdout.write(`  (an OAuth-enabled MCP client re-authorizes with the scope in that 403 challenge and retries)\n`)

  step('6. A streamed tool call')
  const started = Date.now()
  const result = await client.callTool({ name: 'count_slowly', arguments: { n: 3, delayMs: 300 }, _meta: {} }, undefined, {
    onprogress: (p) => process.stdout.write(`  progress ${p.progress}/${p.total ?? '?'} at +${Date.now() - started} ms\n`),
  })
  process.stdout.write(`  result: ${JSON.stringify(result.content)}\n`)
  await client.close()
  process.stdout.write(`  the upstream received the caller's token: ${upstream.sawString(token.access_token) ? 'YES (bug!)' : 'no'}\n`)

  process.stdout.write(`
${bold('The demo stays up. Try it:')}
  TOKEN=${token.access_token}     # valid ${token.expires_in}s
  curl -i -X POST ${mcpUrl} -H "authorization: Bearer $TOKEN" \\
       -H 'accept: application/json, text/event-stream' -H 'content-type: application/json' \\
       -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
  curl -s ${adminUrl}/metrics | grep mcp_warden_requests_total
  npx tsx gateway/cli.ts policy explain --dir policies/demo --route demo --method tools/call --name delete_repo --scopes tools.read
  Edit policies/demo/demo.yaml while the demo runs: it is reloaded (an invalid edit is refused, see the log).
  MCP clients (e.g. MCP Inspector) can connect to ${mcpUrl}; they discover the AS and log in as "alice" automatically.

Ctrl-C stops everything.
`)

  const stop = async () => {
    process.stdout.write('\nstopping…\n')
    await gateway.close().catch(() => undefined)
    await upstream.close().catch(() => undefined)
    await as.close().catch(() => undefined)
    process.exit(0)
  }
  process.once('SIGINT', () => void stop())
  process.once('SIGTERM', () => void stop())
}

main().catch((e: unknown) => {
  process.stderr.write(`demo failed: ${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})
