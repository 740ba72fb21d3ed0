/**
 * A real MCP SDK upstream (stateless Streamable HTTP, the demo tools) whose behaviour a test can
 * switch at run time to inject faults: slow answers, garbage, a connection killed in the middle of
 * an SSE response. It records every tool call it actually executed, with the identity headers the
 * gateway sent, so a test can compare what ran with what policy allowed (differential check).
 * Optionally served over TLS (self-signed CA from test/helpers/tls.ts).
 */
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttps } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { buildServer } from '../../demo/mcp-server.js'

export type FaultMode =
  | 'normal'
  /** Headers only after `slowMs`. */
  | 'slow'
  /** 200 application/json whose body is not JSON. */
  | 'garbage'
  /** 200 text/event-stream with a broken frame, then the socket is destroyed. */
  | 'kill-mid-stream'
  /** The socket is destroyed before any byte is written. */
  | 'reset'
  /** 200 with `scriptType` and the raw bytes of `script` (framing fuzz). */
  | 'script'

export interface Execution {
  tool: string
  arguments: unknown
  /** The x-mcp-* identity headers the gateway set for this call. */
  identity: Record<string, string>
}

export interface FaultyUpstream {
  url: string
  port: number
  mode: FaultMode
  slowMs: number
  script: string | Buffer
  scriptType: string
  executions: Execution[]
  /** Requests whose client went away before the upstream answered (abort propagation). */
  aborted: number
  /** Requests currently being handled. */
  inFlight(): number
  close(): Promise<void>
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

export async function startFaultyUpstream(o: { tls?: { key: string; cert: string } } = {}): Promise<FaultyUpstream> {
  const sockets = new Set<Socket>()
  let inFlight = 0
  const up: FaultyUpstream = {
    url: '',
    port: 0,
    mode: 'normal',
    slowMs: 2_000,
    script: '',
    scriptType: 'text/event-stream',
    executions: [],
    aborted: 0,
    inFlight: () => inFlight,
    close: async () => undefined,
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req)
    const mode = up.mode
    if (mode === 'reset') {
      req.socket.destroy()
      return
    }
    if (mode === 'slow') {
      const gone = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), up.slowMs)
        res.once('close', () => {
          clearTimeout(t)
          resolve(!res.writableEnded)
        })
      })
      if (gone) {
        up.aborted++
        return
      }
    }
    if (mode === 'script') {
      res.writeHead(200, { 'content-type': up.scriptType }).end(up.script)
      return
    }
    if (mode === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":')
      return
    }
    if (mode === 'kill-mid-stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}\n\n')
      res.write('event: message\ndata: {"jsonrpc":"2.0","id":')
      setTimeout(() => req.socket.destroy(), 50)
      return
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end()
      return
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(body)
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}')
      return
    }
    const identity: Record<string, string> = {}
    for (const [k, v] of Object.entries(req.headers)) if (k.startsWith('x-mcp-') && typeof v === 'string') identity[k] = v
    for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
      const msg = m as { method?: unknown; params?: { name?: unknown; arguments?: unknown } }
      if (msg && msg.method === 'tools/call') up.executions.push({ tool: String(msg.params?.name), arguments: msg.params?.arguments, identity })
    }
    const server = buildServer('faulty')
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined })
    res.on('close', () => {
      void transport.close()
      void server.close()
    })
    await server.connect(transport)
    await transport.handleRequest(req, res, parsed)
  }

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    inFlight++
    res.once('close', () => inFlight--)
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end()
    })
  }
  const server: Server = o.tls ? createHttps({ key: o.tls.key, cert: o.tls.cert }, listener) : createHttp(listener)
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  up.port = (server.address() as AddressInfo).port
  up.url = `${o.tls ? 'https' : 'http'}://127.0.0.1:${up.port}/mcp`
  up.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
  return up
}
