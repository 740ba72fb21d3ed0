import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../../gateway/config/load.js'
import { configProblems } from '../../helpers/config.js'

const VALID = `server:
  publicUrl: https://gw.example.com
  listen: { host: 0.0.0.0, port: 8080 }
admin:
  listen: { port: 9090 }
issuers:
  corp:
    issuer: https://as.example.com
routes:
  - name: alpha
    path: /mcp/alpha
    upstream: { url: http://127.0.0.1:3000/mcp }
    issuers: [corp]
`

const problems = configProblems

describe('config/load', () => {
  it('valid / defaults are applied and the result is frozen', () => {
    const { config } = loadConfigText('gw.yaml', VALID, { env: {} })
    const route = config.routes[0]!
    expect(route.resource).toBe('https://gw.example.com/mcp/alpha')
    expect(route.metadataUrl).toBe('https://gw.example.com/.well-known/oauth-protected-resource/mcp/alpha')
    expect(route.bodyLimit).toBe(1024 * 1024)
    const iss = config.issuers.get('corp')!
    expect(iss.algorithms).toEqual(['RS256'])
    expect(iss.requireTyp).toBe('at+jwt')
    expect(iss.clockSkewSec).toBe(30)
    expect(iss.discovery).toBe(true)
    expect(config.server.allowedHosts.has('gw.example.com')).toBe(true)
    expect(Object.isFrozen(config)).toBe(true)
    expect(Object.isFrozen(route)).toBe(true)
    expect(() => ((config as { server: unknown }).server = {})).toThrow()
  })

  it('invalid / every problem is reported at once with file:line:column', () => {
    const text = VALID.replace('  listen: { port: 9090 }', '  listen: { port: 9090 }\n  colour: blue').replace('    issuers: [corp]', '    issuers: [corp, nope]\n    bodyLimit: huge')
    const p = problems(text)
    expect(p.map((x) => `${x.line}:${x.column} ${x.path}: ${x.message}`)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^6:3 admin\.colour: unknown key "colour"/), expect.stringMatching(/^15:16 routes\[0\]\.bodyLimit: does not match/)]),
    )
    expect(p.length).toBeGreaterThanOrEqual(2)
  })

  it('invalid / semantic checks: unknown issuer, duplicate path, skew above 60s', () => {
    const text = VALID.replace('    issuer: https://as.example.com', '    issuer: https://as.example.com\n    clockSkew: 5m').replace('issuers: [corp]', 'issuers: [corp, nope]') + `  - name: beta
    path: /mcp/alpha
    upstream: { url: http://127.0.0.1:3001/mcp }
    issuers: [corp]
`
    const msgs = problems(text).map((p) => `${p.line}:${p.column} ${p.message}`)
    expect(msgs).toEqual(expect.arrayContaining([expect.stringMatching(/^9:16 clock skew may be at most 60s/), expect.stringMatching(/unknown issuer "nope"/), expect.stringMatching(/^16:11 duplicate route path/)]))
  })

  it('invalid / enum values list the allowed ones', () => {
    const p = problems(`${VALID}logging: { level: loud }\n`)
    expect(p[0]?.message).toMatch(/must be one of "fatal", "error"/)
    expect(p[0]?.line).toBe(14)
  })

  it('invalid / YAML syntax and duplicate keys are errors with positions', () => {
    expect(problems('server: [\n')[0]?.line).toBeGreaterThanOrEqual(1)
    const dup = problems(VALID.replace('admin:', 'admin:\n  listen: { port: 1 }').replace('  listen: { port: 9090 }', '  listen: { port: 9090 }'))
    expect(dup[0]?.message).toMatch(/unique|duplicate/i)
  })

  it('env / ${VAR} is interpolated, unquoted numbers stay numbers, missing vars are errors', () => {
    // `${...}` is interpolated in scalars after parsing, so inside a flow map `{ }` it must be quoted.
    const text = VALID.replace('  listen: { host: 0.0.0.0, port: 8080 }', '  listen:\n    port: ${PORT}').replace('https://as.example.com', '"${ISSUER}"')
    const { config } = loadConfigText('gw.yaml', text, { env: { PORT: '8181', ISSUER: 'https://id.example.com' } })
    expect(config.server.listen.port).toBe(8181)
    expect(config.issuers.get('corp')!.issuer).toBe('https://id.example.com')
    expect(problems(text, { PORT: '1' }).map((p) => p.message)).toContain('environment variable ISSUER is not set')
  })

  it('secrets / redis url from env is resolved and never printed', () => {
    const { config } = loadConfigText('gw.yaml', `${VALID}cache:\n  redis: { url: { fromEnv: R } }\n`, { env: { R: 'redis://:hunter2@127.0.0.1:6379' } })
    const c = config.cache.redis?.connection
    expect(c?.mode === 'standalone' && c.url.reveal()).toContain('hunter2')
    expect(JSON.stringify(config.cache)).not.toContain('hunter2')
    expect(c?.mode === 'standalone' && String(c.url)).toBe('[secret]')
    expect(problems(`${VALID}cache:\n  redis: { url: { fromEnv: MISSING } }\n`)[0]?.message).toBe('environment variable MISSING is not set')
  })

  it('invalid / plain http is refused for non-loopback issuers and public URLs', () => {
    const msgs = problems(VALID.replace('https://as.example.com', 'http://as.example.com').replace('https://gw.example.com', 'http://gw.example.com')).map((p) => p.message)
    expect(msgs).toEqual(expect.arrayContaining([expect.stringMatching(/publicUrl must be https/), expect.stringMatching(/issuer must be https/)]))
  })
})
