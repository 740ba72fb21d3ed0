/**
 * Rewriting upstream responses message by message, for the few responses that must change
 * (discovery filtering). JSON bodies are buffered (bounded) and re-serialised; SSE streams are
 * rewritten event by event as they arrive, so streaming is kept. Anything that cannot be parsed
 * is not forwarded: a response we were asked to filter is never relayed unfiltered.
 */
import type { Readable } from 'node:stream'
import { Transform } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'

export type MessageTransform = (message: unknown) => unknown

/** Largest JSON response body rewritten in memory. */
export const MAX_REWRITTEN_BODY = 16 * 1024 * 1024

export async function rewriteJsonBody(stream: Readable, transform: MessageTransform, maxBytes = MAX_REWRITTEN_BODY): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    size += (chunk as Buffer).length
    if (size > maxBytes) {
      stream.destroy()
      throw new Error('response too large to rewrite')
    }
    chunks.push(chunk as Buffer)
  }
  return JSON.stringify(transform(JSON.parse(Buffer.concat(chunks).toString('utf8'))))
}

/** An SSE (text/event-stream) rewriter: each event's `data` is one JSON-RPC message. */
export function sseRewriter(transform: MessageTransform): Transform {
  const decoder = new StringDecoder('utf8')
  let pending = ''
  let started = false
  let event: string[] = []
  const flushEvent = (): string => {
    // Only fields a client acts on are kept, so what we inspect is what it will read: a line we
    // would not classify the way an EventSource parser does (e.g. `data` without a colon) never
    // passes unexamined. Unknown fields are ignored by clients anyway (WHATWG SSE §9.2.6).
    const lines = event.filter((l) => l.startsWith(':') || /^(event|id|retry):/.test(l) || l.startsWith('data:'))
    if (event.some((l) => l === 'data')) lines.push('data:')
    event = []
    const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
    if (data.length === 0 || data.join('') === '') return `${lines.join('\n')}\n\n`
    let rewritten: string
    try {
      rewritten = JSON.stringify(transform(JSON.parse(data.join('\n'))))
    } catch {
      return ''
    }
    const out: string[] = []
    let placed = false
    for (const l of lines) {
      if (!l.startsWith('data:')) out.push(l)
      else if (!placed) {
        out.push(`data: ${rewritten}`)
        placed = true
      }
    }
    return `${out.join('\n')}\n\n`
  }
  const consume = (text: string, final: boolean): string => {
    // A byte-order mark at the start is dropped by clients; it must not hide the first field from us.
    pending += started ? text : text.replace(/^\uFEFF/, '')
    if (text !== '') started = true
    let out = ''
    // Lines end in LF, CRLF or a lone CR, exactly as a client splits them: a lone CR must not hide
    // a second field (`event: x\rdata: …`) inside what we would take for one line. A CR at the end
    // of a chunk may be half of a CRLF, so it waits for the next chunk.
    const held = !final && pending.endsWith('\r')
    const parts = (held ? pending.slice(0, -1) : pending).split(/\r\n|\r|\n/)
    pending = parts.pop()! + (held ? '\r' : '')
    if (final && pending !== '') parts.push(pending)
    for (const line of parts) {
      if (line === '') {
        if (event.length > 0) out += flushEvent()
      } else event.push(line)
    }
    if (final && event.length > 0) out += flushEvent()
    return out
  }
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      cb(null, consume(decoder.write(chunk), false))
    },
    flush(cb) {
      cb(null, consume(decoder.end(), true))
    },
  })
}
