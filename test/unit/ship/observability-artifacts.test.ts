import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { approvalMetrics } from '../../../gateway/approval/metrics.js'
import { createMetrics } from '../../../gateway/observability/metrics.js'

const DEPLOY = join(import.meta.dirname, '..', '..', '..', 'deploy')
const HISTOGRAM_SERIES = /_(bucket|sum|count)$/

async function exportedNames(): Promise<Set<string>> {
  // The approval stage registers its own metrics on the gateway's registry.
  const { registry } = createMetrics()
  approvalMetrics(registry)
  const metrics = await registry.getMetricsAsJSON()
  const names = new Set<string>()
  for (const m of metrics) {
    names.add(m.name)
    // Histograms and summaries are scraped as _bucket/_sum/_count series.
    if (['histogram', 'summary'].includes(String(m.type))) for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s)
  }
  return names
}

/** Metric names in PromQL: identifiers starting with mcp_warden_ (label names never do). */
const referenced = (exprs: string[]) => [...new Set(exprs.flatMap((e) => [...e.matchAll(/\bmcp_warden_[a-z0-9_]+/g)].map((m) => m[0])))]

function dashboardExprs(): string[] {
  const d = JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'mcp-warden-dashboard.json'), 'utf8')) as {
    panels: { targets: { expr: string }[] }[]
    templating: { list: { query?: unknown }[] }
  }
  return [...d.panels.flatMap((p) => p.targets.map((t) => t.expr)), ...d.templating.list.map((v) => v.query).filter((q): q is string => typeof q === 'string')]
}

describe('dashboard and alert rules use only metrics the gateway exports', () => {
  it('the Grafana dashboard references only exported metric names', async () => {
    const names = await exportedNames()
    const used = referenced(dashboardExprs())
    expect(used.length).toBeGreaterThan(10)
    expect(used.filter((n) => !names.has(n))).toEqual([])
    // Histogram series only where the base metric is a histogram.
    expect(used.filter((n) => HISTOGRAM_SERIES.test(n) && !names.has(n.replace(HISTOGRAM_SERIES, '')))).toEqual([])
  })

  it('the Prometheus alert rules reference only exported metric names', async () => {
    const names = await exportedNames()
    const rules = parse(readFileSync(join(DEPLOY, 'prometheus', 'mcp-warden.rules.yaml'), 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] }
    const exprs = rules.groups.flatMap((g) => g.rules.map((r) => r.expr))
    expect(rules.groups.flatMap((g) => g.rules.map((r) => r.alert))).toEqual(
      expect.arrayContaining(['McpWardenAuthorizationServerUnreachable', 'McpWardenRedisDown', 'McpWardenHighErrorRate']),
    )
    expect(referenced(exprs).filter((n) => !names.has(n))).toEqual([])
  })
})
