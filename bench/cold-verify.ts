/**
 * `npx tsx bench/cold-verify.ts [--baseline DIR] [--tokens 400] [--rounds 5]`: the cost of the
 * first request with a new JWT in the gateway's own TokenValidator (decode, claim checks, key
 * lookup, signature, cache insert), against a token it has already verified (digest + LRU hit),
 * with no AS round trip in the way. `npm run bench` measures the whole cold path, where the token
 * exchange (milliseconds) hides a difference of a few hundred microseconds; this isolates it.
 *
 * With --baseline DIR (a compiled tree, e.g. `cp -r dist bench/.baseline/jose` made before a
 * change) the old validator runs in the same process, in alternating blocks over the same tokens,
 * so load from other processes hits both alike. Figures: medians over rounds of per-token CPU
 * (process.cpuUsage) and wall time.
 */
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { pino } from 'pino'
import { MemoryStore } from '../gateway/store/shared-store.js'
import { createMetrics } from '../gateway/observability/metrics.js'
import { median } from './lib/stats.js'

const { values: args } = parseArgs({
  options: { baseline: { type: 'string' }, tokens: { type: 'string', default: '400' }, rounds: { type: 'string', default: '5' } },
})
const TOKENS = Number(args.tokens)
const ROUNDS = Number(args.rounds)
const RESOURCE = 'http://127.0.0.1:8080/mcp/bench'

interface Validator {
  init(): Promise<void>
  authenticate(route: unknown, token: string): Promise<unknown>
}
type ValidatorClass = new (config: unknown, deps: unknown) => Validator

async function main(): Promise<void> {
  const { privateKey, publicKey } = await generateKeyPair('RS256')
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', use: 'sig', alg: 'RS256' }] })
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jwks))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const issuerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const issuer = {
    name: 'bench-as', issuer: issuerUrl, jwksUri: `${issuerUrl}/jwks`, discovery: false, algorithms: ['RS256'], extraAudiences: [], clockSkewSec: 30,
    requireTyp: 'at+jwt', strictAudience: false, maxTokenSize: 8192, tokenEndpoint: undefined, introspectionEndpoint: undefined, client: undefined, validation: 'jwt',
    introspection: { timeoutMs: 1000, maxConcurrent: 1, maxQueued: 1, cache: { enabled: false, maxTtlMs: 0, negativeTtlMs: 0 } },
    jwks: { cooldownMs: 60_000, maxAgeMs: 3_600_000, maxStaleMs: 86_400_000, timeoutMs: 5000 },
  }
  const config = { issuers: new Map([[issuer.name, issuer]]) }
  const route = { name: 'bench', issuers: [issuer.name], resource: RESOURCE }
  const now = Math.floor(Date.now() / 1000)
  const sign = () =>
    new SignJWT({ scope: 'tools.read', client_id: 'demo-agent', jti: randomUUID() })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'k1' })
      .setIssuer(issuerUrl)
      .setSubject('alice')
      .setAudience(RESOURCE)
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(privateKey)

  const load = async (file: string): Promise<ValidatorClass> => ((await import(pathToFileURL(file).href)) as { TokenValidator: ValidatorClass }).TokenValidator
  const trees: [string, ValidatorClass][] = [['gateway (this tree)', await load(resolve('gateway/auth/token-validator.ts'))]]
  if (args.baseline) trees.push([`gw@${args.baseline.replace(/\/$/, '').split('/').at(-1)}`, await load(resolve(args.baseline, 'gateway/auth/token-validator.js'))])

  const make = async (V: ValidatorClass): Promise<Validator> => {
    const v = new V(config, { store: new MemoryStore(), logger: pino({ level: 'silent' }), metrics: createMetrics() })
    await v.init()
    return v
  }
  const validators = await Promise.all(trees.map(([, V]) => make(V)))
  const warmToken = await sign()
  for (const v of validators) for (let i = 0; i < 50; i++) await v.authenticate(route, i === 0 ? warmToken : await sign())

  /** Per-op CPU and wall µs of authenticate over `tokens`, awaited one at a time (as one connection would). */
  const block = async (v: Validator, tokens: string[]): Promise<{ cpu: number; wall: number }> => {
    const c0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    for (const t of tokens) await v.authenticate(route, t)
    const wall = Number(process.hrtime.bigint() - t0) / 1000 / tokens.length
    const c = process.cpuUsage(c0)
    return { cpu: (c.user + c.system) / tokens.length, wall }
  }

  const samples = trees.map(() => ({ cold: [] as number[], warm: [] as number[], coldWall: [] as number[], warmWall: [] as number[] }))
  for (let r = 0; r < ROUNDS; r++) {
    // Every validator sees the same new tokens, so each is cold for each of them exactly once.
    const fresh = await Promise.all(Array.from({ length: TOKENS }, sign))
    const warm = Array.from({ length: TOKENS }, () => warmToken)
    // Alternate the order per round so neither tree always runs right after token signing.
    const order = r % 2 === 0 ? validators.map((_, i) => i) : validators.map((_, i) => i).reverse()
    for (const i of order) {
      const w = await block(validators[i]!, warm)
      const c = await block(validators[i]!, fresh)
      samples[i]!.warm.push(w.cpu)
      samples[i]!.warmWall.push(w.wall)
      samples[i]!.cold.push(c.cpu)
      samples[i]!.coldWall.push(c.wall)
    }
  }
  server.close()

  process.stdout.write(`TokenValidator.authenticate, ${TOKENS} tokens × ${ROUNDS} rounds, RS256 2048-bit, Node ${process.version}; medians over rounds\n\n`)
  process.stdout.write('| tree | warm CPU µs | cold CPU µs | cold − warm CPU µs | warm wall µs | cold wall µs | cold − warm wall µs |\n|---|---:|---:|---:|---:|---:|---:|\n')
  const rows = trees.map(([name], i) => {
    const s = samples[i]!
    const row = { name, warm: median(s.warm), cold: median(s.cold), warmWall: median(s.warmWall), coldWall: median(s.coldWall) }
    process.stdout.write(`| ${name} | ${row.warm.toFixed(1)} | ${row.cold.toFixed(1)} | ${(row.cold - row.warm).toFixed(1)} | ${row.warmWall.toFixed(1)} | ${row.coldWall.toFixed(1)} | ${(row.coldWall - row.warmWall).toFixed(1)} |\n`)
    return row
  })
  if (rows.length === 2) {
    const [a, b] = rows as [(typeof rows)[0], (typeof rows)[0]]
    const perRound = samples[0]!.cold.map((c, r) => (c - samples[0]!.warm[r]!) / (samples[1]!.cold[r]! - samples[1]!.warm[r]!))
    process.stdout.write(`\ncold − warm CPU, this tree ÷ baseline: ${((a.cold - a.warm) / (b.cold - b.warm)).toFixed(2)} (per round: ${perRound.map((x) => x.toFixed(2)).join(', ')}); wall: ${((a.coldWall - a.warmWall) / (b.coldWall - b.warmWall)).toFixed(2)}\n`)
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})
