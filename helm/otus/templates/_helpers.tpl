{{/* Release-scoped name prefix. */}}
{{- define "otus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Recommended labels; pass (dict "root" $ "component" "edge"). */}}
{{- define "otus.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: otus
app.kubernetes.io/component: {{ .component }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "otus.selectorLabels" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "otus.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Hardened container security context (non-root, read-only root fs, no capabilities). */}}
{{- define "otus.containerSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* DATABASE_URL from the Secret (in-cluster or external). */}}
{{- define "otus.databaseUrlEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- if .Values.postgres.enabled }}
      name: {{ include "otus.fullname" . }}-secrets
      key: database-url
      {{- else }}
      name: {{ required "postgres.externalUrlSecret is required when postgres.enabled=false" .Values.postgres.externalUrlSecret }}
      key: url
      {{- end }}
{{- end -}}

{{/* REDIS_URL of one Redis: (dict "root" $ "which" "cache"|"sessions"). */}}
{{- define "otus.redisUrl" -}}
{{- if .root.Values.redis.enabled -}}
redis://{{ include "otus.fullname" .root }}-redis-{{ .which }}:6379/0
{{- else -}}
{{ (index .root.Values.redis .which).externalUrl }}
{{- end -}}
{{- end -}}

{{/* Where services send traces: otel.endpoint, else the in-release Jaeger, else nothing. */}}
{{- define "otus.otlpEndpoint" -}}
{{- if .Values.otel.endpoint -}}
{{ .Values.otel.endpoint }}
{{- else if .Values.jaeger.enabled -}}
http://{{ include "otus.fullname" . }}-jaeger:4317
{{- end -}}
{{- end -}}
