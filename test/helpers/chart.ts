/**
 * The Helm chart and the kustomize overlays through the real tools: `helm template` (which merges
 * values and refuses values that break values.schema.json, as `helm install` does), `helm lint
 * --strict`, and `kubectl kustomize`. Output is parsed into manifests for the schema checks of
 * k8s.ts and the assertions of the tests.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse, parseAllDocuments } from 'yaml'
import { helmBinary } from './k8s-tools.js'

export const CHART_DIR = join(import.meta.dirname, '..', '..', 'helm', 'mcp-warden')
export const KUSTOMIZE_DIR = join(import.meta.dirname, '..', '..', 'deploy', 'kustomize')

export type Values = Record<string, unknown>
export interface Manifest {
  apiVersion: string
  kind: string
  metadata: { name: string; [k: string]: unknown }
  [k: string]: unknown
}

/** helm refused the values (values.schema.json or a `required`/`fail` in a template). */
export class ValuesError extends Error {}

export function parseManifests(text: string, source: string): Manifest[] {
  return parseAllDocuments(text).flatMap((doc) => {
    if (doc.errors.length) throw new Error(`${source}: ${doc.errors[0]!.message}`)
    const m = doc.toJS() as Manifest | null
    return m ? [m] : []
  })
}

interface Run {
  ok: boolean
  stdout: string
  stderr: string
}
function run(bin: string, args: string[]): Run {
  try {
    return { ok: true, stdout: execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }), stderr: '' }
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; status?: number }
    if (err.status === undefined || err.status === null) throw e
    return { ok: false, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }
  }
}

/** Writes each values object to a file, as a user's `-f` files, and passes them in order. */
function withValueFiles<T>(overrides: Values[], fn: (args: string[]) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'mcpw-values-'))
  try {
    const args = overrides.flatMap((v, i) => {
      const file = join(dir, `${i}.yaml`)
      writeFileSync(file, JSON.stringify(v))
      return ['-f', file]
    })
    return fn(args)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export function loadChart(dir = CHART_DIR) {
  const helm = helmBinary()
  const chart = parse(readFileSync(join(dir, 'Chart.yaml'), 'utf8')) as { name: string; version: string; appVersion: string }

  /** `helm template`; throws ValuesError with helm's message when helm refuses the values. */
  function render(overrides: Values[] = [], release = { name: 'warden', namespace: 'mcp' }): { manifests: Manifest[] } {
    return withValueFiles(overrides, (files) => {
      const r = run(helm, ['template', release.name, dir, '--namespace', release.namespace, ...files])
      if (!r.ok) throw new ValuesError(r.stderr.trim())
      return { manifests: parseManifests(r.stdout, `helm template ${files.join(' ')}`) }
    })
  }

  /** `helm lint --strict`: ok, and helm's output (which names every warning). */
  function lint(overrides: Values[] = []): Run {
    return withValueFiles(overrides, (files) => run(helm, ['lint', '--strict', dir, ...files]))
  }

  /** NOTES.txt as `helm install` prints it (a client-side dry run: no cluster). */
  function notes(overrides: Values[] = []): string {
    return withValueFiles(overrides, (files) => {
      const r = run(helm, ['install', 'warden', dir, '--namespace', 'mcp', '--dry-run=client', ...files])
      if (!r.ok) throw new ValuesError(r.stderr.trim())
      return r.stdout.slice(r.stdout.indexOf('\nNOTES:\n'))
    })
  }

  return { chart, render, lint, notes }
}

/** `kubectl kustomize <dir>` with the given kubectl (and so its built-in kustomize). */
export function kustomizeBuild(kubectl: string, dir: string): Manifest[] {
  const r = run(kubectl, ['kustomize', dir])
  if (!r.ok) throw new Error(`${kubectl} kustomize ${dir} failed:\n${r.stderr.slice(0, 2000)}`)
  return parseManifests(r.stdout, `kubectl kustomize ${dir}`)
}

export function readYamlFile(path: string): Values {
  return parse(readFileSync(path, 'utf8')) as Values
}
