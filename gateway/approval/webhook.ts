/**
 * The webhook channel, for organisations without CIBA: the approval request is POSTed to a
 * configured URL, and the decision comes back to `POST /mcp-warden/approvals/<issuer>`. Both
 * directions are signed with HMAC-SHA256 over `<unix seconds>.<raw body>` (header
 * `X-MCP-Warden-Signature: t=<seconds>,v1=<hex>`), so a callback is accepted only from whoever
 * holds the secret, only near the signed time, and (ledger) only once per approval.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export const SIGNATURE_HEADER = 'x-mcp-warden-signature'

export function sign(secret: string, body: string | Buffer, atMs: number): string {
  const t = Math.floor(atMs / 1000)
  const mac = createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex')
  return `t=${t},v1=${mac}`
}

export type Verified = { ok: true } | { ok: false; why: 'missing' | 'malformed' | 'signature' | 'stale' }

export function verify(secret: string, header: string | undefined, body: Buffer, nowMs: number, maxSkewMs: number): Verified {
  if (!header) return { ok: false, why: 'missing' }
  const m = /^t=([0-9]{1,12}),v1=([0-9a-f]{64})$/.exec(header.trim())
  if (!m) return { ok: false, why: 'malformed' }
  const t = Number(m[1])
  const expected = createHmac('sha256', secret).update(`${t}.`).update(body).digest()
  // Signature before time: an attacker learns nothing about the clock from a forged request.
  if (!timingSafeEqual(expected, Buffer.from(m[2]!, 'hex'))) return { ok: false, why: 'signature' }
  if (Math.abs(nowMs - t * 1000) > maxSkewMs) return { ok: false, why: 'stale' }
  return { ok: true }
}

export interface CallbackBody {
  id: string
  decision: 'approved' | 'denied'
  binding: string
}

/** The callback body, strictly: anything else is refused before the ledger is consulted. */
export function parseCallback(body: Buffer): CallbackBody | undefined {
  let v: unknown
  try {
    v = JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined
  const o = v as Record<string, unknown>
  if (typeof o.id !== 'string' || !/^[A-Za-z0-9_-]{16,64}$/.test(o.id)) return undefined
  if (o.decision !== 'approved' && o.decision !== 'denied') return undefined
  if (typeof o.binding !== 'string' || o.binding.length > 128) return undefined
  return { id: o.id, decision: o.decision, binding: o.binding }
}

export class WebhookError extends Error {
  constructor(readonly kind: string) {
    super(`approval webhook failed (${kind})`)
    this.name = 'WebhookError'
  }
}

/** POSTs the signed approval request; any 2xx is delivery, anything else fails closed. */
export async function deliver(url: string, secret: string, payload: unknown, nowMs: number, timeoutMs: number): Promise<void> {
  const body = JSON.stringify(payload)
  let res: Response
  try {
    // No redirects: the request carries the call's arguments and must reach the configured URL only.
    res = await fetch(url, { method: 'POST', redirect: 'manual', signal: AbortSignal.timeout(timeoutMs), headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: sign(secret, body, nowMs) }, body })
  } catch (e) {
    throw new WebhookError((e as Error).name === 'TimeoutError' ? 'timeout' : 'unreachable')
  }
  await res.body?.cancel()
  if (res.status < 200 || res.status >= 300) throw new WebhookError(`http-${res.status}`)
}
