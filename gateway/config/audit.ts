/**
 * The `audit` section → RuntimeAudit: the chain's replica name, the checkpoint key (checked to be
 * an Ed25519 private key at load, so a bad key is a positioned config error, not a crash at the
 * first checkpoint), and the sinks with their secrets resolved.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto'
import { hostname } from 'node:os'
import { resolve } from 'node:path'
import type { ConfigProblem } from '../errors.js'
import type { AuditInput, SecretSourceInput } from './schema.js'
import { resolveSecret, type Secret } from './secrets.js'
import { parseDuration, parseSize } from './units.js'
import { problemAt, type YamlSource } from './yaml-source.js'

export interface RuntimeAuditBuffer {
  readonly dir: string
  readonly maxBytes: number
  readonly onFull: 'block' | 'drop'
}

export type RuntimeAuditSink =
  | { readonly type: 'file'; readonly name: string; readonly path: string; readonly maxBytes: number | undefined; readonly intervalMs: number | undefined; readonly keep: number }
  | { readonly type: 'syslog'; readonly name: string; readonly host: string; readonly port: number; readonly ca: string | undefined; readonly serverName: string; readonly appName: string; readonly facility: number; readonly buffer: RuntimeAuditBuffer }
  | {
      readonly type: 'http'
      readonly name: string
      readonly url: string
      readonly format: 'json-lines' | 'splunk-hec' | 'elasticsearch-bulk'
      readonly token: Secret | undefined
      readonly index: string | undefined
      readonly ca: string | undefined
      readonly batch: number
      readonly flushIntervalMs: number
      readonly timeoutMs: number
      readonly buffer: RuntimeAuditBuffer
    }

export interface RuntimeAudit {
  readonly replica: string
  readonly stdout: boolean
  readonly checkpoint: { readonly key: KeyObject; readonly intervalMs: number } | undefined
  readonly sinks: readonly RuntimeAuditSink[]
}

interface Ctx {
  src: YamlSource
  baseDir: string
  env: NodeJS.ProcessEnv
  problems: ConfigProblem[]
  warnings: string[]
}

export function normalizeAudit(input: AuditInput, c: Ctx): RuntimeAudit {
  const secret = (source: SecretSourceInput | undefined, at: (string | number)[]): Secret | undefined => {
    if (!source) return undefined
    const r = resolveSecret(source, c.baseDir, c.env)
    if (!r.ok) {
      c.problems.push(problemAt(c.src, at, r.message))
      return undefined
    }
    if (r.inline) c.warnings.push(`${at.join('.')} is written inline; use fromEnv or fromFile outside development`)
    return r.secret
  }
  const replica = input?.replica ?? hostname()
  let checkpoint: RuntimeAudit['checkpoint']
  if (input?.checkpoint) {
    const at = ['audit', 'checkpoint', 'signingKey']
    const s = secret(input.checkpoint.signingKey, at)
    if (s) {
      const key = ed25519PrivateKey(s.reveal())
      if (typeof key === 'string') c.problems.push(problemAt(c.src, at, key))
      else checkpoint = { key, intervalMs: parseDuration(input.checkpoint.interval) }
    }
  }
  const dirs = new Map<string, number>()
  const buffer = (b: { dir: string; maxSize?: string; onFull?: 'block' | 'drop' }, i: number): RuntimeAuditBuffer => {
    const dir = resolve(c.baseDir, b.dir)
    const first = dirs.get(dir)
    // Two sinks replaying one buffer would each deliver the other's records.
    if (first !== undefined) c.problems.push(problemAt(c.src, ['audit', 'sinks', i, 'buffer', 'dir'], `audit.sinks[${first}] already buffers in ${b.dir}`))
    dirs.set(dir, i)
    return { dir, maxBytes: parseSize(b.maxSize ?? '64mb'), onFull: b.onFull ?? 'block' }
  }
  // ajv applies no defaults inside a union (anyOf), so the sinks' defaults are applied here.
  const sinks = (input?.sinks ?? []).map((s, i): RuntimeAuditSink => {
    const at = (...p: string[]) => ['audit', 'sinks', i, ...p]
    const name = `${s.type}[${i}]`
    switch (s.type) {
      case 'file': {
        const r = s.rotate
        if (r && r.maxSize === undefined && r.interval === undefined) c.problems.push(problemAt(c.src, at('rotate'), 'rotate needs maxSize, interval or both'))
        return { type: 'file', name, path: resolve(c.baseDir, s.path), maxBytes: r?.maxSize === undefined ? undefined : parseSize(r.maxSize), intervalMs: r?.interval === undefined ? undefined : parseDuration(r.interval), keep: r?.keep ?? 5 }
      }
      case 'syslog':
        return { type: 'syslog', name, host: s.host, port: s.port ?? 6514, ca: secret(s.ca, at('ca'))?.reveal(), serverName: s.serverName ?? s.host, appName: s.appName ?? 'mcp-warden', facility: s.facility ?? 13, buffer: buffer(s.buffer, i) }
      case 'http': {
        const u = new URL(s.url)
        if (u.protocol !== 'https:' && !['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) c.problems.push(problemAt(c.src, at('url'), 'an audit http sink must be https (plain http only on loopback)'))
        const format = s.format ?? 'json-lines'
        if (format === 'splunk-hec' && !s.token) c.problems.push(problemAt(c.src, at('token'), 'splunk-hec needs token (the HEC token)'))
        return {
          type: 'http', name, url: s.url, format, token: secret(s.token, at('token')), index: s.index, ca: secret(s.ca, at('ca'))?.reveal(),
          batch: s.batch ?? 500, flushIntervalMs: parseDuration(s.flushInterval ?? '1s'), timeoutMs: parseDuration(s.timeout ?? '10s'), buffer: buffer(s.buffer, i),
        }
      }
    }
  })
  if (input && !input.stdout && sinks.length === 0) c.problems.push(problemAt(c.src, ['audit', 'stdout'], 'stdout: false needs at least one sink (audit lines would go nowhere)'))
  return { replica, stdout: input?.stdout ?? true, checkpoint, sinks }
}

function ed25519PrivateKey(text: string): KeyObject | string {
  try {
    const t = text.trim()
    const key = t.startsWith('{') ? createPrivateKey({ key: JSON.parse(t) as never, format: 'jwk' }) : createPrivateKey(t)
    return key.asymmetricKeyType === 'ed25519' ? key : `signingKey is ${key.asymmetricKeyType ?? 'not asymmetric'}, not Ed25519`
  } catch {
    // The parser's message may quote key material.
    return 'signingKey is not a PEM (PKCS#8) or JWK private key'
  }
}
