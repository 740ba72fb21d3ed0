/**
 * Legacy 2024-11-05 HTTP+SSE *clients* on an MCP route (`legacyClients: true`, docs/transports.md):
 *
 *   GET  <path>/sse                      opens the client's stream; first event `endpoint`
 *   POST <path>/message?sessionId=<id>   one JSON-RPC message (or batch); 202, answers on the stream
 *
 * Each POST is replayed, in process (`app.inject`), as a Streamable HTTP request to the route's
 * own path with the caller's own Authorization header, so authentication, MCP checks, session
 * binding, policy, limits, the upstream credential and the proxy (or bridge) all run exactly as
 * for any other client; nothing here decides what a message may do. This file owns only what the
 * legacy shape adds: the message id (bound to its caller in the SharedStore, 404 for anyone
 * else, dead once the stream closes) and moving answers from the pipeline onto the stream.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify'
import type { Logger } from 'pino'
import type { Principal } from '../auth/principal.js'
import type { RuntimeRoute } from '../config/load.js'
import { GatewayError } from '../errors.js'
import { methodNotAllowed } from './front.js'
import type { Metrics } from '../observability/metrics.js'
import { SUPPORTED_PROTOCOL_VERSIONS } from '../mcp/protocol.js'
import { callerKey, StreamCounter, streamDeadlineMs } from '../upstream/streams.js'
import type { SessionRegistry } from '../session/binding.js'
import { deliverOnStream, isMessageId, messagesOfJson, negotiatedVersion, newMessageId, SseDecoder, sseEvent } from '../transports/legacy/sse.js'

export interface LegacyClientOptions {
  /** The route's onRequest stages (origin check, address gate, authenticate), in order. */
  onRequest: onRequestHookHandler[]
  sessions: SessionRegistry
  metrics: Metrics
  logger: Logger
  /** Comment line sent on idle streams so proxies and clients see the stream is alive. */
  keepAliveMs?: number
}

/** One open legacy stream: lives on the replica that holds the client's GET. */
interface Channel {
  principal: Principal
  authorization: string
  /** The Streamable HTTP session behind it, from the pipeline's answer to initialize. */
  mcpSessionId: string | undefined
  protocolVersion: string | undefined
  write(event: string, data: string): void
  /** Aborts pipeline requests still in flight when the stream goes away. */
  aborts: AbortController
}

/** SessionRegistry keys are per route name; route names cannot contain '/', so this never collides with one. */
const aliasScope = (route: RuntimeRoute) => `${route.name}/legacy-sse`

const MAX_ERROR_BODY = 64 * 1024
/** A JSON answer is read whole to be split into events; the pipeline has already accepted it. */
const MAX_JSON_ANSWER = 32 * 1024 * 1024

async function readAll(stream: NodeJS.ReadableStream, max: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of stream) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(c as string)
    n += b.length
    if (n > max) throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: 'answer too large to relay' })
    chunks.push(b)
  }
  return Buffer.concat(chunks)
}

const parseJson = (b: Buffer): unknown => {
  try {
    return JSON.parse(b.toString('utf8'))
  } catch {
    return undefined
  }
}

export async function registerLegacyClients(app: FastifyInstance, route: RuntimeRoute, o: LegacyClientOptions): Promise<void> {
  const channels = new Map<string, Channel>()
  const streams = new StreamCounter()
  const scope = aliasScope(route)
  const ssePath = `${route.path}/sse`
  const messagePath = `${route.path}/message`
  const keepAliveMs = o.keepAliveMs ?? 15_000
  // The route lookup in server.ts matches exact MCP paths; these two belong to the route too.
  const bindRoute: onRequestHookHandler = async (request) => {
    request.gw.route = route
  }
  const onRequest = [bindRoute, ...o.onRequest]

  /** The pipeline request for one message, as a Streamable HTTP client of this route would send it. */
  const pipeline = (request: FastifyRequest, ch: Channel, method: 'POST' | 'DELETE', body?: Buffer) => {
    const headers: Record<string, string> = {
      host: request.headers.host ?? '',
      authorization: ch.authorization,
      accept: 'application/json, text/event-stream',
    }
    if (body) headers['content-type'] = 'application/json'
    if (request.headers.origin) headers.origin = request.headers.origin
    const version = typeof request.headers['mcp-protocol-version'] === 'string' ? request.headers['mcp-protocol-version'] : ch.protocolVersion
    if (version) headers['mcp-protocol-version'] = version
    if (ch.mcpSessionId) headers['mcp-session-id'] = ch.mcpSessionId
    return app.inject({ method, url: route.path, headers, ...(body ? { payload: body } : {}), payloadAsStream: true, remoteAddress: request.ip, signal: ch.aborts.signal })
  }

  const deliver = (ch: Channel, message: unknown) => {
    ch.protocolVersion ??= negotiatedVersion(message, SUPPORTED_PROTOCOL_VERSIONS)
    ch.write('message', JSON.stringify(message))
  }

  await app.register(async (s) => {
    s.route({
      method: 'GET',
      url: ssePath,
      exposeHeadRoute: false,
      onRequest,
      handler: async (request, reply) => {
        const principal = request.gw.principal!
        const accept = request.headers.accept ?? ''
        if (!/text\/event-stream|\*\/\*/i.test(accept)) throw new GatewayError('GW_HTTP_NOT_ACCEPTABLE', { detail: 'GET without text/event-stream' })
        const key = callerKey(principal)
        if (!streams.acquire(key, route.streams.maxPerCaller)) throw new GatewayError('GW_HTTP_TOO_MANY_STREAMS', { retryAfter: 5 })
        const id = newMessageId()
        try {
          // Bound before the client can learn the id, in the store every replica reads (LEG-03).
          await o.sessions.record(scope, id, principal)
        } catch (e) {
          streams.release(key)
          throw e
        }
        const res = reply.raw as ServerResponse
        if (res.destroyed) {
          // The client left while the id was being recorded: nothing to serve, nothing to keep.
          streams.release(key)
          await o.sessions.forget(scope, id)
          return reply
        }
        reply.hijack()
        const head: Record<string, string> = { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-request-id': String(request.id) }
        for (const [k, v] of Object.entries(reply.getHeaders())) if (typeof v === 'string') head[k] = v
        res.writeHead(200, head)
        const ch: Channel = {
          principal,
          authorization: request.headers.authorization ?? '',
          mcpSessionId: undefined,
          protocolVersion: undefined,
          aborts: new AbortController(),
          write: (event, data) => {
            if (!res.writableEnded) res.write(sseEvent(event, data))
          },
        }
        channels.set(id, ch)
        o.metrics.activeStreams.inc({ route: route.name })
        // 2024-11-05: the server's first event names the URL to POST to; it is this gateway's, never the upstream's (LEG-02).
        ch.write('endpoint', `${messagePath}?sessionId=${id}`)
        const keepAlive = setInterval(() => {
          if (!res.writableEnded) res.write(': keep-alive\n\n')
        }, keepAliveMs)
        keepAlive.unref()
        // The stream must not outlive the token that opened it (CHL-10); the client reconnects with a fresh one.
        const deadline = setTimeout(() => res.end(), streamDeadlineMs(principal, route.streams.maxDurationMs))
        deadline.unref()
        res.once('close', () => {
          clearInterval(keepAlive)
          clearTimeout(deadline)
          streams.release(key)
          o.metrics.activeStreams.dec({ route: route.name })
          channels.delete(id)
          ch.aborts.abort()
          // No resumability in 2024-11-05: the id dies with its stream, on every replica (LEG-05).
          void o.sessions.forget(scope, id).catch(() => undefined)
          if (ch.mcpSessionId) {
            const end = { ...ch, aborts: new AbortController() }
            pipeline(request, end, 'DELETE').then(
              (r) => r.stream().resume(),
              () => undefined,
            )
          }
        })
      },
    })

    // LEG-06: a Streamable HTTP client trying the legacy URL first must get a 4xx to fall back on.
    s.route({
      method: ['POST', 'DELETE', 'PUT', 'PATCH'],
      url: ssePath,
      handler: methodNotAllowed('GET', 'legacy SSE endpoint: GET only', route),
    })
    s.route({
      method: ['GET', 'DELETE', 'PUT', 'PATCH'],
      url: messagePath,
      exposeHeadRoute: false,
      handler: methodNotAllowed('POST', 'legacy message endpoint: POST only', route),
    })

    s.route({
      method: 'POST',
      url: messagePath,
      bodyLimit: route.bodyLimit,
      onRequest,
      handler: async (request, reply) => {
        const id = (request.query as Record<string, unknown> | undefined)?.sessionId
        // Unknown, malformed and someone else's ids are all the same 404 (ATK-70, LEG-03).
        if (!isMessageId(id)) throw new GatewayError('GW_MCP_SESSION_NOT_FOUND', { detail: 'legacy id malformed or missing' })
        const principal = request.gw.principal!
        const ch = channels.get(id)
        if (ch) {
          // The replica holding the stream checks against the stream's own caller: no store
          // round trip, and no dependence on Redis being up.
          if (callerKey(ch.principal) !== callerKey(principal)) throw new GatewayError('GW_MCP_SESSION_NOT_FOUND', { detail: 'legacy id foreign' })
        } else {
          // Streams live on the replica that holds the GET; another replica has nowhere to answer.
          // The store still tells a foreign id from one held elsewhere, for the log.
          const verdict = await o.sessions.check(scope, id, principal)
          throw new GatewayError('GW_MCP_SESSION_NOT_FOUND', { detail: verdict === 'owner' ? 'legacy stream not on this replica or closed' : `legacy id ${verdict}` })
        }
        const body = request.body
        if (!Buffer.isBuffer(body) || body.length === 0) throw new GatewayError('GW_HTTP_UNSUPPORTED_MEDIA_TYPE', { detail: 'missing JSON body' })
        // Each message carries its own token; the stream's token may have been refreshed since.
        if (request.headers.authorization) ch.authorization = request.headers.authorization

        let res
        try {
          res = await pipeline(request, ch, 'POST', body)
        } catch {
          throw new GatewayError('GW_UPSTREAM_UNAVAILABLE', { detail: 'legacy stream closed during the request' })
        }
        const status = res.statusCode
        const headers = res.headers as IncomingHttpHeaders
        const ct = String(headers['content-type'] ?? '')
        const stream = res.stream()
        stream.on('error', () => undefined)
        const issued = headers['mcp-session-id']
        if (status >= 200 && status < 300 && typeof issued === 'string' && !ch.mcpSessionId) ch.mcpSessionId = issued

        if (status === 200 && ct.startsWith('text/event-stream')) {
          void reply.code(202).send()
          // Answers (and progress, and server requests of this call) go onto the client's stream as they come.
          const decoder = new SseDecoder()
          stream.on('data', (chunk: Buffer) => {
            for (const ev of decoder.push(chunk)) {
              if (ev.event !== 'message') continue
              const m = parseJson(Buffer.from(ev.data))
              if (m !== undefined) deliver(ch, m)
            }
          })
          return reply
        }
        if (status === 202 || (status >= 200 && status < 300 && !ct.startsWith('application/json'))) {
          stream.resume()
          return reply.code(202).send()
        }
        const raw = await readAll(stream, status === 200 ? MAX_JSON_ANSWER : MAX_ERROR_BODY)
        const json = parseJson(raw)
        if (status === 200) {
          if (json === undefined) throw new GatewayError('GW_UPSTREAM_INVALID_RESPONSE', { detail: 'unparseable JSON answer' })
          for (const m of messagesOfJson(json)) deliver(ch, m)
          return reply.code(202).send()
        }
        if (deliverOnStream(status, headers, json)) {
          deliver(ch, json)
          return reply.code(202).send()
        }
        // The pipeline's own HTTP answer (challenge, 429, 400 for a bad body...) is the answer to this POST.
        for (const h of ['www-authenticate', 'retry-after', 'allow', 'content-type', 'cache-control'] as const) {
          const v = headers[h]
          if (typeof v === 'string') reply.header(h, v)
        }
        return reply.code(status).send(raw)
      },
    })
  })
}

/** For server.ts: which routes open the legacy client shape. */
export const servesLegacyClients = (route: RuntimeRoute): boolean => route.kind === 'mcp' && route.legacyClients === true
