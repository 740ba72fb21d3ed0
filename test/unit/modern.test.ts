/**
 * Pure 2026-07-28 logic: header checks (mcp/modern.ts) and the translation helpers
 * (modern/translate.ts, modern/sessions.ts), without Fastify or a network.
 */
import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../../gateway/store/shared-store.js'
import { GatewayError } from '../../gateway/errors.js'
import type { McpMessage } from '../../gateway/mcp/jsonrpc.js'
import { checkBridgeable, checkModernMessage, decodeHeaderValue, isModernVersion, legacyParams, supportedVersions, unsupportedVersion } from '../../gateway/mcp/modern.js'
import { modernSessionKey, UpstreamSessions } from '../../gateway/transports/modern/sessions.js'
import { classify, discoverResult, IdSource, initializeUpstream, postUpstream, sseData, toUpstreamRequest, type UpstreamSession } from '../../gateway/transports/modern/translate.js'

const V = '2026-07-28'
const META = { 'io.modelcontextprotocol/protocolVersion': V, 'io.modelcontextprotocol/clientInfo': { name: 'c', version: '1' } }
const req = (method: string, params: Record<string, unknown> = {}, id: string | number = 1): McpMessage => ({ kind: 'request', id, method, params: { ...params, _meta: { ...META, ...(params._meta as object) } } })
const code = (f: () => void): string | undefined => {
  try {
    f()
    return undefined
  } catch (e) {
    return (e as GatewayError).code
  }
}
const headers = (method: string | undefined, name?: string) => ({ protocolVersion: V, method, name })

describe('mcp/modern.ts', () => {
  it('isModernVersion: dated from 2026-07-28 on, and only date-shaped values', () => {
    expect(isModernVersion('2026-07-28')).toBe(true)
    expect(isModernVersion('2099-01-01')).toBe(true)
    expect(isModernVersion('2025-11-25')).toBe(false)
    expect(isModernVersion('2026-07-28x')).toBe(false)
    expect(isModernVersion('zzzz')).toBe(false)
  })

  it('V26-05 / supported versions per mode; -32022 data echoes only version-shaped input', () => {
    expect(supportedVersions('caller')[0]).toBe(V)
    expect(supportedVersions('refuse')).not.toContain(V)
    expect(supportedVersions('refuse')[0]).toBe('2025-11-25')
    const e = unsupportedVersion('2099-01-01', 'caller')
    expect(e.code).toBe('GW_MCP_UNSUPPORTED_VERSION')
    expect(e.spec.rpcCode).toBe(-32022)
    expect(e.data).toMatchObject({ requested: '2099-01-01' })
    expect(unsupportedVersion('<script>', 'caller').data).not.toHaveProperty('requested')
  })

  it('V26-01 / decodeHeaderValue: plain ASCII, canonical base64 sentinel with UTF-8, nothing else', () => {
    expect(decodeHeaderValue('search')).toBe('search')
    expect(decodeHeaderValue('file:///a b.txt')).toBe('file:///a b.txt')
    expect(decodeHeaderValue('=?base64?SGVsbG8sIOS4lueVjA==?=')).toBe('Hello, 世界')
    expect(decodeHeaderValue('=?base64?IHBhZGRlZCA=?=')).toBe(' padded ')
    expect(decodeHeaderValue('=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=')).toBe('=?base64?literal?=')
    expect(decodeHeaderValue('=?base64?not base64?=')).toBeUndefined()
    expect(decodeHeaderValue('=?base64?SGVsbG8?=')).toBeUndefined() // not padded: not canonical
    expect(decodeHeaderValue('=?BASE64?SGVsbG8=?=')).toBe('=?BASE64?SGVsbG8=?=') // markers are case-sensitive: a plain value
    expect(decodeHeaderValue('=?base64?/w==?=')).toBeUndefined() // invalid UTF-8
    expect(decodeHeaderValue(' lead')).toBeUndefined()
    expect(decodeHeaderValue('tab\tin')).toBe('tab\tin')
    expect(decodeHeaderValue('new\nline')).toBeUndefined()
  })

  it('V26-01 / V26-05 / checkModernMessage', () => {
    expect(code(() => checkModernMessage(req('tools/list'), headers('tools/list')))).toBeUndefined()
    expect(code(() => checkModernMessage(req('tools/call', { name: 'search' }), headers('tools/call', 'search')))).toBeUndefined()
    expect(code(() => checkModernMessage(req('resources/read', { uri: 'file:///x' }), headers('resources/read', 'file:///x')))).toBeUndefined()
    expect(code(() => checkModernMessage(req('prompts/get', { name: 'p' }), headers('prompts/get', 'p')))).toBeUndefined()
    for (const [m, h] of [
      [req('tools/call', { name: 'delete_repo' }), headers('tools/call', 'search')],
      [req('tools/call', { name: 'search' }), headers('tools/call')],
      [req('tools/list'), headers(undefined)],
      [req('tools/list'), headers('tools/call')],
      [req('prompts/get', { name: 'p' }), headers('prompts/get', 'q')],
      [req('tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': '2025-11-25' } }), headers('tools/list')],
      [{ kind: 'request', id: 1, method: 'tools/list', params: {} } as McpMessage, headers('tools/list')],
      [req('tools/call', { name: 7 }), headers('tools/call', '7')],
    ] as const) {
      expect(code(() => checkModernMessage(m, h)), JSON.stringify(m)).toBe('GW_MCP_HEADER_MISMATCH')
    }
    expect(code(() => checkModernMessage({ kind: 'response', id: 1 }, headers(undefined)))).toBe('GW_MCP_INVALID_REQUEST')
    // Notifications: header rules undefined by the revision, but what is stated must agree.
    expect(code(() => checkModernMessage({ kind: 'notification', method: 'notifications/x', params: undefined }, headers(undefined)))).toBeUndefined()
    expect(code(() => checkModernMessage({ kind: 'notification', method: 'notifications/x', params: undefined }, headers('notifications/y')))).toBe('GW_MCP_HEADER_MISMATCH')
  })

  it('checkBridgeable: initialize and subscriptions/listen are 404 -32601 unless the upstream is native', () => {
    expect(code(() => checkBridgeable(req('initialize'), 'caller'))).toBe('GW_MCP_METHOD_NOT_FOUND')
    expect(code(() => checkBridgeable(req('subscriptions/listen'), 'request'))).toBe('GW_MCP_METHOD_NOT_FOUND')
    expect(code(() => checkBridgeable(req('subscriptions/listen'), 'native'))).toBeUndefined()
    expect(code(() => checkBridgeable(req('tools/list'), 'caller'))).toBeUndefined()
  })

  it('legacyParams drops only the io.modelcontextprotocol/* envelope', () => {
    expect(legacyParams({ name: 'a', _meta: { ...META, progressToken: 5 } })).toEqual({ name: 'a', _meta: { progressToken: 5 } })
    expect(legacyParams({ name: 'a', _meta: META })).toEqual({ name: 'a' })
    expect(legacyParams(undefined)).toBeUndefined()
  })
})

describe('modern/translate.ts', () => {
  it('toUpstreamRequest: the upstream id replaces the id and the progress token', () => {
    const { body, progressToken } = toUpstreamRequest(req('tools/call', { name: 's', _meta: { progressToken: 'tok' } }, 9) as Extract<McpMessage, { kind: 'request' }>, 'mw-x-1')
    expect(progressToken).toBe('tok')
    expect(body).toEqual({ jsonrpc: '2.0', id: 'mw-x-1', method: 'tools/call', params: { name: 's', _meta: { progressToken: 'mw-x-1' } } })
  })

  it('classify: final, own progress, foreign progress, server requests', () => {
    expect(classify({ jsonrpc: '2.0', id: 'u1', result: { ok: 1 } }, 'u1', 7, undefined)).toEqual({ kind: 'final', message: { jsonrpc: '2.0', id: 7, result: { ok: 1 } } })
    expect(classify({ jsonrpc: '2.0', id: 'u2', result: {} }, 'u1', 7, undefined)).toEqual({ kind: 'other' })
    expect(classify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'u1', progress: 1 } }, 'u1', 7, 'tok')).toEqual({
      kind: 'notification',
      message: { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'tok', progress: 1 } },
    })
    expect(classify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'u9', progress: 1 } }, 'u1', 7, 'tok')).toEqual({ kind: 'other' })
    expect(classify({ jsonrpc: '2.0', id: 3, method: 'sampling/createMessage', params: {} }, 'u1', 7, undefined)).toEqual({ kind: 'server-request', id: 3 })
    expect(classify('garbage', 'u1', 7, undefined)).toEqual({ kind: 'other' })
  })

  it('sseData: events split on any line ending, multi-line data joined, comments ignored, chunk boundaries anywhere', async () => {
    const text = ': keep-alive\r\n\r\nevent: message\ndata: {"a":\ndata: 1}\n\nid: 5\rdata: {"b":2}\r\r'
    for (const size of [1, 3, 7, text.length]) {
      const bytes = new TextEncoder().encode(text)
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < bytes.length; i += size) c.enqueue(bytes.slice(i, i + size))
          c.close()
        },
      })
      const out: string[] = []
      for await (const d of sseData(body)) out.push(d)
      expect(out, `chunk ${size}`).toEqual(['{"a":\n1}', '{"b":2}'])
    }
  })

  /** A fake upstream whose body never ends on its own; it errors when the request is aborted. */
  const endless = (async (_url: unknown, init?: RequestInit) => {
    const signal = init!.signal!
    const body = new ReadableStream<Uint8Array>({ start: (c) => signal.addEventListener('abort', () => c.error(signal.reason)) })
    return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream', 'mcp-session-id': 's' } })
  }) as typeof fetch

  it('initializeUpstream: a handshake whose body never ends is cut at the timeout with an upstream error, not a hang or a 500', async () => {
    const started = Date.now()
    await expect(initializeUpstream(endless, { url: 'http://upstream.invalid/mcp', headers: {}, timeoutMs: 200 }, new IdSource('t'), { name: 'c', version: '1' })).rejects.toMatchObject({ code: 'GW_UPSTREAM_UNAVAILABLE' })
    expect(Date.now() - started).toBeLessThan(10_000)
  })

  it('V26-08 / postUpstream: the caller signal still cuts the body after the headers (client closed its stream)', async () => {
    const gone = new AbortController()
    const { response } = await postUpstream(endless, { url: 'http://upstream.invalid/mcp', headers: {}, timeoutMs: 5000 }, undefined, {}, gone.signal)
    const reading = (async () => {
      for await (const _ of sseData(response.body!)) void _
    })()
    gone.abort()
    await expect(reading).rejects.toBeDefined()
  })

  it('IdSource: unique per process and prefix', () => {
    const a = new IdSource('p')
    expect(new Set([a.next(), a.next(), a.next()]).size).toBe(3)
    expect(a.next()).toMatch(/^mw-p-\d+$/)
  })

  it('discoverResult: route versions, upstream capabilities and identity', () => {
    const s: UpstreamSession = { id: 'x', protocolVersion: '2025-11-25', serverInfo: { name: 'up', version: '2' }, capabilities: { tools: {} }, instructions: 'hi' }
    expect(discoverResult(s, ['2026-07-28', '2025-11-25'])).toMatchObject({ supportedVersions: ['2026-07-28', '2025-11-25'], capabilities: { tools: {} }, _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'up', version: '2' } }, instructions: 'hi' })
  })
})

describe('modern/sessions.ts', () => {
  const session = (id: string): UpstreamSession => ({ id, protocolVersion: '2025-11-25', serverInfo: {}, capabilities: {}, instructions: undefined })
  const who = (subject: string, clientId = 'agent') => ({ issuer: 'https://as', subject, clientId })

  it('SHTTP-27 / keys differ for every field of the caller and the route; fields cannot be shifted into each other', () => {
    const base = modernSessionKey('r', who('alice'))
    expect(modernSessionKey('r', who('bob'))).not.toBe(base)
    expect(modernSessionKey('r', who('alice', 'other'))).not.toBe(base)
    expect(modernSessionKey('r2', who('alice'))).not.toBe(base)
    expect(modernSessionKey('r', { issuer: 'https://as', subject: 'ab', clientId: 'c' })).not.toBe(modernSessionKey('r', { issuer: 'https://as', subject: 'a', clientId: 'bc' }))
  })

  it('one handshake for a burst of first requests; a dropped session is reopened; a stale drop does not remove a newer one', async () => {
    const sessions = new UpstreamSessions(new MemoryStore(), 60_000)
    let opened = 0
    const open = async () => session(`s${++opened}`)
    const key = modernSessionKey('r', who('alice'))
    const burst = await Promise.all([1, 2, 3, 4, 5].map(() => sessions.getOrOpen(key, open)))
    expect(opened).toBe(1)
    expect(new Set(burst.map((b) => b.session.id))).toEqual(new Set(['s1']))
    expect((await sessions.getOrOpen(key, open)).reused).toBe(true)
    await sessions.drop(key, session('s1'))
    const again = await sessions.getOrOpen(key, open)
    expect(again).toEqual({ session: session('s2'), reused: false })
    await sessions.drop(key, session('s1'))
    expect((await sessions.get(key))?.id).toBe('s2')
  })

  it('a failed handshake is not cached', async () => {
    const sessions = new UpstreamSessions(new MemoryStore(), 60_000)
    const key = modernSessionKey('r', who('alice'))
    await expect(sessions.getOrOpen(key, async () => Promise.reject(new GatewayError('GW_UPSTREAM_UNAVAILABLE')))).rejects.toBeInstanceOf(GatewayError)
    expect((await sessions.getOrOpen(key, async () => session('ok'))).session.id).toBe('ok')
  })
})
