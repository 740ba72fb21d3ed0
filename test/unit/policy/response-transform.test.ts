import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { listFilter } from '../../../gateway/policy/filter.js'
import { rewriteJsonBody, sseRewriter } from '../../../gateway/upstream/response-transform.js'

const filter = listFilter(new Map<string | number, string>([[2, 'tools/list']]), (_k, name) => name !== 'delete_repo')
const listResult = { jsonrpc: '2.0', id: 2, result: { tools: [{ name: 'search' }, { name: 'delete_repo' }, { name: 7 }, {}] } }

async function collect(chunks: string[]): Promise<string> {
  let out = ''
  for await (const c of Readable.from(chunks.map((c) => Buffer.from(c))).pipe(sseRewriter(filter))) out += String(c)
  return out
}

describe('policy/filter + proxy/response-transform', () => {
  it('POL-09 / JSON: denied and unnamed items dropped, other ids untouched', async () => {
    const body = await rewriteJsonBody(Readable.from([Buffer.from(JSON.stringify(listResult))]), filter)
    expect(JSON.parse(body)).toEqual({ jsonrpc: '2.0', id: 2, result: { tools: [{ name: 'search' }] } })
    const other = { jsonrpc: '2.0', id: 3, result: { tools: [{ name: 'delete_repo' }] } }
    expect(JSON.parse(await rewriteJsonBody(Readable.from([Buffer.from(JSON.stringify(other))]), filter))).toEqual(other)
  })

  it('POL-09 / SSE: events rewritten across arbitrary chunk boundaries; ids and priming events kept', async () => {
    const stream = `id: p1\ndata:\n\nevent: message\nid: e2\ndata: ${JSON.stringify(listResult)}\n\n`
    for (const size of [1, 3, 7, 64, stream.length]) {
      const chunks: string[] = []
      for (let i = 0; i < stream.length; i += size) chunks.push(stream.slice(i, i + size))
      const out = await collect(chunks)
      expect(out).toContain('id: p1\ndata:\n\n')
      expect(out).toContain('event: message\nid: e2\ndata: {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"search"}]}}\n\n')
      expect(out).not.toContain('delete_repo')
    }
  })

  it('fail closed / an unparseable SSE event or JSON body is not relayed', async () => {
    expect(await collect(['data: {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"delete_repo"}\n\n'])).toBe('')
    await expect(rewriteJsonBody(Readable.from([Buffer.from('{"tools":[')]), filter)).rejects.toThrow()
  })

  it('multi-line data and CRLF are one event', async () => {
    const out = await collect([`data: {"jsonrpc":"2.0",\r\ndata: "id":2,"result":{"tools":[{"name":"delete_repo"},{"name":"add"}]}}\r\n\r\n`])
    expect(out).toBe('data: {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"add"}]}}\n\n')
  })
})
