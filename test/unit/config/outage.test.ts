/** gateway.yaml for issue 23: sessions.signingKey and policies.limits.onRedisDown: local. */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../../gateway/config/load.js'
import { configProblems } from '../../helpers/config.js'

const BASE = `server:
  publicUrl: https://gw.example.com
  listen: { host: 0.0.0.0, port: 8080 }
admin:
  listen: { port: 9090 }
issuers:
  corp:
    issuer: https://as.example.com
routes:
  - { name: alpha, path: /mcp/alpha, upstream: { url: "http://127.0.0.1:3000/mcp" }, issuers: [corp] }
`
const KEY = 'a'.repeat(32)

describe('config: sessions.signingKey, onRedisDown: local', () => {
  it('signingKey from the environment; never printed', () => {
    const { config } = loadConfigText('gw.yaml', `${BASE}sessions: { signingKey: { fromEnv: SK } }\n`, { env: { SK: KEY } })
    expect(config.sessions.signingKey?.reveal()).toBe(KEY)
    expect(JSON.stringify(config.sessions)).not.toContain(KEY)
  })

  it('a signingKey under 32 characters or missing is a problem at its position', () => {
    const short = configProblems(`${BASE}sessions:\n  signingKey: { fromEnv: SK }\n`, { SK: 'short' })
    expect(short.map((p) => p.message)).toContainEqual(expect.stringMatching(/at least 32 characters/))
    expect(short[0]?.line).toBe(12)
    expect(configProblems(`${BASE}sessions: { signingKey: { fromEnv: NOPE } }\n`).map((p) => p.message)).toContainEqual(expect.stringMatching(/NOPE is not set/))
  })

  it('onRedisDown: local needs replicas', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcpw-cfg-'))
    writeFileSync(join(dir, 'p.yaml'), 'apiVersion: mcp-warden/v1\nkind: Policy\nname: p\nrules: []\n')
    const pol = (limits: string) => `${BASE}policies: { dir: ${dir}, limits: ${limits} }\n`
    expect(configProblems(pol('{ onRedisDown: local }')).map((p) => p.message)).toContainEqual(expect.stringMatching(/needs policies.limits.replicas/))
    const { config } = loadConfigText('gw.yaml', pol('{ onRedisDown: local, replicas: 3 }'), { env: {} })
    expect(config.policies).toMatchObject({ limitsOnRedisDown: 'local', limitsReplicas: 3 })
  })
})
