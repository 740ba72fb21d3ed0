/**
 * Pending and granted approvals in the SharedStore (Redis in production), so the replica that
 * serves the retry need not be the one that asked. Every state change that must happen once is a
 * set-if-absent: one request per binding at a time, one decision per request (a replayed callback
 * loses), one consumption per approval (the call runs once), one AS poll per interval across
 * replicas. A store that is down answers "absent"/"lost", and the gate fails closed.
 */
import type { SharedStore } from '../store/shared-store.js'
import type { ApprovalBinding } from './binding.js'

export type Channel = 'ciba' | 'webhook'
export type Outcome = 'approved' | 'denied' | 'expired' | 'unbound' | 'refused'

export interface ApprovalRecord {
  readonly id: string
  /** Issuer name (gateway.yaml), which channel configuration applies. */
  readonly issuer: string
  readonly channel: Channel
  readonly binding: ApprovalBinding
  /** bindingDigest(binding). */
  readonly digest: string
  readonly detailType: string
  readonly createdAt: number
  readonly expiresAt: number
  readonly windowMs: number | undefined
  /** ciba: the AS's auth_req_id (an opaque handle; it is not a token). */
  authReqId?: string
  /** ciba: current polling interval (AS interval, plus slow_down increments). */
  intervalMs: number
  /** ciba: whether authorization_details went with the request (what an echo is checked against). */
  rar?: boolean
}

export interface ApprovalDecision {
  readonly outcome: Outcome
  readonly at: number
  readonly via: Channel
  /** ciba with exchangeSubject approved: the AS-issued token, sealed (AES-256-GCM, AAD = key). */
  readonly sealedToken?: string
  /** refused: the AS's OAuth error code (bounded printable ASCII, as the OAuth client accepts it). */
  readonly asError?: string
}

export const decisionKey = (id: string) => K.decision(id)

const K = {
  pending: (digest: string) => `approval:pending:${digest}`,
  record: (id: string) => `approval:req:${id}`,
  decision: (id: string) => `approval:decision:${id}`,
  used: (id: string) => `approval:used:${id}`,
  window: (digest: string) => `approval:window:${digest}`,
  poll: (id: string) => `approval:poll:${id}`,
}

/** How long an approval outlives its request: long enough for the client's retry to find it. */
export const DECISION_GRACE_MS = 60_000

export class ApprovalLedger {
  constructor(
    private readonly store: SharedStore,
    private readonly now: () => number = Date.now,
  ) {}

  #ttl(r: ApprovalRecord) {
    return Math.max(1, r.expiresAt - this.now()) + DECISION_GRACE_MS
  }

  /** The request currently open for this binding, if any. */
  async pendingFor(digest: string): Promise<ApprovalRecord | undefined> {
    const id = await this.store.get(K.pending(digest))
    return id === undefined ? undefined : this.record(id)
  }

  /** Opens `r` for its binding; false when another request is already open (use that one). */
  async open(r: ApprovalRecord): Promise<boolean> {
    await this.store.set(K.record(r.id), JSON.stringify(r), this.#ttl(r))
    const won = await this.store.setIfAbsent(K.pending(r.digest), r.id, Math.max(1, r.expiresAt - this.now()))
    if (!won) await this.store.delete(K.record(r.id))
    return won
  }

  async update(r: ApprovalRecord): Promise<void> {
    await this.store.set(K.record(r.id), JSON.stringify(r), this.#ttl(r))
  }

  record(id: string): Promise<ApprovalRecord | undefined> {
    return this.#json<ApprovalRecord>(K.record(id))
  }

  /** Closes the binding's open request so the next call of it asks again. */
  async close(r: ApprovalRecord): Promise<void> {
    if ((await this.store.get(K.pending(r.digest))) === r.id) await this.store.delete(K.pending(r.digest))
  }

  /** Records the decision; false when the request was already decided (replays change nothing). */
  decide(r: ApprovalRecord, d: ApprovalDecision): Promise<boolean> {
    return this.store.setIfAbsent(K.decision(r.id), JSON.stringify(d), this.#ttl(r))
  }

  decision(id: string): Promise<ApprovalDecision | undefined> {
    return this.#json<ApprovalDecision>(K.decision(id))
  }

  /** A stored JSON value; undefined when absent or unreadable (never trusted further than that). */
  async #json<T>(key: string): Promise<T | undefined> {
    const text = await this.store.get(key)
    if (text === undefined) return undefined
    try {
      return JSON.parse(text) as T
    } catch {
      return undefined
    }
  }

  /** The single use of an approval: true for exactly one caller. */
  consume(r: ApprovalRecord): Promise<boolean> {
    return this.store.setIfAbsent(K.used(r.id), String(this.now()), this.#ttl(r))
  }

  async openWindow(windowDigest: string, r: ApprovalRecord, ms: number): Promise<void> {
    await this.store.set(K.window(windowDigest), r.id, ms)
  }

  /** The approval id whose window covers this call, if any. */
  window(windowDigest: string): Promise<string | undefined> {
    return this.store.get(K.window(windowDigest))
  }

  /** After slow_down: no replica polls again before the new, longer interval has passed. */
  async holdPolls(r: ApprovalRecord): Promise<void> {
    await this.store.set(K.poll(r.id), '1', Math.max(1, r.intervalMs))
  }

  /** One poll of the AS per interval across every replica waiting on the same request. */
  pollTurn(r: ApprovalRecord): Promise<boolean> {
    return this.store.setIfAbsent(K.poll(r.id), '1', Math.max(1, r.intervalMs))
  }
}
