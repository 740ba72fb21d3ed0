// node:fs plus globSync (Node 22+), for tools built for newer Node running on Node 20.
// Supports the patterns those tools use: `**/<name>` and plain relative paths.
import * as fs from 'node:fs'
import { join, relative, sep } from 'node:path'
export * from 'node:fs'
export default fs

export function globSync(pattern, options = {}) {
  const cwd = String(options.cwd ?? process.cwd())
  const name = pattern.startsWith('**/') ? pattern.slice(3) : undefined
  if (name === undefined) return fs.existsSync(join(cwd, pattern)) ? [pattern] : []
  const out = []
  const walk = (dir) => {
    let entries = []
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      const p = join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name === name) out.push(relative(cwd, p).split(sep).join('/'))
    }
  }
  walk(cwd)
  return out
}
