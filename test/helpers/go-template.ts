/**
 * A small Go text/template renderer with the Helm functions the mcp-warden chart uses, so the
 * chart can be rendered in tests on machines without helm. It implements exactly: text with
 * {{- -}} trimming, comments, define/include/template, if/else if/else, with/else, range (lists
 * and maps, with `$i, $v :=`), variables, parenthesised pipelines, `|`, field chains on `.`,
 * `$` and variables, and the functions in FUNCS. Anything else is a parse error, so a template
 * that uses an unsupported construct fails the test instead of rendering wrongly.
 *
 * Semantics follow Go/Helm where the chart depends on them: truthiness (empty values are false),
 * field access on a missing map key gives nil and on nil is an error, toYaml drops the trailing
 * newline, nindent/indent pad every line, `required` fails on nil or "".
 */
import { createHash } from 'node:crypto'
import { stringify } from 'yaml'

type Node =
  | { t: 'text'; v: string }
  | { t: 'action'; p: Pipeline }
  | { t: 'if' | 'with'; p: Pipeline; then: Node[]; else: Node[] }
  | { t: 'range'; p: Pipeline; vars: string[]; body: Node[]; else: Node[] }
  | { t: 'template'; name: string; p: Pipeline | undefined }

interface Pipeline {
  decl: string[]
  cmds: Term[][]
}

type Term =
  | { t: 'lit'; v: unknown }
  | { t: 'field'; base: 'dot' | 'root' | { var: string }; path: string[] }
  | { t: 'fn'; name: string }
  | { t: 'sub'; p: Pipeline; path: string[] }

export class TemplateError extends Error {}

const NIL = undefined

// ---------------------------------------------------------------- lexing and parsing

interface Tok {
  kind: 'text' | 'action'
  v: string
}

function lex(src: string, file: string): Tok[] {
  const toks: Tok[] = []
  let i = 0
  while (i < src.length) {
    const open = src.indexOf('{{', i)
    if (open < 0) {
      toks.push({ kind: 'text', v: src.slice(i) })
      break
    }
    let text = src.slice(i, open)
    let start = open + 2
    if (src.startsWith('- ', start) || src.startsWith('-\n', start)) {
      text = text.replace(/\s+$/, '')
      start += 1
    }
    toks.push({ kind: 'text', v: text })
    let close: number
    if (src.startsWith('/*', src.slice(start).search(/\S/) + start)) {
      const end = src.indexOf('*/', start)
      if (end < 0) throw new TemplateError(`${file}: unclosed comment`)
      close = src.indexOf('}}', end)
    } else {
      close = findClose(src, start)
    }
    if (close < 0) throw new TemplateError(`${file}: unclosed action`)
    let body = src.slice(start, close)
    i = close + 2
    if (/\s-$/.test(body)) {
      body = body.slice(0, -1)
      const m = /^\s*/.exec(src.slice(i))
      i += m![0].length
    }
    toks.push({ kind: 'action', v: body.trim() })
  }
  return toks
}

/** The end of an action, skipping `}}` inside string literals. */
function findClose(src: string, from: number): number {
  let q: string | undefined
  for (let j = from; j < src.length; j++) {
    const c = src[j]!
    if (q) {
      if (c === '\\' && q === '"') j++
      else if (c === q) q = undefined
    } else if (c === '"' || c === '`') q = c
    else if (c === '}' && src[j + 1] === '}') return j
  }
  return -1
}

function tokenizeExpr(s: string, file: string): string[] {
  const out: string[] = []
  const re = /\s*("(?:[^"\\]|\\.)*"|`[^`]*`|:=|\(|\)|\||,|-?\d+(?:\.\d+)?|\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*|\.(?:[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)?|[A-Za-z_][A-Za-z0-9_]*|\S)/y
  let m: RegExpExecArray | null
  while (re.lastIndex < s.length && (m = re.exec(s))) {
    if (m[1] === undefined) break
    // `(pipeline).Field` needs the field glued to the parenthesis; `(x) .Field` is two operands.
    const glued = m[0] === m[1] && out[out.length - 1] === ')' && m[1].startsWith('.') && m[1].length > 1
    out.push(glued ? `)${m[1]}` : m[1])
  }
  if (s.slice(re.lastIndex).trim()) throw new TemplateError(`${file}: cannot tokenize "${s}"`)
  return out
}

class ExprParser {
  i = 0
  constructor(
    readonly toks: string[],
    readonly file: string,
  ) {}
  peek(): string | undefined {
    return this.toks[this.i]
  }
  pipeline(): Pipeline {
    const decl: string[] = []
    const save = this.i
    while (this.peek()?.startsWith('$') && !this.peek()!.includes('.')) {
      decl.push(this.toks[this.i++]!)
      if (this.peek() === ',') this.i++
      else break
    }
    if (decl.length && this.peek() === ':=') this.i++
    else {
      this.i = save
      decl.length = 0
    }
    const cmds: Term[][] = [this.command()]
    while (this.peek() === '|') {
      this.i++
      cmds.push(this.command())
    }
    return { decl, cmds }
  }
  command(): Term[] {
    const terms: Term[] = []
    while (this.peek() !== undefined && this.peek() !== '|' && this.peek() !== ')') terms.push(this.term())
    if (!terms.length) throw new TemplateError(`${this.file}: empty command in "${this.toks.join(' ')}"`)
    return terms
  }
  term(): Term {
    const tok = this.toks[this.i++]!
    if (tok === '(') {
      const p = this.pipeline()
      if (this.toks[this.i++] !== ')') throw new TemplateError(`${this.file}: missing )`)
      let path: string[] = []
      const next = this.peek()
      if (next?.startsWith(').')) {
        path = next.slice(2).split('.')
        this.i++
      }
      return { t: 'sub', p, path }
    }
    if (tok.startsWith('"')) return { t: 'lit', v: JSON.parse(tok) }
    if (tok.startsWith('`')) return { t: 'lit', v: tok.slice(1, -1) }
    if (/^-?\d/.test(tok)) return { t: 'lit', v: Number(tok) }
    if (tok === 'true' || tok === 'false') return { t: 'lit', v: tok === 'true' }
    if (tok === 'nil') return { t: 'lit', v: NIL }
    if (tok === '.') return { t: 'field', base: 'dot', path: [] }
    if (tok.startsWith('.')) return { t: 'field', base: 'dot', path: tok.slice(1).split('.') }
    if (tok.startsWith('$')) {
      const [name, ...path] = tok.split('.')
      return { t: 'field', base: name === '$' ? 'root' : { var: name! }, path }
    }
    if (/^[A-Za-z_]/.test(tok)) {
      if (!Object.hasOwn(FUNCS, tok) && tok !== 'include') throw new TemplateError(`${this.file}: unsupported function "${tok}"`)
      return { t: 'fn', name: tok }
    }
    throw new TemplateError(`${this.file}: unexpected "${tok}"`)
  }
}

function parsePipeline(s: string, file: string): Pipeline {
  const p = new ExprParser(tokenizeExpr(s, file), file)
  const pipe = p.pipeline()
  if (p.i !== p.toks.length) throw new TemplateError(`${file}: trailing tokens in "${s}"`)
  return pipe
}

/** Parses one file; `define` blocks go to `defines`, the rest is the file's body. */
function parse(src: string, file: string, defines: Map<string, Node[]>): Node[] {
  const toks = lex(src, file)
  let k = 0
  const block = (ends: string[]): { nodes: Node[]; end: string } => {
    const nodes: Node[] = []
    while (k < toks.length) {
      const tok = toks[k++]!
      if (tok.kind === 'text') {
        if (tok.v) nodes.push({ t: 'text', v: tok.v })
        continue
      }
      const a = tok.v
      if (a.startsWith('/*')) continue
      const kw = /^([a-z]+)\b\s*(.*)$/s.exec(a)
      const word = kw?.[1]
      const rest = kw?.[2] ?? ''
      if (word && ends.includes(word)) return { nodes, end: a }
      if (word === 'if' || word === 'with') {
        nodes.push(conditional(word, rest))
      } else if (word === 'range') {
        const p = parsePipeline(rest, file)
        const body = block(['else', 'end'])
        const els = body.end === 'else' ? block(['end']).nodes : []
        nodes.push({ t: 'range', p: { decl: [], cmds: p.cmds }, vars: p.decl, body: body.nodes, else: els })
      } else if (word === 'define') {
        const name = JSON.parse(rest.trim()) as string
        defines.set(name, block(['end']).nodes)
      } else if (word === 'template') {
        const m = /^("(?:[^"\\]|\\.)*")\s*(.*)$/s.exec(rest)
        if (!m) throw new TemplateError(`${file}: bad template action`)
        nodes.push({ t: 'template', name: JSON.parse(m[1]!) as string, p: m[2] ? parsePipeline(m[2], file) : undefined })
      } else if (word === 'else' || word === 'end') {
        throw new TemplateError(`${file}: unexpected {{${a}}}`)
      } else if (word && ['block', 'break', 'continue'].includes(word)) {
        throw new TemplateError(`${file}: unsupported action "${word}"`)
      } else {
        nodes.push({ t: 'action', p: parsePipeline(a, file) })
      }
    }
    if (ends.length) throw new TemplateError(`${file}: missing {{end}}`)
    return { nodes, end: '' }
  }
  const conditional = (word: 'if' | 'with', rest: string): Node => {
    const p = parsePipeline(rest, file)
    const then = block(['else', 'end'])
    let els: Node[] = []
    if (then.end !== 'end') {
      const elseRest = then.end.replace(/^else\s*/, '')
      if (elseRest.startsWith('if ') || elseRest.startsWith('with ')) {
        const [w, ...r] = elseRest.split(/\s+/)
        els = [conditional(w as 'if' | 'with', r.join(' '))]
      } else els = block(['end']).nodes
    }
    return { t: word, p, then: then.nodes, else: els }
  }
  return block([]).nodes
}

// ---------------------------------------------------------------- evaluation

const isEmpty = (v: unknown): boolean =>
  v === NIL || v === null || v === false || v === 0 || v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0)

function toYaml(v: unknown): string {
  if (v === NIL || v === null) return 'null'
  return stringify(v, { sortMapEntries: true, lineWidth: 0 }).replace(/\n$/, '')
}

function indentText(n: number, s: string): string {
  const pad = ' '.repeat(n)
  return pad + s.replace(/\n/g, `\n${pad}`)
}

function printValue(v: unknown): string {
  if (v === NIL || v === null) return ''
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  throw new TemplateError(`cannot print a ${Array.isArray(v) ? 'list' : 'map'} directly; use toYaml`)
}

const FUNCS: Record<string, (...a: unknown[]) => unknown> = {
  toYaml,
  toJson: (v) => JSON.stringify(v ?? null),
  nindent: (n, s) => `\n${indentText(n as number, printValue(s))}`,
  indent: (n, s) => indentText(n as number, printValue(s)),
  quote: (...a) => a.filter((x) => x !== NIL).map((x) => JSON.stringify(printValue(x))).join(' '),
  default: (d, v) => (isEmpty(v) ? d : v),
  required: (msg, v) => {
    if (v === NIL || v === null || v === '') throw new TemplateError(String(msg))
    return v
  },
  printf: (fmt, ...a) => {
    let k = 0
    return String(fmt).replace(/%[sdv%]/g, (m) => (m === '%%' ? '%' : printValue(a[k++])))
  },
  trunc: (n, s) => printValue(s).slice(0, n as number),
  trimSuffix: (suf, s) => (printValue(s).endsWith(suf as string) ? printValue(s).slice(0, -(suf as string).length) : printValue(s)),
  contains: (sub, s) => printValue(s).includes(sub as string),
  sha256sum: (s) => createHash('sha256').update(printValue(s)).digest('hex'),
  eq: (a, ...b) => b.some((x) => x === a),
  ne: (a, b) => a !== b,
  not: (a) => isEmpty(a),
  and: (...a) => a.find((x) => isEmpty(x)) ?? a[a.length - 1],
  or: (...a) => a.find((x) => !isEmpty(x)) ?? a[a.length - 1],
  empty: (a) => isEmpty(a),
  toString: (a: unknown) => printValue(a),
}

interface Scope {
  dot: unknown
  root: unknown
  vars: Map<string, unknown>
}

export class Renderer {
  readonly #defines = new Map<string, Node[]>()
  readonly #files = new Map<string, Node[]>()

  constructor(templates: Record<string, string>) {
    for (const [name, src] of Object.entries(templates)) this.#files.set(name, parse(src, name, this.#defines))
  }

  /** Renders every non-partial template with `context` as `.` (Values, Release, Chart...). */
  render(context: Record<string, unknown>): Record<string, string> {
    const out: Record<string, string> = {}
    for (const [name, nodes] of this.#files) {
      if (name.split('/').pop()!.startsWith('_')) continue
      out[name] = this.#exec(nodes, { dot: context, root: context, vars: new Map([['$', context]]) })
    }
    return out
  }

  #exec(nodes: Node[], s: Scope): string {
    let out = ''
    for (const n of nodes) {
      switch (n.t) {
        case 'text':
          out += n.v
          break
        case 'action': {
          const v = this.#pipe(n.p, s)
          if (!n.p.decl.length) out += printValue(v)
          break
        }
        case 'if':
        case 'with': {
          const v = this.#pipe(n.p, s)
          const inner: Scope = { ...s, vars: new Map(s.vars) }
          if (n.t === 'with') inner.dot = v
          out += isEmpty(v) ? this.#exec(n.else, { ...s, vars: new Map(s.vars) }) : this.#exec(n.then, inner)
          break
        }
        case 'range': {
          const v = this.#pipe(n.p, s)
          const entries: [unknown, unknown][] = Array.isArray(v)
            ? v.map((x, i) => [i, x])
            : v && typeof v === 'object'
              ? Object.keys(v)
                  .sort()
                  .map((k) => [k, (v as Record<string, unknown>)[k]])
              : []
          if (v !== NIL && v !== null && typeof v !== 'object') throw new TemplateError(`range over ${typeof v}`)
          if (!entries.length) out += this.#exec(n.else, s)
          for (const [k, x] of entries) {
            const vars = new Map(s.vars)
            if (n.vars.length === 1) vars.set(n.vars[0]!, x)
            if (n.vars.length === 2) {
              vars.set(n.vars[0]!, k)
              vars.set(n.vars[1]!, x)
            }
            out += this.#exec(n.body, { ...s, dot: x, vars })
          }
          break
        }
        case 'template':
          out += this.include(n.name, n.p ? this.#pipe(n.p, s) : NIL, s.root)
          break
      }
    }
    return out
  }

  include(name: string, dot: unknown, root: unknown): string {
    const nodes = this.#defines.get(name)
    if (!nodes) throw new TemplateError(`no template "${name}"`)
    return this.#exec(nodes, { dot, root, vars: new Map([['$', dot]]) })
  }

  #pipe(p: Pipeline, s: Scope): unknown {
    let acc: unknown
    let first = true
    for (const cmd of p.cmds) {
      acc = this.#cmd(cmd, s, first ? [] : [acc])
      first = false
    }
    for (const d of p.decl) s.vars.set(d, acc)
    return acc
  }

  #cmd(cmd: Term[], s: Scope, piped: unknown[]): unknown {
    const head = cmd[0]!
    const args = cmd.slice(1)
    if (head.t === 'fn') {
      const vals = [...args.map((a) => this.#term(a, s)), ...piped]
      if (head.name === 'include') return this.include(vals[0] as string, vals[1], s.root)
      return FUNCS[head.name]!(...vals)
    }
    if (args.length || piped.length) throw new TemplateError('only functions take arguments')
    return this.#term(head, s)
  }

  #term(t: Term, s: Scope): unknown {
    switch (t.t) {
      case 'lit':
        return t.v
      case 'fn':
        return this.#cmd([t], s, [])
      case 'sub':
        return walk(this.#pipe(t.p, s), t.path)
      case 'field': {
        const base = t.base === 'dot' ? s.dot : t.base === 'root' ? s.vars.get('$') : s.vars.has(t.base.var) ? s.vars.get(t.base.var) : fail(`undefined variable ${t.base.var}`)
        return walk(base, t.path)
      }
    }
  }
}

function fail(msg: string): never {
  throw new TemplateError(msg)
}

function walk(v: unknown, path: string[]): unknown {
  let cur = v
  for (const [i, key] of path.entries()) {
    if (cur === NIL || cur === null) throw new TemplateError(`nil pointer evaluating .${path.slice(0, i + 1).join('.')}`)
    if (typeof cur !== 'object' || Array.isArray(cur)) throw new TemplateError(`can't evaluate field ${key} in ${typeof cur}`)
    cur = (cur as Record<string, unknown>)[key]
  }
  return cur
}
