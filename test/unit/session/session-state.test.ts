/**
 * Decision logic of the session state (issue 16 items 4, 5, 8), without Fastify: the version a
 * request is handled under (SHTTP-14/33/34, ATK-42), server requests awaiting an answer
 * (SHTTP-36, ATK-51), and the filter for answers replayed on GET streams (ATK-59).
 */
import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { MemoryStore, type SharedStore } from '../../../gateway/store/shared-store.js'
import { GatewayError } from '../../../gateway/errors.js'
import { parseMcpBody } from '../../../gateway/mcp/jsonrpc.js'
import { replayFilter } from '../../../gateway/policy/filter.js'
import { rewriteJsonBody, sseRewriter } from '../../../gateway/upstream/response-transform.js'
import { NegotiatedVersions, sessionVersion, versionOfInitializeResult } from '../../../gateway/session/negotiated.js'
import { MAX_PENDING_PER_SESSION, serverRequestId, ServerRequests } from '../../../gateway/session/server-requests.js'

const body = (text: string) => parseMcpBody(Buffer.from(text), '2025-03-26')
const BATCH = body('[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo"}}]')
const SINGLE = body('{"jsonrpc":"2.0","id":1,"method":"ping"}')
const refusal = (f: () => unknown): string | undefined => {
  try {
    f()
    return undefined
  } catch (e) {
    return e instanceof GatewayError ? `${e.code}: ${e.detail}` : 'other'
  }
}

describe('sessionVersion (SHTTP-33, SHTTP-34, SHTTP-14)', () => {
  it('ATK-42 / a 2025-11-25 session refuses a downgrade header and a batch under any header', () => {
    expect(refusal(() => sessionVersion('2025-11-25', { header: '2025-03-26', body: BATCH }, '2025-03-26'))).toMatch(/^GW_MCP_INVALID_REQUEST: MCP-Protocol-Version 2025-03-26 contradicts/)
    expect(refusal(() => sessionVersion('2025-11-25', { header: undefined, body: BATCH }, '2025-03-26'))).toMatch(/batches are not allowed in 2025-11-25/)
    expect(refusal(() => sessionVersion('2025-11-25', { header: '2025-11-25', body: BATCH }, '2025-11-25'))).toMatch(/batches/)
    expect(refusal(() => sessionVersion('2025-11-25', { header: '2025-06-18', body: undefined }, '2025-06-18'))).toMatch(/contradicts/)
  })
  it('SHTTP-33 / without a header the session version is the one used; a matching header is fine', () => {
    expect(sessionVersion('2025-11-25', { header: undefined, body: SINGLE }, '2025-03-26')).toBe('2025-11-25')
    expect(sessionVersion('2025-11-25', { header: '2025-11-25', body: SINGLE }, '2025-11-25')).toBe('2025-11-25')
  })
  it('a 2025-03-26 session may batch, and cannot be upgraded by a header', () => {
    expect(sessionVersion('2025-03-26', { header: undefined, body: BATCH }, '2025-03-26')).toBe('2025-03-26')
    expect(refusal(() => sessionVersion('2025-03-26', { header: '2025-11-25', body: SINGLE }, '2025-11-25'))).toMatch(/contradicts/)
  })
  it('no recorded version: the request decides as before (its fallback)', () => {
    expect(sessionVersion(undefined, { header: '2025-03-26', body: BATCH }, '2025-03-26')).toBe('2025-03-26')
  })
})

describe('versionOfInitializeResult', () => {
  it('takes the version from the answer to this initialize only, and only a supported one', () => {
    expect(versionOfInitializeResult({ jsonrpc: '2.0', id: 1, result: { protocolVersion: '2025-06-18' } }, 1)).toBe('2025-06-18')
    expect(versionOfInitializeResult({ jsonrpc: '2.0', id: 2, result: { protocolVersion: '2025-06-18' } }, 1)).toBeUndefined()
    expect(versionOfInitializeResult({ jsonrpc: '2.0', id: '1', result: { protocolVersion: '2025-06-18' } }, 1)).toBeUndefined()
    expect(versionOfInitializeResult({ jsonrpc: '2.0', id: 1, method: 'x', result: { protocolVersion: '2025-06-18' } }, 1)).toBeUndefined()
    expect(versionOfInitializeResult({ jsonrpc: '2.0', id: 1, result: { protocolVersion: '2099-01-01' } }, 1)).toBeUndefined()
    expect(versionOfInitializeResult({ jsonrpc: '2.0', id: 1, error: { code: 1 } }, 1)).toBeUndefined()
  })
})

describe('NegotiatedVersions', () => {
  it('a version recorded through one replica is read by another (shared store); forget removes it; junk reads as unknown', async () => {
    const store = new MemoryStore()
    const a = new NegotiatedVersions(store, 60_000)
    const b = new NegotiatedVersions(store, 60_000)
    await a.record('alpha', 's1', '2025-11-25')
    expect(await b.get('alpha', 's1')).toBe('2025-11-25')
    expect(await b.get('beta', 's1')).toBeUndefined()
    await a.forget('alpha', 's1')
    expect(await new NegotiatedVersions(store, 60_000).get('alpha', 's1')).toBeUndefined()
  })
})

const principal = { issuer: 'https://as', subject: 'alice', clientId: 'agent' }
const scope = (sessionId: string | undefined = 's1', p = principal) => ({ route: 'alpha', sessionId, principal: p })

describe('ServerRequests (SHTTP-36, ATK-51)', () => {
  it('an answer is accepted once, only for a recorded id, only in the scope that saw the request', async () => {
    const r = new ServerRequests(new MemoryStore())
    expect(await r.answer(scope(), 'srv-1')).toBe(false)
    await r.expect(scope(), 7)
    expect(await r.answer(scope(), '7')).toBe(false)
    expect(await r.answer(scope('s2'), 7)).toBe(false)
    expect(await r.answer(scope('s1', { ...principal, subject: 'bob' }), 7)).toBe(false)
    expect(await r.answer(scope(), 7)).toBe(true)
    expect(await r.answer(scope(), 7)).toBe(false)
  })
  it('a request relayed by one replica can be answered through another, still once', async () => {
    const store = new MemoryStore()
    const a = new ServerRequests(store)
    const b = new ServerRequests(store)
    await a.expect(scope(), 'e1')
    expect(await b.answer(scope(), 'e1')).toBe(true)
    expect(await a.answer(scope(), 'e1')).toBe(false)
  })
  it('a store that is down: the replica that relayed the request still accepts its answer, others refuse', async () => {
    const down: SharedStore = { kind: 'redis', get: async () => undefined, set: async () => undefined, setIfAbsent: async () => false, delete: async () => undefined, healthy: () => false, close: async () => undefined }
    const a = new ServerRequests(down)
    const b = new ServerRequests(down)
    await a.expect(scope(), 1)
    expect(await b.answer(scope(), 1)).toBe(false)
    expect(await a.answer(scope(), 1)).toBe(true)
    expect(await a.answer(scope(), 1)).toBe(false)
  })
  it('outstanding requests per session are bounded; answering frees a slot', async () => {
    const r = new ServerRequests(new MemoryStore())
    for (let i = 0; i < MAX_PENDING_PER_SESSION; i++) expect(await r.expect(scope(), i)).toBe(true)
    expect(await r.expect(scope(), 'one-too-many')).toBe(false)
    expect(await r.expect(scope('s2'), 'other-session')).toBe(true)
    expect(await r.answer(scope(), 0)).toBe(true)
    expect(await r.expect(scope(), 'fits-again')).toBe(true)
  })
  it('the entries expire (TTL)', async () => {
    const r = new ServerRequests(new MemoryStore(), 1)
    await r.expect(scope(), 1)
    await new Promise((res) => setTimeout(res, 5))
    expect(await r.answer(scope(), 1)).toBe(false)
  })
  it('serverRequestId: requests only, not notifications or responses', () => {
    expect(serverRequestId({ jsonrpc: '2.0', id: 3, method: 'elicitation/create' })).toBe(3)
    expect(serverRequestId({ jsonrpc: '2.0', method: 'notifications/progress' })).toBeUndefined()
    expect(serverRequestId({ jsonrpc: '2.0', id: 3, result: {} })).toBeUndefined()
    expect(serverRequestId({ jsonrpc: '2.0', id: 1.5, method: 'x' })).toBeUndefined()
  })
})

describe('replayFilter (ATK-59 on GET streams)', () => {
  const f = replayFilter((_kind, name) => name !== 'delete_repo' && name !== 'demo://secret')
  it('filters every list field of any response, whatever its id', () => {
    expect(f({ jsonrpc: '2.0', id: 'whatever', result: { tools: [{ name: 'search' }, { name: 'delete_repo' }, {}] } })).toEqual({ jsonrpc: '2.0', id: 'whatever', result: { tools: [{ name: 'search' }] } })
    expect(f({ jsonrpc: '2.0', id: 4, result: { resources: [{ uri: 'demo://secret' }, { uri: 'demo://readme' }], nextCursor: 'c' } })).toEqual({ jsonrpc: '2.0', id: 4, result: { resources: [{ uri: 'demo://readme' }], nextCursor: 'c' } })
  })
  it('leaves requests, notifications and results that are no list untouched (same object)', () => {
    for (const m of [{ jsonrpc: '2.0', id: 1, method: 'elicitation/create', params: {} }, { jsonrpc: '2.0', method: 'notifications/tools/list_changed' }, { jsonrpc: '2.0', id: 2, result: { content: [] } }]) expect(f(m)).toBe(m)
  })
})

describe('watch on relayed answers (proxy/response-transform)', () => {
  const collect = async (chunks: string[], watch: (m: unknown) => boolean | Promise<boolean>) => {
    let out = ''
    for await (const c of Readable.from(chunks.map((c) => Buffer.from(c))).pipe(sseRewriter(undefined, watch))) out += String(c)
    return out
  }
  it('awaits the watch before an event goes out, keeps order and the upstream bytes, and drops a withheld event whole', async () => {
    const seen: string[] = []
    const watch = async (m: unknown) => {
      await new Promise((r) => setTimeout(r, 1))
      seen.push(JSON.stringify(m))
      return (m as { id?: unknown }).id !== 'drop'
    }
    const out = await collect(['id: 1\ndata: {"jsonrpc":"2.0",  "id":"keep","method":"x"}\n\nid: 2\ndata: {"jsonrpc":"2.0","id":"drop","method":"y"}\n\n', ': ping\n\n'], watch)
    expect(out).toBe('id: 1\ndata: {"jsonrpc":"2.0",  "id":"keep","method":"x"}\n\n: ping\n\n')
    expect(seen).toHaveLength(2)
  })
  it('a JSON answer whose only message is withheld is not relayed at all', async () => {
    await expect(rewriteJsonBody(Readable.from([Buffer.from('{"jsonrpc":"2.0","id":1,"result":{}}')]), (m) => m, undefined, () => false)).rejects.toThrow()
    expect(await rewriteJsonBody(Readable.from([Buffer.from('{"jsonrpc":"2.0","id":1,"result":{}}')]), (m) => m, undefined, () => true)).toBe('{"jsonrpc":"2.0","id":1,"result":{}}')
  })
})
