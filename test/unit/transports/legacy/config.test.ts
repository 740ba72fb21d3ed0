import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../../../gateway/config/load.js'
import { CONFIG_HEAD, configProblems } from '../../../helpers/config.js'

const yaml = (route: string) => `${CONFIG_HEAD}routes:
  - name: tools
    issuers: [corp]
${route
  .trim()
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
`

describe('config / routes[].legacyClients', () => {
  it('is off unless set; true on an MCP route of any upstream kind', () => {
    expect(loadConfigText('gw.yaml', yaml('path: /mcp/tools\nupstream: { url: http://127.0.0.1:3000/mcp }'), { env: {} }).config.routes[0]!.legacyClients).toBe(false)
    for (const upstream of ['url: http://127.0.0.1:3000/mcp', 'sse: http://127.0.0.1:3001/sse', 'stdio: { command: s }']) {
      const { config } = loadConfigText('gw.yaml', yaml(`path: /mcp/tools\nupstream: { ${upstream} }\nlegacyClients: true`), { env: {} })
      expect(config.routes[0]!.legacyClients, upstream).toBe(true)
    }
  })

  it('is refused on API routes and must be a boolean, with its position', () => {
    const p = configProblems(yaml('kind: api\npath: /api/tools\nupstream: { url: http://127.0.0.1:3000/api }\nlegacyClients: true'))
    expect(p.map((x) => x.path)).toContain('routes[0].legacyClients')
    expect(configProblems(yaml('path: /mcp/tools\nupstream: { url: http://127.0.0.1:3000/mcp }\nlegacyClients: yes-please')).length).toBeGreaterThan(0)
  })

  it('refuses legacy paths that are another route\'s path', () => {
    const text = yaml('path: /mcp/tools\nupstream: { url: http://127.0.0.1:3000/mcp }\nlegacyClients: true').replace(
      'routes:\n',
      'routes:\n  - { name: other, path: /mcp/tools/sse, upstream: { url: http://127.0.0.1:3000/mcp }, issuers: [corp] }\n',
    )
    const p = configProblems(text)
    expect(p.find((x) => x.path === 'routes[1].legacyClients')?.message).toContain('/mcp/tools/sse')
  })
})
