/**
 * Session ids the gateway issues itself (issue 23). The client never sees the upstream's id
 * alone: it gets `s1.<exp>.<mac>.<upstream id>`, where mac = HMAC-SHA256 under
 * `sessions.signingKey` over the route, the owner (issuer, subject, agent), the expiry and the
 * upstream id. Any replica holding the key can then decide a session it has never seen, with
 * Redis down: the MAC is recomputed for the *caller presenting it*, so another user's id, an id of
 * another route, an edited upstream id or an expired id all fail the same way.
 *
 * The owner is not carried in the id, only bound by the MAC, so no subject or client id travels
 * in a header that proxies and browsers may log. The upstream id is carried as is (clients saw it
 * before this existed); hiding it is SHTTP-26, not done here.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export interface SealedOwner {
  route: string
  issuer: string
  subject: string
  clientId: string
}

const PREFIX = 's1'
const MAC_CHARS = 43 // 32 bytes in base64url, unpadded
/** MCP session ids are at most 256 visible ASCII characters (mcp/protocol.ts SESSION_ID). */
export const MAX_ID_LENGTH = 256

/** At least 32 bytes of key: below that HMAC-SHA256 is weaker than its output suggests. */
export const MIN_KEY_BYTES = 32

function mac(key: Buffer, owner: SealedOwner, exp: string, upstreamId: string): string {
  const h = createHmac('sha256', key)
  // Length-prefixed so no two field lists can produce the same input.
  for (const f of [PREFIX, owner.route, owner.issuer, owner.subject, owner.clientId, exp, upstreamId]) h.update(`${Buffer.byteLength(f)}:${f}`)
  return h.digest('base64url')
}

export type Unsealed =
  /** Not an id this gateway issued: decided by the registry alone, as before issue 23. */
  | { kind: 'plain' }
  /** Issued by the gateway but not for this caller, altered, or expired: refused (404). */
  | { kind: 'invalid'; reason: 'mac' | 'expired' | 'malformed' }
  | { kind: 'valid'; upstreamId: string; expiresAt: number }

export class SessionSealer {
  readonly #key: Buffer

  constructor(key: Buffer) {
    if (key.length < MIN_KEY_BYTES) throw new Error(`sessions.signingKey must be at least ${MIN_KEY_BYTES} bytes`)
    this.#key = key
  }

  /**
   * The id handed to the client, or undefined when the upstream's id is too long to carry in an
   * MCP session id (the session then works as an unsealed one: bound in the registry only).
   */
  seal(owner: SealedOwner, upstreamId: string, expiresAt: number): string | undefined {
    const exp = Math.ceil(expiresAt / 1000).toString(36)
    const id = `${PREFIX}.${exp}.${mac(this.#key, owner, exp, upstreamId)}.${upstreamId}`
    return id.length <= MAX_ID_LENGTH ? id : undefined
  }

  unseal(owner: SealedOwner, presented: string, now = Date.now()): Unsealed {
    if (!presented.startsWith(`${PREFIX}.`)) return { kind: 'plain' }
    const [, exp, tag, ...rest] = presented.split('.')
    const upstreamId = rest.join('.')
    if (!exp || !/^[0-9a-z]{1,11}$/.test(exp) || tag?.length !== MAC_CHARS || upstreamId === '') return { kind: 'invalid', reason: 'malformed' }
    const want = Buffer.from(mac(this.#key, owner, exp, upstreamId))
    const got = Buffer.from(tag)
    if (got.length !== want.length || !timingSafeEqual(got, want)) return { kind: 'invalid', reason: 'mac' }
    // Checked after the MAC, so an expiry is only ever reported for an id this key issued.
    const expiresAt = parseInt(exp, 36) * 1000
    if (expiresAt <= now) return { kind: 'invalid', reason: 'expired' }
    return { kind: 'valid', upstreamId, expiresAt }
  }
}
