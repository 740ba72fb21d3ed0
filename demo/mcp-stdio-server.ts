/**
 * The demo MCP server (same tools as demo/mcp-server.ts) speaking stdio: the kind of program
 * (`npx some-mcp-server`) mcp-warden runs as a child process and puts behind auth and policy.
 * Run: node --import tsx demo/mcp-stdio-server.ts
 */
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { buildServer } from './mcp-server.js';

const server = buildServer(process.env.MCP_DEMO_NAME ?? 'stdio-demo');

// A secret the program needs arrives in its environment, never through the agent.
server.registerTool('api_key_status', { description: 'Whether the program was given its API key (never the key itself)' }, async () => ({
  content: [{ type: 'text', text: process.env.DEMO_API_KEY ? 'api key present' : 'api key missing' }],
}));

await server.connect(new StdioServerTransport());
// stderr is the program's log; the gateway copies it into its own, with secrets redacted.
console.error(`stdio demo server ready, pid ${process.pid}${process.env.DEMO_API_KEY ? `, key ${process.env.DEMO_API_KEY}` : ''}`);
