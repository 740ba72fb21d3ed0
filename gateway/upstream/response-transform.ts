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

/**
 * Sees each message after the transform, before anything of it is relayed; false drops it. It may
 * wait (a record written to the shared store must land before the client can act on the message).
 */
export type MessageWatch = (message: unknown) => boolean | Promise<boolean>

const isThenable = (v: unknown): v is PromiseLike<unknown> => v !== null && typeof v === 'object' && typeof (v as PromiseLike<unknown>).then === 'function'

const DROP = Symbol('drop')

/** Runs the watch over one message or each element of a batch; a dropped element leaves the batch. */
function watched(message: unknown, watch: MessageWatch | undefined): unknown | Promise<unknown> {
  if (!watch) return message
  if (Array.isArray(message)) {
    const keep = (v: unknown[]) => {
      const kept = message.filter((_m, i) => v[i])
      return kept.length === 0 && message.length > 0 ? DROP : kept
    }
    const verdicts = message.map((m) => watch(m))
    return verdicts.some(isThenable) ? Promise.all(verdicts).then(keep) : keep(verdicts)
  }
  const v = watch(message)
  return isThenable(v) ? Promise.resolve(v).then((keep) => (keep ? message : DROP)) : v ? message : DROP
}
const DROPPED = (m: unknown): boolean => m === DROP

/** Largest JSON response body rewritten in memory. */
export const MAX_REWRITTEN_BODY = 16 * 1024 * 1024

export async function rewriteJsonBody(stream: Readable, transform: MessageTransform, maxBytes = MAX_REWRITTEN_BODY, watch?: MessageWatch): Promise<string> {
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
  const out = await watched(transform(JSON.parse(Buffer.concat(chunks).toString('utf8'))), watch)
  // A JSON answer is the reply to this request: with nothing left of it there is nothing honest to send.
  if (DROPPED(out)) throw new Error('response withheld')
  return JSON.stringify(out)
}

/** An SSE (text/event-stream) rewriter: each event's `data` is one JSON-RPC message. */
/** Without a transform only the watch runs, and every message it keeps is relayed as the upstream wrote it. */
export function sseRewriter(transform: MessageTransform | undefined, watch?: MessageWatch): Transform {
  const decoder = new StringDecoder('utf8')
  let pending = ''
  let started = false
  let event: string[] = []
  const flushEvent = (): string | Promise<string> => {
    // Only fields a client acts on are kept, so what we inspect is what it will read: a line we
    // would not classify the way an EventSource parser does (e.g. `data` without a colon) never
    // passes unexamined. Unknown fields are ignored by clients anyway (WHATWG SSE §9.2.6).
    const lines = event.filter((l) => l.startsWith(':') || /^(event|id|retry):/.test(l) || l.startsWith('data:'))
    if (event.some((l) => l === 'data')) lines.push('data:')
    event = []
    const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
    if (data.length === 0 || data.join('') === '') return `${lines.join('\n')}\n\n`
    let parsed: unknown
    let message: unknown
    try {
      parsed = JSON.parse(data.join('\n'))
      message = watched(transform ? transform(parsed) : parsed, watch)
    } catch {
      return ''
    }
    const frame = (m: unknown): string => {
      // A dropped message goes with its whole event: an `id` line alone would still advance the client's Last-Event-ID.
      if (DROPPED(m)) return ''
      // A watched-only message keeps the upstream's bytes (SHTTP-17); a transform may have changed it in place.
      if (!transform && m === parsed) return `${lines.join('\n')}\n\n`
      const rewritten = JSON.stringify(m)
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
    return isThenable(message) ? Promise.resolve(message).then(frame, () => '') : frame(message)
  }
  const consume = (text: string, final: boolean): string | Promise<string> => {
    // A byte-order mark at the start is dropped by clients; it must not hide the first field from us.
    pending += started ? text : text.replace(/^\uFEFF/, '')
    if (text !== '') started = true
    const out: Array<string | Promise<string>> = []
    // Lines end in LF, CRLF or a lone CR, exactly as a client splits them: a lone CR must not hide
    // a second field (`event: x\rdata: …`) inside what we would take for one line. A CR at the end
    // of a chunk may be half of a CRLF, so it waits for the next chunk.
    const held = !final && pending.endsWith('\r')
    const parts = (held ? pending.slice(0, -1) : pending).split(/\r\n|\r|\n/)
    pending = parts.pop()! + (held ? '\r' : '')
    if (final && pending !== '') parts.push(pending)
    for (const line of parts) {
      if (line === '') {
        if (event.length > 0) out.push(flushEvent())
      } else event.push(line)
    }
    if (final && event.length > 0) out.push(flushEvent())
    // Events of one chunk keep their order; the next chunk waits until these are written.
    return out.some(isThenable) ? Promise.all(out).then((parts) => parts.join('')) : (out as string[]).join('')
  }
  const emit = (r: string | Promise<string>, cb: (err: Error | null, data?: string) => void) => {
    if (typeof r === 'string') cb(null, r)
    else r.then((d) => cb(null, d), (e: unknown) => cb(e as Error))
  }
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      emit(consume(decoder.write(chunk), false), cb)
    },
    flush(cb) {
      emit(consume(decoder.end(), true), cb)
    },
  })
}
