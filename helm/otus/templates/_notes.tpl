{{/*
What `helm install` and `helm upgrade` print (NOTES.txt includes it): the next
steps for this release's values. A named template so that CI can render it
(`helm template` leaves NOTES.txt out) and check that every object it names
exists in the release.
*/}}
{{- define "otus.notes" -}}
{{- $full := include "otus.fullname" . -}}
{{- $ns := .Release.Namespace -}}
otus-rs {{ .Chart.AppVersion }} ({{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}) in namespace {{ $ns }}.

Wait until it serves{{ if .Values.catalog.seed.count }} (the seed Job, a hook of the install and of each upgrade, loads {{ .Values.catalog.seed.count }} products into an empty catalog and leaves one with data as it is){{ end }}:
  kubectl -n {{ $ns }} rollout status deployment/{{ $full }}-edge --timeout 5m
{{ if .Values.ingress.enabled }}
The API, through the ingress controller (class {{ .Values.ingress.className }}):
  echo "$(minikube ip) {{ .Values.ingress.host }}" | sudo tee -a /etc/hosts   # macOS: minikube tunnel, 127.0.0.1
  curl http://{{ .Values.ingress.host }}{{ .Values.ingress.path }}/health/
  newman run postman/users.postman_collection.json   # and auth, catalog (from the repository)
{{- else }}
The API (ingress.enabled=false, so from this machine only):
  kubectl -n {{ $ns }} port-forward svc/{{ $full }}-edge 8000:8000
  curl http://localhost:8000/health/
{{- end }}
{{- if not .Values.postgres.enabled }}

The database is yours: DATABASE_URL comes from the Secret {{ .Values.postgres.externalUrlSecret }} (key `url`), made
before the install. After changing it, restart the services to use it:
  kubectl -n {{ $ns }} rollout restart deployment/{{ $full }}-users deployment/{{ $full }}-auth deployment/{{ $full }}-catalog
{{- end }}
{{- if .Values.jaeger.enabled }}

Traces (Jaeger):
  kubectl -n {{ $ns }} port-forward svc/{{ $full }}-jaeger 16686:16686   # http://localhost:16686
{{- else if .Values.otel.endpoint }}

Traces go to {{ .Values.otel.endpoint }} (OTLP).
{{- end }}
{{- if .Values.dashboards.enabled }}

Grafana: the dashboards are ConfigMaps labelled {{ .Values.dashboards.label }}, which kube-prometheus-stack's
sidecar loads (grafana.sidecar.dashboards.searchNamespace=ALL).
{{- end }}
{{- if .Values.stresstest.enabled }}

The stress test runs ({{ .Values.stresstest.requestsPerSecond }} requests/s through the ingress); Locust's live figures:
  kubectl -n {{ $ns }} port-forward deploy/{{ $full }}-stresstest 8089   # http://localhost:8089
{{- end }}
{{- end -}}
