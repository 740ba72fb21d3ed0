import { parseStrictJson } from './strict-json.js'

export class FetchError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message)
    this.name = 'FetchError'
  }
}

export interface FetchJsonOptions {
  timeoutMs: number
  maxBytes?: number
  init?: RequestInit
}

/**
 * GET/POST a JSON document from an authorization server. Redirects are not followed (an AS
 * that redirects its JWKS to another host is treated as broken, not trusted), bodies are
 * size-capped and parsed strictly.
 */
export async function fetchJson(url: string, o: FetchJsonOptions): Promise<{ status: number; body: unknown }> {
  const maxBytes = o.maxBytes ?? 1024 * 1024
  let res: Response
  try {
    res = await fetch(url, { ...o.init, redirect: 'manual', signal: AbortSignal.timeout(o.timeoutMs) })
  } catch (e) {
    throw new FetchError((e as Error).name === 'TimeoutError' ? 'timeout' : 'unreachable')
  }
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel()
    throw new FetchError('redirect refused', res.status)
  }
  const reader = res.body?.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  if (reader) {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      size += value.byteLength
      if (size > maxBytes) {
        await reader.cancel()
        throw new FetchError('response too large', res.status)
      }
      chunks.push(value)
    }
  }
  const text = Buffer.concat(chunks).toString('utf8')
  let body: unknown
  try {
    body = parseStrictJson(text, { rejectProtoKeys: false })
  } catch {
    throw new FetchError('response is not JSON', res.status)
  }
  return { status: res.status, body }
}
