/**
 * Batches of audit lines POSTed in the shape a SIEM ingests. A batch counts as delivered only on a
 * 2xx answer (for Elasticsearch, also without item errors other than 409): otherwise it is retried
 * whole, so the receiver may see a batch twice after a timeout. Elasticsearch dedupes by `_id`
 * (chain id and seq); for the other shapes (chain.id, chain.seq) is the deduplication key.
 */
import { Agent, request } from 'undici'
import type { Secret } from '../../config/secrets.js'
import type { Sender } from './sink.js'

export interface HttpSenderOptions {
  url: string
  format: 'json-lines' | 'splunk-hec' | 'elasticsearch-bulk'
  token: Secret | undefined
  index: string | undefined
  ca: string | undefined
  timeoutMs: number
  replica: string
}

const CHAIN = /"chain":\{"replica":(?:"(?:[^"\\]|\\.)*"),"id":"([^"]+)","seq":(\d+)/
const TIME = /^\{"level":\d+,"time":"([^"]+)"/

export function body(format: HttpSenderOptions['format'], lines: readonly string[], o: { index?: string | undefined; replica: string }): string {
  switch (format) {
    case 'json-lines':
      return `${lines.join('\n')}\n`
    case 'splunk-hec': {
      const index = o.index ? `,"index":${JSON.stringify(o.index)}` : ''
      const host = JSON.stringify(o.replica)
      // The event is the line as a string: Splunk keeps it as _raw, byte for byte, so an export verifies.
      return lines
        .map((l) => {
          const t = TIME.exec(l)?.[1]
          const time = t ? `"time":${Date.parse(t) / 1000},` : ''
          return `{${time}"host":${host},"source":"mcp-warden","sourcetype":"_json"${index},"event":${JSON.stringify(l)}}`
        })
        .join('\n')
    }
    case 'elasticsearch-bulk': {
      const index = o.index ? [`"_index":${JSON.stringify(o.index)}`] : []
      return `${lines
        .map((l) => {
          const m = CHAIN.exec(l)
          // create with the chain position as _id: a retried batch cannot index a record twice.
          const meta = [...index, ...(m ? [`"_id":"${m[1]}-${m[2]}"`] : [])].join(',')
          return `{"create":{${meta}}}\n${l}`
        })
        .join('\n')}\n`
    }
  }
}

export class HttpSender implements Sender {
  readonly #o: HttpSenderOptions
  readonly #agent: Agent

  constructor(o: HttpSenderOptions) {
    this.#o = o
    this.#agent = new Agent({ connect: o.ca ? { ca: o.ca } : {}, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs, connectTimeout: o.timeoutMs })
  }

  async send(lines: readonly string[]): Promise<void> {
    const o = this.#o
    const headers: Record<string, string> = { 'content-type': o.format === 'json-lines' ? 'application/x-ndjson' : o.format === 'splunk-hec' ? 'application/json' : 'application/x-ndjson' }
    if (o.token) headers.authorization = `${o.format === 'splunk-hec' ? 'Splunk' : 'Bearer'} ${o.token.reveal()}`
    const res = await request(o.url, { method: 'POST', headers, body: body(o.format, lines, { index: o.index, replica: o.replica }), dispatcher: this.#agent, signal: AbortSignal.timeout(o.timeoutMs) })
    const text = await res.body.text()
    // The status only: an error body could echo the request (and the token's realm).
    if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`HTTP ${res.statusCode}`)
    if (o.format === 'elasticsearch-bulk') {
      const r = JSON.parse(text) as { errors?: boolean; items?: { create?: { status?: number } }[] }
      // 409: created by an earlier attempt of this batch.
      if (r.errors && r.items?.some((i) => (i.create?.status ?? 500) >= 300 && i.create?.status !== 409)) throw new Error('bulk item errors')
    }
  }

  close(): void {
    void this.#agent.close()
  }
}
