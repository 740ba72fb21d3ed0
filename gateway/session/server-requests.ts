/**
 * Server-to-client requests a session is waiting on (SHTTP-36, ATK-51). A client POST that is a
 * JSON-RPC response is only an answer if the server asked: an elicitation or sampling result
 * nobody requested would otherwise reach the upstream (with an upstream credential minted for
 * it) and could be matched to a request the server sends later. Each request relayed on one of
 * the session's streams is recorded before the client can see it, one key per id in the
 * SharedStore so the answer may come through any replica; an answer is accepted once.
 */
import { fieldsDigest } from '../store/keys.js'
import type { Principal } from '../auth/principal.js'
import { LruCache } from '../store/lru.js'
import type { SharedStore } from '../store/shared-store.js'
import type { JsonRpcId } from '../mcp/jsonrpc.js'

/** How long the server may wait for a human (elicitation) before its request is forgotten. */
export const SERVER_REQUEST_TTL_MS = 15 * 60_000
/** Outstanding server requests per session and replica; beyond it new ones are not relayed. */
export const MAX_PENDING_PER_SESSION = 64

/** Who may answer: the route, the session (or none, for a sessionless upstream) and its caller. */
export interface AnswerScope {
  route: string
  sessionId: string | undefined
  principal: Pick<Principal, 'issuer' | 'subject' | 'clientId'>
}

const digest = (fields: string[]): string => fieldsDigest(fields)

const scopeDigest = (s: AnswerScope): string => digest([s.route, s.sessionId ?? '', s.principal.issuer, s.principal.subject, s.principal.clientId])
// 1 and "1" are different JSON-RPC ids.
const idField = (id: JsonRpcId): string => (typeof id === 'number' ? `n:${id}` : `s:${id}`)

/** The id of a server-to-client request (not a notification, not a response), if the message is one. */
export function serverRequestId(message: unknown): JsonRpcId | undefined {
  if (!message || typeof message !== 'object' || Array.isArray(message)) return undefined
  const m = message as Record<string, unknown>
  if (typeof m.method !== 'string') return undefined
  return typeof m.id === 'string' || (typeof m.id === 'number' && Number.isInteger(m.id)) ? m.id : undefined
}

export class ServerRequests {
  readonly #store: SharedStore
  readonly #ttlMs: number
  readonly #local = new LruCache<true>(50_000)
  readonly #pending = new LruCache<number>(50_000)

  constructor(store: SharedStore, ttlMs = SERVER_REQUEST_TTL_MS) {
    this.#store = store
    this.#ttlMs = ttlMs
  }

  /**
   * Records a request about to be relayed; false when the session already has too many
   * outstanding (the caller then does not relay it: an answer to it would be refused anyway).
   */
  async expect(scope: AnswerScope, id: JsonRpcId): Promise<boolean> {
    const s = scopeDigest(scope)
    const pending = this.#pending.get(s) ?? 0
    if (pending >= MAX_PENDING_PER_SESSION) return false
    this.#pending.set(s, pending + 1, this.#ttlMs)
    const key = `srvreq:${digest([s, idField(id)])}`
    this.#local.set(key, true, this.#ttlMs)
    await this.#store.set(key, '1', this.#ttlMs)
    return true
  }

  /** True once for an answer to a recorded request; every later or unrequested answer is false. */
  async answer(scope: AnswerScope, id: JsonRpcId): Promise<boolean> {
    const s = scopeDigest(scope)
    const key = `srvreq:${digest([s, idField(id)])}`
    const known = this.#local.get(key) === true || (await this.#store.get(key)) !== undefined
    if (!known) return false
    // Two answers racing through two replicas: only the first to claim the id goes on. A store
    // that is down answers false, so the replica that relayed the request claims it locally.
    const claimed = (await this.#store.setIfAbsent(`${key}:answered`, '1', this.#ttlMs)) || (this.#store.healthy() === false && this.#local.get(key) === true)
    this.#local.delete(key)
    await this.#store.delete(key)
    const pending = this.#pending.get(s)
    if (pending !== undefined && pending > 0) this.#pending.set(s, pending - 1, this.#ttlMs)
    return claimed
  }
}
