/**
 * The approval decision glue, without Fastify: a tools/call held by a require-approval rule
 * passes only with an approval bound to it. In order:
 *   1. a window approval for the same caller, agent, route and tool (when the rule has `window`);
 *   2. else the request already open for this exact binding (opened by an earlier try of the same
 *      call, on any replica), or a new one sent through the issuer's channel (CIBA or webhook);
 *   3. wait up to the rule's `wait` for its decision: approved → consumed once (set-if-absent) and
 *      the call proceeds; denied / expired / unbound → refused; still open → GW_APPROVAL_PENDING,
 *      and the client's retry of the same call continues with the same request.
 * CIBA polling honours the AS interval and slow_down, once per interval across replicas.
 */
import { randomBytes } from 'node:crypto'
import { seal, unseal } from '../store/seal.js'
import type { CompiledApproval } from '../policy/compile.js'
import { GatewayError } from '../errors.js'
import { approvalCode, renderMessage } from '../policy/approval-message.js'
import { authorizationDetail, bindingDigest, detailsNameBinding, windowDigest, type ApprovalBinding } from './binding.js'
import { approvedBy, CibaChannel, CibaError, SLOW_DOWN_MS } from './ciba.js'
import { decisionKey, type ApprovalDecision, type ApprovalLedger, type ApprovalRecord, type Channel } from './ledger.js'
import type { ApprovalMetrics } from './metrics.js'
import { deliver, parseCallback, verify, WebhookError } from './webhook.js'

export type GateOutcome = 'approved' | 'denied' | 'expired' | 'unbound' | 'refused'

export interface CibaChannelConfig {
  channel: 'ciba'
  ciba: CibaChannel
  loginHintClaim: string
  scope: string
  intervalMs: number
  keepToken?: boolean
  /** RFC 9396 with this AS: none, the binding digest, or the call with its arguments (default none). */
  details?: 'none' | 'digest' | 'arguments'
  /** RFC 8707 resource: the route's own, a fixed URI, or (default) none. */
  resource?: { kind: 'route' } | { kind: 'uri'; uri: string } | undefined
  /** The AS's binding_message rule; the policy's message was checked against it at load. */
  bindingRule?: RegExp
}

export type ChannelConfig =
  | CibaChannelConfig
  | { channel: 'webhook'; url: string; secret: string; timeoutMs: number; maxSkewMs: number; callbackUrl: string }

export interface HeldCall {
  principal: { issuerName: string; issuer: string; subject: string; clientId: string; scopes?: ReadonlySet<string>; claims: Readonly<Record<string, unknown>> }
  route: string
  /** The route's resource (RFC 8707), requested for the CIBA token. */
  resource: string
  tool: string
  arguments: unknown
  argumentsDigest: string
  policyVersion: string
  spec: CompiledApproval
}

export interface AuditLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

export interface GateDeps {
  ledger: ApprovalLedger
  channels: ReadonlyMap<string, ChannelConfig>
  metrics: ApprovalMetrics
  now?: () => number
  /** How often a waiting call looks at the shared decision. */
  checkEveryMs?: number
  /** cache.redis.encryptionKey: approved tokens are shared between replicas only sealed. */
  encryptionKey?: Buffer | undefined
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done() {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })

export class ApprovalGate {
  readonly #d: GateDeps
  readonly #now: () => number
  /** Approved tokens this replica obtained, until the call that consumes the approval takes them. */
  readonly #tokens = new Map<string, { token: string; until: number }>()

  constructor(deps: GateDeps) {
    this.#d = deps
    this.#now = deps.now ?? Date.now
  }

  static binding(call: HeldCall): ApprovalBinding {
    const p = call.principal
    return { issuer: p.issuer, subject: p.subject, agent: p.clientId, route: call.route, tool: call.tool, argumentsDigest: call.argumentsDigest, policyVersion: call.policyVersion }
  }

  /** Resolves when the call may proceed (returns the approval id); throws a GatewayError otherwise. */
  async pass(call: HeldCall, log: AuditLog, signal?: AbortSignal): Promise<{ id: string; via: 'approval' | 'window'; token?: string | undefined }> {
    const { ledger, metrics } = this.#d
    const binding = ApprovalGate.binding(call)
    const digest = bindingDigest(binding)
    const count = (result: string) => metrics.calls.inc({ route: call.route, result })
    if (call.spec.windowMs !== undefined) {
      const id = await ledger.window(windowDigest(binding))
      if (id !== undefined) {
        log.info({ event: 'approval.window', approval: { id, binding } }, 'call covered by a window approval')
        count('window')
        return { id, via: 'window' }
      }
    }
    const deadline = this.#now() + call.spec.waitMs
    metrics.waiting.inc()
    try {
      for (let attempt = 0; ; attempt++) {
        const r = (await ledger.pendingFor(digest)) ?? (await this.#open(call, binding, digest, log))
        const outcome = await this.#await(r, deadline, log, signal)
        if (outcome === 'waiting') {
          count('pending')
          // The code is what the binding message shows: the user can match this screen with the phone.
          throw new GatewayError('GW_APPROVAL_PENDING', { detail: `approval ${r.id} still open`, retryAfter: Math.max(1, Math.ceil(r.intervalMs / 1000)), data: { approvalCode: approvalCode(r.id) } })
        }
        await ledger.close(r)
        if (outcome === 'approved') {
          if (await ledger.consume(r)) {
            if (call.spec.windowMs !== undefined) await ledger.openWindow(windowDigest(binding), r, call.spec.windowMs)
            const token = await this.#takeToken(r, log)
            log.info({ event: 'approval.consumed', approval: { id: r.id, binding, window: call.spec.windowMs, approvedToken: token !== undefined } }, 'approved call proceeds')
            count('approved')
            return { id: r.id, via: 'approval', token }
          }
          // A concurrent identical call used this approval: this one needs its own, asked once.
          if (attempt === 0) continue
          count('pending')
          throw new GatewayError('GW_APPROVAL_PENDING', { detail: `approval ${r.id} already used`, retryAfter: 1 })
        }
        count(outcome)
        if (outcome === 'refused') throw refusedError((await ledger.decision(r.id))?.asError, `approval ${r.id} refused at the token endpoint`)
        throw new GatewayError(outcome === 'denied' ? 'GW_APPROVAL_DENIED' : outcome === 'expired' ? 'GW_APPROVAL_EXPIRED' : 'GW_APPROVAL_NOT_BOUND', { detail: `approval ${r.id} ${outcome}` })
      }
    } catch (e) {
      if (e instanceof GatewayError && e.code === 'GW_APPROVAL_UNAVAILABLE') count('unavailable')
      throw e
    } finally {
      metrics.waiting.dec()
    }
  }

  async #open(call: HeldCall, binding: ApprovalBinding, digest: string, log: AuditLog): Promise<ApprovalRecord> {
    const { ledger, metrics } = this.#d
    const issuer = call.principal.issuerName
    const ch = this.#d.channels.get(issuer)
    if (!ch) throw new GatewayError('GW_APPROVAL_UNAVAILABLE', { detail: `issuer ${issuer} has no approval channel`, retryAfter: 60 })
    const now = this.#now()
    const record: ApprovalRecord = {
      id: randomBytes(18).toString('base64url'),
      issuer,
      channel: ch.channel,
      binding,
      digest,
      detailType: call.spec.type,
      createdAt: now,
      expiresAt: now + call.spec.expiryMs,
      windowMs: call.spec.windowMs,
      intervalMs: ch.channel === 'ciba' ? ch.intervalMs : 1000,
    }
    if (!(await ledger.open(record))) {
      // Lost the race to an identical call (use its request), or the store is down (fail closed).
      const other = await ledger.pendingFor(digest)
      if (other) return other
      throw new GatewayError('GW_APPROVAL_UNAVAILABLE', { detail: 'approval ledger unavailable', retryAfter: 5 })
    }
    const code = approvalCode(record.id)
    const facts = { agent: binding.agent, tool: binding.tool, route: binding.route, subject: binding.subject, code, arguments: call.arguments }
    try {
      if (ch.channel === 'ciba') {
        const hint = call.principal.claims[ch.loginHintClaim]
        if (typeof hint !== 'string' || hint.length === 0) throw new CibaError(`token has no ${ch.loginHintClaim} claim for login_hint`, 'no-login-hint')
        // The approved token may stand in for the caller's: it gets the caller's scopes, never more.
        const scope = [...new Set([...ch.scope.split(' '), ...(ch.keepToken ? [...(call.principal.scopes ?? [])].filter((s) => s !== 'offline_access') : [])])].join(' ')
        // The issuer's RAR setting is the ceiling (what its AS accepts); a rule's `details: digest` narrows it.
        const mode = ch.details ?? 'none'
        const details = mode === 'none' ? undefined : [authorizationDetail(call.spec.type, binding, call.arguments, mode === 'digest' ? 'digest' : call.spec.details)]
        record.rar = details !== undefined
        const resource = ch.resource === undefined ? undefined : ch.resource.kind === 'route' ? call.resource : ch.resource.uri
        const ask = (bindingMessage: string) => ch.ciba.start({ loginHint: hint, bindingMessage, authorizationDetails: details, scope, resource, requestedExpirySec: call.spec.expiryMs / 1000 })
        const fits = (m: string) => ch.bindingRule === undefined || ch.bindingRule.test(m)
        const fallback = fits(`Approve-${code}`) ? `Approve-${code}` : code
        const message = renderMessage(call.spec.message, facts, 'plain')
        // CIBA §13 invalid_binding_message: the AS's rule is stricter than the one configured; ask
        // once more with the code alone, which the phone and the agent's screen (pending error) share.
        const started = await ask(fits(message) ? message : fallback).catch((e: unknown) => {
          if (e instanceof CibaError && e.kind === 'invalid_binding_message') return ask(fallback)
          throw e
        })
        record.authReqId = started.authReqId
        if (started.intervalSec !== undefined) record.intervalMs = started.intervalSec * 1000
        ;(record as { expiresAt: number }).expiresAt = Math.min(record.expiresAt, now + started.expiresInSec * 1000)
        await ledger.update(record)
      } else {
        const message = renderMessage(call.spec.message, facts, 'text')
        const detail = authorizationDetail(call.spec.type, binding, call.arguments, call.spec.details)
        await deliver(ch.url, ch.secret, { id: record.id, binding, binding_digest: digest, message, authorization_details: [detail], expires_at: new Date(record.expiresAt).toISOString(), callback: ch.callbackUrl }, now, ch.timeoutMs)
      }
    } catch (e) {
      await ledger.close(record)
      const kind = e instanceof CibaError || e instanceof WebhookError ? e.kind : 'error'
      if (e instanceof CibaError && e.refused) {
        metrics.refusals.inc({ issuer, endpoint: 'backchannel', error: errorLabel(kind) })
        metrics.calls.inc({ route: call.route, result: 'refused' })
        log.warn({ event: 'approval.refused', approval: { id: record.id, channel: ch.channel, binding, endpoint: 'backchannel', asError: kind, status: e.status } }, 'the authorization server refused the approval request')
        throw refusedError(kind, `backchannel request refused (${kind})`, e)
      }
      log.warn({ event: 'approval.request_failed', approval: { id: record.id, channel: ch.channel, binding }, kind }, 'could not ask for approval')
      throw new GatewayError('GW_APPROVAL_UNAVAILABLE', { detail: `approval request failed (${kind})`, retryAfter: 5, cause: e })
    }
    metrics.requests.inc({ issuer, channel: ch.channel })
    log.info({ event: 'approval.requested', approval: { id: record.id, channel: ch.channel, binding, bindingDigest: digest, code, rar: record.rar, expiresAt: record.expiresAt } }, 'approval requested')
    return record
  }

  /** Waits for the decision of `r` until `deadline`; 'waiting' when it is still open then. */
  async #await(r: ApprovalRecord, deadline: number, log: AuditLog, signal?: AbortSignal): Promise<GateOutcome | 'waiting'> {
    const { ledger } = this.#d
    const every = this.#d.checkEveryMs ?? 200
    for (;;) {
      const d = await ledger.decision(r.id)
      if (d) return d.outcome
      const now = this.#now()
      if (now >= r.expiresAt) return (await this.decide(r, 'expired', r.channel, log)) ?? 'expired'
      if (now >= deadline || signal?.aborted) return 'waiting'
      if (r.channel === 'ciba') {
        const polled = await this.#pollCiba(r, log)
        if (polled) return polled
      }
      await sleep(Math.max(1, Math.min(every, deadline - this.#now(), r.expiresAt - this.#now())), signal)
    }
  }

  async #pollCiba(r: ApprovalRecord, log: AuditLog): Promise<GateOutcome | undefined> {
    const { ledger } = this.#d
    const ch = this.#d.channels.get(r.issuer)
    // Written by the replica that opened the request once the AS answered.
    const fresh = (await ledger.record(r.id)) ?? r
    if (ch?.channel !== 'ciba' || !fresh.authReqId || !(await ledger.pollTurn(fresh))) return undefined
    let res
    try {
      res = await ch.ciba.poll(fresh.authReqId)
    } catch (e) {
      if (e instanceof CibaError && e.refused) {
        // A verdict on the client (unauthorized_client, invalid_client, …), not a blip: recorded once
        // so every replica waiting on this request gives the same answer.
        this.#d.metrics.refusals.inc({ issuer: r.issuer, endpoint: 'token', error: errorLabel(e.kind) })
        log.warn({ event: 'approval.refused', approval: { id: r.id, channel: 'ciba', binding: r.binding, endpoint: 'token', asError: e.kind, status: e.status } }, 'the authorization server refused the CIBA token request')
        return this.decide(r, 'refused', 'ciba', log, undefined, e.kind)
      }
      // The AS being briefly unreachable is not a decision: keep waiting until the wait ends.
      log.warn({ event: 'approval.poll_failed', approval: { id: r.id }, kind: e instanceof CibaError ? e.kind : 'error' }, 'CIBA poll failed')
      return undefined
    }
    switch (res.status) {
      case 'pending':
        return undefined
      case 'slow_down':
        fresh.intervalMs += SLOW_DOWN_MS
        r.intervalMs = fresh.intervalMs
        await ledger.update(fresh)
        await ledger.holdPolls(fresh)
        return undefined
      case 'approved': {
        // The gateway's own binding holds in every case: this answer is for the auth_req_id it asked
        // for this very call, the person who approved is the caller (CIBA §10.1.1 ID token), and the
        // approval is consumed once. When RAR went with the request and the AS echoes the details,
        // they must still name this binding; details it echoes unasked are a token for something else.
        const echoed = res.authorizationDetails !== undefined && res.authorizationDetails !== null
        const detailsOk = !echoed || (fresh.rar === true && detailsNameBinding(res.authorizationDetails, r.detailType, r.digest))
        const bound = detailsOk && approvedBy(res.idToken, { issuer: r.binding.issuer, subject: r.binding.subject, clientId: ch.ciba.clientId, authReqId: fresh.authReqId }, this.#now())
        return this.decide(r, bound ? 'approved' : 'unbound', 'ciba', log, bound && ch.keepToken ? res.accessToken : undefined)
      }
      case 'denied':
      case 'expired':
        return this.decide(r, res.status, 'ciba', log)
      case 'gone':
        // Redeemed by another replica (its decision is in the ledger) or forgotten by the AS.
        return (await ledger.decision(r.id))?.outcome ?? this.decide(r, 'expired', 'ciba', log)
    }
  }

  /** Records a decision once; returns the decision in force (ours, or the one recorded first). */
  async decide(r: ApprovalRecord, outcome: GateOutcome, via: Channel, log: AuditLog, token?: string, asError?: string): Promise<GateOutcome> {
    const { ledger, metrics } = this.#d
    const key = this.#d.encryptionKey
    const d: ApprovalDecision = { outcome, at: this.#now(), via, ...(token && key ? { sealedToken: seal(key, decisionKey(r.id), token) } : {}), ...(asError ? { asError } : {}) }
    if (!(await ledger.decide(r, d))) return (await ledger.decision(r.id))?.outcome ?? outcome
    if (token) this.#tokens.set(r.id, { token, until: r.expiresAt })
    const latencyMs = d.at - r.createdAt
    metrics.outcomes.inc({ issuer: r.issuer, channel: r.channel, outcome })
    metrics.decisionSeconds.observe({ channel: r.channel, outcome }, latencyMs / 1000)
    log.info({ event: outcome === 'expired' ? 'approval.expired' : 'approval.decided', approval: { id: r.id, channel: r.channel, via, outcome, latencyMs, binding: r.binding } }, `approval ${outcome}`)
    return outcome
  }

  /** The approved token for the call that consumed `r`: from this replica, else unsealed from the ledger. */
  async #takeToken(r: ApprovalRecord, log: AuditLog): Promise<string | undefined> {
    const ch = this.#d.channels.get(r.issuer)
    if (ch?.channel !== 'ciba' || !ch.keepToken) return undefined
    const now = this.#now()
    for (const [id, t] of this.#tokens) if (t.until + 60_000 < now) this.#tokens.delete(id)
    const local = this.#tokens.get(r.id)
    this.#tokens.delete(r.id)
    if (local) return local.token
    const sealed = (await this.#d.ledger.decision(r.id))?.sealedToken
    const token = sealed && this.#d.encryptionKey ? unseal(this.#d.encryptionKey, decisionKey(r.id), sealed) : undefined
    // Another replica redeemed the approval and could not share the token: the exchange uses the caller's.
    if (!token) log.warn({ event: 'approval.token_unavailable', approval: { id: r.id } }, 'approved token not available on this replica; exchanging the caller token')
    return token
  }

  /**
   * A webhook decision: signature and time first, then the approval it names (same issuer, same
   * binding digest), then decided once. Returns the outcome recorded; throws callback errors.
   */
  async callback(issuerName: string, body: Buffer, signature: string | undefined, log: AuditLog): Promise<{ id: string; outcome: GateOutcome }> {
    const ch = this.#d.channels.get(issuerName)
    if (ch?.channel !== 'webhook') throw new GatewayError('GW_APPROVAL_CALLBACK_INVALID', { detail: `issuer ${issuerName} has no webhook channel` })
    const v = verify(ch.secret, signature, body, this.#now(), ch.maxSkewMs)
    if (!v.ok) throw new GatewayError('GW_APPROVAL_CALLBACK_SIGNATURE', { detail: `callback signature ${v.why}` })
    const cb = parseCallback(body)
    if (!cb) throw new GatewayError('GW_APPROVAL_CALLBACK_INVALID', { detail: 'callback body malformed' })
    const r = await this.#d.ledger.record(cb.id)
    if (!r || r.issuer !== issuerName || r.channel !== 'webhook') throw new GatewayError('GW_APPROVAL_CALLBACK_INVALID', { detail: 'unknown approval id' })
    if (cb.binding !== r.digest) throw new GatewayError('GW_APPROVAL_CALLBACK_INVALID', { detail: `binding mismatch for approval ${r.id}` })
    if (this.#now() >= r.expiresAt) throw new GatewayError('GW_APPROVAL_CALLBACK_INVALID', { detail: `approval ${r.id} expired` })
    const wanted: GateOutcome = cb.decision === 'approved' ? 'approved' : 'denied'
    const d: ApprovalDecision = { outcome: wanted, at: this.#now(), via: 'webhook' }
    if (!(await this.#d.ledger.decide(r, d))) throw new GatewayError('GW_APPROVAL_CALLBACK_REPLAYED', { detail: `approval ${r.id} already decided` })
    const latencyMs = d.at - r.createdAt
    this.#d.metrics.outcomes.inc({ issuer: r.issuer, channel: 'webhook', outcome: wanted })
    this.#d.metrics.decisionSeconds.observe({ channel: 'webhook', outcome: wanted }, latencyMs / 1000)
    log.info({ event: 'approval.decided', approval: { id: r.id, channel: 'webhook', via: 'webhook', outcome: wanted, latencyMs, binding: r.binding } }, `approval ${wanted}`)
    return { id: r.id, outcome: wanted }
  }
}

/** OAuth and CIBA error codes an AS may answer with; the metric label is one of these or `other`. */
const KNOWN_AS_ERRORS = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
  'invalid_target', 'invalid_authorization_details', 'invalid_binding_message', 'unknown_user_id', 'expired_login_hint_token',
  'missing_user_code', 'invalid_user_code', 'access_denied', 'invalid_client_metadata',
])
const errorLabel = (code: string) => (KNOWN_AS_ERRORS.has(code) ? code : /^http-4\d\d$/.test(code) ? code : 'other')

/** The client learns the AS's error code (an operator's lead), never its description or the request. */
function refusedError(asError: string | undefined, detail: string, cause?: unknown): GatewayError {
  const code = asError !== undefined && /^[A-Za-z0-9_.-]{1,64}$/.test(asError) ? asError : 'other'
  return new GatewayError('GW_APPROVAL_REFUSED', { detail, data: { asError: code }, ...(cause ? { cause } : {}) })
}
