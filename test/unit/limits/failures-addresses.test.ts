/**
 * Client addresses an attacker cannot choose (issue 16 item 9, INT-10, ATK-64): the failed
 * authentication budget is kept per address the proxies vouch for, IPv6 per /64, in a map whose
 * size does not follow the attacker.
 */
import proxyAddr from '@fastify/proxy-addr'
import type { IncomingMessage } from 'node:http'
import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../../gateway/config/load.js'
import { ConfigError } from '../../../gateway/errors.js'
import { addressKey, AddressFailures } from '../../../gateway/limits/failures.js'
import { trustProxyOption } from '../../../gateway/server.js'

/** request.ip as Fastify computes it (the last address proxy-addr keeps). */
function clientIp(trust: Parameters<typeof trustProxyOption>[0], peer: string, xff: string): string {
  const opt = trustProxyOption(trust)
  const fn = opt === false ? () => false : typeof opt === 'function' ? opt : proxyAddr.compile(opt)
  const all = proxyAddr.all({ socket: { remoteAddress: peer }, headers: { 'x-forwarded-for': xff } } as unknown as IncomingMessage, fn)
  return all[all.length - 1]!
}

const yaml = (trustProxy: string) => `server:
  publicUrl: http://127.0.0.1:8080
  listen: { host: 127.0.0.1, port: 8080 }
  trustProxy: ${trustProxy}
admin:
  listen: { host: 127.0.0.1, port: 9090 }
issuers:
  demo: { issuer: https://as.example.com }
routes:
  - { name: a, path: /mcp/a, upstream: { url: "http://127.0.0.1:9000/mcp" }, issuers: [demo] }
`

describe('client addresses (issue 16 item 9)', () => {
  it.each([
    ['1.2.3.4', '1.2.3.4'],
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:db8:0:0:dead:beef:1:2', '2001:db8:0:0::/64'],
    ['2001:0db8:0000:0001::7', '2001:db8:0:1::/64'],
  ])('addressKey(%s) = %s', (ip, key) => {
    expect(addressKey(ip)).toBe(key)
  })

  it('INT-10: rotating through an IPv6 /64 draws on one budget', () => {
    const f = new AddressFailures(3, 60_000, () => 1_000_000)
    const results = Array.from({ length: 5 }, (_, i) => f.acquire(`2001:db8::${(i + 1).toString(16)}`))
    expect(results.map((r) => 'slice' in r)).toEqual([true, true, true, false, false])
  })

  it('INT-10: the map stays at its cap however many addresses rotate through it', () => {
    let now = 1_000_000
    const f = new AddressFailures(3, 60_000, () => now, 100)
    for (let i = 0; i < 20_000; i++) {
      f.acquire(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)
      now += 1
    }
    expect(f.size).toBe(100)
    // A recently active offender is kept: the least recently used go first.
    for (let i = 0; i < 3; i++) f.record('198.51.100.7')
    for (let i = 0; i < 99; i++) f.acquire(`172.16.0.${i}`)
    expect('retryAfterMs' in f.acquire('198.51.100.7')).toBe(true)
  })

  it('INT-10: with a hop count or proxy CIDRs, the address is what the proxy appended, not what the client wrote', () => {
    // The client wrote "6.6.6.<n>"; the one proxy (10.0.0.1) appended the real address.
    for (const trust of [1, ['10.0.0.0/8'], ['10.0.0.1']] as const) {
      for (let n = 0; n < 5; n++) expect(clientIp(trust as never, '10.0.0.1', `6.6.6.${n}, 198.51.100.7`)).toBe('198.51.100.7')
    }
    // Two proxies: the second hop back.
    expect(clientIp(2, '10.0.0.2', '6.6.6.6, 198.51.100.7, 10.0.0.1')).toBe('198.51.100.7')
    // Nothing trusted: the peer, whatever the header says.
    expect(clientIp(false, '203.0.113.9', '6.6.6.6')).toBe('203.0.113.9')
    // A peer that is not a listed proxy is the client itself.
    expect(clientIp(['10.0.0.0/8'], '203.0.113.9', '6.6.6.6')).toBe('203.0.113.9')
  })

  it('config: trustProxy accepts false, a hop count and proxy CIDRs; refuses true and malformed entries', () => {
    expect(loadConfigText('g.yaml', yaml('1')).config.server.trustProxy).toBe(1)
    expect(loadConfigText('g.yaml', yaml('[10.0.0.0/8, "fd00::/8", loopback]')).config.server.trustProxy).toEqual(['10.0.0.0/8', 'fd00::/8', 'loopback'])
    expect(loadConfigText('g.yaml', yaml('false')).config.server.trustProxy).toBe(false)
    const problems = (t: string) => {
      try {
        loadConfigText('g.yaml', yaml(t))
        return []
      } catch (e) {
        return e instanceof ConfigError ? e.problems.map((p) => p.message) : [String(e)]
      }
    }
    expect(problems('true').join('\n')).toMatch(/trustProxy: true takes whatever X-Forwarded-For a client sends/)
    expect(problems('[10.0.0.0/33]').join('\n')).toMatch(/not an IP address, a CIDR/)
    expect(problems('[proxy.example.com]').join('\n')).toMatch(/not an IP address, a CIDR/)
    expect(problems('0').length).toBeGreaterThan(0)
  })
})
