/**
 * A real MCP server (Streamable HTTP) with no authentication of its own: the upstream that
 * mcp-warden protects in demos and tests. It records every HTTP request it receives so tests
 * can prove what did (or did not) reach it, e.g. that an agent's token never leaked upstream.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { InMemoryEventStore } from '@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js';
import { z } from 'zod';

export interface RecordedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  /** Node's parsed headers (names lowercased). */
  headers: Record<string, string | string[] | undefined>;
  /** Every header line as received, names lowercased, duplicates preserved. */
  rawHeaders: Array<[string, string]>;
  body: string;
  receivedAt: number;
}

export interface McpUpstreamOptions {
  port?: number;
  /** No sessions: a fresh server+transport per POST; GET/DELETE answer 405. */
  stateless?: boolean;
  /** Answer POSTs with application/json instead of an SSE stream. */
  enableJsonResponse?: boolean;
  name?: string;
  /** Keep every SSE event (SDK in-memory event store), so a GET with Last-Event-ID replays what a closed stream missed. */
  resumable?: boolean;
}

export interface McpUpstream {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** Clears the recorded requests (sessions stay open). */
  reset(): void;
  /** True if the needle occurs in any recorded header name/value, URL or body. */
  sawString(needle: string): boolean;
  readonly activeSessions: number;
  close(): Promise<void>;
}

export const UPSTREAM_TOOLS = ['search', 'add', 'transfer_funds', 'delete_repo', 'whoami', 'count_slowly', 'confirm'] as const;

const text = (value: string) => ({ content: [{ type: 'text' as const, text: value }] });

const IDENTITY_HEADER = /^(authorization|cookie|forwarded|x-.*)$/;

export function buildServer(name: string): McpServer {
  const server = new McpServer({ name, version: '1.0.0' }, { capabilities: { logging: {} } });

  server.registerTool(
    'search',
    { description: 'Search the demo corpus', inputSchema: { query: z.string() } },
    async ({ query }) => text(`3 results for "${query}": alpha, beta, gamma`),
  );

  server.registerTool(
    'add',
    { description: 'Add two numbers', inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => text(String(a + b)),
  );

  server.registerTool(
    'transfer_funds',
    {
      description: 'Move money (dangerous)',
      inputSchema: { amount: z.number(), to: z.string() },
      annotations: { destructiveHint: true },
    },
    async ({ amount, to }) => text(`transferred ${amount} to ${to}`),
  );

  server.registerTool(
    'delete_repo',
    {
      description: 'Delete a repository (dangerous)',
      inputSchema: { repo: z.string() },
      annotations: { destructiveHint: true },
    },
    async ({ repo }) => text(`deleted ${repo}`),
  );

  server.registerTool(
    'whoami',
    { description: 'Echo the credential and identity headers this call arrived with' },
    async (extra) => {
      const headers = extra.requestInfo?.headers ?? {};
      const identity: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(headers)) {
        if (IDENTITY_HEADER.test(k.toLowerCase())) identity[k.toLowerCase()] = v;
      }
      return text(JSON.stringify(identity));
    },
  );

  server.registerTool(
    'count_slowly',
    {
      description: 'Count to n, sending a progress notification every delayMs',
      inputSchema: { n: z.number().int().min(1).max(1000), delayMs: z.number().int().min(0).max(60_000) },
    },
    async ({ n, delayMs }, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= n; i++) {
        if (extra.signal.aborted) return { ...text(`cancelled at ${i}`), isError: true };
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: i, total: n, message: `${i}/${n}` },
          });
        }
      }
      return text(`counted to ${n}`);
    },
  );

  server.registerTool(
    'confirm',
    { description: 'Ask the user (elicitation) before answering', inputSchema: { question: z.string() } },
    async ({ question }) => {
      const answer = await server.server.elicitInput({
        message: question,
        requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] },
      });
      return text(`user said ${answer.action}${answer.content ? ` ${JSON.stringify(answer.content)}` : ''}`);
    },
  );

  server.registerPrompt(
    'summarize',
    { description: 'Summarize a text', argsSchema: { text: z.string() } },
    async ({ text: input }) => ({
      messages: [{ role: 'user', content: { type: 'text', text: `Summarize:\n${input}` } }],
    }),
  );

  server.registerResource(
    'readme',
    'demo://readme',
    { description: 'About this demo server', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, text: `${name}: a demo MCP upstream with no auth.` }] }),
  );

  return server;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function jsonRpcError(res: ServerResponse, status: number, code: number, message: string) {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

export async function startMcpServer(opts: McpUpstreamOptions = {}): Promise<McpUpstream> {
  const name = opts.name ?? 'demo-upstream';
  const requests: RecordedRequest[] = [];
  const sessions = new Map<string, { transport: StreamableHTTPServerTransport; server: McpServer }>();

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const body = await readBody(req);
    const rawHeaders: Array<[string, string]> = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      rawHeaders.push([req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!]);
    }
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: { ...req.headers },
      rawHeaders,
      body,
      receivedAt: Date.now(),
    });

    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/mcp') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }

    let parsed: unknown;
    if (req.method === 'POST') {
      try {
        parsed = JSON.parse(body);
      } catch {
        jsonRpcError(res, 400, -32700, 'Parse error');
        return;
      }
    }

    if (opts.stateless) {
      if (req.method !== 'POST') {
        res.writeHead(405, { allow: 'POST' }).end();
        return;
      }
      const server = buildServer(name);
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: opts.enableJsonResponse,
      });
      res.on('close', () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req, res, parsed);
      return;
    }

    const sessionHeader = req.headers['mcp-session-id'];
    const sessionId = Array.isArray(sessionHeader) ? sessionHeader[0] : sessionHeader;
    const session = sessionId ? sessions.get(sessionId) : undefined;
    if (session) {
      await session.transport.handleRequest(req, res, parsed);
      return;
    }
    if (sessionId) {
      jsonRpcError(res, 404, -32001, 'Session not found');
      return;
    }
    if (req.method !== 'POST' || !isInitializeRequest(parsed)) {
      jsonRpcError(res, 400, -32000, 'Bad Request: no valid session ID provided');
      return;
    }

    const server = buildServer(name);
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: opts.enableJsonResponse,
      ...(opts.resumable ? { eventStore: new InMemoryEventStore() } : {}),
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, server });
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, parsed);
  }

  const http: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (process.env.DEBUG_MCP) console.error('[mcp-server]', err);
      jsonRpcError(res, 500, -32603, 'Internal server error');
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(opts.port ?? 0, '127.0.0.1', () => {
      http.off('error', reject);
      resolve();
    });
  });
  const port = (http.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    requests,
    reset() {
      requests.length = 0;
    },
    sawString(needle) {
      return requests.some(
        (r) => r.url.includes(needle) || r.body.includes(needle) || r.rawHeaders.some(([k, v]) => k.includes(needle) || v.includes(needle)),
      );
    },
    get activeSessions() {
      return sessions.size;
    },
    async close() {
      const open = [...sessions.values()];
      sessions.clear();
      await Promise.allSettled(open.flatMap(({ transport, server }) => [transport.close(), server.close()]));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
