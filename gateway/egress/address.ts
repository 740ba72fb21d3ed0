/**
 * SSRF defence for the egress listener: which IP addresses a target may be reached at. Loopback,
 * private, link-local (cloud metadata at 169.254.169.254 included), carrier-grade NAT and other
 * special-purpose ranges are refused unless the target's `allowAddresses` lists them. The check
 * runs on the address each connection is actually made to (the DNS lookup inside the connector),
 * so a name that resolves somewhere else later (DNS rebinding) is caught on the next connection.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { BlockList, isIP } from 'node:net'

const SPECIAL_V4 = [
  ['0.0.0.0', 8, 'unspecified'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'shared (CGNAT)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'special-purpose'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
] as const

const SPECIAL_V6 = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['64:ff9b::', 96, 'NAT64'],
  ['fc00::', 7, 'private (ULA)'],
  ['fe80::', 10, 'link-local'],
  ['ff00::', 8, 'multicast'],
] as const

/** An IPv4 address embedded in an IPv4-mapped IPv6 address (`::ffff:a.b.c.d` or `::ffff:xxxx:xxxx`). */
function mappedV4(address: string): string | undefined {
  const m = /^::ffff:(?:0:)?(.+)$/i.exec(address)
  if (!m) return undefined
  const tail = m[1]!
  if (isIP(tail) === 4) return tail
  const hex = /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(tail)
  if (!hex) return undefined
  const [hi, lo] = [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16)]
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}

/** Why an address is special (`loopback`, `private`, …), or undefined for a public address. */
export function specialRange(address: string): string | undefined {
  const v4 = mappedV4(address) ?? (isIP(address) === 4 ? address : undefined)
  if (v4) {
    for (const [net, bits, why] of SPECIAL_V4) {
      const b = new BlockList()
      b.addSubnet(net, bits, 'ipv4')
      if (b.check(v4, 'ipv4')) return why
    }
    return undefined
  }
  if (isIP(address) !== 6) return 'not an IP address'
  for (const [net, bits, why] of SPECIAL_V6) {
    const b = new BlockList()
    b.addSubnet(net, bits, 'ipv6')
    if (b.check(address, 'ipv6')) return why
  }
  return undefined
}

export class AddressRefused extends Error {
  readonly code = 'EGRESS_ADDRESS_REFUSED'
  constructor(readonly address: string, readonly why: string) {
    super(`address ${address} is ${why} and not allowed for this target`)
    this.name = 'AddressRefused'
  }
}

/** The addresses one target may connect to: public ones, plus its configured ranges. */
export class AddressPolicy {
  readonly #allowed = new BlockList()

  constructor(allow: readonly string[]) {
    for (const cidr of allow) {
      const [addr = '', bits] = cidr.split('/')
      const family = isIP(addr) === 4 ? 'ipv4' : 'ipv6'
      if (bits === undefined) this.#allowed.addAddress(addr, family)
      else this.#allowed.addSubnet(addr, Number(bits), family)
    }
  }

  /** Throws AddressRefused for a special address that is not configured. */
  check(address: string): void {
    const why = specialRange(address)
    if (why === undefined) return
    const v4 = mappedV4(address)
    const family = v4 || isIP(address) === 4 ? 'ipv4' : 'ipv6'
    if (!this.#allowed.check(v4 ?? address, family)) throw new AddressRefused(address, why)
  }

  /**
   * A `lookup` for net/tls.connect (undici passes it through): resolves, refuses the connection
   * if any resolved address is not allowed, else answers in the shape the caller asked for.
   * Any forbidden address refuses the whole name, so address selection cannot pick it.
   */
  lookup(resolve: typeof dnsLookup = dnsLookup) {
    return (hostname: string, options: { all?: boolean; family?: number }, callback: (err: Error | null, address?: string | LookupAddress[], family?: number) => void): void => {
      resolve(hostname, { ...options, all: true }, (err, addresses) => {
        if (err) return callback(err)
        try {
          if (addresses.length === 0) throw new AddressRefused(hostname, 'unresolvable')
          for (const a of addresses) this.check(a.address)
        } catch (e) {
          return callback(e as Error)
        }
        if (options.all) callback(null, addresses)
        else callback(null, addresses[0]!.address, addresses[0]!.family)
      })
    }
  }
}
