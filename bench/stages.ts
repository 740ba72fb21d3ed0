/**
 * `npx tsx bench/stages.ts`: CPU cost of the gateway's per-request security work, stage by stage,
 * in isolation (no sockets, no framework). Complements `npm run bench`, whose whole-process
 * numbers say how much a hop costs; this says which part of the gateway's share is which.
 * Each figure is the median of 7 repetitions of process CPU time (user + system) per operation.
 */
import { createVerify } from 'node:crypto'
import { createPublicKey, randomUUID } from 'node:crypto'
import { cpus } from 'node:os'
import { compactVerify, exportJWK, generateKeyPair, SignJWT } from 'jose'
import { pino } from 'pino'
import { importVerifyKey, verifyCompactJws } from '../gateway/auth/jws-verify.js'
import { tokenDigest } from '../gateway/auth/token-validator.js'
import { LruCache } from '../gateway/store/lru.js'
import { parseMcpBody } from '../gateway/mcp/jsonrpc.js'
import { createLogger } from '../gateway/observability/logger.js'
import { createMetrics } from '../gateway/observability/metrics.js'
import { upstreamRequestHeaders } from '../gateway/upstream/headers.js'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadPolicyDir } from '../gateway/policy/load.js'
import { evaluate } from '../gateway/policy/evaluate.js'
import { argumentsDigest } from '../gateway/policy/digest.js'
import { AuditChain } from '../gateway/observability/audit-chain.js'
import type { Principal } from '../gateway/auth/principal.js'
import { benchPolicy } from './lib/configs.js'
import { BODY as REQUEST } from './lib/request.js'
import { median } from './lib/stats.js'

const BODY = Buffer.from(REQUEST)

async function cost(name: string, iterations: number, op: () => unknown | Promise<unknown>): Promise<[string, number]> {
  const runs: number[] = []
  for (let r = 0; r < 7; r++) {
    const c0 = process.cpuUsage()
    for (let i = 0; i < iterations; i++) {
      const v = op()
      if (v instanceof Promise) await v
    }
    const c = process.cpuUsage(c0)
    runs.push((c.user + c.system) / iterations)
  }
  return [name, median(runs.slice(1))]
}

async function main(): Promise<void> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true })
  const now = Math.floor(Date.now() / 1000)
  const token = await new SignJWT({ scope: 'tools.read', client_id: 'demo-agent', jti: randomUUID() })
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'k1' })
    .setIssuer('http://127.0.0.1:9400')
    .setSubject('alice')
    .setAudience('http://127.0.0.1:8080/mcp/bench')
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(privateKey)
  const publicJwk = await exportJWK(publicKey)
  const pem = createPublicKey({ key: publicJwk as never, format: 'jwk' })
  const gatewayKey = importVerifyKey(publicJwk, 'RS256')
  const [h, p, s] = token.split('.') as [string, string, string]
  const inbound = {
    host: '127.0.0.1:8080',
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-11-25',
    authorization: `Bearer ${token}`,
    'content-length': '314',
  }
  const cache = new LruCache<number>(10_000)
  cache.set(tokenDigest(token), 1, 60_000)
  const metrics = createMetrics()
  const logger = createLogger('info', pino.destination({ dest: '/dev/null', sync: false }))
  const devNull = pino.destination({ dest: '/dev/null', sync: false })
  const chain = new AuditChain({ replica: 'bench', bindings: logger.bindings(), out: (line) => devNull.write(`${line}\n`) })
  const audit = {
    requestId: randomUUID(),
    route: 'bench',
    httpMethod: 'POST',
    status: 200,
    reason: 'ok',
    principal: { issuer: 'http://127.0.0.1:9400', subject: 'alice', clientId: 'demo-agent', scopes: ['tools.read'] },
    mcp: { method: 'tools/call', target: 'search_issues', rpcId: 42, protocolVersion: '2025-11-25' },
    streaming: false,
    latencyMs: 1.23,
  }

  const dir = mkdtempSync(join(tmpdir(), 'mcp-warden-stages-'))
  mkdirSync(join(dir, 'p'))
  writeFileSync(join(dir, 'p', 'bench.yaml'), benchPolicy())
  const { set } = loadPolicyDir(join(dir, 'p'), { claims: { groups: 'groups' } })
  const principal: Principal = {
    tokenKind: 'jwt', issuerName: 'bench-as', issuer: 'http://127.0.0.1:9400', subject: 'alice', clientId: 'demo-agent', scopes: new Set(['tools.read']), audience: ['http://127.0.0.1:8080/mcp/bench'],
    actor: undefined, delegationChain: [], userPresent: true, expiresAt: now + 3600, tokenId: undefined, authorizationDetails: undefined, confirmation: undefined, claims: {},
  }
  const args = (JSON.parse(BODY.toString('utf8')) as { params: { arguments: unknown } }).params.arguments
  const input = { route: 'bench', method: 'tools/call', name: 'search_issues', arguments: args, principal, now: Date.now() }
  if (evaluate(set, input).effect !== 'allow') throw new Error('the bench policy must allow the bench call')

  const rows = [
    await cost('JSON.parse of the 314-byte body (reference, not used)', 20_000, () => JSON.parse(BODY.toString('utf8'))),
    await cost('strict parse of the body (parseMcpBody)', 20_000, () => parseMcpBody(BODY, '2025-11-25')),
    await cost('token digest (SHA-256 of the bearer token)', 20_000, () => tokenDigest(token)),
    await cost('verified-token cache hit (digest + LRU get)', 20_000, () => cache.get(tokenDigest(token))),
    await cost('upstream request headers (allow-list)', 20_000, () => upstreamRequestHeaders(inbound, { requestId: audit.requestId, host: '127.0.0.1:1', clientIp: '127.0.0.1', proto: 'http' })),
    await cost('metrics: request counter + duration histogram', 20_000, () => {
      metrics.requests.inc({ route: 'bench', status: '200', reason: 'ok' })
      metrics.requestDuration.observe({ route: 'bench' }, 0.001)
    }),
    await cost('policy decision (36 rules, allowed by one in the middle)', 20_000, () => evaluate(set, input)),
    await cost('arguments digest for the audit (canonical JSON + SHA-256)', 20_000, () => argumentsDigest(args)),
    await cost('policy decision counter (3 labels)', 20_000, () => metrics.policyDecisions.inc({ route: 'bench', effect: 'allow', reason: 'rule-allowed' })),
    await cost('audit line (pino, redaction, async destination)', 20_000, () => logger.info({ audit }, 'mcp.request')),
    await cost('audit line as the gateway writes it now (chained: JSON.stringify + SHA-256, no pino)', 20_000, () => chain.append(`"reqId":${JSON.stringify(audit.requestId)},"audit":${JSON.stringify(audit)}`, 'mcp.request')),
    await cost('RS256 verify with jose compactVerify (cold token)', 300, () => compactVerify(token, publicKey)),
    await cost('RS256 verify with node:crypto (for comparison)', 300, () => createVerify('RSA-SHA256').update(`${h}.${p}`).verify(pem, Buffer.from(s, 'base64url'))),
    await cost("RS256 verify with the gateway's verifier (verifyCompactJws, cached KeyObject)", 300, () => verifyCompactJws(token, 'RS256', gatewayKey)),
    await cost('RS256 key import from JWK (importVerifyKey, once per JWKS key)', 300, () => importVerifyKey({ ...publicJwk }, 'RS256')),
  ]
  process.stdout.write(`Per-operation CPU on ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}\n\n| stage | CPU µs/op |\n|---|---:|\n`)
  for (const [name, us] of rows) process.stdout.write(`| ${name} | ${us.toFixed(2)} |\n`)
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})
