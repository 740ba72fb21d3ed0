/**
 * A tiny HTTP peer the test controls: the attacker's server (counting every request it gets),
 * a JWKS host that can fail on demand, or a misbehaving upstream. Protocol peers that must
 * misbehave are the one place where a hand-written server is the right tool.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export type PeerHandler = (req: IncomingMessage, res: ServerResponse, body: string) => void | Promise<void>

export interface Peer {
  url: string
  /** Every request received, by path (query included). */
  hits: string[]
  count(pathPrefix?: string): number
  /** Replace the handler for later requests. */
  handle(h: PeerHandler): void
  close(): Promise<void>
}

export async function startPeer(initial: PeerHandler = (_q, r) => void r.writeHead(404).end()): Promise<Peer> {
  let handler = initial
  const hits: string[] = []
  const sockets = new Set<Socket>()
  const server: Server = createServer((req, res) => {
    hits.push(req.url ?? '')
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      Promise.resolve(handler(req, res, Buffer.concat(chunks).toString('utf8'))).catch(() => res.destroy())
    })
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    count: (prefix = '/') => hits.filter((h) => h.startsWith(prefix)).length,
    handle(h) {
      handler = h
    },
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

export const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body))
}
