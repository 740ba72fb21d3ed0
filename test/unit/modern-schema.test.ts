/**
 * Every result shape the 2026-07-28 bridge produces, validated against the revision's published
 * JSON Schema (test/fixtures/mcp-schema), not a summary of it: clients of that revision (MCP
 * Inspector 2.x, the Python SDK 2.x) validate results and refuse the ones missing `resultType`,
 * `ttlMs` or `cacheScope` (issue 16 item 2).
 */
import { describe, expect, it } from 'vitest'
import { discoverResult, toModernResponse, type UpstreamSession } from '../../gateway/transports/modern/translate.js'
import { listFilter } from '../../gateway/policy/filter.js'
import { schemaErrors as check } from '../helpers/mcp-schema.js'

// What a 2025-11-25 upstream (the MCP SDK 1.x servers of the demo) answers, by method.
const tool = { name: 'search', description: 'Search', inputSchema: { type: 'object', properties: { q: { type: 'string' } } } }
const LEGACY: Array<[method: string, def: string, result: Record<string, unknown>]> = [
  ['tools/list', 'ListToolsResultResponse', { tools: [tool, { ...tool, name: 'delete_repo' }] }],
  ['tools/list', 'ListToolsResultResponse', { tools: [tool], nextCursor: 'c2' }],
  ['tools/call', 'CallToolResultResponse', { content: [{ type: 'text', text: '3' }], structuredContent: { sum: 3 } }],
  ['tools/call', 'CallToolResultResponse', { content: [{ type: 'text', text: 'boom' }], isError: true }],
  ['prompts/list', 'ListPromptsResultResponse', { prompts: [{ name: 'summarize', arguments: [{ name: 'text', required: true }] }] }],
  ['prompts/get', 'GetPromptResultResponse', { messages: [{ role: 'user', content: { type: 'text', text: 'Summarize: x' } }] }],
  ['resources/list', 'ListResourcesResultResponse', { resources: [{ uri: 'demo://readme', name: 'readme', mimeType: 'text/plain' }] }],
  ['resources/templates/list', 'ListResourceTemplatesResultResponse', { resourceTemplates: [{ uriTemplate: 'demo://items/{id}', name: 'item' }] }],
  ['resources/read', 'ReadResourceResultResponse', { contents: [{ uri: 'demo://readme', mimeType: 'text/plain', text: 'hello' }] }],
  ['completion/complete', 'CompleteResultResponse', { completion: { values: ['a'], hasMore: false } }],
  ['ping', 'JSONRPCResultResponse', {}],
  ['logging/setLevel', 'JSONRPCResultResponse', {}],
]

describe('modern/translate.ts toModernResponse against the published 2026-07-28 schema', () => {
  it.each(LEGACY)('%s: a legacy result is refused by the schema as it is, valid once bridged (%s)', (method, def, result) => {
    const legacy = { jsonrpc: '2.0', id: 7, result }
    expect(check(def, legacy)).not.toEqual([])
    expect(check(def, toModernResponse(legacy, method, false))).toEqual([])
  })

  it('cacheable results get ttlMs 0 and cacheScope "private" when the upstream said nothing', () => {
    const m = toModernResponse({ jsonrpc: '2.0', id: 1, result: { tools: [] } }, 'tools/list', false)
    expect(m.result).toEqual({ tools: [], resultType: 'complete', ttlMs: 0, cacheScope: 'private' })
  })

  it('an upstream that says "public" and a valid ttl keeps them when the gateway did not filter', () => {
    const m = toModernResponse({ jsonrpc: '2.0', id: 1, result: { tools: [], ttlMs: 60000, cacheScope: 'public' } }, 'tools/list', false)
    expect(m.result).toMatchObject({ ttlMs: 60000, cacheScope: 'public' })
  })

  it('an invalid ttl (negative, fractional, text) becomes 0', () => {
    for (const ttlMs of [-1, 1.5, '100', null]) {
      const m = toModernResponse({ jsonrpc: '2.0', id: 1, result: { tools: [], ttlMs } }, 'tools/list', false)
      expect((m.result as { ttlMs: unknown }).ttlMs).toBe(0)
    }
  })

  it('V26-10: a list the gateway filtered per caller is "private" whatever the upstream said', () => {
    const filter = listFilter(new Map([[1, 'tools/list']]), (_k, name) => name === 'search')
    const upstream = { jsonrpc: '2.0', id: 1, result: { tools: [tool, { ...tool, name: 'delete_repo' }], resultType: 'complete', ttlMs: 3600000, cacheScope: 'public' } }
    // A native (2026-07-28) upstream: the policy filter alone must make it private.
    const native = filter(upstream) as Record<string, unknown>
    expect(native.result).toMatchObject({ tools: [tool], cacheScope: 'private' })
    expect(check('ListToolsResultResponse', native)).toEqual([])
    // The bridge, told the result was filtered.
    const bridged = toModernResponse(filter(upstream) as Record<string, unknown>, 'tools/list', true)
    expect(bridged.result).toMatchObject({ tools: [tool], cacheScope: 'private' })
    expect(check('ListToolsResultResponse', bridged)).toEqual([])
  })

  it('V26-10: a filtered legacy list gains "private" from the bridge; a legacy client still sees no 2026-07-28 fields', () => {
    const filter = listFilter(new Map([[1, 'tools/list']]), () => true)
    const legacy = filter({ jsonrpc: '2.0', id: 1, result: { tools: [tool] } }) as Record<string, unknown>
    expect(legacy.result).toEqual({ tools: [tool] })
    expect(toModernResponse(legacy, 'tools/list', true).result).toMatchObject({ cacheScope: 'private', ttlMs: 0 })
  })

  it('errors and results that are no objects pass unchanged (and an error stays schema-valid)', () => {
    const err = { jsonrpc: '2.0', id: 1, error: { code: -32601, message: 'Method not found' } }
    expect(toModernResponse(err, 'tools/list', true)).toBe(err)
    expect(check('JSONRPCErrorResponse', err)).toEqual([])
  })

  it('V26-11: server/discover is a valid DiscoverResult; serverInfo goes in _meta', () => {
    const s: UpstreamSession = { id: 'x', protocolVersion: '2025-11-25', serverInfo: { name: 'up', version: '2' }, capabilities: { tools: { listChanged: true }, logging: {} }, instructions: 'hi' }
    const result = discoverResult(s, ['2026-07-28', '2025-11-25'])
    expect(result).toEqual({
      resultType: 'complete',
      supportedVersions: ['2026-07-28', '2025-11-25'],
      capabilities: { tools: { listChanged: true }, logging: {} },
      instructions: 'hi',
      _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'up', version: '2' } },
      ttlMs: 0,
      cacheScope: 'private',
    })
    expect(check('DiscoverResultResponse', { jsonrpc: '2.0', id: 'd', result })).toEqual([])
    // An upstream serverInfo without a version would make the result invalid: the gateway's own identity replaces it.
    const broken = discoverResult({ ...s, serverInfo: { name: 'up' } }, ['2026-07-28'])
    expect(check('DiscoverResultResponse', { jsonrpc: '2.0', id: 'd', result: broken })).toEqual([])
  })
})
