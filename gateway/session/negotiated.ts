/**
 * The protocol version a session negotiated, kept with the session (SHTTP-33, SHTTP-34, ATK-42).
 * A request's MCP-Protocol-Version header is the client's claim; the initialize exchange is the
 * fact. Deciding batching from the header let a 2025-11-25 session smuggle a batch by saying
 * 2025-03-26, so the version comes from the initialize answer and a header that contradicts it
 * is refused. Its own key next to the owner binding (binding.ts), in the SharedStore so every
 * replica decides alike; an in-process layer keeps a replica correct while Redis is down.
 */
import { keyDigest } from '../store/keys.js'
import { LruCache } from '../store/lru.js'
import type { SharedStore } from '../store/shared-store.js'
import { GatewayError } from '../errors.js'
import type { ParsedBody } from '../mcp/jsonrpc.js'
import { batchesAllowed, SUPPORTED_PROTOCOL_VERSIONS } from '../mcp/protocol.js'

const LOCAL_CACHE_MS = 30_000

export function negotiatedKey(route: string, sessionId: string): string {
  return keyDigest('sessver', [route, sessionId])
}

/** The version an initialize answer settled on, when it is one this gateway implements. */
export function versionOfInitializeResult(message: unknown, rpcId: string | number | undefined): string | undefined {
  if (rpcId === undefined || !message || typeof message !== 'object' || Array.isArray(message)) return undefined
  const m = message as Record<string, unknown>
  if (m.id !== rpcId || 'method' in m || !m.result || typeof m.result !== 'object') return undefined
  const v = (m.result as Record<string, unknown>).protocolVersion
  return typeof v === 'string' && (SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(v) ? v : undefined
}

export interface SessionRequestFacts {
  /** MCP-Protocol-Version as sent, if sent. */
  header: string | undefined
  /** POST body; undefined for GET and DELETE. */
  body: ParsedBody | undefined
}

/**
 * The version a request on a session is handled under, or a refusal. Without a recorded version
 * (a session from before this record existed, or a write Redis dropped) the request's own
 * header keeps deciding, exactly as before: that is no worse than today and never refuses a
 * legitimate client.
 */
export function sessionVersion(negotiated: string | undefined, request: SessionRequestFacts, fallback: string): string {
  if (negotiated === undefined) return fallback
  if (request.header !== undefined && request.header !== negotiated) {
    throw new GatewayError('GW_MCP_INVALID_REQUEST', { detail: `MCP-Protocol-Version ${request.header} contradicts the session's negotiated ${negotiated}` })
  }
  if (request.body?.batch && !batchesAllowed(negotiated)) {
    throw new GatewayError('GW_MCP_INVALID_REQUEST', { detail: `JSON-RPC batches are not allowed in ${negotiated} (negotiated for this session)` })
  }
  return negotiated
}

export class NegotiatedVersions {
  readonly #store: SharedStore
  readonly #ttlMs: number
  readonly #local = new LruCache<string>(50_000)

  constructor(store: SharedStore, ttlMs: number) {
    this.#store = store
    this.#ttlMs = ttlMs
  }

  async record(route: string, sessionId: string, version: string): Promise<void> {
    const key = negotiatedKey(route, sessionId)
    this.#local.set(key, version, Math.min(LOCAL_CACHE_MS, this.#ttlMs))
    await this.#store.set(key, version, this.#ttlMs)
  }

  async get(route: string, sessionId: string): Promise<string | undefined> {
    const key = negotiatedKey(route, sessionId)
    const local = this.#local.get(key)
    if (local) return local
    const v = await this.#store.get(key)
    // Anything else in the key is not a version this gateway wrote; treat it as unknown.
    if (v === undefined || !(SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(v)) return undefined
    this.#local.set(key, v, Math.min(LOCAL_CACHE_MS, this.#ttlMs))
    return v
  }

  async forget(route: string, sessionId: string): Promise<void> {
    const key = negotiatedKey(route, sessionId)
    this.#local.delete(key)
    await this.#store.delete(key)
  }
}
