/**
 * The demo exactly as `npm run demo` builds it: demo/gateway.demo.yaml with its shipped policy
 * (policies/demo), the demo AS and the demo MCP server, on free loopback ports. Tests of real
 * third-party clients run against this, so what they prove is what a new user gets.
 */
import { join } from 'node:path'
import { startAuthorizationServer, type AuthorizationServer } from '../../demo/authorization-server.js'
import { startMcpServer, type McpUpstream } from '../../demo/mcp-server.js'
import { loadConfigFile } from '../../gateway/config/load.js'
import { createLogger } from '../../gateway/observability/logger.js'
import { buildGateway } from '../../gateway/server.js'
import { freePort } from './ports.js'

export const DEMO_CONFIG = join(import.meta.dirname, '..', '..', 'demo', 'gateway.demo.yaml')

export interface Demo {
  /** The MCP URL of the demo route, e.g. http://127.0.0.1:PORT/mcp/demo. */
  mcpUrl: string
  /** The route's resource identifier (the audience a token must have). */
  resource: string
  as: AuthorizationServer
  upstream: McpUpstream
  close(): Promise<void>
}

export async function startDemo(): Promise<Demo> {
  const [as, upstream, gatewayPort, adminPort] = await Promise.all([startAuthorizationServer(), startMcpServer({ name: 'demo' }), freePort(), freePort()])
  Object.assign(process.env, { DEMO_GATEWAY_PORT: String(gatewayPort), DEMO_ADMIN_PORT: String(adminPort), DEMO_ISSUER: as.issuer, DEMO_UPSTREAM: upstream.url })
  const { config } = loadConfigFile(DEMO_CONFIG)
  const gateway = await buildGateway(config, { logger: createLogger(process.env.MCPW_TEST_LOG_LEVEL ?? 'silent') })
  const { url } = await gateway.start()
  const route = config.routes[0]!
  return {
    mcpUrl: `${url}${route.path}`,
    resource: route.resource,
    as,
    upstream,
    async close() {
      await gateway.close()
      await Promise.all([as.close(), upstream.close()])
    },
  }
}
