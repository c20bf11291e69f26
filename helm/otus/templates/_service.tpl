{{/*
The ConfigMap data of one otus process (same arguments as otus.service).
Rendered once for the ConfigMap and once for the Deployment's checksum, so
any change to it (cacheEnabled, logFormat, the OTLP endpoint, Redis, the
hashing bounds) rolls the pods.
*/}}
{{- define "otus.serviceConfigData" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := .svc -}}
{{- $full := include "otus.fullname" $root -}}
LOG_FORMAT: {{ $root.Values.logFormat | quote }}
ADMIN_ADDR: "0.0.0.0:{{ $svc.adminPort }}"
OTEL_SERVICE_NAME: "otus-{{ $name }}"
{{- with include "otus.otlpEndpoint" $root }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- if eq $name "edge" }}
HTTP_ADDR: "0.0.0.0:{{ $svc.port }}"
# Headless Services: the client balances over every pod (crates/telemetry/src/balance.rs).
USERS_GRPC_URL: "http://{{ $full }}-users-headless:{{ $root.Values.services.users.port }}"
AUTH_GRPC_URL: "http://{{ $full }}-auth-headless:{{ $root.Values.services.auth.port }}"
CATALOG_GRPC_URL: "http://{{ $full }}-catalog-headless:{{ $root.Values.services.catalog.port }}"
# Behind ingress-nginx, which sets X-Real-IP: per-address login limits see clients. Taken
# only from these peers (the NetworkPolicy lets only the ingress controller reach the edge).
TRUSTED_PROXIES: {{ join "," $svc.trustedProxies | quote }}
{{- else }}
GRPC_ADDR: "0.0.0.0:{{ $svc.port }}"
{{- end }}
{{- if ne $name "edge" }}
DATABASE_MAX_CONNECTIONS: {{ $root.Values.database.poolSize | quote }}
{{- end }}
{{- if eq $name "auth" }}
USERS_GRPC_URL: "http://{{ $full }}-users-headless:{{ $root.Values.services.users.port }}"
{{- with $svc.loginLimits }}
LOGIN_MAX_ATTEMPTS_PER_ADDRESS: {{ .maxAttemptsPerAddress | quote }}
LOGIN_MAX_FAILURES_PER_USERNAME: {{ .maxFailuresPerUsername | quote }}
LOGIN_WINDOW_SECS: {{ .windowSecs | quote }}
{{- end }}
{{- end }}
{{- if eq $name "auth" }}
# Sessions and login counters: a Redis that never evicts (auth refuses one that does).
REDIS_URL: {{ include "otus.redisUrl" (dict "root" $root "which" "sessions") | quote }}
{{- end }}
{{- if eq $name "catalog" }}
# The search cache: a Redis of its own that evicts when full.
REDIS_URL: {{ include "otus.redisUrl" (dict "root" $root "which" "cache") | quote }}
{{- end }}
{{- with $svc.passwordHashing }}
ARGON2_MAX_CONCURRENT: {{ .maxConcurrent | quote }}
ARGON2_MAX_WAIT_MS: {{ .maxWaitMs | quote }}
{{- end }}
{{- if eq $name "catalog" }}
CACHE_ENABLED: {{ ternary "1" "0" $root.Values.cacheEnabled | quote }}
{{- end }}
{{- end }}

{{/*
One otus process: ConfigMap, Deployment, Service, PodDisruptionBudget and
ServiceMonitor. Written once, instantiated for edge, users, auth and catalog by
services.yaml. Call with (dict "root" $ "name" "users" "svc" $svc).
*/}}
{{- define "otus.service" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := .svc -}}
{{- $full := include "otus.fullname" $root -}}
{{- $ctx := dict "root" $root "component" $name -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $full }}-{{ $name }}
  labels:
    {{- include "otus.labels" $ctx | nindent 4 }}
data:
  {{- include "otus.serviceConfigData" . | nindent 2 }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $full }}-{{ $name }}
  labels:
    {{- include "otus.labels" $ctx | nindent 4 }}
spec:
  {{- if not $root.Values.hpa.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "otus.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "otus.labels" $ctx | nindent 8 }}
      annotations:
        checksum/config: {{ include "otus.serviceConfigData" . | sha256sum | trunc 16 }}
    spec:
      terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: {{ $name }}
          image: {{ include "otus.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [{{ $svc.command | quote }}]
          envFrom:
            - configMapRef:
                name: {{ $full }}-{{ $name }}
          {{- if ne $name "edge" }}
          env:
            {{- include "otus.databaseUrlEnv" $root | nindent 12 }}
            {{- if or (eq $name "users") (eq $name "auth") }}
            - name: IDENTITY_TOKEN_SECRET
              valueFrom:
                secretKeyRef:
                  name: {{ $full }}-secrets
                  key: identity-token-secret
            {{- end }}
          {{- end }}
          ports:
            - name: {{ ternary "http" "grpc" (eq $svc.protocol "http") }}
              containerPort: {{ $svc.port }}
            - name: admin
              containerPort: {{ $svc.adminPort }}
          {{- if eq $svc.protocol "http" }}
          livenessProbe:
            httpGet: {path: /health/, port: http}
            periodSeconds: 10
          # Readiness is the process's own (`/health`), not the public `/ready`
          # (which asks the users and auth services): with a backend down, the
          # edge stays in the Service and answers its routes' 503s as JSON, and
          # the routes that need no such backend (the public catalog) keep working.
          # A pod that is shutting down leaves the endpoints as it terminates.
          readinessProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 5
          {{- else }}
          # Native gRPC probes: "" is the process (liveness), the named service
          # follows its database (readiness).
          livenessProbe:
            grpc: {port: {{ $svc.port }}, service: ""}
            periodSeconds: 10
          readinessProbe:
            grpc: {port: {{ $svc.port }}, service: {{ printf "otus.%s.v1.%sService" $name (title $name) | quote }}}
            periodSeconds: 5
          {{- end }}
          # Give the endpoints controller and ingress-nginx time to stop routing
          # here before SIGTERM makes the process stop accepting and drain.
          lifecycle:
            preStop:
              exec:
                command: ["sleep", "5"]
          resources:
            {{- $resources := deepCopy $svc.resources }}
            {{- with $svc.passwordHashing }}
            {{- $limit := add .baseMemoryMi (mul .maxConcurrent .workMemoryMi) }}
            {{- $_ := set $resources "limits" (merge (dict "memory" (printf "%dMi" $limit)) ($resources.limits | default dict)) }}
            {{- end }}
            {{- toYaml $resources | nindent 12 }}
          securityContext:
            {{- include "otus.containerSecurity" $root | nindent 12 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $full }}-{{ $name }}
  labels:
    {{- include "otus.labels" $ctx | nindent 4 }}
spec:
  selector:
    {{- include "otus.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: {{ ternary "http" "grpc" (eq $svc.protocol "http") }}
      port: {{ $svc.port }}
      targetPort: {{ ternary "http" "grpc" (eq $svc.protocol "http") }}
      {{- if ne $svc.protocol "http" }}
      appProtocol: grpc
      {{- end }}
    - name: admin
      port: {{ $svc.adminPort }}
      targetPort: admin
{{- if ne $svc.protocol "http" }}
---
# Headless: its DNS name resolves to every ready pod, so gRPC clients (the edge,
# auth -> users) balance their calls over all of them and follow scaling. One
# HTTP/2 connection through the ClusterIP above would stick to one pod.
apiVersion: v1
kind: Service
metadata:
  name: {{ $full }}-{{ $name }}-headless
  labels:
    {{- include "otus.labels" $ctx | nindent 4 }}
spec:
  clusterIP: None
  selector:
    {{- include "otus.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $svc.port }}
      targetPort: grpc
      appProtocol: grpc
{{- end }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $full }}-{{ $name }}
  labels:
    {{- include "otus.labels" $ctx | nindent 4 }}
spec:
  minAvailable: 1
  selector:
    matchLabels:
      {{- include "otus.selectorLabels" $ctx | nindent 6 }}
{{- if $root.Values.hpa.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $full }}-{{ $name }}
  labels:
    {{- include "otus.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $full }}-{{ $name }}
  minReplicas: {{ $root.Values.hpa.minReplicas }}
  maxReplicas: {{ $root.Values.hpa.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $root.Values.hpa.targetCPUUtilizationPercentage }}
{{- end }}
{{- if $root.Values.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ $full }}-{{ $name }}
  labels:
    {{- include "otus.labels" $ctx | nindent 4 }}
    release: {{ $root.Values.serviceMonitor.release }}
spec:
  selector:
    matchLabels:
      {{- include "otus.selectorLabels" $ctx | nindent 6 }}
  endpoints:
    - port: admin
      path: /metrics
      interval: {{ $root.Values.serviceMonitor.interval }}
{{- end }}
{{- end -}}
