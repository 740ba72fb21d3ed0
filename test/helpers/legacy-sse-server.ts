/**
 * A legacy (2024-11-05) HTTP+SSE MCP server built with the SDK's SSEServerTransport and the demo
 * tools: GET /sse opens the stream and announces `/messages?sessionId=…`, clients POST there.
 * It records every request so tests can prove what reached it.
 */
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildServer } from '../../demo/mcp-server.js'

export interface LegacySseServer {
  /** The SSE endpoint. */
  url: string
  requests: { method: string; url: string; headers: IncomingMessage['headers'] }[]
  readonly openStreams: number
  /** Ends every open SSE stream (as a server restart or network cut would). */
  dropStreams(): void
  close(): Promise<void>
}

export async function startLegacySseServer(name = 'legacy'): Promise<LegacySseServer> {
  const transports = new Map<string, SSEServerTransport>()
  const requests: LegacySseServer['requests'] = []
  const http = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } })
    const url = new URL(req.url ?? '/', 'http://x')
    if (req.method === 'GET' && url.pathname === '/sse') {
      const transport = new SSEServerTransport('/messages', res)
      transports.set(transport.sessionId, transport)
      res.on('close', () => transports.delete(transport.sessionId))
      void buildServer(name).connect(transport)
      return
    }
    const transport = req.method === 'POST' && url.pathname === '/messages' ? transports.get(url.searchParams.get('sessionId') ?? '') : undefined
    if (!transport) {
      res.writeHead(404).end('unknown session')
      return
    }
    void transport.handlePostMessage(req, res)
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  const port = (http.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}/sse`,
    requests,
    get openStreams() {
      return transports.size
    },
    dropStreams() {
      http.closeAllConnections()
    },
    async close() {
      await Promise.allSettled([...transports.values()].map((t) => t.close()))
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    },
  }
}
