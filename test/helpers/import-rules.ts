// The import rules of docs/architecture.md as data: the folder table is parsed from the page and every
// import of every gateway source is read with the TypeScript compiler's own parser, so multi-line
// imports, `import type`, re-exports and dynamic `import()` are all seen (a regex missed them).
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, posix, relative } from 'node:path'
import ts from 'typescript'

export interface ImportEdge {
  /** The specifier as written (`../auth/principal.js`, `fastify`). */
  specifier: string
  /** Gateway-relative path without extension for local imports (`auth/principal`), the package name otherwise. */
  target: string
  local: boolean
  /** Erased at compile time: `import type`, `export type`, or every named specifier marked `type`. */
  typeOnly: boolean
  line: number
}

export interface Rule {
  /** What the row owns: `auth/` (a folder), `server.ts` (a file), globs allowed (`*` within a segment). */
  owners: string[]
  everything: boolean
  allow: { entry: string; typesOnly: boolean }[]
}

export interface Source {
  path: string
  text: string
}

export function gatewaySources(root: string): Source[] {
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((f) => {
      const p = join(dir, f)
      return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : []
    })
  return walk(root).map((p) => ({ path: relative(root, p).split('\\').join('/'), text: readFileSync(p, 'utf8') }))
}

export function importsOf(source: Source): ImportEdge[] {
  const file = ts.createSourceFile(source.path, source.text, ts.ScriptTarget.Latest, true)
  const edges: ImportEdge[] = []
  const add = (spec: ts.Expression, typeOnly: boolean, node: ts.Node) => {
    if (!ts.isStringLiteralLike(spec)) return
    const specifier = spec.text
    const local = specifier.startsWith('.')
    const target = local
      ? posix.normalize(posix.join(posix.dirname(source.path), specifier)).replace(/\.(js|ts)$/, '')
      : packageName(specifier)
    edges.push({ specifier, target, local, typeOnly, line: file.getLineAndCharacterOfPosition(node.getStart()).line + 1 })
  }
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause
      const typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined &&
            clause.namedBindings !== undefined &&
            ts.isNamedImports(clause.namedBindings) &&
            clause.namedBindings.elements.length > 0 &&
            clause.namedBindings.elements.every((e) => e.isTypeOnly)))
      add(node.moduleSpecifier, typeOnly, node)
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
      const typeOnly =
        node.isTypeOnly ||
        (node.exportClause !== undefined && ts.isNamedExports(node.exportClause) && node.exportClause.elements.length > 0 && node.exportClause.elements.every((e) => e.isTypeOnly))
      add(node.moduleSpecifier, typeOnly, node)
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression, node.isTypeOnly, node)
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0]) {
      add(node.arguments[0], false, node)
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      // `typeof import('x')` in a type position couples nothing at run time.
      add(node.argument.literal, true, node)
    }
    ts.forEachChild(node, visit)
  }
  visit(file)
  return edges
}

const packageName = (specifier: string) => {
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!
}

/**
 * Reads the "Folders" table: the first column names the owners in backticks, the last column
 * `everything`, `nothing`, or backticked entries, each optionally followed by `(types)`.
 * Any other parenthesis is prose and ignored.
 */
export function parseRules(markdown: string): Rule[] {
  const rules: Rule[] = []
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('| `')) continue
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim())
    if (cells.length < 3) continue
    const owners = [...cells[0]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)
    const mayImport = cells[cells.length - 1]!
    const everything = /^everything\b/.test(mayImport)
    const allow = [...mayImport.matchAll(/`([^`]+)`(\s*\(types\))?/g)].map((m) => ({ entry: m[1]!.replace(/\/$/, ''), typesOnly: m[2] !== undefined }))
    rules.push({ owners, everything, allow })
  }
  return rules
}

const globRegex = (glob: string) => new RegExp('^' + glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*') + '$')

/** The most specific row for a source path: a file row beats its folder's row. */
export function ruleFor(rules: Rule[], path: string): Rule | undefined {
  let best: { rule: Rule; weight: number } | undefined
  for (const rule of rules) {
    for (const owner of rule.owners) {
      const isFolder = owner.endsWith('/')
      const matches = isFolder ? path.startsWith(owner) : globRegex(owner).test(path)
      const weight = isFolder ? owner.length : 1000 + owner.length
      if (matches && (!best || weight > best.weight)) best = { rule, weight }
    }
  }
  return best?.rule
}

/** `auth` allows `auth/x`; `auth/principal` allows exactly that module; `*` globs a segment. */
const entryAllows = (entry: string, target: string) => {
  const stripped = entry.replace(/\.ts$/, '')
  return target === stripped || target.startsWith(stripped + '/') || globRegex(stripped).test(target)
}

const folderOf = (path: string) => (path.includes('/') ? path.slice(0, path.indexOf('/')) : '')

export interface Violation {
  file: string
  line: number
  specifier: string
  why: string
}

/**
 * Local imports are checked against the row of the importing file (its own folder is always
 * allowed); of packages, only the guarded ones (the web framework) need an entry.
 */
export function checkImports(sources: Source[], rules: Rule[], guardedPackage: (name: string) => boolean): Violation[] {
  const violations: Violation[] = []
  for (const source of sources) {
    const rule = ruleFor(rules, source.path)
    if (!rule) {
      violations.push({ file: source.path, line: 1, specifier: '', why: 'no row of the folder table owns this file' })
      continue
    }
    if (rule.everything) continue
    for (const edge of importsOf(source)) {
      if (!edge.local && !guardedPackage(edge.target)) continue
      if (edge.local && folderOf(edge.target) !== '' && folderOf(edge.target) === folderOf(source.path)) continue
      const entries = rule.allow.filter((a) => entryAllows(a.entry, edge.target))
      if (entries.some((a) => !a.typesOnly)) continue
      if (entries.length > 0 && edge.typeOnly) continue
      violations.push({
        file: source.path,
        line: edge.line,
        specifier: edge.specifier,
        why: entries.length > 0 ? 'only type imports are allowed from here' : 'not in the row\'s "may import"',
      })
    }
  }
  return violations
}
