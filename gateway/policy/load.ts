/**
 * Reads a policy directory: every `*.yaml` / `*.yml` file (not `*_test.yaml` suites, not hidden
 * entries such as a Kubernetes ConfigMap's `..data`), in file-name order. All files are read
 * first, then parsed, validated and compiled; one bad file refuses the whole set.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, type ConfigProblem } from '../errors.js'
import { parseYamlSource, problemAt, validateAgainst } from '../config/yaml-source.js'
import { compilePolicies, policyVersion, type CompileContext, type LoadedDocument, type PolicySet } from './compile.js'
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
  for (const f of files) {
    const src = parseYamlSource(f.file, f.text, NO_ENV, problems)
    if (!src) continue
    if (src.value === null || typeof src.value !== 'object' || Array.isArray(src.value)) {
      problems.push(problemAt(src, [], 'a policy document must be a mapping'))
      continue
    }
    if (validateAgainst(src, PolicyDocumentSchema, problems)) docs.push({ src, doc: src.value as PolicyDocument, text: f.text })
  }
  if (files.length === 0) problems.push({ file: '(policies)', line: 1, column: 1, path: '', message: 'the policy directory has no *.yaml policy files', severity: 'warning' })
  const set = problems.some((p) => p.severity === 'error') ? undefined : compilePolicies(docs, ctx, problems, policyVersion(files))
  if (!set) throw new ConfigError(problems)
  return { set, warnings: problems.filter((p) => p.severity === 'warning') }
}

export function loadPolicyDir(dir: string, ctx: CompileContext): PolicyLoadResult {
  return compilePolicyFiles(readPolicyDir(dir), ctx)
}
