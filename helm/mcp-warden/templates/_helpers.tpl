{{/* Names and labels shared by every manifest. */}}
{{- define "mcp-warden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-warden.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "mcp-warden.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mcp-warden.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcp-warden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-warden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mcp-warden.labels" -}}
{{ include "mcp-warden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mcp-warden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcp-warden.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
gateway.yaml. Listeners bind 0.0.0.0 on the chart's ports; the Redis URL and every other secret
arrive through the environment, never through this ConfigMap.
*/}}
{{- define "mcp-warden.gatewayConfig" -}}
server:
  publicUrl: {{ required "gateway.publicUrl is required" .Values.gateway.publicUrl | quote }}
  listen:
    host: 0.0.0.0
    port: {{ .Values.ports.http }}
  {{- with .Values.gateway.allowedHosts }}
  allowedHosts: {{- toYaml . | nindent 4 }}
  {{- end }}
  trustProxy: {{ .Values.gateway.trustProxy | toJson }}
  shutdownGrace: {{ .Values.gateway.shutdownGrace }}
admin:
  listen:
    host: 0.0.0.0
    port: {{ .Values.ports.admin }}
issuers: {{- toYaml .Values.gateway.issuers | nindent 2 }}
routes: {{- toYaml .Values.gateway.routes | nindent 2 }}
{{- if .Values.redis.enabled }}
cache:
  redis:
    {{- if .Values.redis.sentinel.nodes }}
    sentinels: {{- toYaml .Values.redis.sentinel.nodes | nindent 6 }}
    name: {{ required "redis.sentinel.name is required with redis.sentinel.nodes" .Values.redis.sentinel.name | quote }}
    {{- if .Values.redis.sentinelPasswordSecret.name }}
    sentinelPassword:
      fromEnv: MCP_WARDEN_REDIS_SENTINEL_PASSWORD
    {{- end }}
    {{- else if .Values.redis.cluster.nodes }}
    cluster:
      nodes: {{- toYaml .Values.redis.cluster.nodes | nindent 8 }}
    {{- else }}
    url:
      fromEnv: MCP_WARDEN_REDIS_URL
    {{- end }}
    {{- if or .Values.redis.sentinel.nodes .Values.redis.cluster.nodes }}
    {{- with .Values.redis.username }}
    username: {{ . | quote }}
    {{- end }}
    {{- if .Values.redis.passwordSecret.name }}
    password:
      fromEnv: MCP_WARDEN_REDIS_PASSWORD
    {{- end }}
    {{- if .Values.redis.tls.enabled }}
    tls:
      {{- with .Values.redis.tls.serverName }}
      serverName: {{ . | quote }}
      {{- else }} {}
      {{- end }}
    {{- end }}
    {{- end }}
    keyPrefix: {{ .Values.redis.keyPrefix | quote }}
    commandTimeout: {{ .Values.redis.commandTimeout }}
{{- end }}
logging:
  level: {{ .Values.gateway.logLevel }}
{{- with .Values.gateway.extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The mcp-warden container; the same in gateway and sidecar mode. */}}
{{- define "mcp-warden.container" -}}
- name: mcp-warden
  image: {{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["serve", "--config", "/etc/mcp-warden/gateway.yaml"]
  ports:
    - name: http
      containerPort: {{ .Values.ports.http }}
      protocol: TCP
    - name: admin
      containerPort: {{ .Values.ports.admin }}
      protocol: TCP
  env:
    - name: NODE_ENV
      value: production
    {{- if .Values.redis.enabled }}
    {{- if or .Values.redis.sentinel.nodes .Values.redis.cluster.nodes }}
    {{- with .Values.redis.passwordSecret }}{{ if .name }}
    - name: MCP_WARDEN_REDIS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ .name }}
          key: {{ .key }}
    {{- end }}{{ end }}
    {{- if .Values.redis.sentinel.nodes }}{{ with .Values.redis.sentinelPasswordSecret }}{{ if .name }}
    - name: MCP_WARDEN_REDIS_SENTINEL_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ .name }}
          key: {{ .key }}
    {{- end }}{{ end }}{{ end }}
    {{- else }}
    - name: MCP_WARDEN_REDIS_URL
      valueFrom:
        secretKeyRef:
          name: {{ required "redis.existingSecret.name is required when redis.enabled" .Values.redis.existingSecret.name }}
          key: {{ .Values.redis.existingSecret.key }}
    {{- end }}
    {{- end }}
    {{- range .Values.secretEnv }}
    - name: {{ .name }}
      valueFrom:
        secretKeyRef:
          name: {{ .secretName }}
          key: {{ .key }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  resources: {{- toYaml .Values.resources | nindent 4 }}
  securityContext: {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/mcp-warden/gateway.yaml
      subPath: gateway.yaml
      readOnly: true
    - name: policies
      mountPath: /etc/mcp-warden/policies
      readOnly: true
    - name: tmp
      mountPath: /tmp
    {{- range .Values.secretFiles }}
    - name: secret-{{ .name }}
      mountPath: /etc/mcp-warden/secrets/{{ .name }}
      readOnly: true
    {{- end }}
{{- end -}}
