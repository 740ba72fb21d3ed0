/**
 * A bridge makes an upstream that does not speak Streamable HTTP (stdio program, legacy HTTP+SSE
 * server) look like one, so the gateway pipeline (auth, MCP checks, session binding, policy,
 * credentials, proxy) applies to it unchanged. It listens on a private loopback port that only
 * the gateway can use: every request must carry a random per-bridge key the proxy adds.
 * Each Streamable HTTP session is the SDK's own server transport, wired message for message to a
 * relay `Channel` (one per session, or one shared by all sessions of the route).
 */
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { RuntimeRoute } from '../../config/load.js'
import { sseIsFatal, sseLink, stdioLink } from './links.js'
import { Channel, type Downstream } from './relay.js'

export const BRIDGE_KEY_HEADER = 'x-mcp-warden-bridge'

export interface BridgeTarget {
  url: string
  /** Added by the proxy to every request toward the bridge. */
  headers: Record<string, string>
}

export interface BridgeHooks {
  onRestart?: () => void
  onSessions?: (open: number) => void
}

interface Session extends Downstream {
  transport: StreamableHTTPServerTransport
  channel: Channel
  lastSeen: number
  active: number
  /** Latest credential the gateway attached (legacy upstreams that take one). */
  credential: string | undefined
}

export class Bridge {
  readonly #route: RuntimeRoute
  readonly #log: Logger
  readonly #hooks: BridgeHooks
  readonly #key = randomBytes(32).toString('base64url')
  readonly #sessions = new Map<string, Session>()
  readonly #http = createServer((req, res) => {
    this.#handle(req, res).catch((e: unknown) => {
      this.#log.error({ event: 'bridge.error', err: (e as Error).message }, 'bridge request failed')
      rpcError(res, 500, -32603, 'Internal error')
    })
  })
  #shared: Channel | undefined
  #sweep: NodeJS.Timeout | undefined
  #url = ''

  constructor(route: RuntimeRoute, logger: Logger, hooks: BridgeHooks = {}) {
    this.#route = route
    this.#log = logger.child({ route: route.name, component: 'bridge', upstream: route.upstream.kind })
    this.#hooks = hooks
    if (route.upstream.stdio?.mode === 'shared') this.#shared = this.#channel(() => undefined)
  }

  async listen(): Promise<BridgeTarget> {
    await new Promise<void>((resolve, reject) => {
      this.#http.once('error', reject)
      this.#http.listen(0, '127.0.0.1', () => resolve())
    })
    this.#url = `http://127.0.0.1:${(this.#http.address() as AddressInfo).port}/mcp`
    const every = Math.max(1000, Math.min(30_000, this.#route.upstream.sessionIdleMs / 4))
    this.#sweep = setInterval(() => this.#closeIdle(), every)
    this.#sweep.unref()
    return { url: this.#url, headers: { [BRIDGE_KEY_HEADER]: this.#key } }
  }

  /** Process ids of the stdio programs running now. */
  pids(): number[] {
    const channels = this.#shared ? [this.#shared] : [...this.#sessions.values()].map((s) => s.channel)
    return channels.map((c) => c.pid).filter((p): p is number => p !== undefined)
  }

  /** The private loopback URL (tests prove it refuses anyone but the gateway). */
  get url(): string {
    return this.#url
  }

  get sessions(): number {
    return this.#sessions.size
  }

  /** Ends every session and stops every process; resolves when they have exited. */
  async close(): Promise<void> {
    clearInterval(this.#sweep)
    const open = [...this.#sessions.values()]
    this.#sessions.clear()
    await Promise.allSettled([...open.map((s) => s.transport.close()), ...open.map((s) => s.channel.close()), this.#shared?.close()])
    this.#http.closeAllConnections()
    await new Promise<void>((resolve) => this.#http.close(() => resolve()))
  }

  #channel(credential: () => string | undefined): Channel {
    const u = this.#route.upstream
    const stdio = u.stdio
    return new Channel({
      route: this.#route.name,
      open: stdio ? stdioLink(stdio, this.#log) : sseLink(u.url, credential),
      shared: stdio?.mode === 'shared',
      backoffMs: stdio?.backoffMs ?? 500,
      maxBackoffMs: stdio?.maxBackoffMs ?? 30_000,
      logger: this.#log,
      ...(stdio ? {} : { isFatal: sseIsFatal }),
      ...(this.#hooks.onRestart ? { onRestart: this.#hooks.onRestart } : {}),
    })
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const key = req.headers[BRIDGE_KEY_HEADER]
    if (typeof key !== 'string' || key.length !== this.#key.length || !timingSafeEqual(Buffer.from(key), Buffer.from(this.#key))) {
      rpcError(res, 403, -32600, 'Forbidden')
      return
    }
    const body = req.method === 'POST' ? await readJson(req) : undefined
    if (body === INVALID) {
      rpcError(res, 400, -32700, 'Parse error')
      return
    }
    const sid = req.headers['mcp-session-id']
    let session = typeof sid === 'string' ? this.#sessions.get(sid) : undefined
    if (sid !== undefined && !session) {
      rpcError(res, 404, -32001, 'Session not found')
      return
    }
    if (!session) {
      if (!isInitialize(body)) {
        rpcError(res, 400, -32000, 'Bad Request: no valid session ID provided')
        return
      }
      if (this.#sessions.size >= this.#route.upstream.maxSessions) {
        rpcError(res, 503, -32603, 'Too many sessions')
        return
      }
      session = await this.#open()
    }
    const s = session
    s.lastSeen = Date.now()
    s.active++
    res.once('close', () => {
      s.active--
      s.lastSeen = Date.now()
    })
    const auth = req.headers.authorization
    if (typeof auth === 'string') s.credential = auth
    await s.transport.handleRequest(req, res, body)
  }

  async #open(): Promise<Session> {
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        this.#sessions.set(id, session)
        this.#hooks.onSessions?.(this.#sessions.size)
      },
    })
    const session: Session = {
      id: '',
      transport,
      channel: undefined as never,
      lastSeen: Date.now(),
      active: 0,
      credential: undefined,
      send: (m: JSONRPCMessage, relatedRequestId) => transport.send(m, relatedRequestId === undefined ? undefined : { relatedRequestId }),
    }
    session.channel = this.#shared ?? this.#channel(() => session.credential)
    Object.defineProperty(session, 'id', { get: () => transport.sessionId ?? '' })
    session.channel.attach(session)
    transport.onmessage = (m) => {
      void session.channel.fromClient(session, m)
    }
    transport.onclose = () => {
      if (transport.sessionId) this.#sessions.delete(transport.sessionId)
      this.#hooks.onSessions?.(this.#sessions.size)
      void session.channel.detach(session)
    }
    await transport.start()
    return session
  }

  #closeIdle(): void {
    const limit = Date.now() - this.#route.upstream.sessionIdleMs
    for (const s of this.#sessions.values()) {
      if (s.active === 0 && s.lastSeen < limit) {
        this.#log.info({ event: 'bridge.session-idle' }, 'idle bridged session closed')
        void s.transport.close()
      }
    }
  }
}

const INVALID = Symbol('invalid')

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
  } catch {
    return INVALID
  }
}

const isInitialize = (body: unknown): boolean =>
  typeof body === 'object' && body !== null && !Array.isArray(body) && (body as { method?: unknown }).method === 'initialize' && 'id' in body

function rpcError(res: ServerResponse, status: number, code: number, message: string): void {
  if (res.headersSent) return
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }))
}
