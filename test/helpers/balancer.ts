/**
 * A small loopback HTTP load balancer: round robin per request (not per connection, so one SDK
 * client's requests spread over every replica), bodies and SSE responses streamed both ways.
 * A backend that refuses the connection (nothing was sent) is skipped and the request goes to the
 * next one, as a real balancer with health checks would; a backend that dies with the request
 * under way makes that request fail (502 or a cut stream). It counts requests in flight per
 * backend so a test can compare failures with what the dead replica was holding.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export interface Backend {
  port: number
  /** Requests currently forwarded to it (streams included). */
  inFlight: number
  /** POST requests currently forwarded to it. */
  postsInFlight: number
  served: number
  /** POST requests it accepted and then lost (error or cut response): what a crash costs. */
  lostPosts: number
  /** Skipped until this time after a refused connection. */
  downUntil: number
}

export interface Balancer {
  url: string
  port: number
  backends: Backend[]
  /** Requests that failed at the balancer after a backend accepted them. */
  failedAfterSend: number
  close(): Promise<void>
}

export async function startBalancer(backendPorts: number[], port = 0): Promise<Balancer> {
  const backends: Backend[] = backendPorts.map((p) => ({ port: p, inFlight: 0, postsInFlight: 0, served: 0, lostPosts: 0, downUntil: 0 }))
  let next = 0
  const sockets = new Set<Socket>()
  const lb: Balancer = { url: '', port: 0, backends, failedAfterSend: 0, close: async () => undefined }

  function forward(req: IncomingMessage, res: ServerResponse, body: Buffer, attempt: number): void {
    const now = Date.now()
    let b: Backend | undefined
    for (let i = 0; i < backends.length; i++) {
      const cand = backends[next++ % backends.length]!
      if (cand.downUntil <= now) {
        b = cand
        break
      }
    }
    if (!b || attempt > backends.length) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('no backend')
      return
    }
    const backend = b
    const post = req.method === 'POST'
    let counted = false
    const lost = () => {
      if (counted && post) backend.lostPosts++
    }
    const done = () => {
      if (!counted) return
      counted = false
      backend.inFlight--
      if (post) backend.postsInFlight--
    }
    const up = httpRequest({ host: '127.0.0.1', port: backend.port, method: req.method, path: req.url, headers: req.headers, agent: false })
    up.once('socket', (s: Socket) => {
      s.once('connect', () => {
        counted = true
        backend.inFlight++
        backend.served++
        if (post) backend.postsInFlight++
      })
    })
    up.on('response', (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers)
      if (typeof (res as ServerResponse & { flushHeaders?: () => void }).flushHeaders === 'function') res.flushHeaders()
      ur.pipe(res)
      ur.once('close', done)
      ur.once('aborted', () => {
        lost()
        res.destroy()
      })
      ur.once('error', () => {
        lost()
        res.destroy()
      })
    })
    up.on('error', (e: NodeJS.ErrnoException) => {
      if (!counted && e.code === 'ECONNREFUSED') {
        backend.downUntil = Date.now() + 1_000
        forward(req, res, body, attempt + 1)
        return
      }
      lost()
      done()
      lb.failedAfterSend++
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end('backend failed')
      else res.destroy()
    })
    res.once('close', () => {
      if (!res.writableFinished) up.destroy()
    })
    up.end(body)
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => forward(req, res, Buffer.concat(chunks), 1))
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  lb.port = (server.address() as AddressInfo).port
  lb.url = `http://127.0.0.1:${lb.port}`
  lb.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
  return lb
}
