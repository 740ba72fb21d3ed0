/**
 * The "bare proxy" of the benchmark: Fastify + @fastify/reply-from forwarding to the upstream with
 * no security at all, and the same undici pool settings as gateway/proxy/plugin.ts. The gap
 * between this and the gateway is what the security work costs; the gap between this and the
 * upstream is what the framework and HTTP client cost.
 *   PORT=8081 UPSTREAM=http://127.0.0.1:8080 node bench/servers/bare-proxy.mjs
 */
import replyFrom from '@fastify/reply-from'
import Fastify from 'fastify'

const port = Number(process.env.PORT ?? 0)
const upstream = process.env.UPSTREAM
if (!upstream) throw new Error('UPSTREAM is required')

const app = Fastify({ logger: false })
// Bodies are buffered and forwarded as the bytes received, never parsed: the same forwarding call
// as the gateway's (which also parses them), minus every check.
app.removeAllContentTypeParsers()
app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))
await app.register(replyFrom, {
  base: upstream,
  // Keep in step with gateway/proxy/plugin.ts (route defaults: 64 connections, 60s, 5m).
  undici: { connections: 64, pipelining: 1, headersTimeout: 60_000, bodyTimeout: 300_000, keepAliveTimeout: 30_000 },
  disableRequestLogging: true,
})
app.post('/mcp/bench', (request, reply) => reply.from('/mcp', { body: request.body, contentType: 'application/json' }))
app.post('/mcp/sse', (request, reply) => reply.from('/sse', { body: request.body, contentType: 'application/json' }))
await app.listen({ host: '127.0.0.1', port })
process.stdout.write(`${JSON.stringify({ port: app.server.address().port })}\n`)
process.on('SIGTERM', () => app.close().then(() => process.exit(0)))
