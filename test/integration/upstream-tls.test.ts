/**
 * https upstreams have their certificate verified (OPS-01). Regression: reply-from's option
 * handling turned `rejectUnauthorized` off, so any certificate was accepted. A self-signed CA's
 * upstream is refused unless `upstream.ca` names that CA.
 */
import { rmSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFaultyUpstream, type FaultyUpstream } from '../helpers/faulty-upstream.js'
import { INIT, listenerYaml, MCP_HEADERS, type Stack, startStack } from '../helpers/stack.js'
import { makePki, type TestPki } from '../helpers/tls.js'

let pki: TestPki
let up: FaultyUpstream
let s: Stack

beforeAll(async () => {
  pki = makePki()
  up = await startFaultyUpstream({ tls: { key: pki.key, cert: pki.cert } })
  s = await startStack({
    yaml: (c) => `${listenerYaml({ publicUrl: c.publicUrl, port: c.port, adminPort: c.adminPort })}issuers:
  demo: { issuer: ${c.issuer} }
routes:
  - { name: trusted, path: /mcp/trusted, upstream: { url: ${up.url}, ca: ${pki.caFile} }, issuers: [demo] }
  - { name: untrusted, path: /mcp/untrusted, upstream: { url: ${up.url} }, issuers: [demo] }
logging: { level: info }
`,
  })
}, 60_000)
afterAll(async () => {
  await s?.close()
  await up?.close()
  if (pki) rmSync(pki.dir, { recursive: true, force: true })
})

const init = async (path: string) => {
  const token = (await s.as.getToken({ resource: `${s.url}${path}`, scope: 'tools.read' })).access_token
  return fetch(`${s.url}${path}`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: INIT })
}

describe('upstream TLS', () => {
  it('OPS-01 / an https upstream whose certificate does not chain to a trusted CA is refused (502, nothing sent)', async () => {
    const before = up.executions.length
    const res = await init('/mcp/untrusted')
    expect(res.status).toBe(502)
    const body = (await res.json()) as { error?: { code: number }; id?: unknown }
    expect(body.id).toBe(1)
    expect(body.error?.code).toBeTypeOf('number')
    expect(up.executions.length).toBe(before)
  })

  it('OPS-01 / the same upstream is reached when its CA is configured (upstream.ca)', async () => {
    const res = await init('/mcp/trusted')
    expect(res.status).toBe(200)
    expect(await res.text()).toContain('"serverInfo"')
  })

  it('OPS-01 / an unreadable or non-PEM ca file is a config error with its position', async () => {
    const { loadConfigText } = await import('../../gateway/config/load.js')
    const yaml = (ca: string) => `server: { publicUrl: http://127.0.0.1:1, listen: { port: 1 } }
admin: { listen: { port: 2 } }
issuers: { demo: { issuer: https://as.example } }
routes:
  - name: r
    path: /mcp
    upstream: { url: https://up.example/mcp, ca: ${ca} }
    issuers: [demo]
`
    expect(() => loadConfigText('g.yaml', yaml('/nonexistent/ca.pem'))).toThrow(/g\.yaml:7:\d+.*cannot read/s)
    expect(() => loadConfigText('g.yaml', yaml(`${pki.dir}/server.key`))).toThrow(/no PEM certificate/)
  })
})
