import { describe, expect, it } from 'vitest'
import { handleSignals } from '../../../gateway/main.js'
import type { Gateway } from '../../../gateway/server.js'

describe('main / SIGHUP', () => {
  it('reload / SIGHUP asks the policy engine to reload (and does nothing else)', () => {
    const triggers: string[] = []
    let closed = false
    const gateway = { policies: { reload: (t: string) => triggers.push(t) }, close: async () => void (closed = true), logger: { info() {} }, config: { server: { shutdownGraceMs: 1 } } } as unknown as Gateway
    const before = process.listeners('SIGHUP').length
    handleSignals(gateway)
    try {
      process.emit('SIGHUP')
      process.emit('SIGHUP')
      expect(triggers).toEqual(['SIGHUP', 'SIGHUP'])
      expect(closed).toBe(false)
    } finally {
      for (const l of process.listeners('SIGHUP').slice(before)) process.off('SIGHUP', l)
      for (const sig of ['SIGTERM', 'SIGINT'] as const) for (const l of process.listeners(sig).slice(-1)) process.off(sig, l)
    }
  })
})
