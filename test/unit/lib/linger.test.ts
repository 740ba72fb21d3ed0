/**
 * lib/linger.ts (issue 16 item 6, ATK-56): after an early refusal the server reads and drops what
 * the client still sends, so the answer is not wiped by a reset, but only up to a bound of bytes
 * or time: a client that never stops sending cannot hold the connection.
 */
import { createServer, type Server } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { lingerOnClose, type LingerLimits } from '../../../gateway/lib/linger.js'

let server: Server | undefined
afterEach(async () => {
  await new Promise((r) => server?.close(r) ?? r(undefined))
  server = undefined
})

async function refusingServer(limits: LingerLimits): Promise<number> {
  server = createServer((req, res) => {
    lingerOnClose(req, limits)
    res.writeHead(413, { connection: 'close', 'content-length': '2' }).end('no')
  })
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r))
  return (server.address() as AddressInfo).port
}

/** A client that keeps sending until the server closes; resolves with what it read. */
function endlessSender(port: number): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1')
    const got: Buffer[] = []
    let open = true
    sock.on('data', (c: Buffer) => got.push(c))
    sock.on('error', () => undefined)
    sock.on('close', () => {
      open = false
      resolve(Buffer.concat(got).toString('latin1'))
    })
    sock.write('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000000\r\n\r\n')
    const chunk = Buffer.alloc(16_384, 0x61)
    const pump = () => {
      if (open && !sock.destroyed) sock.write(chunk, () => setImmediate(pump))
    }
    pump()
  })
}

describe('lib/linger (issue 16 item 6)', () => {
  it('ATK-56 / the answer arrives and the connection ends once the byte bound is drained', async () => {
    const port = await refusingServer({ bytes: 256 * 1024, ms: 60_000 })
    expect(await endlessSender(port)).toMatch(/^HTTP\/1\.1 413 [\s\S]*\r\n\r\nno$/)
  })

  it('ATK-56 / the connection ends at the time bound when the client sends nothing more', async () => {
    const port = await refusingServer({ bytes: Number.MAX_SAFE_INTEGER, ms: 200 })
    const text = await new Promise<string>((resolve) => {
      const sock = connect(port, '127.0.0.1')
      const got: Buffer[] = []
      sock.on('data', (c: Buffer) => got.push(c))
      sock.on('error', () => undefined)
      sock.on('close', () => resolve(Buffer.concat(got).toString('latin1')))
      sock.write('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nabc')
    })
    expect(text).toMatch(/^HTTP\/1\.1 413 /)
  })

  it('the connection ends as soon as the body is complete', async () => {
    const port = await refusingServer({ bytes: Number.MAX_SAFE_INTEGER, ms: 60_000 })
    const text = await new Promise<string>((resolve) => {
      const sock = connect(port, '127.0.0.1')
      const got: Buffer[] = []
      sock.on('data', (c: Buffer) => got.push(c))
      sock.on('error', () => undefined)
      sock.on('close', () => resolve(Buffer.concat(got).toString('latin1')))
      sock.write('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n')
      sock.write(Buffer.alloc(100_000, 0x61))
    })
    expect(text).toMatch(/^HTTP\/1\.1 413 /)
  })
})
