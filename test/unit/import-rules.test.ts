import { describe, expect, it } from 'vitest'
import { checkImports, importsOf, parseRules } from '../helpers/import-rules.js'

// The checker guards docs/architecture.md; these cases show it can fail, on the spellings a regex missed.
const table = [
  '| Folder / file | Owns | May import |',
  '|---|---|---|',
  '| `server.ts` | composition | everything |',
  '| `errors.ts` | the catalogue | nothing |',
  '| `pipeline/` | the hallway | `fastify`, `auth`, `policy/compile` (types) |',
  '| `auth/` | who calls | `errors`, `config` (types), `oauth` (introspection calls) |',
  '| `auth/plugin.ts` | glue | `fastify`, `errors` |',
].join('\n')
const rules = parseRules(table)
const guarded = (name: string) => name === 'fastify' || name.startsWith('@fastify/')
const check = (path: string, text: string) => checkImports([{ path, text }], rules, guarded)

describe('import-rule checker (docs/architecture.md table)', () => {
  it('reads owners, "(types)" entries and ignores prose in parentheses', () => {
    expect(rules.find((r) => r.owners.includes('auth/'))?.allow).toEqual([
      { entry: 'errors', typesOnly: false },
      { entry: 'config', typesOnly: true },
      { entry: 'oauth', typesOnly: false },
    ])
    expect(rules.find((r) => r.owners.includes('server.ts'))?.everything).toBe(true)
  })

  it('sees multi-line, type, re-export and dynamic imports', () => {
    const edges = importsOf({
      path: 'auth/x.ts',
      text: "import {\n  a,\n  b,\n} from '../policy/evaluate.js'\nimport type { C } from '../config/load.js'\nimport { type D } from '../config/units.js'\nexport { e } from '../lib/strict-json.js'\nconst f = await import('../proxy/dispatch.js')\ntype G = typeof import('../mcp/jsonrpc.js')\n",
    })
    expect(edges.map((e) => [e.target, e.typeOnly, e.line])).toEqual([
      ['policy/evaluate', false, 1],
      ['config/load', true, 5],
      ['config/units', true, 6],
      ['lib/strict-json', false, 7],
      ['proxy/dispatch', false, 8],
      ['mcp/jsonrpc', true, 9],
    ])
  })

  it('refuses a multi-line value import from a folder not in the row', () => {
    expect(check('auth/jwt.ts', "import {\n  evaluate,\n} from '../policy/evaluate.js'\n")).toMatchObject([{ line: 1, why: expect.stringContaining('not in') }])
  })

  it('allows a type import where the row says (types), and refuses a value import there', () => {
    expect(check('auth/jwt.ts', "import type { RuntimeConfig } from '../config/load.js'\n")).toEqual([])
    expect(check('auth/jwt.ts', "import { loadConfig } from '../config/load.js'\n")).toMatchObject([{ why: expect.stringContaining('only type') }])
  })

  it('a file row beats its folder row; a guarded package needs an entry', () => {
    expect(check('auth/plugin.ts', "import fastify from 'fastify'\n")).toEqual([])
    expect(check('auth/jwt.ts', "import type { FastifyRequest } from 'fastify'\n")).toHaveLength(1)
    expect(check('auth/jwt.ts', "import { jwtVerify } from 'jose'\n")).toEqual([])
  })

  it('a module entry allows exactly that module; own folder always; "nothing" allows nothing local', () => {
    expect(check('pipeline/decide.ts', "import type { CompiledPolicy } from '../policy/compile.js'\nimport { x } from './chain.js'\n")).toEqual([])
    expect(check('pipeline/decide.ts', "import type { Y } from '../policy/evaluate.js'\n")).toHaveLength(1)
    expect(check('errors.ts', "import { x } from './server.js'\n")).toHaveLength(1)
    expect(check('nowhere/x.ts', '')).toMatchObject([{ why: expect.stringContaining('no row') }])
  })
})
