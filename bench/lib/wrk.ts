/**
 * wrk as the load generator: one thread, a fixed number of connections, the MCP request written
 * by a Lua script (POST body and headers), latency percentiles from --latency.
 */
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'

export interface WrkResult {
  requests: number
  seconds: number
  rps: number
  p50Ms: number
  p99Ms: number
  /** Non-2xx/3xx responses plus socket errors: any of these makes the run invalid. */
  errors: number
}

const lua = (s: string) => `[==[${s}]==]`

/** A Lua script that makes every wrk request the given POST. */
export function writeWrkScript(file: string, body: string, headers: Record<string, string>): void {
  const lines = ['wrk.method = "POST"', `wrk.body = ${lua(body)}`, ...Object.entries(headers).map(([k, v]) => `wrk.headers[ ${lua(k)} ] = ${lua(v)}`)]
  writeFileSync(file, `${lines.join('\n')}\n`)
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 }

function durationMs(text: string | undefined): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text ?? '')
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : NaN
}

export function parseWrk(out: string): WrkResult {
  const req = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out)
  const pct = (p: string) => durationMs(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out)?.[1])
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const sockErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0
  if (!req) throw new Error(`could not parse wrk output:\n${out}`)
  const requests = Number(req[1])
  const seconds = durationMs(`${req[2]}${req[3]}`) / 1000
  return { requests, seconds, rps: requests / seconds, p50Ms: pct('50'), p99Ms: pct('99'), errors: non2xx + sockErrors }
}

export function runWrk(argv: string[]): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv as [string, ...string[]]
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    child.once('error', reject)
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}: ${out}`))
      try {
        resolve(parseWrk(out))
      } catch (e) {
        reject(e)
      }
    })
  })
}

/** wrk arguments: one thread (the generator must cost little), latency percentiles on. */
export const wrkArgs = (o: { url: string; script: string; connections: number; seconds: number }): string[] => [
  'wrk',
  '-t1',
  `-c${o.connections}`,
  `-d${o.seconds}s`,
  '--latency',
  // A loaded machine can stall a response past wrk's 2 s default; that is slowness, not failure.
  '--timeout',
  '10s',
  '-s',
  o.script,
  o.url,
]
