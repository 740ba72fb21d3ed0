/**
 * Sends attack requests and keeps what a later assertion needs: every token presented (so a
 * test can prove none of them reached a log line) and every answer (statuses, challenges).
 */
import { expect } from 'vitest'
import { INIT, MCP_HEADERS, parseChallenge, type Stack } from './stack.js'

export interface Answer {
  status: number
  challenge: string | null
  body: string
  headers: Headers
}

export interface Probe {
  send(token: string, o?: { path?: string; headers?: Record<string, string>; body?: string }): Promise<Answer>
  /** 401, Bearer, error="invalid_token", resource_metadata of the route, and nothing upstream. */
  expectInvalidToken(a: Answer, path?: string): void
  tokens: string[]
  answers: Answer[]
}

export function probe(s: Stack): Probe {
  const tokens: string[] = []
  const answers: Answer[] = []
  return {
    tokens,
    answers,
    async send(token, o = {}) {
      tokens.push(token)
      const res = await fetch(`${s.url}${o.path ?? '/mcp/alpha'}`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, ...o.headers }, body: o.body ?? INIT })
      const a = { status: res.status, challenge: res.headers.get('www-authenticate'), body: await res.text(), headers: res.headers }
      answers.push(a)
      return a
    },
    expectInvalidToken(a, path = '/mcp/alpha') {
      expect(a.status).toBe(401)
      const c = parseChallenge(a.challenge)
      expect(c?.scheme).toBe('Bearer')
      expect(c?.params.error).toBe('invalid_token')
      expect(c?.params.resource_metadata).toBe(`${new URL(s.url).origin}/.well-known/oauth-protected-resource${path}`)
    },
  }
}

/** No presented token, nor its signature segment, occurs in any captured log line. */
export function expectNoTokenInLogs(s: Stack, tokens: readonly string[]): void {
  const logs = s.logs.join('\n')
  const leaks = tokens.filter((t) => {
    const sig = t.split('.').at(-1) ?? ''
    return logs.includes(t) || (sig.length >= 16 && logs.includes(sig))
  })
  expect(leaks).toEqual([])
}

/**
 * RFC 6750 §3 / RFC 9110 §11.6.1: one Bearer challenge, each auth-param once, quoted values of
 * the allowed characters only (error_description: %x20-21 / %x23-5B / %x5D-7E) (CHL-11).
 */
export function expectWellFormedChallenge(header: string): void {
  expect(header).toMatch(/^Bearer [a-z_]+="[^"\\]*"(, [a-z_]+="[^"\\]*")*$/)
  const names = [...header.matchAll(/([a-z_]+)="/g)].map((m) => m[1])
  expect(new Set(names).size).toBe(names.length)
  for (const [, name, value] of header.matchAll(/([a-z_]+)="([^"]*)"/g)) {
    expect(value, name).toMatch(/^[\x20\x21\x23-\x5b\x5d-\x7e]*$/)
  }
}
