/**
 * Background load from real MCP SDK clients: each worker holds its own session and calls a tool
 * in a loop until stopped. Outcomes are counted, never asserted here, so a fault test can say
 * exactly what the fault cost (and prove a refusal stayed a refusal).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'

/** Sizes of the reliability tests, from env so that `npm run soak` can run them longer. */
export const WORKERS = Number(process.env.RELIABILITY_WORKERS ?? 3)
export const PHASE_MS = Number(process.env.RELIABILITY_PHASE_MS ?? 1_500)
/** Test timeouts grow with the phase length. */
export const T = (ms: number): number => ms + 10 * PHASE_MS

export interface LoadResult {
  ok: number
  failed: number
  /** Failure messages, counted. */
  errors: Map<string, number>
  /** Calls whose result was not the expected one (a wrong answer is worse than an error). */
  wrong: number
}

export interface Load {
  result: LoadResult
  /** Resolves when every worker has finished its current call and closed its client. */
  stop(): Promise<LoadResult>
}

export interface LoadOptions {
  url: string
  /** Called per worker; a token per worker lets a test revoke one. */
  token: (worker: number) => string | Promise<string>
  workers: number
  tool?: { name: string; arguments: Record<string, unknown>; expect: string }
  /** Pause between calls, to keep a loaded CI machine responsive. */
  pauseMs?: number
  /** Per-call timeout. Default 30 s. */
  callTimeoutMs?: number
  /** Reconnect (new session) after a failed call. Default true. */
  reconnect?: boolean
}

const DEFAULT_TOOL = { name: 'add', arguments: { a: 2, b: 3 }, expect: '5' }

export function startLoad(o: LoadOptions): Load {
  const result: LoadResult = { ok: 0, failed: 0, errors: new Map(), wrong: 0 }
  const tool = o.tool ?? DEFAULT_TOOL
  let stopping = false
  const fail = (e: unknown) => {
    result.failed++
    const msg = (e instanceof Error ? e.message : String(e)).slice(0, 120)
    result.errors.set(msg, (result.errors.get(msg) ?? 0) + 1)
  }
  const connect = async (w: number) => {
    const client = new Client({ name: `load-${w}`, version: '1' })
    const token = await o.token(w)
    await client.connect(new StreamableHTTPClientTransport(new URL(o.url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }))
    return client
  }
  const worker = async (w: number) => {
    let client: Client | undefined
    while (!stopping) {
      try {
        client ??= await connect(w)
        const r = (await client.callTool({ name: tool.name, arguments: tool.arguments }, undefined, { timeout: o.callTimeoutMs ?? 30_000 })) as { content?: Array<{ text?: string }> }
        if (r.content?.[0]?.text === tool.expect) result.ok++
        else result.wrong++
      } catch (e) {
        fail(e)
        if (o.reconnect !== false) {
          await client?.close().catch(() => undefined)
          client = undefined
        }
        await new Promise((r) => setTimeout(r, 100))
      }
      if (o.pauseMs) await new Promise((r) => setTimeout(r, o.pauseMs))
    }
    await client?.close().catch(() => undefined)
  }
  const running = Array.from({ length: o.workers }, (_, w) => worker(w))
  return {
    result,
    async stop() {
      stopping = true
      await Promise.all(running)
      return result
    },
  }
}

/** Open file descriptors of a process (Linux /proc). */
export async function openFds(pid: number | 'self' = 'self'): Promise<number> {
  const { readdirSync } = await import('node:fs')
  return readdirSync(`/proc/${pid}/fd`).length
}
