import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { loadConfigText } from '../../../gateway/config/load.js'
import { CHART_DIR, KUSTOMIZE_DIR, kustomizeBuild, loadChart, parseManifests, readYamlFile, ValuesError, type Manifest, type Values } from '../../helpers/chart.js'
import { k8sProblems } from '../../helpers/k8s.js'
import { kustomizeVersions } from '../../helpers/k8s-tools.js'

type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any
const chart = loadChart()
const example = (name: string) => readYamlFile(join(CHART_DIR, 'examples', `${name}-values.yaml`))
const EXAMPLES = readdirSync(join(CHART_DIR, 'examples')).filter((f) => f.endsWith('-values.yaml')).map((f) => f.replace(/-values\.yaml$/, ''))
const KUSTOMIZE = kustomizeVersions()
const OVERLAYS = ['base', 'overlays/ingress', 'overlays/sidecar']
const everythingOn: Values = {
  ingress: { enabled: true },
  autoscaling: { enabled: true },
  serviceMonitor: { enabled: true },
  prometheusRule: { enabled: true },
  networkPolicy: { enabled: true, adminFrom: [{ podSelector: { matchLabels: { app: 'prometheus' } } }] },
  redis: { enabled: true, existingSecret: { name: 'redis', key: 'url' } },
  secretEnv: [{ name: 'MCP_WARDEN_CORP_CLIENT_SECRET', secretName: 'oauth', key: 'client-secret' }],
  secretFiles: [{ name: 'signing-key', secretName: 'warden-key' }],
  policies: { 'tools.yaml': 'rules: []\n' },
  podAnnotations: { team: 'platform' },
}

const sentinelValues: Values = {
  redis: {
    enabled: true,
    sentinel: { name: 'mymaster', nodes: [{ host: 'redis-sentinel-0.redis-sentinel', port: 26379 }, { host: 'redis-sentinel-1.redis-sentinel', port: 26379 }] },
    passwordSecret: { name: 'redis-auth', key: 'password' },
    sentinelPasswordSecret: { name: 'redis-auth', key: 'sentinel-password' },
    tls: { enabled: true, serverName: 'redis.internal' },
  },
}
const clusterValues: Values = { redis: { enabled: true, cluster: { nodes: [{ host: 'redis-cluster-0.redis-cluster', port: 6379 }] }, passwordSecret: { name: 'redis-auth', key: 'password' } } }

/**
 * Every manifest set we ship: `helm template` with default, example and other values; every
 * kustomization built by every kustomize version at hand.
 */
const SETS: Record<string, () => Manifest[]> = {
  'chart defaults': () => chart.render().manifests,
  ...Object.fromEntries(EXAMPLES.map((e) => [`chart ${e} example`, () => chart.render([example(e)]).manifests])),
  'chart everything enabled': () => chart.render([everythingOn]).manifests,
  'chart redis sentinel': () => chart.render([sentinelValues]).manifests,
  'chart redis cluster': () => chart.render([clusterValues]).manifests,
  ...Object.fromEntries(
    KUSTOMIZE.flatMap(({ kubectl, version }) => OVERLAYS.map((o) => [`kustomize ${version} ${o}`, () => kustomizeBuild(kubectl, join(KUSTOMIZE_DIR, o))])),
  ),
}
const ENV = { MCP_WARDEN_REDIS_URL: 'redis://redis:6379', MCP_WARDEN_CORP_CLIENT_SECRET: 's3cret', MCP_WARDEN_REDIS_PASSWORD: 'pw', MCP_WARDEN_REDIS_SENTINEL_PASSWORD: 'spw' }

const pods = (ms: Manifest[]) => ms.filter((m) => m.kind === 'Deployment') as Obj[]
const warden = (d: Obj) => (d.spec.template.spec.containers as Obj[]).find((c) => c.name === 'mcp-warden')
const gatewayYaml = (ms: Manifest[]) => (ms.find((m) => m.kind === 'ConfigMap' && m.metadata.name.endsWith('-config')) as Obj).data['gateway.yaml'] as string

describe.each(Object.entries(SETS))('%s', (_name, build) => {
  const ms = build()

  it('every manifest validates against the Kubernetes API schema', () => {
    expect(ms.length).toBeGreaterThan(3)
    expect(ms.flatMap(k8sProblems)).toEqual([])
  })

  it('mcp-warden runs non-root, read-only, without capabilities, probed on the admin port', () => {
    const deployments = pods(ms).filter((d) => warden(d))
    expect(deployments).toHaveLength(1)
    for (const d of deployments) {
      const c = warden(d)!
      const pod = d.spec.template.spec
      expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } })
      expect(c.securityContext.runAsNonRoot ?? pod.securityContext?.runAsNonRoot).toBe(true)
      expect(c.securityContext.capabilities.add).toBeUndefined()
      expect(pod.automountServiceAccountToken).toBe(false)
      const admin = (c.ports as Obj[]).find((p) => p.containerPort === 9090)!
      expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: admin.name })
      expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: admin.name })
      expect(c.args).toEqual(['serve', '--config', '/etc/mcp-warden/gateway.yaml'])
      // Writable scratch only where the image expects it; gateway.yaml and policies mounted read-only.
      const mounts = Object.fromEntries((c.volumeMounts as Obj[]).map((m) => [m.mountPath, m]))
      expect(mounts['/tmp']).toBeDefined()
      expect(mounts['/etc/mcp-warden/gateway.yaml']).toMatchObject({ subPath: 'gateway.yaml', readOnly: true })
      // Policies are a whole-directory mount (no subPath), so ConfigMap updates reach the pod.
      expect(mounts['/etc/mcp-warden/policies']).toMatchObject({ readOnly: true })
      expect(mounts['/etc/mcp-warden/policies'].subPath).toBeUndefined()
      expect(d.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(20)
    }
  })

  it('Services, volumes and the HPA point at things that exist', () => {
    for (const svc of ms.filter((m) => m.kind === 'Service') as Obj[]) {
      const backing = pods(ms).filter((d) => Object.entries(svc.spec.selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v))
      expect(backing, svc.metadata.name).toHaveLength(1)
      const portNames = (backing[0]!.spec.template.spec.containers as Obj[]).flatMap((c) => (c.ports as Obj[]).map((p) => p.name))
      for (const p of svc.spec.ports as Obj[]) expect(portNames).toContain(p.targetPort)
      // The MCP-facing Service port always lands on mcp-warden, never on the MCP server itself.
      const http = (svc.spec.ports as Obj[]).find((p) => p.port === 80)!
      expect((warden(backing[0]!)!.ports as Obj[]).map((p) => p.name)).toContain(http.targetPort)
    }
    const configMaps = new Set(ms.filter((m) => m.kind === 'ConfigMap').map((m) => m.metadata.name))
    for (const d of pods(ms)) for (const v of (d.spec.template.spec.volumes ?? []) as Obj[]) if (v.configMap) expect(configMaps).toContain(v.configMap.name)
    for (const h of ms.filter((m) => m.kind === 'HorizontalPodAutoscaler') as Obj[]) {
      const target = pods(ms).find((d) => d.metadata.name === h.spec.scaleTargetRef.name)
      expect(target).toBeDefined()
      expect(target!.spec.replicas).toBeUndefined()
    }
  })

  it('its gateway.yaml passes the gateway config loader, and every fromEnv is set on the container', () => {
    const text = gatewayYaml(ms)
    const { config } = loadConfigText('gateway.yaml', text, { env: ENV })
    expect(config.admin.listen.port).toBe(9090)
    const env = new Set((warden(pods(ms).find((d) => warden(d))!)!.env as Obj[]).map((e) => e.name))
    for (const m of text.matchAll(/fromEnv:\s*(\w+)/g)) expect(env).toContain(m[1])
  })
})

describe('real tools', () => {
  it('at least two kustomize versions build the overlays (the machine\'s and 1.35\'s)', () => {
    expect(KUSTOMIZE.length).toBeGreaterThanOrEqual(2)
  })

  it('every kustomize version builds the same manifests', () => {
    for (const o of OVERLAYS) {
      const [first, ...rest] = KUSTOMIZE.map(({ kubectl }) => kustomizeBuild(kubectl, join(KUSTOMIZE_DIR, o)))
      for (const other of rest) expect(other, o).toEqual(first)
    }
  })

  it('the sidecar overlay drops the standalone Deployment, Service and PDB, keeps its ConfigMaps and ServiceAccount', () => {
    const ms = kustomizeBuild(KUSTOMIZE[0]!.kubectl, join(KUSTOMIZE_DIR, 'overlays', 'sidecar'))
    expect(ms.map((m) => `${m.kind}/${m.metadata.name}`).sort()).toEqual(
      ['ConfigMap/mcp-warden-config', 'ConfigMap/mcp-warden-policies', 'Deployment/tickets-mcp', 'Service/tickets-mcp', 'ServiceAccount/mcp-warden'].sort(),
    )
  })

  it.each(['defaults', ...EXAMPLES])('helm lint --strict passes with %s values', (name) => {
    const r = chart.lint(name === 'defaults' ? [] : [example(name)])
    expect(r.ok, r.stdout + r.stderr).toBe(true)
  })

  it('NOTES warn that the default image is not published, and suggest no npx outside a checkout', () => {
    const notes = chart.notes()
    expect(notes).toContain('WARNING: image.repository is the default ghcr.io/mcp-warden/mcp-warden, which is not published')
    expect(notes).not.toContain('npx')
    const own = chart.notes([{ image: { repository: 'registry.example.com/platform/mcp-warden' } }])
    expect(own).not.toContain('WARNING')
    expect(own).toContain('registry.example.com/platform/mcp-warden:0.1.0 check --config /c.yaml')
  })

  it('helm lint --strict fails on a values-schema refusal (the lint check can fail)', () => {
    expect(chart.lint([{ replicas: 3 }]).ok).toBe(false)
  })
})

describe('chart', () => {
  it('renders the Redis URL and client secrets as secretKeyRefs, never into the ConfigMap', () => {
    const { manifests } = chart.render([example('ingress')])
    const env = warden(pods(manifests)[0]!)!.env as Obj[]
    expect(env.find((e) => e.name === 'MCP_WARDEN_REDIS_URL')!.valueFrom.secretKeyRef).toEqual({ name: 'mcp-warden-redis', key: 'redis-url' })
    expect(gatewayYaml(manifests)).toMatch(/url:\n\s+fromEnv: MCP_WARDEN_REDIS_URL/)
    expect(manifests.filter((m) => m.kind === 'Secret')).toEqual([])
  })

  it('redis.sentinel / redis.cluster become cache.redis sentinels or cluster, passwords as secretKeyRefs, no URL', () => {
    const s = chart.render([sentinelValues]).manifests
    const { config } = loadConfigText('gateway.yaml', gatewayYaml(s), { env: ENV })
    expect(config.cache.redis!.connection).toMatchObject({
      mode: 'sentinel',
      name: 'mymaster',
      sentinels: [{ host: 'redis-sentinel-0.redis-sentinel', port: 26379 }, { host: 'redis-sentinel-1.redis-sentinel', port: 26379 }],
      tls: { serverName: 'redis.internal' },
    })
    const env = warden(pods(s)[0]!)!.env as Obj[]
    expect(env.map((e) => e.name)).not.toContain('MCP_WARDEN_REDIS_URL')
    expect(env.find((e) => e.name === 'MCP_WARDEN_REDIS_PASSWORD')!.valueFrom.secretKeyRef).toEqual({ name: 'redis-auth', key: 'password' })
    expect(env.find((e) => e.name === 'MCP_WARDEN_REDIS_SENTINEL_PASSWORD')!.valueFrom.secretKeyRef).toEqual({ name: 'redis-auth', key: 'sentinel-password' })
    expect(gatewayYaml(s)).toMatch(/ password:\n\s+fromEnv: MCP_WARDEN_REDIS_PASSWORD\n/)
    expect(gatewayYaml(s)).toMatch(/ sentinelPassword:\n\s+fromEnv: MCP_WARDEN_REDIS_SENTINEL_PASSWORD\n/)
    const c = chart.render([clusterValues]).manifests
    expect(loadConfigText('gateway.yaml', gatewayYaml(c), { env: ENV }).config.cache.redis!.connection).toMatchObject({ mode: 'cluster', nodes: [{ host: 'redis-cluster-0.redis-cluster', port: 6379 }] })
    expect((warden(pods(c)[0]!)!.env as Obj[]).map((e) => e.name)).not.toContain('MCP_WARDEN_REDIS_SENTINEL_PASSWORD')
  })

  it('sidecar mode puts the MCP server in the pod, targets mcp-warden from the Service and forwards on localhost', () => {
    const { manifests } = chart.render([example('sidecar')])
    const d = pods(manifests)[0]!
    expect((d.spec.template.spec.containers as Obj[]).map((c) => c.name)).toEqual(['mcp-warden', 'tickets-mcp'])
    expect(parse(gatewayYaml(manifests)).routes[0].upstream.url).toBe('http://127.0.0.1:3000/mcp')
  })

  it('a gateway.yaml change changes the pod template (rollout); a policy change does not (hot reload)', () => {
    const annotation = (v: Values) => (pods(chart.render([v]).manifests)[0]!.spec.template.metadata.annotations as Obj)['checksum/config']
    const base = annotation({})
    expect(annotation({ gateway: { logLevel: 'debug' } })).not.toBe(base)
    expect(annotation({ policies: { 'a.yaml': 'x: 1\n' } })).toBe(base)
  })

  it('the PrometheusRule carries exactly the rules of deploy/prometheus/mcp-warden.rules.yaml', () => {
    const rule = chart.render([everythingOn]).manifests.find((m) => m.kind === 'PrometheusRule') as Obj
    const plain = readYamlFile(join(KUSTOMIZE_DIR, '..', 'prometheus', 'mcp-warden.rules.yaml'))
    expect(rule.spec.groups).toEqual(plain.groups)
    const withoutRedis = chart.render([{ ...everythingOn, redis: { enabled: false } }]).manifests.find((m) => m.kind === 'PrometheusRule') as Obj
    expect((withoutRedis.spec.groups[0].rules as Obj[]).map((r) => r.alert)).not.toContain('McpWardenRedisDown')
  })

  it('the Dockerfile and the chart agree on paths, ports, user and signal', () => {
    const dockerfile = readFileSync(join(CHART_DIR, '..', '..', 'Dockerfile'), 'utf8')
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('FROM '))
    expect(runtime).toMatch(/^FROM \$\{NODE_IMAGE\} AS runtime$/m)
    expect(runtime).toContain('CMD ["serve", "--config", "/etc/mcp-warden/gateway.yaml"]')
    expect(runtime).toMatch(/^USER 1000:1000$/m)
    expect(runtime).toMatch(/^STOPSIGNAL SIGTERM$/m)
    expect(runtime).toMatch(/^EXPOSE 8080 9090$/m)
    const nodeMajor = Number(/^ARG NODE_IMAGE=node:(\d+)\.\d+\.\d+-bookworm-slim$/m.exec(dockerfile)?.[1])
    // The image runs a Node the package supports, and an LTS line (even major).
    const engines = JSON.parse(readFileSync(join(CHART_DIR, '..', '..', 'package.json'), 'utf8')).engines.node as string
    expect(nodeMajor).toBeGreaterThanOrEqual(Number(/^>=(\d+)$/.exec(engines)![1]))
    expect(nodeMajor % 2).toBe(0)
    // No secret material is baked in: no ENV/ARG that looks like a credential.
    expect(dockerfile).not.toMatch(/^(ENV|ARG)\b.*(SECRET|TOKEN|PASSWORD|KEY)/im)
    const pod = pods(chart.render().manifests)[0]!.spec.template.spec
    expect(pod.securityContext.runAsUser).toBe(1000)
  })
})

describe('values.schema.json (helm install refuses bad values)', () => {
  const bad: [string, Values][] = [
    ['unknown mode', { mode: 'daemonset' }],
    ['unknown top-level key (typo)', { replicas: 3 }],
    ['port out of range', { ports: { http: 70000 } }],
    ['non-integer replicas', { replicaCount: '2' }],
    ['writable root filesystem', { securityContext: { readOnlyRootFilesystem: false } }],
    ['privilege escalation', { securityContext: { allowPrivilegeEscalation: true } }],
    ['added capability', { securityContext: { capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] } } }],
    ['root pod', { podSecurityContext: { runAsNonRoot: false } }],
    ['publicUrl with a path', { gateway: { publicUrl: 'https://mcp.example.com/x' } }],
    ['no routes', { gateway: { routes: [] } }],
    ['bad duration', { gateway: { shutdownGrace: '20 seconds' } }],
    ['redis enabled without a secret', { redis: { enabled: true } }],
    ['redis sentinel without a master name', { redis: { enabled: true, sentinel: { nodes: [{ host: 's', port: 26379 }] } } }],
    ['redis sentinel and cluster at once', { redis: { enabled: true, sentinel: { name: 'm', nodes: [{ host: 's', port: 26379 }] }, cluster: { nodes: [{ host: 'c', port: 6379 }] } } }],
    ['redis cluster node without a port', { redis: { enabled: true, cluster: { nodes: [{ host: 'c' }] } } }],
    ['secretEnv without a key', { secretEnv: [{ name: 'X', secretName: 'y' }] }],
    ['secret env name with a dash', { secretEnv: [{ name: 'MY-SECRET', secretName: 'y', key: 'k' }] }],
    ['sidecar mode without an app image', { mode: 'sidecar' }],
    ['extra overriding a rendered section', { gateway: { extra: { server: {} } } }],
    ['ingress path type typo', { ingress: { enabled: true, hosts: [{ host: 'a', paths: [{ path: '/', pathType: 'prefix' }] }] } }],
    ['HPA target above 100%', { autoscaling: { targetCPUUtilizationPercentage: 150 } }],
  ]
  it.each(bad)('helm template rejects %s', (_n, v) => {
    expect(() => chart.render([v])).toThrow(ValuesError)
  })

  it('the refusals come from values.schema.json, not from a template failing on the bad value', () => {
    for (const [n, v] of bad) {
      let message = ''
      try {
        chart.render([v])
      } catch (e) {
        message = (e as Error).message
      }
      expect(message, n).toMatch(/values don't meet the specifications of the schema/)
    }
  })
})

describe('deploy/examples', () => {
  it('the example Redis validates against the Kubernetes API schema and says it is not for production', () => {
    const file = join(KUSTOMIZE_DIR, '..', 'examples', 'redis.yaml')
    const text = readFileSync(file, 'utf8')
    const ms = parseManifests(text, file)
    expect(ms.map((m) => m.kind)).toEqual(['Deployment', 'Service'])
    expect(ms.flatMap(k8sProblems)).toEqual([])
    expect(text).toMatch(/^# NOT FOR PRODUCTION/)
  })
})
