/**
 * Writes the published JSON Schemas (policies/schema/*.schema.json) from the TypeBox sources.
 * `--check` fails when the committed files differ, so the schema editors use cannot drift.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { schemas } from './schemas.js'
import { publishedSchema } from './yaml-source.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const check = process.argv.includes('--check')
let stale = 0
for (const [name, schema] of Object.entries(schemas)) {
  const file = join(root, 'policies', 'schema', `${name}.schema.json`)
  const text = `${JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', $id: `https://mcp-warden.dev/schema/${name}.schema.json`, ...publishedSchema(schema) }, null, 2)}\n`
  let current = ''
  try {
    current = readFileSync(file, 'utf8')
  } catch {
    /* missing counts as stale */
  }
  if (current === text) continue
  if (check) {
    process.stderr.write(`${file} is out of date; run npm run schema\n`)
    stale++
  } else {
    writeFileSync(file, text)
    process.stdout.write(`wrote ${file}\n`)
  }
}
process.exitCode = stale > 0 ? 1 : 0
