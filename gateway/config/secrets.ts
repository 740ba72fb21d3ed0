import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { SecretSourceInput } from './schema.js'

/**
 * A resolved secret. `toString`/`toJSON` are redacted so that a secret that ends up in a log
 * object or an error message prints as [secret] instead of its value.
 */
export class Secret {
  readonly #value: string
  /** A stand-in for a reference that `check --no-secrets` did not resolve; its content is not checked. */
  readonly placeholder: boolean
  constructor(value: string, placeholder = false) {
    this.#value = value
    this.placeholder = placeholder
  }
  reveal(): string {
    return this.#value
  }
  toString(): string {
    return '[secret]'
  }
  toJSON(): string {
    return '[secret]'
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return '[secret]'
  }
}

export type SecretResolution = { ok: true; secret: Secret; inline: boolean } | { ok: false; message: string }

/**
 * Environments whose fromEnv/fromFile references count as present even when they do not resolve:
 * `mcp-warden check --no-secrets`, for a config rendered in CI or by Helm, whose secrets exist only
 * where it runs. The mark travels with the env object the loader already passes everywhere.
 */
const REFERENCES_ONLY = new WeakSet<object>()

export function referencesOnly(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env }
  REFERENCES_ONLY.add(copy)
  return copy
}

export function resolveSecret(source: SecretSourceInput, baseDir: string, env: NodeJS.ProcessEnv): SecretResolution {
  const placeholder = (): SecretResolution => ({ ok: true, secret: new Secret('', true), inline: false })
  if ('fromEnv' in source) {
    const v = env[source.fromEnv]
    if (!v && REFERENCES_ONLY.has(env)) return placeholder()
    return v ? { ok: true, secret: new Secret(v), inline: false } : { ok: false, message: `environment variable ${source.fromEnv} is not set` }
  }
  if ('fromFile' in source) {
    try {
      const v = readFileSync(resolve(baseDir, source.fromFile), 'utf8').trim()
      return v ? { ok: true, secret: new Secret(v), inline: false } : { ok: false, message: `secret file ${source.fromFile} is empty` }
    } catch {
      if (REFERENCES_ONLY.has(env)) return placeholder()
      return { ok: false, message: `cannot read secret file ${source.fromFile}` }
    }
  }
  return { ok: true, secret: new Secret(source.value), inline: true }
}
