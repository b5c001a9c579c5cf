{{/* The chart name, overridable. */}}
{{- define "agenttier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name. */}}
{{- define "agenttier.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "agenttier.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "agenttier.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the server Pods. */}}
{{- define "agenttier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agenttier.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/* The server's ServiceAccount. */}}
{{- define "agenttier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agenttier.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The governance ConfigMap's namespace. */}}
{{- define "agenttier.governanceNamespace" -}}
{{- default .Release.Namespace .Values.governanceNamespace }}
{{- end }}

{{/* The OTLP endpoint the server exports to. */}}
{{- define "agenttier.otelEndpoint" -}}
{{- if .Values.otel.endpoint }}
{{- .Values.otel.endpoint }}
{{- else if .Values.otel.collector.enabled }}
{{- printf "http://%s-otel-collector:4318" (include "agenttier.fullname" .) }}
{{- end }}
{{- end }}
