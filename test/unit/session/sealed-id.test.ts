/**
 * Sealed session ids (issue 23): a replica decides a session it has never seen from the id alone,
 * and every way of presenting someone else's, an altered or an expired id is refused.
 */
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MAX_ID_LENGTH, SessionSealer, type SealedOwner } from '../../../gateway/session/sealed-id.js'
import { SESSION_ID } from '../../../gateway/mcp/protocol.js'

const KEY = Buffer.from('k'.repeat(32))
const alice: SealedOwner = { route: 'alpha', issuer: 'https://as.example', subject: 'alice', clientId: 'agent-1' }
const NOW = 1_800_000_000_000
const UP = '2d5c0a8e-7f3b-4c1a-9e3d-0b6f1a2c3d4e'
const sealer = new SessionSealer(KEY)

describe('session/sealed-id', () => {
  it('the owner gets the upstream id back; the id is a valid MCP session id and names no owner', () => {
    const id = sealer.seal(alice, UP, NOW + 60_000)!
    expect(SESSION_ID.test(id)).toBe(true)
    expect(id).not.toContain('alice')
    expect(id).not.toContain('agent-1')
    expect(sealer.unseal(alice, id, NOW)).toEqual({ kind: 'valid', upstreamId: UP, expiresAt: Math.ceil((NOW + 60_000) / 1000) * 1000 })
  })

  it('another subject, agent, issuer or route presenting it: refused by the MAC', () => {
    const id = sealer.seal(alice, UP, NOW + 60_000)!
    for (const other of [{ subject: 'bob' }, { clientId: 'agent-2' }, { issuer: 'https://evil.example' }, { route: 'beta' }]) {
      expect(sealer.unseal({ ...alice, ...other }, id, NOW)).toEqual({ kind: 'invalid', reason: 'mac' })
    }
  })

  it('field boundaries are length-prefixed: ("ab","c") and ("a","bc") do not share a MAC', () => {
    const id = sealer.seal({ ...alice, subject: 'ab', clientId: 'c' }, UP, NOW + 60_000)!
    expect(sealer.unseal({ ...alice, subject: 'a', clientId: 'bc' }, id, NOW).kind).toBe('invalid')
  })

  it('an id sealed under another key, an edited upstream id, expiry or MAC: refused', () => {
    const id = sealer.seal(alice, UP, NOW + 60_000)!
    const other = new SessionSealer(randomBytes(32)).seal(alice, UP, NOW + 60_000)!
    expect(sealer.unseal(alice, other, NOW)).toEqual({ kind: 'invalid', reason: 'mac' })
    const [p, exp, mac, up] = id.split('.') as [string, string, string, string]
    expect(sealer.unseal(alice, [p, exp, mac, `${up}x`].join('.'), NOW).kind).toBe('invalid')
    expect(sealer.unseal(alice, [p, (parseInt(exp, 36) + 1000).toString(36), mac, up].join('.'), NOW).kind).toBe('invalid')
    expect(sealer.unseal(alice, [p, exp, `${mac.slice(0, -1)}${mac.endsWith('A') ? 'B' : 'A'}`, up].join('.'), NOW).kind).toBe('invalid')
    expect(sealer.unseal(alice, [p, exp, mac].join('.'), NOW)).toEqual({ kind: 'invalid', reason: 'malformed' })
  })

  it('expired: refused, even for its owner', () => {
    const id = sealer.seal(alice, UP, NOW + 60_000)!
    expect(sealer.unseal(alice, id, NOW + 60_000)).toEqual({ kind: 'invalid', reason: 'expired' })
  })

  it('an id the gateway did not seal is plain (decided by the registry), a too long upstream id is not sealed', () => {
    expect(sealer.unseal(alice, UP, NOW)).toEqual({ kind: 'plain' })
    expect(sealer.seal(alice, 'x'.repeat(MAX_ID_LENGTH), NOW + 60_000)).toBeUndefined()
  })

  it('refuses a key shorter than 32 bytes', () => {
    expect(() => new SessionSealer(Buffer.alloc(31))).toThrow(/32 bytes/)
  })

  it('property: any id not sealed for this owner by this key is never valid', () => {
    const valid = sealer.seal(alice, UP, NOW + 60_000)!
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 256 }), fc.nat({ max: valid.length - 1 }), (s, cut) => {
        for (const forged of [s, `s1.${s}`, valid.slice(0, cut) + s + valid.slice(cut + 1)]) {
          if (forged === valid) continue
          const r = sealer.unseal(alice, forged, NOW)
          if (r.kind === 'valid') throw new Error(`forged id accepted: ${forged}`)
        }
      }),
      { numRuns: 500 },
    )
  })
})
