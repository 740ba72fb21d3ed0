/**
 * DPoP proofs at the resource server (RFC 9449 §4.3, §7.1, §9, §11). `checkDpopProof` is the
 * pure part (every check that needs no shared state); `DpopVerifier` adds the two that need the
 * SharedStore so that they hold across replicas: the server nonce and the `jti` replay check.
 * A proof is refused as a whole: there is no "mostly valid" proof (RFC 9449 §7.1 "MUST NOT grant
 * access … unless all checks are successful").
 */
import { createHash, randomBytes } from 'node:crypto'
import type { SharedStore } from '../store/shared-store.js'
import type { RuntimeDpop } from '../config/load.js'
import { GatewayError } from '../errors.js'
import { decodeUtf8Strict, parseStrictJson } from '../lib/strict-json.js'
import { importVerifyKey, JwsError, verifyCompactJws } from './jws-verify.js'

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
/** DPOP-03: a longer jti is refused rather than stored. */
const MAX_JTI_LENGTH = 256
/** Proofs are small (a public key and five claims); anything much larger is not one. */
export const MAX_PROOF_LENGTH = 8192
/** The members RFC 7638 §3.2 hashes, per key type, in the lexicographic order it requires. */
const THUMBPRINT_MEMBERS: Record<string, readonly string[]> = { EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'], RSA: ['e', 'kty', 'n'] }

const proofError = (detail: string): GatewayError => new GatewayError('GW_AUTH_INVALID_DPOP_PROOF', { detail, scheme: 'DPoP' })
/** Binding failures are about the token (RFC 9449 §7.1, checklist DPOP-01), not the proof. */
const bindingError = (detail: string): GatewayError => new GatewayError('GW_AUTH_INVALID_TOKEN', { reason: 'auth-dpop', detail, scheme: 'DPoP' })

/** RFC 7638 JWK SHA-256 thumbprint, base64url; undefined for a key type we do not accept. */
export function jwkThumbprint(jwk: Record<string, unknown>): string | undefined {
  const members = typeof jwk.kty === 'string' ? THUMBPRINT_MEMBERS[jwk.kty] : undefined
  if (!members || members.some((m) => typeof jwk[m] !== 'string')) return undefined
  const canonical = `{${members.map((m) => `${JSON.stringify(m)}:${JSON.stringify(jwk[m])}`).join(',')}}`
  return createHash('sha256').update(canonical).digest('base64url')
}

/** `ath` (RFC 9449 §4.2): base64url of the SHA-256 of the access token's ASCII bytes. */
export const accessTokenHash = (token: string): string => createHash('sha256').update(token, 'ascii').digest('base64url')

/**
 * RFC 9449 §4.3 item 9: `htu` is compared without query and fragment, after RFC 3986 §6.2.2/6.2.3
 * syntax- and scheme-based normalisation (case of scheme and host, default port, dot segments),
 * which is what WHATWG URL parsing does. Undefined when it is not an absolute http(s) URL.
 */
export function normalizeHtu(u: string): string | undefined {
  let url: URL
  try {
    url = new URL(u)
  } catch {
    return undefined
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined
  if (url.username || url.password) return undefined
  return `${url.protocol}//${url.host}${url.pathname}`
}

export interface ProofContext {
  /** The request method, as received. */
  method: string
  /** The gateway's public URL of this request (configured origin + path), never the upstream's or a client's Host. */
  url: string
  accessToken: string
  /** The token's `cnf.jkt`. */
  jkt: string
  nowSec: number
  clockSkewSec: number
  settings: RuntimeDpop
}

export interface CheckedProof {
  jti: string
  iat: number
  nonce: string | undefined
}

function decodePart(seg: string, what: string): Record<string, unknown> {
  let v: unknown
  try {
    v = parseStrictJson(decodeUtf8Strict(Buffer.from(seg, 'base64url')), { rejectProtoKeys: false, maxDepth: 8 })
  } catch (e) {
    throw proofError(`${what}: ${(e as Error).message}`)
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw proofError(`${what} is not a JSON object`)
  return v as Record<string, unknown>
}

/** RFC 9449 §4.3 items 1–11 and the key binding of §7.1 (`cnf.jkt`). Throws GatewayError. */
export function checkDpopProof(proof: string, ctx: ProofContext): CheckedProof {
  if (proof.length > MAX_PROOF_LENGTH || !COMPACT_JWS.test(proof)) throw proofError('not a signed compact JWS')
  const [h, p] = proof.split('.') as [string, string, string]
  const header = decodePart(h, 'header')
  const claims = decodePart(p, 'claims')

  if (typeof header.typ !== 'string' || header.typ.toLowerCase() !== 'dpop+jwt') throw proofError('typ is not dpop+jwt')
  const alg = header.alg
  // The allow-list is asymmetric by construction (schema), so none and HS* never get this far.
  if (typeof alg !== 'string' || !ctx.settings.algorithms.includes(alg)) throw proofError('algorithm not allowed')
  if (header.crit !== undefined) throw proofError('crit is not supported')
  const jwk = header.jwk
  if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk)) throw proofError('jwk missing')
  let key
  try {
    // Refuses private members, keys that do not fit alg, weak RSA moduli.
    key = importVerifyKey(jwk, alg)
    verifyCompactJws(proof, alg, key)
  } catch (e) {
    throw proofError(e instanceof JwsError ? `signature: ${e.code}` : 'signature verification failed')
  }

  if (typeof claims.jti !== 'string' || claims.jti === '' || claims.jti.length > MAX_JTI_LENGTH) throw proofError('jti missing or too long')
  if (claims.htm !== ctx.method) throw proofError('htm does not match the request method')
  const htu = typeof claims.htu === 'string' ? normalizeHtu(claims.htu) : undefined
  if (!htu || htu !== normalizeHtu(ctx.url)) throw proofError('htu does not match the request URL')
  if (typeof claims.iat !== 'number' || !Number.isFinite(claims.iat)) throw proofError('iat missing')
  if (claims.iat > ctx.nowSec + ctx.clockSkewSec) throw proofError('iat in the future')
  if (claims.iat < ctx.nowSec - ctx.settings.maxAgeSec - ctx.clockSkewSec) throw proofError('proof too old')
  if (claims.nonce !== undefined && typeof claims.nonce !== 'string') throw proofError('nonce is not a string')

  if (typeof claims.ath !== 'string' || claims.ath !== accessTokenHash(ctx.accessToken)) throw bindingError('ath does not match the access token')
  if (jwkThumbprint(jwk as Record<string, unknown>) !== ctx.jkt) throw bindingError('proof key does not match cnf.jkt')
  return { jti: claims.jti, iat: claims.iat, nonce: claims.nonce as string | undefined }
}

/**
 * Server nonces shared by all replicas: one random value per rotation period, created by
 * whichever replica needs it first (set-if-absent) and read by the others. The current and the
 * previous period's nonce are accepted, so a rotation never fails a client mid-flight.
 */
export class DpopNonces {
  readonly #store: SharedStore
  readonly #now: () => number
  readonly #local = new Map<string, string>()

  constructor(store: SharedStore, now: () => number = Date.now) {
    this.#store = store
    this.#now = now
  }

  #key(scope: string, period: number): string {
    return `dpop:nonce:${scope}:${period}`
  }

  async #forPeriod(scope: string, rotationMs: number, period: number, create: boolean): Promise<string | undefined> {
    const key = this.#key(scope, period)
    const cached = this.#local.get(key)
    if (cached) return cached
    let value = await this.#store.get(key)
    if (!value && create) {
      const fresh = randomBytes(24).toString('base64url')
      value = (await this.#store.setIfAbsent(key, fresh, rotationMs * 3)) ? fresh : await this.#store.get(key)
    }
    if (value) {
      if (this.#local.size > 64) this.#local.clear()
      this.#local.set(key, value)
    }
    return value
  }

  /** The nonce to hand out now; undefined when the shared store cannot agree on one. */
  current(scope: string, rotationMs: number): Promise<string | undefined> {
    return this.#forPeriod(scope, rotationMs, Math.floor(this.#now() / rotationMs), true)
  }

  async accepts(scope: string, rotationMs: number, nonce: string): Promise<boolean> {
    const period = Math.floor(this.#now() / rotationMs)
    for (const p of [period, period - 1]) if ((await this.#forPeriod(scope, rotationMs, p, false)) === nonce) return true
    return false
  }
}

export interface DpopRequest {
  proofs: readonly string[]
  method: string
  url: string
  accessToken: string
  jkt: string
  /** Scope of nonces and replays: the issuer's identifier, the same on every replica. */
  issuer: string
  clockSkewSec: number
  settings: RuntimeDpop
}

export class DpopVerifier {
  readonly #store: SharedStore
  readonly #now: () => number
  readonly nonces: DpopNonces

  constructor(store: SharedStore, now: () => number = Date.now) {
    this.#store = store
    this.#now = now
    this.nonces = new DpopNonces(store, now)
  }

  async verify(r: DpopRequest): Promise<CheckedProof> {
    // RFC 9449 §4.3 item 1: exactly one DPoP header field.
    if (r.proofs.length !== 1) throw proofError(r.proofs.length === 0 ? 'no DPoP proof' : 'more than one DPoP header')
    const nowSec = Math.floor(this.#now() / 1000)
    const checked = checkDpopProof(r.proofs[0]!, { method: r.method, url: r.url, accessToken: r.accessToken, jkt: r.jkt, nowSec, clockSkewSec: r.clockSkewSec, settings: r.settings })
    const scope = createHash('sha256').update(r.issuer).digest('base64url').slice(0, 22)
    if (r.settings.nonce && (checked.nonce === undefined || !(await this.nonces.accepts(scope, r.settings.nonceRotationMs, checked.nonce)))) {
      const nonce = await this.nonces.current(scope, r.settings.nonceRotationMs)
      if (!nonce) throw new GatewayError('GW_AUTH_UNAVAILABLE', { detail: 'DPoP nonce store unavailable', retryAfter: 2 })
      throw new GatewayError('GW_AUTH_USE_DPOP_NONCE', { detail: checked.nonce === undefined ? 'proof without nonce' : 'stale or unknown nonce', scheme: 'DPoP', dpopNonce: nonce })
    }
    // RFC 9449 §11.1: remember each jti for as long as its proof could be accepted, on every replica.
    // Keyed by the proof key too, so one client cannot burn another's jti.
    const ttlMs = (r.settings.maxAgeSec + 2 * r.clockSkewSec + 1) * 1000
    const key = `dpop:jti:${scope}:${createHash('sha256').update(`${r.jkt}\n${checked.jti}`).digest('base64url')}`
    if (!(await this.#store.setIfAbsent(key, '1', ttlMs))) {
      // A store that cannot answer says false too: refuse (fail closed), but say why.
      if (!this.#store.healthy()) throw new GatewayError('GW_AUTH_UNAVAILABLE', { detail: 'DPoP replay store unavailable', retryAfter: 2 })
      throw proofError('jti already used (replay)')
    }
    return checked
  }
}
