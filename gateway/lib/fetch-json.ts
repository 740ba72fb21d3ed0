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

/** A span around one call, and the trace headers that name it as the AS's parent. */
export interface FetchObservation {
  headers: Record<string, string>
  end(status: number | undefined, error?: string): void
}

// Set by observability/tracing.ts only while tracing is on: lib/ imports nothing from the gateway.
let observer: ((url: string, method: string) => FetchObservation | undefined) | undefined

export function observeFetches(o: typeof observer): void {
  observer = o
}

/**
 * GET/POST a JSON document from an authorization server. Redirects are not followed (an AS
 * that redirects its JWKS to another host is treated as broken, not trusted), bodies are
 * size-capped and parsed strictly.
 */
export async function fetchJson(url: string, o: FetchJsonOptions): Promise<{ status: number; body: unknown }> {
  const seen = observer?.(url, o.init?.method ?? 'GET')
  if (!seen) return fetchJsonUntraced(url, o)
  try {
    const r = await fetchJsonUntraced(url, { ...o, init: { ...o.init, headers: { ...(o.init?.headers as Record<string, string> | undefined), ...seen.headers } } })
    seen.end(r.status)
    return r
  } catch (e) {
    seen.end(e instanceof FetchError ? e.status : undefined, e instanceof FetchError ? e.message : 'error')
    throw e
  }
}

async function fetchJsonUntraced(url: string, o: FetchJsonOptions): Promise<{ status: number; body: unknown }> {
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
