/**
 * Every JSON-RPC method name MCP defines, in any revision the gateway serves (2024-11-05 …
 * 2026-07-28), taken from the `method` constants of each revision's published schema.json.
 * Policy compilation warns about a rule naming anything else: a typo such as `logging/setLevl`
 * would otherwise be accepted silently and the real method stay closed.
 */
export const MCP_METHODS: readonly string[] = [
  'completion/complete',
  'elicitation/create',
  'initialize',
  'logging/setLevel',
  'notifications/cancelled',
  'notifications/elicitation/complete',
  'notifications/initialized',
  'notifications/message',
  'notifications/progress',
  'notifications/prompts/list_changed',
  'notifications/resources/list_changed',
  'notifications/resources/updated',
  'notifications/roots/list_changed',
  'notifications/subscriptions/acknowledged',
  'notifications/tasks/status',
  'notifications/tools/list_changed',
  'ping',
  'prompts/get',
  'prompts/list',
  'resources/list',
  'resources/read',
  'resources/subscribe',
  'resources/templates/list',
  'resources/unsubscribe',
  'roots/list',
  'sampling/createMessage',
  'server/discover',
  'subscriptions/listen',
  'tasks/cancel',
  'tasks/get',
  'tasks/list',
  'tasks/result',
  'tools/call',
  'tools/list',
]

const KNOWN: ReadonlySet<string> = new Set(MCP_METHODS)

export const isMcpMethod = (name: string): boolean => KNOWN.has(name)
