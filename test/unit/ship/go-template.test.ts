import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { TemplateError, Renderer } from '../../helpers/go-template.js'
import { k8sProblems } from '../../helpers/k8s.js'
import { readFileSync } from 'node:fs'
import type { Manifest } from '../../helpers/chart.js'

const render = (src: string, ctx: Record<string, unknown> = {}) => new Renderer({ 't.yaml': src }).render(ctx)['t.yaml']

describe('Go-template renderer (the subset the chart uses, with Go/Helm semantics)', () => {
  it('trims whitespace around {{- and -}} and drops comments', () => {
    expect(render('a  \n  {{- "b" -}}  \n c{{/* note */}}')).toBe('abc')
  })

  it('if/else if/else, with (rebinding .), range over lists and sorted maps, $ for the root', () => {
    const ctx = { Values: { on: false, mode: 'b', m: { z: 1, a: 2 }, l: ['x', 'y'], name: 'n' } }
    expect(render('{{ if .Values.on }}1{{ else if eq .Values.mode "b" }}2{{ else }}3{{ end }}', ctx)).toBe('2')
    expect(render('{{ with .Values.m }}{{ .a }}{{ end }}{{ with .Values.missing }}no{{ else }}-{{ end }}', ctx)).toBe('2-')
    expect(render('{{ range $k, $v := .Values.m }}{{ $k }}={{ $v }};{{ end }}', ctx)).toBe('a=2;z=1;')
    expect(render('{{ range .Values.l }}{{ . }}{{ $.Values.name }}{{ end }}', ctx)).toBe('xnyn')
  })

  it('empty values are false and `default` replaces them, like Go and sprig', () => {
    const ctx = { Values: { zero: 0, empty: '', list: [], map: {} } }
    expect(render('{{ if or .Values.zero .Values.empty .Values.list .Values.map }}t{{ else }}f{{ end }}', ctx)).toBe('f')
    expect(render('{{ default "d" .Values.empty }}|{{ default "d" .Values.nope }}', ctx)).toBe('d|d')
  })

  it('toYaml drops the trailing newline; nindent/indent pad every line; quote quotes', () => {
    expect(render('k: {{- toYaml .v | nindent 2 }}', { v: { b: 1, a: [1, 2] } })).toBe('k:\n  a:\n    - 1\n    - 2\n  b: 1')
    expect(render('{{ "x" | quote }} {{ printf "%s-%s" "a" "b" | trunc 2 }}')).toBe('"x" a-')
  })

  it('define/include with a context, and raw strings pass Prometheus templates through', () => {
    const r = new Renderer({ '_h.tpl': '{{- define "x" -}}<{{ .n }}>{{- end -}}', 't.yaml': '{{ include "x" .Values }} {{`{{ $labels.a }}`}}' })
    expect(r.render({ Values: { n: 1 } })['t.yaml']).toBe('<1> {{ $labels.a }}')
  })

  it('fails like Helm: required on an empty value, a field of nil, an unknown function', () => {
    expect(() => render('{{ required "need x" .Values.x }}', { Values: {} })).toThrow('need x')
    expect(() => render('{{ .Values.a.b }}', { Values: {} })).toThrow(TemplateError)
    expect(() => render('{{ lookup "v1" "Secret" "" "" }}')).toThrow(/unsupported function/)
    expect(() => render('{{ if .x }}')).toThrow(/missing \{\{end\}\}/)
  })
})

describe('deploy/examples', () => {
  it('the example Redis validates against the Kubernetes API schema and says it is not for production', () => {
    const file = join(import.meta.dirname, '..', '..', '..', 'deploy', 'examples', 'redis.yaml')
    const text = readFileSync(file, 'utf8')
    const ms = parseAllDocuments(text).map((d) => d.toJS() as Manifest)
    expect(ms.map((m) => m.kind)).toEqual(['Deployment', 'Service'])
    expect(ms.flatMap(k8sProblems)).toEqual([])
    expect(text).toMatch(/^# NOT FOR PRODUCTION/)
  })
})
