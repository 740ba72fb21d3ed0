/** Route resource sharing (`sharedResource`) and challenge scopes (`challengeScopes`), issue 16 item 11. */
import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../../gateway/config/load.js'
import { CONFIG_HEAD, configProblems } from '../../helpers/config.js'

const route = (name: string, extra = '') => `  - { name: ${name}, path: /mcp/${name}, upstream: { url: 'http://127.0.0.1:3000/mcp' }, issuers: [corp]${extra} }\n`
const config = (...routes: string[]) => `${CONFIG_HEAD}routes:\n${routes.join('')}`
const messages = (text: string) => configProblems(text).map((p) => `${p.line}:${p.column} ${p.message}`)

describe('sharedResource', () => {
  const shared = ', resource: https://gw.example.com/mcp, sharedResource: true'
  it('two routes with one resource are refused unless both opt in', () => {
    expect(messages(config(route('a', ', resource: https://gw.example.com/mcp'), route('b', ', resource: https://gw.example.com/mcp')))).toEqual([
      expect.stringMatching(/^11:\d+ two routes share one resource identifier \(routes\[0\]\); set sharedResource: true/),
    ])
    expect(messages(config(route('a', shared), route('b', ', resource: https://gw.example.com/mcp')))).toHaveLength(1)
  })
  it('PRM-01 / PRM-02 / opted in: one resource, and each route keeps its own metadata document at its own path', () => {
    const { config: c, warnings } = loadConfigText('gw.yaml', config(route('a', shared), route('b', shared)), { env: {} })
    expect(c.routes.map((r) => r.resource)).toEqual(['https://gw.example.com/mcp', 'https://gw.example.com/mcp'])
    expect(c.routes.map((r) => r.metadataUrl)).toEqual(['https://gw.example.com/.well-known/oauth-protected-resource/mcp/a', 'https://gw.example.com/.well-known/oauth-protected-resource/mcp/b'])
    expect(warnings).toEqual([])
  })
  it('needs an explicit resource, and warns when the resource is not a path prefix of the route (MCP clients refuse it)', () => {
    expect(messages(config(route('a', ', sharedResource: true')))).toEqual([expect.stringMatching(/sharedResource needs an explicit resource/)])
    const { warnings } = loadConfigText('gw.yaml', config(route('a', ', resource: https://gw.example.com/api, sharedResource: true'), route('b', ', resource: https://gw.example.com/api, sharedResource: true')), { env: {} })
    expect(warnings.map((w) => w.message)).toEqual([expect.stringMatching(/path prefix of the route path \/mcp\/a/), expect.stringMatching(/path prefix of the route path \/mcp\/b/)])
  })
})

describe('challengeScopes', () => {
  it('CHL-02 / defaults to scopesSupported; when set it is the 401 scope, metadata keeps scopesSupported', () => {
    const load = (extra: string) => loadConfigText('gw.yaml', config(route('a', extra)), { env: {} }).config.routes[0]!
    expect(load(', scopesSupported: [r, w]').challengeScopes).toEqual(['r', 'w'])
    const r = load(', scopesSupported: [r, w], challengeScopes: [r]')
    expect([r.challengeScopes, r.scopesSupported]).toEqual([['r'], ['r', 'w']])
  })
  it('SCP-06 / refuses offline_access, scopes outside scopesSupported, and a challenge that omits requiredScopes', () => {
    expect(messages(config(route('a', ', scopesSupported: [r, w], requiredScopes: [r], challengeScopes: [w, x, offline_access]')))).toEqual([
      expect.stringMatching(/scope "x" is not in scopesSupported/),
      expect.stringMatching(/offline_access is never requested/),
      expect.stringMatching(/challengeScopes must include the requiredScopes \(missing r\)/),
    ])
  })
})
