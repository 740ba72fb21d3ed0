/**
 * The plain upstream of the benchmark: a minimal node:http JSON-RPC responder ("direct").
 *   POST /mcp  → one small JSON result echoing the request id
 *   POST /sse  → text/event-stream: SSE_EVENTS progress notifications, then the result
 * Plain JavaScript on purpose: it runs without a TypeScript loader, like the compiled gateway,
 * so its CPU and RSS are not inflated by one.
 *   PORT=8080 SSE_EVENTS=100 node bench/servers/upstream.mjs
 */
import { createServer } from 'node:http'

const port = Number(process.env.PORT ?? 0)
const sseEvents = Number(process.env.SSE_EVENTS ?? 100)

const result = (id) => `{"jsonrpc":"2.0","id":${JSON.stringify(id ?? null)},"result":{"content":[{"type":"text","text":"3 issues found"}],"isError":false}}`

function idOf(body) {
  try {
    return JSON.parse(body).id
  } catch {
    return null
  }
}

const server = createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const id = idOf(Buffer.concat(chunks).toString('utf8'))
    if (req.url === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      // One write per event, as a server reporting progress would; each can become its own segment.
      for (let i = 1; i <= sseEvents; i++) {
        res.write(`event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":${i},"total":${sseEvents}}}\n\n`)
      }
      res.end(`event: message\ndata: ${result(id)}\n\n`)
      return
    }
    const body = result(id)
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
})
server.keepAliveTimeout = 60_000
server.listen(port, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`))
process.on('SIGTERM', () => process.exit(0))
