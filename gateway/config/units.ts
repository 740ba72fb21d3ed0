/** Duration and size strings from gateway.yaml and policies, converted once at load time. */

const DURATION_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const
const SIZE_BYTES = { b: 1, kb: 1024, mb: 1024 * 1024 } as const

export function parseDuration(text: string): number {
  const m = /^([0-9]+)(ms|s|m|h)$/.exec(text)
  if (!m) throw new Error(`invalid duration "${text}"`)
  return Number(m[1]) * DURATION_MS[m[2] as keyof typeof DURATION_MS]
}

export function parseSize(text: string): number {
  const m = /^([0-9]+)(b|kb|mb)$/.exec(text)
  if (!m) throw new Error(`invalid size "${text}"`)
  return Number(m[1]) * SIZE_BYTES[m[2] as keyof typeof SIZE_BYTES]
}
