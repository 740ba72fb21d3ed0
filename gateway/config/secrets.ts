import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { SecretSourceInput } from './schema.js'

/**
 * A resolved secret. `toString`/`toJSON` are redacted so that a secret that ends up in a log
 * object or an error message prints as [secret] instead of its value.
 */
export class Secret {
  readonly #value: string
  constructor(value: string) {
    this.#value = value
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

export function resolveSecret(source: SecretSourceInput, baseDir: string, env: NodeJS.ProcessEnv): SecretResolution {
  if ('fromEnv' in source) {
    const v = env[source.fromEnv]
    return v ? { ok: true, secret: new Secret(v), inline: false } : { ok: false, message: `environment variable ${source.fromEnv} is not set` }
  }
  if ('fromFile' in source) {
    try {
      const v = readFileSync(resolve(baseDir, source.fromFile), 'utf8').trim()
      return v ? { ok: true, secret: new Secret(v), inline: false } : { ok: false, message: `secret file ${source.fromFile} is empty` }
    } catch {
      return { ok: false, message: `cannot read secret file ${source.fromFile}` }
    }
  }
  return { ok: true, secret: new Secret(source.value), inline: true }
}
