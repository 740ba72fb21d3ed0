import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../../gateway/config/load.js'
import { CONFIG_HEAD, configProblems } from '../../helpers/config.js'

const yaml = (upstream: string) => `${CONFIG_HEAD}routes:
  - name: tools
    path: /mcp/tools
    upstream:
${upstream
  .trim()
  .split('\n')
  .map((l) => `      ${l}`)
  .join('\n')}
    issuers: [corp]
`

const problems = configProblems

describe('config / upstream transports', () => {
  it('modernClients / defaults to caller (undefined), takes the four modes, native only for url upstreams', () => {
    const withMode = (upstream: string, mode: string) => yaml(upstream).replace('    issuers: [corp]', `    issuers: [corp]\n    modernClients: ${mode}`)
    expect(loadConfigText('gw.yaml', yaml('url: http://127.0.0.1:3000/mcp'), { env: {} }).config.routes[0]!.modernClients).toBe('caller')
    for (const mode of ['caller', 'request', 'native', 'refuse']) {
      expect(loadConfigText('gw.yaml', withMode('url: http://127.0.0.1:3000/mcp', mode), { env: {} }).config.routes[0]!.modernClients).toBe(mode)
    }
    expect(problems(withMode('url: http://127.0.0.1:3000/mcp', 'sometimes')).map((p) => p.path)).toEqual(['routes[0].modernClients'])
    const native = problems(withMode('sse: http://127.0.0.1:3001/sse', 'native'))
    expect(native.map((p) => [p.path, p.line])).toEqual([['routes[0].modernClients', 15]])
    expect(problems(withMode('sse: http://127.0.0.1:3001/sse', 'request'))).toEqual([])
  })

  it('sse / a legacy upstream is a bridged kind with defaults', () => {
    const { config } = loadConfigText('gw.yaml', yaml('sse: http://127.0.0.1:3001/sse'), { env: {} })
    expect(config.routes[0]!.upstream).toMatchObject({ kind: 'sse', url: 'http://127.0.0.1:3001/sse', maxSessions: 64, sessionIdleMs: 30 * 60_000, stdio: undefined })
  })

  it('stdio / command, args, secret env, cwd relative to the config file, mode and back-off', () => {
    const { config } = loadConfigText(
      '/etc/warden/gw.yaml',
      yaml(`
stdio:
  command: npx
  args: [-y, some-mcp-server]
  env: { API_KEY: { fromEnv: SOME_KEY }, REGION: eu }
  cwd: servers/some
  mode: shared
  restart: { backoff: 1s, maxBackoff: 1m }
maxSessions: 8`),
      { env: { SOME_KEY: 's3cr3t-value' } },
    )
    const u = config.routes[0]!.upstream
    expect(u).toMatchObject({ kind: 'stdio', url: 'stdio://tools', maxSessions: 8 })
    expect(u.stdio).toMatchObject({ command: 'npx', args: ['-y', 'some-mcp-server'], cwd: '/etc/warden/servers/some', mode: 'shared', backoffMs: 1000, maxBackoffMs: 60_000 })
    expect(u.stdio!.env.get('API_KEY')!.reveal()).toBe('s3cr3t-value')
    // A secret printed by accident stays a placeholder.
    expect(JSON.stringify(u.stdio!.env.get('API_KEY'))).toBe('"[secret]"')
    expect(u.stdio!.env.get('REGION')!.reveal()).toBe('eu')
  })

  it('stdio / per-session is the default mode', () => {
    const { config } = loadConfigText('gw.yaml', yaml('stdio: { command: my-server }'), { env: {} })
    expect(config.routes[0]!.upstream.stdio).toMatchObject({ mode: 'per-session', args: [], backoffMs: 500, maxBackoffMs: 30_000 })
  })

  it('invalid / exactly one of url, sse, stdio, reported at the upstream node', () => {
    const both = problems(yaml('url: http://127.0.0.1:3000/mcp\nsse: http://127.0.0.1:3001/sse'))
    expect(both).toEqual([expect.objectContaining({ path: 'routes[0].upstream', line: 13, message: expect.stringContaining('exactly one of url, sse, stdio (found url, sse)') })])
    expect(problems(yaml('timeout: 5s'))[0]!.message).toContain('found none')
  })

  it('invalid / a missing secret for the program names its env entry', () => {
    const p = problems(yaml('stdio: { command: s, env: { API_KEY: { fromEnv: NOPE } } }'))
    expect(p).toEqual([expect.objectContaining({ path: 'routes[0].upstream.stdio.env.API_KEY', message: 'environment variable NOPE is not set' })])
  })

  it('invalid / bridge settings on a plain http upstream, back-off above its maximum, bad mode', () => {
    expect(problems(yaml('url: http://127.0.0.1:3000/mcp\nmaxSessions: 3'))[0]!.path).toBe('routes[0].upstream.maxSessions')
    expect(problems(yaml('stdio: { command: s, restart: { backoff: 1m, maxBackoff: 1s } }'))[0]!.path).toBe('routes[0].upstream.stdio.restart.backoff')
    expect(problems(yaml('stdio: { command: s, mode: pooled }')).length).toBeGreaterThan(0)
  })
})
