/**
 * The MCP specification's published 2026-07-28 JSON Schema (test/fixtures/mcp-schema), compiled
 * once: tests check what the gateway answers 2026-07-28 clients against the revision itself.
 */
import { readFileSync } from 'node:fs'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020
const schema = JSON.parse(readFileSync(new URL('../fixtures/mcp-schema/2026-07-28.json', import.meta.url), 'utf8')) as Record<string, unknown>
const ajv = new Ajv2020({ strict: false, allErrors: true })
addFormats(ajv)
ajv.addSchema(schema, 'mcp')

/** The schema's complaints about `message` as `$defs/<def>`; empty when valid. */
export function schemaErrors(def: string, message: unknown): string[] {
  const v = ajv.getSchema(`mcp#/$defs/${def}`)
  if (!v) throw new Error(`no $defs/${def} in the 2026-07-28 schema`)
  return v(message) ? [] : (v.errors ?? []).map((e) => `${e.instancePath} ${e.message}`)
}
