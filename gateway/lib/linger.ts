/**
 * Closing a connection whose request body was not read (RFC 9112 §9.6). A refusal sent before the
 * body (413 from Content-Length, a body cut off at the limit) is lost when the socket is destroyed
 * while the client is still sending: unread bytes make the kernel answer with a TCP reset, and the
 * reset discards the response the client had not read yet. Instead the write side is closed
 * (FIN, after the response), and what the client still sends is read and dropped until it stops,
 * or until a bounded number of bytes or time, after which the socket is destroyed anyway.
 */
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'

export interface LingerLimits {
  /** Bytes read and dropped before giving up. */
  readonly bytes: number
  /** Time after the response before giving up. */
  readonly ms: number
}

export const DEFAULT_LINGER: LingerLimits = { bytes: 8 * 1024 * 1024, ms: 3000 }

const LINGERING = Symbol('mcp-warden.linger')

/**
 * Makes the close that follows a `Connection: close` response graceful for `request`'s socket.
 * Node's HTTP server ends such a connection with `socket.destroySoon()` once the response is
 * written, so that is the step replaced, for this socket only.
 */
export function lingerOnClose(request: IncomingMessage, limits: LingerLimits = DEFAULT_LINGER): void {
  const socket = request.socket as Socket & { [LINGERING]?: true }
  if (!socket || socket[LINGERING] || socket.destroyed) return
  socket[LINGERING] = true
  socket.destroySoon = function destroySoon(this: Socket) {
    let seen = 0
    const stop = () => socket.destroy()
    const timer = setTimeout(stop, limits.ms)
    timer.unref()
    socket.once('close', () => clearTimeout(timer))
    // The HTTP parser still reads the socket and hands the rest of the body to the request,
    // which the server has already set to discard: counting there bounds what is drained.
    request.on('data', (chunk: Buffer) => {
      seen += chunk.length
      if (seen > limits.bytes) stop()
    })
    request.once('end', () => socket.destroy())
    socket.once('end', stop)
    if (socket.writable) socket.end()
  }
}
