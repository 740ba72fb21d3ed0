import { describe, expect, it } from 'vitest'
import { deliverOnStream, isMessageId, messagesOfJson, negotiatedVersion, newMessageId, SseDecoder, sseEvent } from '../../../../gateway/transports/legacy/sse.js'

const enc = (s: string) => new TextEncoder().encode(s)

describe('legacy SSE pieces (gateway/transports/legacy/sse.ts)', () => {
  it('frames events, one data line per line of data (no line break can forge a second event)', () => {
    expect(sseEvent('endpoint', '/mcp/x/message?sessionId=abc')).toBe('event: endpoint\ndata: /mcp/x/message?sessionId=abc\n\n')
    expect(sseEvent('message', 'a\nevent: endpoint\r\ndata: evil')).toBe('event: message\ndata: a\ndata: event: endpoint\ndata: data: evil\n\n')
    const d = new SseDecoder()
    expect(d.push(enc(sseEvent('message', 'a\nb')))).toEqual([{ event: 'message', data: 'a\nb' }])
  })

  it('decodes events split anywhere, CRLF and CR line ends, comments, default event name', () => {
    const text = ': keep-alive\r\n\r\nevent: message\r\ndata: {"a":"é"}\r\n\r\ndata: x\rdata: y\r\rid: 3\nretry: 10\ndata\n\n'
    const bytes = enc(text)
    for (const step of [1, 2, 3, 7, bytes.length]) {
      const d = new SseDecoder()
      const out = []
      for (let i = 0; i < bytes.length; i += step) out.push(...d.push(bytes.subarray(i, i + step)))
      expect(out, `step ${step}`).toEqual([
        { event: 'message', data: '{"a":"é"}' },
        { event: 'message', data: 'x\ny' },
        { event: 'message', data: '' },
      ])
    }
  })

  it('message ids: 256 random bits, base64url, validated by shape', () => {
    const a = newMessageId()
    expect(isMessageId(a)).toBe(true)
    expect(a).not.toBe(newMessageId())
    for (const bad of [undefined, '', 'x', `${a}=`, a.slice(1), `${a.slice(1)}/`, ['a']]) expect(isMessageId(bad)).toBe(false)
  })

  it('JSON answers become one event per message; only JSON-RPC errors for a request go onto the stream', () => {
    expect(messagesOfJson([{ id: 1 }, { id: 2 }])).toEqual([{ id: 1 }, { id: 2 }])
    expect(messagesOfJson({ id: 1 })).toEqual([{ id: 1 }])
    const rpcError = { jsonrpc: '2.0', id: 4, error: { code: -31403, message: 'Forbidden' } }
    expect(deliverOnStream(400, {}, rpcError)).toBe(true)
    expect(deliverOnStream(404, {}, rpcError)).toBe(true)
    expect(deliverOnStream(401, {}, rpcError)).toBe(false)
    expect(deliverOnStream(429, {}, rpcError)).toBe(false)
    expect(deliverOnStream(403, { 'www-authenticate': 'Bearer error="insufficient_scope"' }, rpcError)).toBe(false)
    expect(deliverOnStream(400, {}, { ...rpcError, id: null })).toBe(false)
    expect(deliverOnStream(400, {}, [rpcError])).toBe(false)
    expect(deliverOnStream(400, {}, { error: 'invalid_token' })).toBe(false)
  })

  it('the negotiated version is taken from an initialize result, only if the gateway supports it', () => {
    const supported = ['2024-11-05', '2025-03-26']
    expect(negotiatedVersion({ jsonrpc: '2.0', id: 1, result: { protocolVersion: '2024-11-05' } }, supported)).toBe('2024-11-05')
    expect(negotiatedVersion({ jsonrpc: '2.0', id: 1, result: { protocolVersion: '1999-01-01' } }, supported)).toBeUndefined()
    expect(negotiatedVersion({ jsonrpc: '2.0', id: 1, result: {} }, supported)).toBeUndefined()
    expect(negotiatedVersion(null, supported)).toBeUndefined()
  })
})
