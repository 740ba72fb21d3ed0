/**
 * Validation of manifests against the Kubernetes API schemas (kubernetes-models, generated from
 * the Kubernetes OpenAPI spec) and the Prometheus Operator CRDs. These schemas check types,
 * required fields, enums and formats; like the API server without strict field validation they
 * do not refuse unknown fields, so tests assert the security-relevant fields explicitly.
 */
import { Deployment } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { ConfigMap, Secret, Service, ServiceAccount } from 'kubernetes-models/v1'
import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'
import type { Manifest } from './chart.js'

interface Model {
  validate(): void
}
const MODELS: Record<string, new (data: never) => Model> = {
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/Ingress': Ingress,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
}

/** Problems of one manifest; empty when it is valid. An unknown kind is a problem too. */
export function k8sProblems(m: Manifest): string[] {
  const Model = MODELS[`${m.apiVersion}/${m.kind}`]
  if (!Model) return [`${m.apiVersion} ${m.kind}: no schema known to the test`]
  try {
    new Model(m as never).validate()
    return []
  } catch (e) {
    return [`${m.kind}/${m.metadata?.name}: ${(e as Error).message}`]
  }
}
