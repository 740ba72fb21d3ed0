/**
 * `kustomize build` for tests, limited to what deploy/kustomize uses: `resources` (files and
 * directories with a kustomization.yaml), `labels` (pairs, metadata only), and `patches` given
 * as strategic-merge-patch files whose target is the resource with the patch's kind and name
 * (`$patch: delete` removes it). Strategic merge follows the Kubernetes patch-merge keys for
 * the lists these manifests patch; any other kustomization field fails the build instead of
 * being ignored.
 */
import { readFileSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { parse, parseAllDocuments } from 'yaml'
import type { Manifest } from './chart.js'

type Obj = Record<string, unknown>
const isMap = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

const SUPPORTED = new Set(['apiVersion', 'kind', 'resources', 'labels', 'patches'])

/** Patch-merge keys (k8s.io/api `patchMergeKey`) of the lists the overlays patch. */
function mergeKey(field: string, items: unknown[]): string | undefined {
  if (['containers', 'initContainers', 'volumes', 'env', 'imagePullSecrets'].includes(field)) return 'name'
  if (field === 'volumeMounts') return 'mountPath'
  if (field === 'ports') return items.some((i) => isMap(i) && 'containerPort' in i) ? 'containerPort' : 'port'
  return undefined
}

export function strategicMerge(target: Obj, patch: Obj): Obj {
  const out: Obj = structuredClone(target)
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch') continue
    if (v === null) delete out[k]
    else if (isMap(v) && isMap(out[k])) out[k] = strategicMerge(out[k] as Obj, v)
    else if (Array.isArray(v) && Array.isArray(out[k])) {
      const key = mergeKey(k, [...(out[k] as unknown[]), ...v])
      if (!key) {
        out[k] = structuredClone(v)
        continue
      }
      const list = structuredClone(out[k]) as Obj[]
      for (const item of v as Obj[]) {
        const i = list.findIndex((x) => x[key] === item[key])
        if (item.$patch === 'delete') {
          if (i >= 0) list.splice(i, 1)
        } else if (i >= 0) list[i] = strategicMerge(list[i]!, item)
        else list.push(structuredClone(item))
      }
      out[k] = list
    } else out[k] = structuredClone(v)
  }
  return out
}

const readDocs = (file: string): Obj[] =>
  parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`)
    return d.toJS() as Obj
  }).filter(Boolean)

const id = (m: Obj) => `${m.kind as string}/${(m.metadata as Obj).name as string}`

export function kustomizeBuild(dir: string): Manifest[] {
  const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Obj
  for (const key of Object.keys(k)) if (!SUPPORTED.has(key)) throw new Error(`${dir}: kustomization field "${key}" is not supported by the test build`)
  let out: Obj[] = []
  for (const r of (k.resources as string[] | undefined) ?? []) {
    const p = join(dir, r)
    out.push(...(statSync(p).isDirectory() ? (kustomizeBuild(p) as unknown as Obj[]) : readDocs(p)))
  }
  for (const l of (k.labels as { pairs: Record<string, string>; includeSelectors?: boolean }[] | undefined) ?? []) {
    if (l.includeSelectors) throw new Error('labels.includeSelectors is not supported by the test build')
    for (const m of out) {
      const md = m.metadata as Obj
      md.labels = { ...(md.labels as Obj | undefined), ...l.pairs }
    }
  }
  for (const p of (k.patches as { path?: string; target?: unknown; patch?: string }[] | undefined) ?? []) {
    if (!p.path || p.target || p.patch) throw new Error(`${dir}: only file patches without target are supported`)
    for (const patch of readDocs(join(dir, p.path))) {
      const i = out.findIndex((m) => id(m) === id(patch))
      if (i < 0) throw new Error(`${join(dir, p.path)}: no resource ${id(patch)} to patch`)
      if (patch.$patch === 'delete') out = out.filter((_, j) => j !== i)
      else out[i] = strategicMerge(out[i]!, patch)
    }
  }
  const seen = new Set<string>()
  for (const m of out) {
    if (seen.has(id(m))) throw new Error(`${dir}: duplicate resource ${id(m)}`)
    seen.add(id(m))
  }
  return out as unknown as Manifest[]
}

export const KUSTOMIZE_DIR = join(dirname(import.meta.dirname), '..', 'deploy', 'kustomize')
