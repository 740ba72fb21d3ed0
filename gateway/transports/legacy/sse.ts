/**
 * The few pieces of the 2024-11-05 HTTP+SSE client shape that are plain data handling, kept
 * free of Fastify so unit tests call them directly: SSE framing in both directions, the
 * message-endpoint id, and how an answer of the gateway's own Streamable HTTP pipeline becomes
 * legacy output (messages on the client's stream, or an HTTP answer to its POST).
 */
import { randomBytes } from 'node:crypto'

/** One SSE event; `data` may span lines (each becomes its own `data:` field). */
export function sseEvent(event: string, data: string): string {
  return `event: ${event}\n${data.split(/\r\n|\r|\n/).map((l) => `data: ${l}`).join('\n')}\n\n`
}

/** 256 random bits: the id is the only thing that names a stream in the message URL. */
export const newMessageId = (): string => randomBytes(32).toString('base64url')

const MESSAGE_ID = /^[A-Za-z0-9_-]{43}$/
export const isMessageId = (s: unknown): s is string => typeof s === 'string' && MESSAGE_ID.test(s)

export interface SseMessage {
  event: string
  data: string
}

/**
 * Incremental SSE parser (WHATWG "event stream interpretation", the fields this relay needs:
 * event and data). Chunks may split lines and events anywhere, including inside a UTF-8 sequence.
 */
export class SseDecoder {
  #buffer = ''
  #event = ''
  #data: string[] = []
  readonly #utf8 = new TextDecoder('utf-8')

  push(chunk: Uint8Array): SseMessage[] {
    this.#buffer += this.#utf8.decode(chunk, { stream: true })
    const out: SseMessage[] = []
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.#buffer)
      // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
      if (!m || (m[0] === '\r' && m.index === this.#buffer.length - 1)) break
      const line = this.#buffer.slice(0, m.index)
      this.#buffer = this.#buffer.slice(m.index + m[0].length)
      if (line === '') {
        if (this.#data.length > 0) out.push({ event: this.#event || 'message', data: this.#data.join('\n') })
        this.#event = ''
        this.#data = []
        continue
      }
      if (line.startsWith(':')) continue
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      let value = colon === -1 ? '' : line.slice(colon + 1)
      if (value.startsWith(' ')) value = value.slice(1)
      if (field === 'event') this.#event = value
      else if (field === 'data') this.#data.push(value)
    }
    return out
  }
}

/**
 * JSON-RPC messages of a JSON answer, one per legacy `message` event: 2024-11-05 clients (the
 * SDK's SSEClientTransport among them) parse each event as one message, so a batch answer is
 * split into its elements.
 */
export function messagesOfJson(body: unknown): unknown[] {
  return Array.isArray(body) ? body : [body]
}

/**
 * An error answer of the pipeline that is a JSON-RPC error for a request the client sent (policy
 * refusal, unknown tool...) is delivered on the stream like any response, so the client's
 * pending request settles with the error. Answers that are about the HTTP exchange itself
 * (401/403 challenges, 429, or an error with no request id) go back on the POST, where
 * clients look for them.
 */
export function deliverOnStream(status: number, headers: Record<string, unknown>, body: unknown): boolean {
  if (status === 401 || status === 429 || headers['www-authenticate'] !== undefined) return false
  if (!body || typeof body !== 'object' || Array.isArray(body)) return false
  const m = body as Record<string, unknown>
  return m.jsonrpc === '2.0' && m.error !== undefined && (typeof m.id === 'string' || typeof m.id === 'number')
}

/** The protocol version a server agreed to in its initialize result, if this message is one. */
export function negotiatedVersion(message: unknown, supported: readonly string[]): string | undefined {
  if (!message || typeof message !== 'object') return undefined
  const result = (message as { result?: unknown }).result
  if (!result || typeof result !== 'object') return undefined
  const v = (result as { protocolVersion?: unknown }).protocolVersion
  return typeof v === 'string' && supported.includes(v) ? v : undefined
}
