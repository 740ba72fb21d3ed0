/**
 * The relay's multiplexing rules, with in-memory transports standing in for the upstream
 * connection and the bridged sessions (the integration test runs the real processes).
 */
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js'
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { Channel, type Downstream } from '../../gateway/transports/bridge/relay.js'

class FakeUpstream implements Transport {
  sent: JSONRPCMessage[] = []
  onmessage?: (m: JSONRPCMessage) => void
  onclose?: () => void
  onerror?: (e: Error) => void
  async start() {}
  async send(m: JSONRPCMessage) {
    this.sent.push(m)
  }
  async close() {
    this.onclose?.()
  }
  /** Answers the last request it received with `result`. */
  answer(result: Record<string, unknown>, method?: string) {
    const req = [...this.sent].reverse().find((m) => 'id' in m && 'method' in m && (!method || m.method === method)) as { id: RequestId }
    this.onmessage?.({ jsonrpc: '2.0', id: req.id, result })
  }
}

const down = (id: string) => {
  const got: { m: JSONRPCMessage; related: RequestId | undefined }[] = []
  const d: Downstream & { got: typeof got } = { id, got, send: async (m, related) => void got.push({ m, related }) }
  return d
}

const tick = () => new Promise((r) => setImmediate(r))

function channel(shared: boolean) {
  const links: FakeUpstream[] = []
  const c = new Channel({
    route: 't',
    shared,
    backoffMs: 10,
    maxBackoffMs: 10,
    logger: pino({ level: 'silent' }),
    open: () => {
      const l = new FakeUpstream()
      links.push(l)
      return l
    },
  })
  return { c, links }
}

const INIT = (id: RequestId): JSONRPCMessage => ({ jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'c', version: '1' } } })

async function initialized(c: Channel, links: FakeUpstream[], d: Downstream) {
  c.attach(d)
  const done = c.fromClient(d, INIT(0))
  await tick()
  links.at(-1)!.answer({ protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 's', version: '1' } }, 'initialize')
  await done
  await c.fromClient(d, { jsonrpc: '2.0', method: 'notifications/initialized' })
}

describe('bridge relay', () => {
  it('shared: one initialize upstream; equal client ids and progress tokens of two sessions never meet', async () => {
    const { c, links } = channel(true)
    const a = down('a')
    const b = down('b')
    await initialized(c, links, a)
    await initialized(c, links, b)
    const up = links[0]!
    expect(up.sent.filter((m) => 'method' in m && m.method === 'initialize')).toHaveLength(1)
    expect(up.sent.filter((m) => 'method' in m && m.method === 'notifications/initialized')).toHaveLength(1)
    expect(b.got[0]!.m).toMatchObject({ id: 0, result: { serverInfo: { name: 's' } } })

    const call = (id: number): JSONRPCMessage => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'x', _meta: { progressToken: id } } })
    await c.fromClient(a, call(1))
    await c.fromClient(b, call(1))
    const [ua, ub] = up.sent.slice(-2) as { id: number; params: { _meta: { progressToken: number } } }[]
    expect(ua!.id).not.toBe(ub!.id)
    expect(ua!.params._meta.progressToken).toBe(ua!.id)
    up.onmessage!({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: ub!.id, progress: 1 } })
    up.onmessage!({ jsonrpc: '2.0', id: ub!.id, result: { content: [] } })
    expect(b.got.slice(-2)).toEqual([
      { m: { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } }, related: 1 },
      { m: { jsonrpc: '2.0', id: 1, result: { content: [] } }, related: undefined },
    ])
    expect(a.got).toHaveLength(1)
  })

  it('shared: server-initiated requests are refused upstream, not guessed onto a caller; only list_changed is broadcast', async () => {
    const { c, links } = channel(true)
    const a = down('a')
    await initialized(c, links, a)
    const up = links[0]!
    up.onmessage!({ jsonrpc: '2.0', id: 'srv-1', method: 'sampling/createMessage', params: {} })
    up.onmessage!({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'secret of someone' } })
    up.onmessage!({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' })
    await tick()
    expect(up.sent.at(-1)).toMatchObject({ id: 'srv-1', error: { code: -32601 } })
    expect(a.got.slice(1).map((g) => ('method' in g.m ? g.m.method : ''))).toEqual(['notifications/tools/list_changed'])
  })

  it('per-session: a response to a server request is accepted only once, from the session asked', async () => {
    const { c, links } = channel(false)
    const a = down('a')
    await initialized(c, links, a)
    const up = links[0]!
    const n = up.sent.length
    await c.fromClient(a, { jsonrpc: '2.0', id: 'srv-9', result: {} })
    expect(up.sent).toHaveLength(n)
    up.onmessage!({ jsonrpc: '2.0', id: 'srv-9', method: 'elicitation/create', params: {} })
    await c.fromClient(a, { jsonrpc: '2.0', id: 'srv-9', result: { action: 'decline' } })
    await c.fromClient(a, { jsonrpc: '2.0', id: 'srv-9', result: { action: 'accept' } })
    expect(up.sent.slice(n)).toEqual([{ jsonrpc: '2.0', id: 'srv-9', result: { action: 'decline' } }])
  })

  it('a dead connection answers requests in flight with an error, is restarted and re-initialized', async () => {
    const { c, links } = channel(false)
    const a = down('a')
    await initialized(c, links, a)
    await c.fromClient(a, { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'x' } })
    await links[0]!.close()
    expect(a.got.at(-1)!.m).toEqual({ jsonrpc: '2.0', id: 5, error: { code: -32603, message: 'Upstream unavailable' } })
    expect(c.state).toBe('down')
    // While down, a request fails at once instead of waiting.
    await c.fromClient(a, { jsonrpc: '2.0', id: 6, method: 'ping' })
    expect(a.got.at(-1)!.m).toMatchObject({ id: 6, error: { code: -32603 } })
    await new Promise((r) => setTimeout(r, 30))
    expect(links).toHaveLength(2)
    expect(links[1]!.sent[0]).toMatchObject({ method: 'initialize', params: { clientInfo: { name: 'c' } } })
    links[1]!.answer({ protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 's', version: '1' } }, 'initialize')
    await tick()
    expect(links[1]!.sent[1]).toMatchObject({ method: 'notifications/initialized' })
    expect(c.state).toBe('ready')
    await c.close()
  })
})
