/**
 * `mcp-warden pins …`: the operator's side of tool-definition pinning (docs/pinning.md). It
 * talks to the same Redis as the gateway (cache.redis of gateway.yaml): pins kept in memory by a
 * single replica cannot be reached from another process.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import type { SharedStore } from '../store/shared-store.js'
import { RedisStore } from '../store/redis.js'
import { loadConfigFile } from '../config/load.js'
import { revealRedisConnection } from '../config/redis.js'
import { createMetrics } from '../observability/metrics.js'
import { canonicalJson, describeChange, PinBook, pinScope, type PinDocument, type PinKind } from './pins.js'

export const PINS_USAGE = `  mcp-warden pins record ROUTE --config FILE [--out PINS.json]   write the route's pins (for git)
  mcp-warden pins diff ROUTE --config FILE                        show changed and new tools awaiting approval
  mcp-warden pins approve ROUTE [TOOL…] --config FILE [--file PINS.json]
                                                                  approve pending definitions (all, or the named
                                                                  tools), or install the pins of a file
  (each takes --kind tool|prompt|template; default tool)
`

export interface PinsIo {
  out(s: string): void
  err(s: string): void
  /** Tests pass the store the gateway uses. */
  store?: SharedStore
}

export async function pinsCommand(argv: string[], io: PinsIo): Promise<number> {
  const [sub, ...rest] = argv
  const { values, positionals } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, out: { type: 'string' }, file: { type: 'string' }, kind: { type: 'string', default: 'tool' } }, allowPositionals: true, strict: true })
  const [route, ...tools] = positionals
  const kind = values.kind as PinKind
  if (!sub || !['record', 'diff', 'approve'].includes(sub) || !route || !values.config || !['tool', 'prompt', 'template'].includes(kind)) {
    io.err(`usage:\n${PINS_USAGE}`)
    return 2
  }
  const { config } = loadConfigFile(values.config)
  if (!config.routes.some((r) => r.name === route)) {
    io.err(`unknown route "${route}"\n`)
    return 2
  }
  let store = io.store
  if (!store) {
    if (!config.cache.redis) {
      io.err('pins needs cache.redis: the gateway keeps pins in the shared store\n')
      return 2
    }
    const r = config.cache.redis
    const redis = new RedisStore({ target: revealRedisConnection(r.connection), keyPrefix: r.keyPrefix, commandTimeoutMs: r.commandTimeoutMs, logger: pino({ level: 'silent' }), metrics: createMetrics() })
    await redis.waitReady(5000)
    store = redis
  }
  try {
    const book = new PinBook(store)
    const scope = pinScope(route, kind)
    const pins = (await book.pins(scope)) ?? { v: 1 as const, tools: {} }
    switch (sub) {
      case 'record': {
        const text = `${JSON.stringify(JSON.parse(canonicalJson(pins)), null, 2)}\n`
        if (values.out) writeFileSync(values.out, text)
        else io.out(text)
        return 0
      }
      case 'diff': {
        const pending = await book.pending(scope)
        const names = Object.keys(pending.tools).sort()
        if (names.length === 0) io.out(`${route}: no changes awaiting approval\n`)
        for (const n of names) io.out([`${kind} ${n}:`, ...describeChange(pins.tools[n]?.definition, pending.tools[n]!.definition, kind), ''].join('\n'))
        return names.length === 0 ? 0 : 1
      }
      default: {
        if (values.file) {
          const doc = JSON.parse(readFileSync(values.file, 'utf8')) as PinDocument
          if (doc.v !== 1 || !doc.tools || typeof doc.tools !== 'object') {
            io.err(`${values.file}: not a pins file\n`)
            return 1
          }
          await book.replace(scope, doc)
          io.out(`${route}: installed ${Object.keys(doc.tools).length} pins from ${values.file}\n`)
          return 0
        }
        const approved = await book.approve(scope, tools)
        io.out(`${route}: approved ${approved.length ? approved.join(', ') : 'nothing (no pending change)'}\n`)
        return 0
      }
    }
  } finally {
    if (!io.store) await store.close()
  }
}
