/**
 * `helm template` for tests: merges values the way Helm does (maps deep-merged, lists replaced,
 * null deletes a key), validates the merged values against values.schema.json (as `helm install`
 * does), renders every template with the Go-template renderer and parses the YAML documents.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Ajv } from 'ajv'
import { parse, parseAllDocuments } from 'yaml'
import { Renderer } from './go-template.js'

export const CHART_DIR = join(import.meta.dirname, '..', '..', 'helm', 'mcp-warden')

export type Values = Record<string, unknown>
export interface Manifest {
  apiVersion: string
  kind: string
  metadata: { name: string; [k: string]: unknown }
  [k: string]: unknown
}

export class ValuesError extends Error {}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

export function mergeValues(base: Values, over: Values): Values {
  const out: Values = structuredClone(base)
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k]
    else if (isMap(v) && isMap(out[k])) out[k] = mergeValues(out[k] as Values, v)
    else out[k] = structuredClone(v)
  }
  return out
}

export function loadChart(dir = CHART_DIR) {
  const chart = parse(readFileSync(join(dir, 'Chart.yaml'), 'utf8')) as { name: string; version: string; appVersion: string }
  const defaults = parse(readFileSync(join(dir, 'values.yaml'), 'utf8')) as Values
  const schema = JSON.parse(readFileSync(join(dir, 'values.schema.json'), 'utf8')) as object
  const validate = new Ajv({ allErrors: true, strict: false }).compile(schema)
  const templates: Record<string, string> = {}
  for (const f of readdirSync(join(dir, 'templates'))) templates[f] = readFileSync(join(dir, 'templates', f), 'utf8')
  const renderer = new Renderer(templates)

  /** Throws ValuesError when the merged values break values.schema.json. */
  function values(...overrides: Values[]): Values {
    const merged = overrides.reduce(mergeValues, defaults)
    if (!validate(merged)) throw new ValuesError(validate.errors!.map((e) => `${e.instancePath || '/'} ${e.message}`).join('; '))
    return merged
  }

  function render(overrides: Values[] = [], release = { name: 'warden', namespace: 'mcp' }) {
    const ctx = {
      Values: values(...overrides),
      Release: { Name: release.name, Namespace: release.namespace, Service: 'Helm', IsInstall: true, IsUpgrade: false },
      Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion },
    }
    const files = renderer.render(ctx)
    const manifests: Manifest[] = []
    for (const [name, text] of Object.entries(files)) {
      if (name === 'NOTES.txt') continue
      for (const doc of parseAllDocuments(text)) {
        if (doc.errors.length) throw new Error(`${name}: ${doc.errors[0]!.message}\n${text}`)
        const m = doc.toJS() as Manifest | null
        if (m) manifests.push(m)
      }
    }
    return { files, manifests }
  }

  return { chart, defaults, values, render }
}

export function readYamlFile(path: string): Values {
  return parse(readFileSync(path, 'utf8')) as Values
}
