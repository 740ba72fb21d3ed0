/**
 * A transparent JSON-RPC relay between bridged MCP sessions (downstream, each a Streamable HTTP
 * session of the bridge) and one upstream connection (a stdio child process or a legacy
 * HTTP+SSE connection). It does not implement MCP: messages pass through, except for what a
 * multiplexer must own:
 *
 * - request ids are rewritten to ids unique on the connection (sessions sharing a process all
 *   count from 0), and progress tokens with them, so every response and progress notification
 *   goes back to the session and the SSE stream of the request it belongs to;
 * - `initialize` runs once per connection; later sessions of a shared process get the cached
 *   result, and after a restart the gateway replays the handshake so sessions survive it;
 * - a connection that dies answers every request in flight with a JSON-RPC error at once (no
 *   hang), and is restarted with exponential back-off.
 */
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js'
import type { JSONRPCMessage, JSONRPCNotification, JSONRPCRequest, RequestId } from '@modelcontextprotocol/sdk/types.js'
import type { Logger } from 'pino'
import { ERROR_CATALOGUE } from '../../errors.js'

/** One bridged session, as the relay sees it. */
export interface Downstream {
  readonly id: string
  send(message: JSONRPCMessage, relatedRequestId?: RequestId): Promise<void>
}

export interface ChannelOptions {
  route: string
  /** A new, not yet started, upstream connection. */
  open: () => Transport
  /** One connection for many sessions (stdio `mode: shared`). */
  shared: boolean
  backoffMs: number
  maxBackoffMs: number
  logger: Logger
  /** Errors after which the connection is unusable (e.g. a dropped legacy SSE stream). */
  isFatal?: (error: Error) => boolean
  onRestart?: () => void
  now?: () => number
}

type Pending =
  | { kind: 'client'; down: Downstream; clientId: RequestId; progressToken: unknown }
  | { kind: 'internal'; settle: (response: JSONRPCMessage | undefined) => void }

type State = 'idle' | 'starting' | 'ready' | 'down' | 'closed'

/** A connection that stayed up this long resets the back-off. */
const STABLE_MS = 60_000

const UNAVAILABLE = ERROR_CATALOGUE.GW_UPSTREAM_UNAVAILABLE

const isRequest = (m: JSONRPCMessage): m is JSONRPCRequest => 'method' in m && 'id' in m
const isNotification = (m: JSONRPCMessage): m is JSONRPCNotification => 'method' in m && !('id' in m)
const idKey = (id: RequestId): string => `${typeof id}:${String(id)}`

interface Params {
  _meta?: { progressToken?: unknown; [k: string]: unknown }
  [k: string]: unknown
}

export class Channel {
  readonly #o: ChannelOptions
  readonly #log: Logger
  readonly #now: () => number
  readonly #sessions = new Set<Downstream>()
  readonly #pending = new Map<number, Pending>()
  /** Server → client requests in flight, by upstream id, with the session that must answer. */
  readonly #serverRequests = new Map<string, Downstream>()
  #state: State = 'idle'
  #link: Transport | undefined
  #exited: Promise<void> = Promise.resolve()
  #ready: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  #failures = 0
  #upSince = 0
  #nextId = 1
  #init: { params: unknown; result: unknown } | undefined
  #initializing: Promise<JSONRPCMessage | undefined> | undefined
  #initializedSent = false
  #closing: Promise<void> | undefined

  constructor(options: ChannelOptions) {
    this.#o = options
    this.#log = options.logger
    this.#now = options.now ?? Date.now
  }

  get state(): State {
    return this.#state
  }

  /** The process id of a stdio connection that is running. */
  get pid(): number | undefined {
    const pid = (this.#link as { pid?: number | null } | undefined)?.pid
    return pid ?? undefined
  }

  attach(down: Downstream): void {
    this.#sessions.add(down)
  }

  /** A session ended: its requests still in flight upstream are cancelled. */
  async detach(down: Downstream): Promise<void> {
    this.#sessions.delete(down)
    for (const [id, p] of this.#pending) {
      if (p.kind !== 'client' || p.down !== down) continue
      this.#pending.delete(id)
      await this.#sendUp({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason: 'session closed' } }).catch(() => undefined)
    }
    for (const [k, d] of this.#serverRequests) if (d === down) this.#serverRequests.delete(k)
    if (!this.#o.shared) await this.close()
  }

  async fromClient(down: Downstream, m: JSONRPCMessage): Promise<void> {
    if (isRequest(m)) {
      if (m.method === 'initialize') return this.#initialize(down, m)
      try {
        await this.#ensureReady()
      } catch {
        return this.#fail(down, m.id)
      }
      const id = this.#nextId++
      const params = m.params as Params | undefined
      const progressToken = params?._meta?.progressToken
      this.#pending.set(id, { kind: 'client', down, clientId: m.id, progressToken })
      // The token becomes the upstream id: unique on the connection, and maps back to the request.
      const upParams = progressToken === undefined ? m.params : { ...params, _meta: { ...params!._meta, progressToken: id } }
      try {
        await this.#sendUp({ ...m, id, ...(upParams === undefined ? {} : { params: upParams }) } as JSONRPCMessage)
      } catch {
        if (this.#pending.delete(id)) await this.#fail(down, m.id)
      }
      return
    }
    if (isNotification(m)) {
      if (this.#state !== 'ready') return
      if (m.method === 'notifications/initialized') {
        // The connection was initialized once; repeats from later sessions are the relay's to absorb.
        if (this.#initializedSent) return
        this.#initializedSent = true
      }
      if (m.method === 'notifications/cancelled') {
        const requestId = (m.params as { requestId?: RequestId } | undefined)?.requestId
        const upstreamId = [...this.#pending].find(([, p]) => p.kind === 'client' && p.down === down && p.clientId === requestId)?.[0]
        if (upstreamId === undefined) return
        await this.#sendUp({ ...m, params: { ...m.params, requestId: upstreamId } }).catch(() => undefined)
        return
      }
      await this.#sendUp(m).catch(() => undefined)
      return
    }
    // A response to a server → client request: only the session that was asked may answer.
    const key = idKey((m as { id: RequestId }).id)
    if (this.#serverRequests.get(key) !== down) {
      this.#log.debug({ event: 'bridge.unsolicited-response', session: down.id }, 'response to no request of this session dropped')
      return
    }
    this.#serverRequests.delete(key)
    await this.#sendUp(m).catch(() => undefined)
  }

  /** Stops the connection; every caller waits until the process has exited. */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    this.#state = 'closed'
    clearTimeout(this.#timer)
    const link = this.#link
    this.#link = undefined
    this.#failPending()
    if (link) {
      await link.close().catch(() => undefined)
      await Promise.race([this.#exited, new Promise((r) => setTimeout(r, 5000).unref())])
    }
  }

  async #initialize(down: Downstream, m: JSONRPCRequest): Promise<void> {
    if (!this.#init) {
      this.#initializing ??= this.#firstInitialize(m)
      let response: JSONRPCMessage | undefined
      try {
        response = await this.#initializing
      } finally {
        this.#initializing = undefined
      }
      if (response && 'error' in response) return down.send({ ...response, id: m.id }).catch(() => undefined)
    }
    if (!this.#init) return this.#fail(down, m.id)
    await down.send({ jsonrpc: '2.0', id: m.id, result: this.#init.result as never }).catch(() => undefined)
  }

  async #firstInitialize(m: JSONRPCRequest): Promise<JSONRPCMessage | undefined> {
    try {
      await this.#ensureReady()
    } catch {
      return undefined
    }
    const response = await this.#request('initialize', m.params)
    if (response && 'result' in response) this.#init = { params: m.params, result: response.result }
    return response
  }

  #request(method: string, params: unknown): Promise<JSONRPCMessage | undefined> {
    const id = this.#nextId++
    return new Promise((settle) => {
      this.#pending.set(id, { kind: 'internal', settle })
      this.#sendUp({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params: params as never }) }).catch(() => {
        if (this.#pending.delete(id)) settle(undefined)
      })
    })
  }

  async #ensureReady(): Promise<void> {
    if (this.#state === 'ready') return
    if (this.#state === 'idle') this.#start()
    if (this.#state === 'starting') return this.#ready
    throw new Error(`upstream ${this.#state}`)
  }

  #start(): void {
    this.#state = 'starting'
    const link = this.#o.open()
    this.#link = link
    let exited!: () => void
    this.#exited = new Promise((r) => (exited = r))
    link.onmessage = (m) => this.#fromUpstream(link, m)
    link.onerror = (e) => {
      if (this.#o.isFatal?.(e)) {
        this.#log.warn({ event: 'bridge.upstream-error', err: e.message }, 'upstream connection failed')
        this.#died(link, 'error')
      } else {
        this.#log.debug({ event: 'bridge.upstream-error', err: e.message }, 'upstream transport error')
      }
    }
    link.onclose = () => {
      exited()
      this.#died(link, 'exit')
    }
    this.#ready = (async () => {
      await link.start()
      if (this.#init) {
        // A restarted server knows nothing of the sessions: replay the handshake they made.
        const response = await this.#request('initialize', this.#init.params)
        if (!response || !('result' in response)) throw new Error('re-initialize failed')
        await this.#sendUp({ jsonrpc: '2.0', method: 'notifications/initialized' })
        this.#initializedSent = true
      }
      if (this.#link !== link) throw new Error('upstream gone while starting')
      this.#state = 'ready'
      this.#upSince = this.#now()
      this.#log.info({ event: 'bridge.upstream-ready', pid: this.pid }, 'upstream connected')
    })()
    this.#ready.catch((e: unknown) => {
      this.#log.warn({ event: 'bridge.upstream-start-failed', err: (e as Error).message }, 'upstream failed to start')
      this.#died(link, 'start')
    })
  }

  #died(link: Transport, why: string): void {
    if (this.#link !== link || this.#state === 'closed') return
    this.#link = undefined
    void link.close().catch(() => undefined)
    this.#failPending()
    if (this.#now() - this.#upSince > STABLE_MS) this.#failures = 0
    if (!this.#init) {
      // Nothing to restore: the next request starts a fresh connection.
      this.#state = 'idle'
      this.#initializedSent = false
      return
    }
    this.#state = 'down'
    const delay = Math.min(this.#o.maxBackoffMs, this.#o.backoffMs * 2 ** this.#failures)
    this.#failures++
    this.#log.warn({ event: 'bridge.upstream-down', why, restartInMs: delay, failures: this.#failures }, 'upstream died; restarting after back-off')
    this.#o.onRestart?.()
    this.#timer = setTimeout(() => {
      if (this.#state === 'down') this.#start()
    }, delay)
    this.#timer.unref()
  }

  /** Every request in flight gets a clean JSON-RPC error now, instead of waiting forever. */
  #failPending(): void {
    const pending = [...this.#pending.values()]
    this.#pending.clear()
    this.#serverRequests.clear()
    for (const p of pending) {
      if (p.kind === 'internal') p.settle(undefined)
      else void this.#fail(p.down, p.clientId)
    }
  }

  #fail(down: Downstream, id: RequestId): Promise<void> {
    return down.send({ jsonrpc: '2.0', id, error: { code: UNAVAILABLE.rpcCode, message: UNAVAILABLE.message } }).catch(() => undefined)
  }

  async #sendUp(m: JSONRPCMessage): Promise<void> {
    if (!this.#link) throw new Error('no upstream connection')
    await this.#link.send(m)
  }

  #fromUpstream(link: Transport, m: JSONRPCMessage): void {
    if (link !== this.#link) return
    if (isRequest(m)) return this.#serverRequest(m)
    if (isNotification(m)) return this.#notification(m)
    const id = (m as { id: RequestId }).id
    const p = typeof id === 'number' ? this.#pending.get(id) : undefined
    if (!p) return
    this.#pending.delete(id as number)
    if (p.kind === 'internal') return p.settle(m)
    void p.down.send({ ...m, id: p.clientId } as JSONRPCMessage).catch(() => undefined)
  }

  #serverRequest(m: JSONRPCRequest): void {
    const down = this.#o.shared ? undefined : [...this.#sessions][0]
    if (!down) {
      // With one process for many callers there is no caller to ask; refusing cannot leak.
      void this.#sendUp({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'Server-initiated requests are not relayed for this upstream' } }).catch(() => undefined)
      return
    }
    this.#serverRequests.set(idKey(m.id), down)
    void down.send(m, this.#soleRequest(down)).catch(() => undefined)
  }

  #notification(m: JSONRPCNotification): void {
    const params = m.params as Record<string, unknown> | undefined
    if (m.method === 'notifications/progress') {
      const token = params?.progressToken
      const p = typeof token === 'number' ? this.#pending.get(token) : undefined
      if (p?.kind !== 'client') return
      void p.down.send({ ...m, params: { ...params, progressToken: p.progressToken } } as JSONRPCMessage, p.clientId).catch(() => undefined)
      return
    }
    if (m.method === 'notifications/cancelled') {
      const down = this.#serverRequests.get(idKey(params?.requestId as RequestId))
      if (down) void down.send(m).catch(() => undefined)
      return
    }
    if (this.#o.shared) {
      // Change notifications concern everyone; anything else (logs, resource updates) may be
      // about one caller's work and must not reach the others.
      if (m.method.endsWith('/list_changed')) for (const down of this.#sessions) void down.send(m).catch(() => undefined)
      return
    }
    const down = [...this.#sessions][0]
    if (down) void down.send(m, this.#soleRequest(down)).catch(() => undefined)
  }

  /** The one request a session has in flight, if exactly one: where stdio's unrelated messages belong. */
  #soleRequest(down: Downstream): RequestId | undefined {
    let found: RequestId | undefined
    let n = 0
    for (const p of this.#pending.values()) {
      if (p.kind === 'client' && p.down === down) {
        found = p.clientId
        n++
      }
    }
    return n === 1 ? found : undefined
  }
}
