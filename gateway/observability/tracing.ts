/**
 * OpenTelemetry traces (docs/observability.md). The pipeline sees only the small `Tracing` and
 * `TraceSpan` interfaces below; the SDK, the exporters and W3C propagation are loaded with a
 * dynamic import by `startTracing`, and only when `observability.tracing.enabled` is true. With
 * tracing off nothing here is loaded, no span object exists and no header is parsed: the callers
 * hold `undefined` and skip every call with one check.
 *
 * What may go into an attribute is decided here and nowhere else: names (route, method, tool),
 * ids (principal ids the operator chose, rule ids), status codes, never a token, a header value
 * or an argument value.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { Attributes, Context, Span, Tracer } from '@opentelemetry/api'
import type { Sampler, TracerProvider } from '@opentelemetry/sdk-trace'
import type { TextMapPropagator } from '@opentelemetry/api'
import type { Logger } from 'pino'
import type { RuntimeTracing } from '../config/load.js'
import { observeFetches, type FetchObservation } from '../lib/fetch-json.js'

export type PrincipalField = RuntimeTracing['principal'][number]
/** flushMs: how often batches are sent (tests shorten it). */
export type TracingSettings = RuntimeTracing & { flushMs?: number }

export type SpanKindName = 'internal' | 'client' | 'server'

/** One span as the pipeline sees it. */
export interface TraceSpan {
  set(attributes: Attributes): void
  /** Marks the span failed with a bounded, non-secret error type (a GW_ code, an errno name). */
  fail(errorType: string): void
  end(): void
  /** Names known only at the end (the MCP method and tool of a request). */
  rename(name: string): void
  /** W3C headers naming this span as the parent, for a call the gateway makes. */
  headers(): { traceparent: string; tracestate?: string }
  child(name: string, kind?: SpanKindName, attributes?: Attributes): TraceSpan
  /** Runs fn with this span as the parent of every span started by the work it causes. */
  run<T>(fn: () => T): T
}

export interface InboundTrace {
  method: string
  path: string
  /** traceparent/tracestate of the HTTP request, else of the MCP message's `params._meta`. */
  traceparent: string | undefined
  tracestate: string | undefined
  startTime: number
}

export interface Tracing {
  readonly principal: readonly PrincipalField[]
  startRequest(inbound: InboundTrace): TraceSpan
  /** The span the current async work belongs to (set by `TraceSpan.run`), if any. */
  current(): TraceSpan | undefined
  shutdown(): Promise<void>
}

type Api = typeof import('@opentelemetry/api')

class OtelSpan implements TraceSpan {
  readonly #t: OtelTracing
  readonly span: Span
  readonly ctx: Context
  constructor(t: OtelTracing, span: Span, ctx: Context) {
    this.#t = t
    this.span = span
    this.ctx = ctx
  }
  set(attributes: Attributes): void {
    this.span.setAttributes(attributes)
  }
  fail(errorType: string): void {
    this.span.setAttribute('error.type', errorType)
    this.span.setStatus({ code: this.#t.api.SpanStatusCode.ERROR })
  }
  end(): void {
    this.span.end()
  }
  rename(name: string): void {
    this.span.updateName(name)
  }
  headers(): { traceparent: string; tracestate?: string } {
    const carrier: Record<string, string> = {}
    this.#t.propagator.inject(this.ctx, carrier, this.#t.api.defaultTextMapSetter)
    return carrier as { traceparent: string; tracestate?: string }
  }
  child(name: string, kind: SpanKindName = 'internal', attributes?: Attributes): TraceSpan {
    return this.#t.start(name, kind, this.ctx, attributes)
  }
  run<T>(fn: () => T): T {
    return this.#t.als.run(this, fn)
  }
}

class OtelTracing implements Tracing {
  readonly als = new AsyncLocalStorage<OtelSpan>()
  constructor(
    readonly api: Api,
    readonly tracer: Tracer,
    readonly propagator: TextMapPropagator,
    readonly provider: TracerProvider,
    readonly principal: readonly PrincipalField[],
  ) {}

  start(name: string, kind: SpanKindName, parent: Context, attributes?: Attributes, startTime?: number): OtelSpan {
    const k = kind === 'server' ? this.api.SpanKind.SERVER : kind === 'client' ? this.api.SpanKind.CLIENT : this.api.SpanKind.INTERNAL
    const span = this.tracer.startSpan(name, { kind: k, ...(attributes ? { attributes } : {}), ...(startTime !== undefined ? { startTime } : {}) }, parent)
    return new OtelSpan(this, span, this.api.trace.setSpan(parent, span))
  }

  startRequest(inbound: InboundTrace): TraceSpan {
    const carrier: Record<string, string> = {}
    if (inbound.traceparent) carrier.traceparent = inbound.traceparent
    if (inbound.tracestate) carrier.tracestate = inbound.tracestate
    // The propagator validates the client's header (version, lengths, zero ids) and drops a bad one.
    const parent = inbound.traceparent ? this.propagator.extract(this.api.ROOT_CONTEXT, carrier, this.api.defaultTextMapGetter) : this.api.ROOT_CONTEXT
    return this.start(`${inbound.method} ${inbound.path}`, 'server', parent, { 'http.request.method': inbound.method, 'url.path': inbound.path }, inbound.startTime)
  }

  current(): TraceSpan | undefined {
    return this.als.getStore()
  }

  /** Every AS call (JWKS, discovery, introspection, token exchange, CIBA) made for a traced request: a CLIENT span, and its traceparent sent to the AS. */
  observeFetch(url: string, method: string): FetchObservation | undefined {
    const parent = this.als.getStore()
    if (!parent) return undefined
    let u: URL
    try {
      u = new URL(url)
    } catch {
      return undefined
    }
    // Origin and path only: a query or userinfo in a configured URL is not the span's business.
    const span = parent.child(method, 'client', { 'http.request.method': method, 'server.address': u.hostname, 'server.port': Number(u.port || (u.protocol === 'https:' ? 443 : 80)), 'url.full': `${u.origin}${u.pathname}` })
    return {
      headers: span.headers(),
      end: (status, error) => {
        if (status !== undefined) span.set({ 'http.response.status_code': status })
        if (error !== undefined || (status !== undefined && status >= 400)) span.fail(error ?? String(status))
        span.end()
      },
    }
  }

  async shutdown(): Promise<void> {
    observeFetches(undefined)
    await this.provider.shutdown()
  }
}

const env = (name: string): string | undefined => {
  const v = process.env[name]?.trim()
  return v ? v : undefined
}

/**
 * gateway.yaml first, then the standard OTEL_TRACES_SAMPLER(_ARG), then parent-based always-on.
 * A ratio of 1 without a parent is always-on; a sampled client's decision is kept when parentBased.
 */
export function samplerSettings(s: Pick<TracingSettings, 'ratio' | 'parentBased'>): { ratio: number; parentBased: boolean } {
  const name = env('OTEL_TRACES_SAMPLER')?.toLowerCase()
  const arg = Number(env('OTEL_TRACES_SAMPLER_ARG'))
  let ratio = 1
  let parentBased = true
  if (name === 'always_off' || name === 'parentbased_always_off') ratio = 0
  if ((name === 'traceidratio' || name === 'parentbased_traceidratio') && Number.isFinite(arg) && arg >= 0 && arg <= 1) ratio = arg
  if (name === 'always_on' || name === 'always_off' || name === 'traceidratio') parentBased = false
  return { ratio: s.ratio ?? ratio, parentBased: s.parentBased ?? parentBased }
}

/** The traces URL: gateway.yaml's endpoint (a base URL, /v1/traces added for HTTP), else the exporter reads OTEL_*. */
export function exporterUrl(endpoint: string | undefined, protocol: 'http/protobuf' | 'grpc'): string | undefined {
  if (!endpoint) return undefined
  if (protocol === 'grpc') return endpoint
  return endpoint.replace(/\/+$/, '').endsWith('/v1/traces') ? endpoint : `${endpoint.replace(/\/+$/, '')}/v1/traces`
}

export function exporterProtocol(s: Pick<TracingSettings, 'protocol'>): 'http/protobuf' | 'grpc' {
  const p = s.protocol ?? env('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ?? env('OTEL_EXPORTER_OTLP_PROTOCOL')
  return p === 'grpc' ? 'grpc' : 'http/protobuf'
}

// An endpoint may carry credentials in its userinfo or query; the log line gets the origin only.
const originOf = (url: string): string => {
  try {
    return new URL(url).origin
  } catch {
    return '(unparseable endpoint)'
  }
}

/** Undefined when tracing is off (the default, or OTEL_SDK_DISABLED=true): nothing is loaded. */
export async function startTracing(s: TracingSettings, logger: Logger, version: string): Promise<Tracing | undefined> {
  if (!s.enabled || env('OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return undefined
  const [api, sdk, core, resources] = await Promise.all([import('@opentelemetry/api'), import('@opentelemetry/sdk-trace'), import('@opentelemetry/core'), import('@opentelemetry/resources')])
  const protocol = exporterProtocol(s)
  const url = exporterUrl(s.endpoint, protocol)
  const { OTLPTraceExporter } = protocol === 'grpc' ? await import('@opentelemetry/exporter-trace-otlp-grpc') : await import('@opentelemetry/exporter-trace-otlp-proto')
  const exporter = new OTLPTraceExporter(url ? { url } : {})
  const { ratio, parentBased } = samplerSettings(s)
  const root: Sampler = ratio >= 1 ? new sdk.AlwaysOnSampler() : ratio <= 0 ? new sdk.AlwaysOffSampler() : new sdk.TraceIdRatioBasedSampler(ratio)
  const provider = new sdk.TracerProvider({
    resource: resources.resourceFromAttributes({ 'service.name': s.serviceName ?? env('OTEL_SERVICE_NAME') ?? 'mcp-warden', 'service.version': version }),
    sampler: parentBased ? new sdk.ParentBasedSampler({ root }) : root,
    spanProcessors: [new sdk.BatchSpanProcessor({ exporter, scheduledDelayMillis: s.flushMs ?? 5000 })],
  })
  logger.info({ event: 'tracing.started', protocol, endpoint: url ? originOf(url) : '(OTEL_EXPORTER_OTLP_* or default)', ratio, parentBased }, 'OpenTelemetry tracing on')
  const tracing = new OtelTracing(api, provider.getTracer('mcp-warden', version), new core.W3CTraceContextPropagator(), provider, s.principal)
  observeFetches((url, method) => tracing.observeFetch(url, method))
  return tracing
}
