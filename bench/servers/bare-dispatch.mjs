/**
 * A second bare proxy: Fastify forwarding with undici's raw dispatch(), the way the gateway's MCP
 * routes forward (gateway/proxy/dispatch.ts), and no checks at all. The gateway ÷ this is what the
 * security stages cost on the same forwarding path; bare-proxy.mjs (reply-from) is the
 * straightforward Fastify proxy the issue compares against.
 *   PORT=8082 UPSTREAM=http://127.0.0.1:8080 node bench/servers/bare-dispatch.mjs
 */
import Fastify from 'fastify'
import { Pool } from 'undici'

const port = Number(process.env.PORT ?? 0)
const upstream = process.env.UPSTREAM
if (!upstream) throw new Error('UPSTREAM is required')

const pool = new Pool(upstream, { connections: 64, pipelining: 1, headersTimeout: 60_000, bodyTimeout: 300_000, keepAliveTimeout: 30_000 })
const app = Fastify({ logger: false })
app.removeAllContentTypeParsers()
app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-connection'])
function forward(path) {
  return (request, reply) => {
    const res = reply.raw
    const body = request.body
    pool.dispatch(
      { path, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(body.length), accept: String(request.headers.accept ?? '') }, body },
      {
        onRequestStart() {},
        onResponseStart(_c, status, headers) {
          if (status < 200) return
          reply.hijack()
          const out = {}
          for (const k of Object.keys(headers)) if (!HOP.has(k)) out[k] = headers[k]
          res.writeHead(status, out)
        },
        onResponseData(c, chunk) {
          if (!res.write(chunk)) {
            c.pause()
            res.once('drain', () => c.resume())
          }
        },
        onResponseEnd() {
          res.end()
        },
        onResponseError(_c, err) {
          if (res.headersSent) res.destroy()
          else reply.code(502).send({ error: String(err.code ?? 'upstream error') })
        },
      },
    )
    return reply
  }
}
app.post('/mcp/bench', forward('/mcp'))
app.post('/mcp/sse', forward('/sse'))
await app.listen({ host: '127.0.0.1', port })
process.stdout.write(`${JSON.stringify({ port: app.server.address().port })}\n`)
process.on('SIGTERM', () => app.close().then(() => pool.close()).then(() => process.exit(0)))
