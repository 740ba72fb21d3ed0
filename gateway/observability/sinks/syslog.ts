/**
 * RFC 5424 messages over TCP with TLS (RFC 5425), framed by octet counting (RFC 6587 3.4.1:
 * "LEN SP MSG"), so an audit line may contain any byte. Syslog over TCP has no acknowledgement: a
 * batch counts as delivered when the TLS socket has written it; what the kernel held when a
 * connection breaks can be lost (RELP would close that gap; docs/audit.md).
 */
import { isIP } from 'node:net'
import { connect, type TLSSocket } from 'node:tls'
import type { Sender } from './sink.js'

export interface SyslogSenderOptions {
  host: string
  port: number
  ca: string | undefined
  serverName: string
  appName: string
  facility: number
  replica: string
  timeoutMs: number
}

const TIME = /^\{"level":\d+,"time":"([^"]+)"/
// RFC 5424 HOSTNAME and APP-NAME: printable US-ASCII, no space.
const header = (s: string, max: number) => s.replace(/[^\x21-\x7e]/g, '_').slice(0, max) || '-'

export function frame(line: string, o: { facility: number; replica: string; appName: string; pid: number }): Buffer {
  const time = TIME.exec(line)?.[1] ?? new Date().toISOString()
  // Severity 6 (informational); MSGID names the record kind; no structured data.
  const msg = Buffer.from(`<${o.facility * 8 + 6}>1 ${time} ${header(o.replica, 255)} ${header(o.appName, 48)} ${o.pid} audit - ${line}`, 'utf8')
  return Buffer.concat([Buffer.from(`${msg.length} `), msg])
}

export class SyslogSender implements Sender {
  readonly #o: SyslogSenderOptions
  #socket: TLSSocket | undefined

  constructor(o: SyslogSenderOptions) {
    this.#o = o
  }

  private connect(): Promise<TLSSocket> {
    const o = this.#o
    return new Promise((resolve, reject) => {
      // SNI takes host names only; an IP is still checked against the certificate's IP SANs.
      const s = connect({ host: o.host, port: o.port, ...(isIP(o.serverName) ? {} : { servername: o.serverName }), ...(o.ca ? { ca: o.ca } : {}), timeout: o.timeoutMs })
      const fail = (e: Error) => {
        s.destroy()
        reject(e)
      }
      s.once('secureConnect', () => {
        s.off('error', fail)
        s.on('error', () => s.destroy())
        s.on('close', () => {
          if (this.#socket === s) this.#socket = undefined
        })
        s.setTimeout(0)
        resolve(s)
      })
      s.once('error', fail)
      s.once('timeout', () => fail(new Error('syslog connect timeout')))
    })
  }

  async send(lines: readonly string[]): Promise<void> {
    const s = this.#socket && !this.#socket.destroyed ? this.#socket : (this.#socket = await this.connect())
    const data = Buffer.concat(lines.map((l) => frame(l, { ...this.#o, pid: process.pid })))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.destroy()
        reject(new Error('syslog write timeout'))
      }, this.#o.timeoutMs)
      s.write(data, (e) => {
        clearTimeout(timer)
        if (e) {
          s.destroy()
          reject(e)
        } else resolve()
      })
    })
  }

  close(): void {
    this.#socket?.end()
  }
}
