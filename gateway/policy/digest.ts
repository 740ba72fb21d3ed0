/**
 * Audit digest of tool arguments: SHA-256 over a canonical JSON form (object members sorted),
 * so equal arguments give equal digests whatever their member order, and values never reach logs.
 */
import { createHash } from 'node:crypto'

export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`
  }
  return JSON.stringify(v) ?? 'null'
}

export const argumentsDigest = (args: unknown): string => `sha256:${createHash('sha256').update(canonicalJson(args)).digest('base64url')}`
