/**
 * Session bindings through a store outage (issue 23), on a store whose outage the test switches:
 * nothing a replica has seen is forgotten while the store is down, a sealed id is decided without
 * the store, an ended session stays ended, and bindings are written back when the store returns.
 */
import { describe, expect, it } from 'vitest'
import type { Principal } from '../../../gateway/auth/principal.js'
import { MemoryStore, type SharedStore } from '../../../gateway/store/shared-store.js'
import { SessionRegistry, sessionKey } from '../../../gateway/session/binding.js'
import { RECHECK_MS } from '../../../gateway/session/local-bindings.js'
import { SessionSealer } from '../../../gateway/session/sealed-id.js'

/** A MemoryStore that can be "killed" (misses, dropped writes) and "restarted empty". */
class SwitchableStore implements SharedStore {
  readonly kind = 'redis' as const
  inner = new MemoryStore()
  up = true
  get = (k: string) => (this.up ? this.inner.get(k) : Promise.resolve(undefined))
  set = async (k: string, v: string, ttl: number) => void (this.up && (await this.inner.set(k, v, ttl)))
  setIfAbsent = (k: string, v: string, ttl: number) => (this.up ? this.inner.setIfAbsent(k, v, ttl) : Promise.resolve(false))
  delete = async (k: string) => void (this.up && (await this.inner.delete(k)))
  healthy = () => this.up
  close = () => this.inner.close()
  restartEmpty() {
    this.inner = new MemoryStore()
    this.up = true
  }
}

const who = (subject: string, clientId = 'agent'): Principal => ({ issuer: 'https://as.example', subject, clientId }) as Principal
const alice = who('alice')
const bob = who('bob')
const TTL = 24 * 3600_000
const KEY = Buffer.from('s'.repeat(32))

function replicas(n: number, sealed: boolean) {
  const store = new SwitchableStore()
  let now = 1_800_000_000_000
  const clock = { advance: (ms: number) => (now += ms) }
  const rs = Array.from({ length: n }, () => new SessionRegistry(store, TTL, { now: () => now, ...(sealed ? { sealer: new SessionSealer(KEY) } : {}) }))
  return { store, clock, rs }
}

describe('session bindings through a store outage', () => {
  it('a replica never forgets a binding it has seen while the store is down, however long', async () => {
    const { store, clock, rs } = replicas(2, false)
    await rs[0]!.record('alpha', 'up-1', alice)
    expect(await rs[1]!.check('alpha', 'up-1', alice)).toBe('owner')
    store.up = false
    for (let i = 0; i < 10; i++) {
      clock.advance(RECHECK_MS)
      expect(await rs[1]!.check('alpha', 'up-1', alice)).toBe('owner')
      expect(await rs[1]!.check('alpha', 'up-1', bob)).toBe('foreign')
    }
  })

  it('without sealing, a session opened during the outage is unknown to the other replicas (the reported gap)', async () => {
    const { store, rs } = replicas(2, false)
    store.up = false
    const id = await rs[0]!.issue('alpha', 'up-2', alice)
    expect(id).toBe('up-2')
    expect(await rs[1]!.check('alpha', id, alice)).toBe('unknown')
  })

  it('sealed: every replica serves a session opened during the outage; other callers and forged ids are refused', async () => {
    const { store, rs } = replicas(3, true)
    store.up = false
    const id = await rs[0]!.issue('alpha', 'up-3', alice)
    expect(id).not.toBe('up-3')
    // The raw upstream id is not a way around the seal on a replica that only ever saw sealed ids.
    expect((await rs[2]!.resolve('alpha', 'up-3', alice)).verdict).toBe('unknown')
    for (const r of rs) {
      expect(await r.resolve('alpha', id, alice)).toEqual({ verdict: 'owner', upstreamId: 'up-3' })
      expect((await r.resolve('alpha', id, bob)).verdict).toBe('unknown')
      expect((await r.resolve('alpha', id, who('alice', 'other-agent'))).verdict).toBe('unknown')
      expect((await r.resolve('beta', id, alice)).verdict).toBe('unknown')
      expect((await r.resolve('alpha', 'up-3', bob)).verdict).not.toBe('owner')
    }
    // Bob's own sealed id does not open Alice's upstream session: the MAC covers the upstream id.
    const bobs = await rs[0]!.issue('alpha', 'up-bob', bob)
    const swapped = bobs.replace(/up-bob$/, 'up-3')
    expect((await rs[1]!.resolve('alpha', swapped, bob)).verdict).toBe('unknown')
  })

  it('an ended session stays ended on replicas that still hold it, once they recheck the store', async () => {
    const { clock, rs } = replicas(2, true)
    const id = await rs[0]!.issue('alpha', 'up-4', alice)
    expect((await rs[1]!.resolve('alpha', id, alice)).verdict).toBe('owner')
    await rs[0]!.forget('alpha', 'up-4')
    expect((await rs[0]!.resolve('alpha', id, alice)).verdict).toBe('unknown')
    clock.advance(RECHECK_MS)
    expect((await rs[1]!.resolve('alpha', id, alice)).verdict).toBe('unknown')
  })

  it('write-back: after an empty restart the store learns every binding again (NX: a tombstone wins)', async () => {
    const { store, clock, rs } = replicas(2, false)
    await rs[0]!.record('alpha', 'up-5', alice)
    await rs[0]!.record('alpha', 'up-6', alice)
    store.up = false
    await rs[0]!.record('alpha', 'up-7', alice)
    clock.advance(1000)
    store.restartEmpty()
    await rs[1]!.forget('alpha', 'up-6')
    // The next call on replica 0 notices the store is back and writes back.
    expect(await rs[0]!.check('alpha', 'up-5', alice)).toBe('owner')
    await new Promise((r) => setTimeout(r, 10))
    expect(rs[0]!.writtenBack).toBe(3)
    expect(JSON.parse((await store.get(sessionKey('alpha', 'up-7')))!)).toMatchObject({ subject: 'alice', route: 'alpha' })
    expect(await store.get(sessionKey('alpha', 'up-6'))).toBe('-')
    // Replica 1 never saw up-7; it is known to it through the store now.
    expect(await rs[1]!.check('alpha', 'up-7', alice)).toBe('owner')
  })

  it('a store that lost a binding while up (eviction) does not make the replica forget it', async () => {
    const { store, clock, rs } = replicas(1, false)
    await rs[0]!.record('alpha', 'up-8', alice)
    await store.inner.delete(sessionKey('alpha', 'up-8'))
    clock.advance(RECHECK_MS)
    expect(await rs[0]!.check('alpha', 'up-8', alice)).toBe('owner')
    expect(await store.get(sessionKey('alpha', 'up-8'))).toContain('"alice"')
  })

  it('a binding expires at its ttl, outage or not', async () => {
    const { store, clock, rs } = replicas(1, false)
    await rs[0]!.record('alpha', 'up-9', alice)
    store.up = false
    clock.advance(TTL)
    expect(await rs[0]!.check('alpha', 'up-9', alice)).toBe('unknown')
  })
})
