/** A tools/call of 314 bytes, the request the figures were taken with. */
export const BODY = JSON.stringify({
  jsonrpc: '2.0',
  id: 42,
  method: 'tools/call',
  params: {
    name: 'search_issues',
    arguments: { repository: 'example-org/mcp-warden', query: 'label:performance state:open sort:updated-desc', limit: 25, fields: ['number', 'title', 'state', 'labels', 'updated_at'] },
    _meta: { progressToken: 'bench-0001' },
  },
}).padEnd(314, ' ')
