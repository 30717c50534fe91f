{{- define "mcp-coordinator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcp-coordinator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "mcp-coordinator.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "mcp-coordinator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "mcp-coordinator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-coordinator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mcp-coordinator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mcp-coordinator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mcp-coordinator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mcp-coordinator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Service names are DNS labels: at most 63 characters with their suffix. Names that fitted
before stay as they were. */}}
{{- define "mcp-coordinator.ingestServiceName" -}}
{{- printf "%s-ingest" (include "mcp-coordinator.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "mcp-coordinator.gatewayServiceName" -}}
{{- printf "%s-gateway" (include "mcp-coordinator.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "mcp-coordinator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "mcp-coordinator.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* The StatefulSet's (or Deployment's) name: a StatefulSet labels its pods with its name and an
11-character revision hash, which must fit in 63. */}}
{{- define "mcp-coordinator.workloadName" -}}
{{- include "mcp-coordinator.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* The ingest server's own, read-only identity. */}}
{{- define "mcp-coordinator.ingestServiceAccountName" -}}
{{- default (printf "%s-ingest" (include "mcp-coordinator.serviceAccountName" .)) .Values.serviceAccount.ingestName }}
{{- end }}

{{/* A digest pins the image whatever its tag says. */}}
{{- define "mcp-coordinator.image" -}}
{{- if .Values.image.digest }}
{{- .Values.image.repository }}@{{ .Values.image.digest }}
{{- else }}
{{- .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{- define "mcp-coordinator.ingestScheme" -}}
{{- if .Values.ingest.tls.secretName }}https{{ else }}http{{ end }}
{{- end }}

{{/* Whether the chart deploys ClickHouse: asked for, and no existing server named. */}}
{{- define "mcp-coordinator.clickhouseDeployed" -}}
{{- if and .Values.clickhouse.deploy (not .Values.clickhouse.url) }}true{{ end }}
{{- end }}

{{/* The deployed ClickHouse's name (its StatefulSet, Service, Secret and ConfigMap). */}}
{{- define "mcp-coordinator.clickhouseName" -}}
{{- printf "%s-clickhouse" (include "mcp-coordinator.fullname" . | trunc 41 | trimSuffix "-") }}
{{- end }}

{{- define "mcp-coordinator.clickhouseSelectorLabels" -}}
app.kubernetes.io/name: clickhouse
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: interaction-log
{{- end }}

{{/* The Secret and key of the password the ingest server connects with, deployed or not. */}}
{{- define "mcp-coordinator.clickhousePasswordSecret" -}}
{{- if include "mcp-coordinator.clickhouseDeployed" . }}
{{- default (include "mcp-coordinator.clickhouseName" .) .Values.clickhouse.auth.existingSecret }}
{{- else }}
{{- .Values.clickhouse.passwordSecret.name }}
{{- end }}
{{- end }}

{{/* The OTEL_* variables of a container that exports spans (none while opentelemetry.endpoint is empty). */}}
{{- define "mcp-coordinator.otelEnv" -}}
{{- with .Values.opentelemetry }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.namespace.name=%s,k8s.pod.name=$(K8S_POD_NAME)%s" $.Release.Namespace (ternary (printf ",%s" .resourceAttributes) "" (ne .resourceAttributes "")) | quote }}
{{- if .headersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ .headersSecret.name }}
      key: {{ .headersSecret.key }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
