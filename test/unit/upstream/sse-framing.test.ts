/**
 * Regression (found by test/integration/fuzz.test.ts): the discovery-filtering SSE rewriter split
 * lines on LF/CRLF only, so `event: message\rdata: {…}` (a lone CR, valid SSE) looked like one
 * non-data line and was relayed unfiltered, while the client's parser read a data field. A leading
 * BOM or a bare `data` field had the same effect. ATK-59.
 */
import { Readable } from 'node:stream'
import { createParser } from 'eventsource-parser'
import { describe, expect, it } from 'vitest'
import { sseRewriter } from '../../../gateway/upstream/response-transform.js'

const LIST = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'search' }, { name: 'delete_repo' }] } })
const drop = (m: unknown) => {
  const r = (m as { result?: { tools?: Array<{ name: string }> } }).result
  if (r?.tools) r.tools = r.tools.filter((t) => t.name !== 'delete_repo')
  return m
}

async function rewrite(chunks: string[]): Promise<string[]> {
  let out = ''
  for await (const c of Readable.from(chunks.map((c) => Buffer.from(c))).pipe(sseRewriter(drop))) out += String(c)
  const data: string[] = []
  const parser = createParser({ onEvent: (e) => data.push(e.data) })
  parser.feed(out)
  return data
}

describe('SSE rewriter framing', () => {
  const cases: Record<string, string[]> = {
    'lone CR between fields': [`event: message\rdata: ${LIST}\r\r`],
    'lone CR line ends, CRLF at the end': [`event: message\rdata: ${LIST}\r\n\r\n`],
    'leading byte-order mark': [`\uFEFFdata: ${LIST}\n\n`],
    'CRLF split across chunks': [`data: ${LIST}\r`, `\n\r`, `\n`],
    'data split over two lines with lone CRs': [`data: ${LIST.slice(0, LIST.indexOf('"result"'))}\rdata: ${LIST.slice(LIST.indexOf('"result"'))}\r\r`],
  }
  for (const [name, chunks] of Object.entries(cases)) {
    it(`ATK-59 / ${name}: what the client reads is filtered`, async () => {
      const data = await rewrite(chunks)
      expect(data.join('\n')).not.toContain('delete_repo')
      expect(data.some((d) => d.includes('"search"'))).toBe(true)
    })
  }
})
