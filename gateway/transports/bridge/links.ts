/**
 * Upstream connections a bridge relays to: a stdio child process, or a legacy (2024-11-05)
 * HTTP+SSE server. Both are the MCP SDK's client transports, used as plain message pipes.
 */
import { SSEClientTransport, SseError } from '@modelcontextprotocol/sdk/client/sse.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js'
import { createInterface } from 'node:readline'
import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import type { RuntimeStdio } from '../../config/load.js'

const MAX_STDERR_LINE = 2000

/** Values that must never reach a log line, even if the program prints them. */
function redactor(stdio: RuntimeStdio): (line: string) => string {
  const secrets = [...stdio.env.values()].map((s) => s.reveal()).filter((v) => v.length >= 4)
  return (line) => secrets.reduce((l, s) => l.split(s).join('[redacted]'), line)
}

export function stdioLink(stdio: RuntimeStdio, logger: Logger): () => Transport {
  const redact = redactor(stdio)
  return () => {
    const env: Record<string, string> = {}
    for (const [name, secret] of stdio.env) env[name] = secret.reveal()
    const transport = new StdioClientTransport({ command: stdio.command, args: [...stdio.args], env, ...(stdio.cwd ? { cwd: stdio.cwd } : {}), stderr: 'pipe' })
    // The child's stderr is its log: each line goes to ours, attributed, bounded and redacted.
    const stderr = transport.stderr
    if (stderr instanceof Readable) {
      createInterface({ input: stderr }).on('line', (line) => {
        logger.warn({ event: 'bridge.stderr', pid: transport.pid, line: redact(line.slice(0, MAX_STDERR_LINE)) }, 'upstream stderr')
      })
    }
    return transport
  }
}

/**
 * `credential()` is read on every request to the legacy server, so a credential the gateway's
 * credential stage attached to the latest client request is the one used.
 */
export function sseLink(url: string, credential: () => string | undefined): () => Transport {
  const withCredential = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const headers = new Headers(init?.headers)
    const auth = credential()
    if (auth) headers.set('authorization', auth)
    return fetch(input, { ...init, headers })
  }
  return () => new SSEClientTransport(new URL(url), { fetch: withCredential })
}

/** The legacy stream dropped: EventSource would silently reconnect into a new, uninitialized server session. */
export const sseIsFatal = (e: Error): boolean => e instanceof SseError
