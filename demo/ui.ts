/**
 * What `npm run demo` prints, apart from the demo itself: colours only where they render,
 * a port collision as one sentence naming the variable to set, and policy reloads as one human
 * line instead of a JSON log record.
 */

export interface Style {
  bold(s: string): string
  dim(s: string): string
  green(s: string): string
  red(s: string): string
  yellow(s: string): string
  cyan(s: string): string
}

/** NO_COLOR (no-color.org) wins, then FORCE_COLOR; otherwise colour only on a terminal that has it. */
export function colourEnabled(env: NodeJS.ProcessEnv, stream: { isTTY?: boolean; hasColors?: () => boolean }): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '') return env.FORCE_COLOR !== '0'
  return Boolean(stream.isTTY && (stream.hasColors?.() ?? true) && env.TERM !== 'dumb')
}

export function style(enabled: boolean): Style {
  const sgr = (open: number, close: number) => (s: string) => (enabled ? `\x1b[${open}m${s}\x1b[${close}m` : s)
  return { bold: sgr(1, 22), dim: sgr(2, 22), green: sgr(32, 39), red: sgr(31, 39), yellow: sgr(33, 39), cyan: sgr(36, 39) }
}

/** The demo's ports: the variable that sets each, and its default. */
export const DEMO_PORTS = {
  DEMO_GATEWAY_PORT: { default: 8080, what: 'mcp-warden (MCP clients connect here)' },
  DEMO_ADMIN_PORT: { default: 9090, what: 'mcp-warden admin (/healthz, /readyz, /metrics)' },
  DEMO_AS_PORT: { default: 9400, what: 'the embedded authorization server' },
  DEMO_MCP_PORT: { default: 9401, what: 'the demo MCP server (no auth of its own)' },
} as const
export type DemoPortVar = keyof typeof DEMO_PORTS

export class DemoSetupError extends Error {}

/** Reads the DEMO_*_PORT variables (no 0 for "any free port": the gateway's public URL names its port). */
export function demoPorts(env: NodeJS.ProcessEnv): Record<DemoPortVar, number> {
  const out = {} as Record<DemoPortVar, number>
  for (const [name, p] of Object.entries(DEMO_PORTS) as [DemoPortVar, (typeof DEMO_PORTS)[DemoPortVar]][]) {
    const raw = env[name]
    const n = raw === undefined || raw === '' ? p.default : Number(raw)
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new DemoSetupError(`${name}=${raw} is not a port number (1-65535)`)
    out[name] = n
  }
  return out
}

/**
 * A listen failure as one sentence naming the variable that moves the port, or undefined when
 * the error is not a port collision (it is then shown as it is).
 */
export function portProblem(err: unknown, ports: Record<DemoPortVar, number>, env: NodeJS.ProcessEnv = {}): string | undefined {
  const e = err as NodeJS.ErrnoException & { port?: number }
  if (e?.code !== 'EADDRINUSE' && e?.code !== 'EACCES') return undefined
  const port = e.port ?? Number(/:(\d+)\s*$/.exec(e.message ?? '')?.[1])
  const name = (Object.keys(ports) as DemoPortVar[]).find((k) => ports[k] === port)
  const why = e.code === 'EADDRINUSE' ? 'is already in use' : 'may not be opened by this user'
  if (!name) return `port ${port} ${why}`
  const set = (Object.keys(DEMO_PORTS) as DemoPortVar[]).filter((k) => k === name || env[k] !== undefined)
  return `port ${port} (${name}, ${DEMO_PORTS[name].what}) ${why}. Pick another one:\n  ${set.map((k) => `${k}=${k === name ? port + 10000 : ports[k]}`).join(' ')} npm run demo`
}

/**
 * One human line for the log records a demo user acts on (policy reloads); undefined for the
 * rest. `line` is one pino JSON record.
 */
export function humanLogLine(line: string, s: Style): string | undefined {
  let r: { event?: string; version?: string; previous?: string; trigger?: string; rules?: number; problems?: string[]; msg?: string; level?: number }
  try {
    r = JSON.parse(line) as typeof r
  } catch {
    return undefined
  }
  if (r.event === 'policy.loaded' && r.trigger !== 'start' && r.previous)
    return `${s.green('✔ policy reloaded')}: version ${r.version} in force (${r.rules} rules; was ${r.previous})`
  if (r.event === 'policy.reload_failed') {
    const problems = (r.problems ?? []).map((p) => `\n    ${p}`).join('')
    return `${s.red('✘ policy edit refused')}: version ${r.version} stays in force${problems}`
  }
  return undefined
}
