import { describe, expect, it } from 'vitest'
import { approvalMetrics } from '../../../gateway/approval/metrics.js'
import { createMetrics } from '../../../gateway/observability/metrics.js'
import { helpProblems } from '../../helpers/metric-help.js'

/**
 * HELP texts are what an operator reads in Grafana's metric browser; a HELP naming a label the
 * metric does not have sends them looking for it. HELP text convention: "..., by a, b and c."
 * lists the labels (parentheses explain values), and every label is named somewhere in the text.
 */
describe('metric HELP texts match their labels', () => {
  it('every metric the gateway registers', () => {
    const { registry } = createMetrics()
    approvalMetrics(registry)
    // prom-client's default process and Node.js metrics carry prom-client's own HELP texts.
    const metrics = registry.getMetricsAsArray().filter((m) => !/^mcp_warden_(process|nodejs)_/.test(m.name))
    expect(metrics.length).toBeGreaterThan(20)
    expect(metrics.flatMap((m) => helpProblems(m.name, m.help, (m as unknown as { labelNames: string[] }).labelNames))).toEqual([])
  })

  it('the check refuses a HELP that names a missing label or leaves a label out', () => {
    expect(helpProblems('x', 'Requests answered, by route, MCP method class and HTTP status.', ['route', 'status', 'reason'])).toEqual([
      'x: HELP lists "MCP method class", which is no label (labels: route, status, reason)',
      'x: HELP does not name label "reason"',
    ])
    expect(helpProblems('y', 'Keys loaded, by issuer.', [])).toEqual(['y: HELP lists "issuer", which is no label (labels: none)'])
    expect(helpProblems('z', 'Calls by issuer, source (origin/redis, or a, b) and outcome.', ['issuer', 'source', 'outcome'])).toEqual([])
  })

})
