/**
 * Reads a policy directory: every `*.yaml` / `*.yml` file (not `*_test.yaml` suites, not hidden
 * entries such as a Kubernetes ConfigMap's `..data`), in file-name order. All files are read
 * first, then parsed, validated and compiled; one bad file refuses the whole set.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, type ConfigProblem } from '../errors.js'
import { parseYamlSource, problemAt, validateAgainst, type YamlSource } from '../config/yaml-source.js'
import { compileArgRegex, compilePolicies, policyVersion, type CompileContext, type LoadedDocument, type PolicySet } from './compile.js'
import { PolicyDocumentSchema, type PolicyDocument } from './schema.js'

export const isPolicyFile = (name: string): boolean => !name.startsWith('.') && /\.ya?ml$/.test(name) && !/_test\.ya?ml$/.test(name)
export const isSuiteFile = (name: string): boolean => !name.startsWith('.') && /_test\.ya?ml$/.test(name)

export interface PolicyFile {
  /** Path shown in messages. */
  file: string
  text: string
}

export function readPolicyDir(dir: string, accept: (name: string) => boolean = isPolicyFile): PolicyFile[] {
  let names: string[]
  try {
    names = readdirSync(dir).filter(accept).sort()
  } catch (e) {
    throw new ConfigError([{ file: dir, line: 1, column: 1, path: '', message: `cannot read policy directory: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, severity: 'error' }])
  }
  return names.map((n) => {
    const file = join(dir, n)
    try {
      return { file, text: readFileSync(file, 'utf8') }
    } catch (e) {
      throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `cannot read file: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, severity: 'error' }])
    }
  })
}

/** ${NAME} is not interpolated in policies: a policy means what it says. */
const NO_ENV: NodeJS.ProcessEnv = {}

export interface PolicyLoadResult {
  set: PolicySet
  warnings: ConfigProblem[]
}

export function compilePolicyFiles(files: readonly PolicyFile[], ctx: CompileContext): PolicyLoadResult {
  const problems: ConfigProblem[] = []
  const docs: LoadedDocument[] = []
  const invalid: YamlSource[] = []
  for (const f of files) {
    const src = parseYamlSource(f.file, f.text, NO_ENV, problems)
    if (!src) continue
    if (src.value === null || typeof src.value !== 'object' || Array.isArray(src.value)) {
      problems.push(problemAt(src, [], 'a policy document must be a mapping'))
      continue
    }
    if (validateAgainst(src, PolicyDocumentSchema, problems)) docs.push({ src, doc: src.value as PolicyDocument, text: f.text })
    else invalid.push(src)
  }
  if (files.length === 0) problems.push({ file: '(policies)', line: 1, column: 1, path: '', message: 'the policy directory has no *.yaml policy files', severity: 'warning' })
  // One run reports every problem: the files that are valid are compiled even when another is not,
  // and the regexes of an invalid one are still checked (a fix of its schema error must not reveal
  // the next error only on the next run). The set is refused all the same.
  const invalidFiles = problems.some((p) => p.severity === 'error')
  const set = compilePolicies(docs, ctx, problems, policyVersion(files))
  for (const src of invalid) problems.push(...regexProblems(src))
  if (!set || invalidFiles) throw new ConfigError(problems)
  return { set, warnings: problems.filter((p) => p.severity === 'warning') }
}

export function loadPolicyDir(dir: string, ctx: CompileContext): PolicyLoadResult {
  return compilePolicyFiles(readPolicyDir(dir), ctx)
}

/** The argument regexes of a document that failed schema validation (it cannot be compiled). */
function regexProblems(src: YamlSource): ConfigProblem[] {
  const out: ConfigProblem[] = []
  const rules = (src.value as { rules?: unknown }).rules
  if (!Array.isArray(rules)) return out
  rules.forEach((rule: unknown, i) => {
    const args = (rule as { arguments?: unknown } | null)?.arguments
    if (!args || typeof args !== 'object') return
    for (const [key, m] of Object.entries(args)) {
      const source = (m as { regex?: unknown } | null)?.regex
      if (typeof source !== 'string') continue
      const r = compileArgRegex(source)
      if (typeof r === 'string') out.push(problemAt(src, ['rules', i, 'arguments', key, 'regex'], r))
    }
  })
  return out
}
