/**
 * The second leg's real parts: a plain HTTP API that records every credential it receives, and
 * an MCP server (MCP SDK, Streamable HTTP, stateless) whose tool calls that API through
 * mcp-warden's egress listener, carrying the token it received for itself as the bearer and
 * propagating `traceparent` and the inbound `x-request-id`. The MCP server holds no credential
 * of its own.
 */
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { z } from 'zod'

export interface ApiRequest {
  method: string
  url: string
  headers: Record<string, string | string[] | undefined>
  bodyLength: number
  bodyDigest: string
}

export interface RecordingApi {
  /** http://127.0.0.1:port (no path). */
  url: string
  port: number
  requests: ApiRequest[]
  reset(): void
  /** True if the needle occurs in any recorded URL or header value. */
  sawString(needle: string): boolean
  close(): Promise<void>
}

const listen = async (server: Server): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

const closeServer = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })

/**
 * `GET …/orders` answers JSON naming the bearer it saw; `POST …/echo` streams the body back with
 * its content type; `GET …/stream` sends three chunks 30 ms apart; anything else answers its path.
 */
export async function startRecordingApi(): Promise<RecordingApi> {
  const requests: ApiRequest[] = []
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers }, bodyLength: body.length, bodyDigest: createHash('sha256').update(body).digest('hex') })
      const path = (req.url ?? '/').split('?')[0]!
      if (path.endsWith('/echo')) {
        res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/octet-stream', 'x-body-sha256': createHash('sha256').update(body).digest('hex') })
        return res.end(body)
      }
      if (path.endsWith('/stream')) {
        res.writeHead(200, { 'content-type': 'text/plain' })
        let n = 0
        const tick = setInterval(() => {
          res.write(`chunk ${++n}\n`)
          if (n === 3) {
            clearInterval(tick)
            res.end()
          }
        }, 30)
        return
      }
      if (path.endsWith('/deny')) return res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end()
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ path, query: (req.url ?? '').split('?')[1] ?? '', orders: [{ id: 7 }], authorization: req.headers.authorization ?? null }))
    })
  })
  const port = await listen(server)
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    reset: () => void (requests.length = 0),
    sawString: (needle) => requests.some((r) => r.url.includes(needle) || Object.values(r.headers).some((v) => String(v).includes(needle))),
    close: () => closeServer(server),
  }
}

export interface OrdersMcpServer {
  url: string
  /** Every Authorization value the MCP server itself received. */
  inboundAuthorizations: string[]
  close(): Promise<void>
}

/**
 * An MCP server with one tool, `call_api { path, method? }`: it calls `<egressUrl><path>` with the
 * bearer token of the request it is serving, and returns `{ status, body }` as JSON text.
 */
export async function startOrdersMcpServer(o: { egressUrl: () => string }): Promise<OrdersMcpServer> {
  const inboundAuthorizations: string[] = []
  const build = () => {
    const server = new McpServer({ name: 'orders-mcp', version: '1.0.0' })
    server.registerTool(
      'call_api',
      { description: 'Call the orders API through the egress listener', inputSchema: { path: z.string(), method: z.string().optional() } },
      async ({ path, method }, extra) => {
        const h = extra.requestInfo?.headers ?? {}
        const one = (name: string) => (Array.isArray(h[name]) ? (h[name] as string[])[0] : (h[name] as string | undefined))
        const headers: Record<string, string> = {}
        for (const name of ['authorization', 'traceparent', 'x-request-id']) {
          const v = one(name)
          if (v) headers[name] = v
        }
        const res = await fetch(`${o.egressUrl()}${path}`, { method: method ?? 'GET', headers, redirect: 'manual' })
        const body = await res.text()
        return { content: [{ type: 'text' as const, text: JSON.stringify({ status: res.status, body }) }] }
      },
    )
    return server
  }
  const http = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (req.headers.authorization) inboundAuthorizations.push(req.headers.authorization)
      if (req.method !== 'POST') return void res.writeHead(405, { allow: 'POST' }).end()
      const server = build()
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined })
      res.on('close', () => {
        void transport.close()
        void server.close()
      })
      void server
        .connect(transport)
        .then(() => transport.handleRequest(req, res, JSON.parse(Buffer.concat(chunks).toString('utf8'))))
        .catch(() => res.headersSent || res.writeHead(500).end())
    })
  })
  const port = await listen(http)
  return { url: `http://127.0.0.1:${port}/mcp`, inboundAuthorizations, close: () => closeServer(http) }
}
