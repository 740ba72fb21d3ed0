/**
 * Writes the published JSON Schemas (policies/schema/*.schema.json) from the TypeBox sources,
 * and the generated reference tables in docs/ (between `<!-- reference:NAME -->` markers).
 * `--check` fails when a committed file differs, so neither the schema editors use nor the
 * documentation can drift from the code.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { schemaReference } from './reference.js'
import { referenceDocs, schemas } from './schemas.js'
import { publishedSchema } from './yaml-source.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const check = process.argv.includes('--check')
let stale = 0

function update(file: string, next: string): void {
  let current = ''
  try {
    current = readFileSync(file, 'utf8')
  } catch {
    /* missing counts as stale */
  }
  if (current === next) return
  if (check) {
    process.stderr.write(`${file} is out of date; run npm run schema\n`)
    stale++
  } else {
    writeFileSync(file, next)
    process.stdout.write(`wrote ${file}\n`)
  }
}

for (const [name, schema] of Object.entries(schemas)) {
  const published = { $schema: 'http://json-schema.org/draft-07/schema#', $id: `https://mcp-warden.dev/schema/${name}.schema.json`, ...publishedSchema(schema) }
  update(join(root, 'policies', 'schema', `${name}.schema.json`), `${JSON.stringify(published, null, 2)}\n`)
  const doc = referenceDocs[name]
  if (doc) {
    const file = join(root, doc)
    const text = readFileSync(file, 'utf8')
    const start = `<!-- reference:${name}:start -->`
    const end = `<!-- reference:${name}:end -->`
    const a = text.indexOf(start)
    const b = text.indexOf(end)
    if (a === -1 || b === -1) throw new Error(`${doc} lacks the ${start} / ${end} markers`)
    update(file, `${text.slice(0, a + start.length)}\n${schemaReference(published as never)}\n${text.slice(b)}`)
  }
}
process.exitCode = stale > 0 ? 1 : 0
