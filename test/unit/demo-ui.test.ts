import { createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { colourEnabled, DemoSetupError, demoPorts, humanLogLine, portProblem, style } from '../../demo/ui.js'
import { createLogger } from '../../gateway/observability/logger.js'

const tty = { isTTY: true, hasColors: () => true }
const plain = style(false)

describe('demo output', () => {
  it('colours only on a colour terminal; NO_COLOR beats FORCE_COLOR beats the terminal', () => {
    expect(colourEnabled({}, tty)).toBe(true)
    expect(colourEnabled({}, { isTTY: false })).toBe(false)
    expect(colourEnabled({}, { isTTY: true, hasColors: () => false })).toBe(false)
    expect(colourEnabled({ TERM: 'dumb' }, tty)).toBe(false)
    expect(colourEnabled({ NO_COLOR: '1' }, tty)).toBe(false)
    expect(colourEnabled({ NO_COLOR: '1', FORCE_COLOR: '1' }, tty)).toBe(false)
    expect(colourEnabled({ FORCE_COLOR: '1' }, { isTTY: false })).toBe(true)
    expect(colourEnabled({ FORCE_COLOR: '0' }, tty)).toBe(false)
    expect(style(true).bold('x')).toBe('\x1b[1mx\x1b[22m')
    expect(plain.bold('x')).toBe('x')
  })

  it('reads DEMO_*_PORT with defaults and refuses what is no port', () => {
    expect(demoPorts({})).toEqual({ DEMO_GATEWAY_PORT: 8080, DEMO_ADMIN_PORT: 9090, DEMO_AS_PORT: 9400, DEMO_MCP_PORT: 9401 })
    expect(demoPorts({ DEMO_AS_PORT: '19400' }).DEMO_AS_PORT).toBe(19400)
    expect(() => demoPorts({ DEMO_MCP_PORT: 'abc' })).toThrow(DemoSetupError)
    expect(() => demoPorts({ DEMO_MCP_PORT: '0' })).toThrow(/DEMO_MCP_PORT=0 is not a port number/)
  })

  it('a port in use (a real EADDRINUSE) becomes one sentence naming the variable to set', async () => {
    const holder = createServer()
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r))
    const taken = (holder.address() as { port: number }).port
    const second = createServer()
    const err = await new Promise<Error>((r) => second.once('error', r).listen(taken, '127.0.0.1'))
    holder.close()
    const ports = { ...demoPorts({}), DEMO_AS_PORT: taken }
    const msg = portProblem(err, ports, { DEMO_AS_PORT: String(taken), DEMO_MCP_PORT: '9401' })!
    expect(msg).toContain(`port ${taken} (DEMO_AS_PORT, the embedded authorization server) is already in use`)
    // The suggested command keeps the variables the user already set and moves the taken port.
    expect(msg).toContain(`DEMO_AS_PORT=${taken + 10000} DEMO_MCP_PORT=9401 npm run demo`)
    expect(msg).not.toMatch(/EADDRINUSE|at .*\(/)
    expect(portProblem(new Error('boom'), ports)).toBeUndefined()
  })

  it('policy reloads from the gateway log become one human line; other records none', () => {
    const lines: string[] = []
    const logger = createLogger('info', { write: (l: string) => void lines.push(l) })
    logger.info({ event: 'policy.loaded', trigger: 'start', version: 'a1', rules: 3 }, 'policy version a1 in force')
    logger.info({ event: 'policy.loaded', trigger: 'watch', version: 'b2', previous: 'a1', rules: 4 }, 'policy version b2 in force')
    logger.error({ event: 'policy.reload_failed', trigger: 'watch', version: 'b2', problems: ['demo.yaml:3:5  rules[0].effect: must be one of …'] }, 'refused')
    logger.info({ event: 'gateway.started' }, 'listening')
    expect(lines.map((l) => humanLogLine(l, plain))).toEqual([
      undefined,
      '✔ policy reloaded: version b2 in force (4 rules; was a1)',
      '✘ policy edit refused: version b2 stays in force\n    demo.yaml:3:5  rules[0].effect: must be one of …',
      undefined,
    ])
    expect(humanLogLine('not json', plain)).toBeUndefined()
  })
})
