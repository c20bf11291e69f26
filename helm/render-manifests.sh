#!/usr/bin/env bash
# Renders the chart into plain manifests for homeworks 2-4, release "otus" in
# namespace "otus", every object carrying its namespace:
#   helm/manifests/     one directory for `kubectl apply -f helm/manifests/`:
#     00-namespace.yaml        the namespace (applied first: kubectl takes files in order)
#     01-secret.example.yaml   an EXAMPLE Secret with placeholder values (see its header)
#     otus.yaml                everything else the chart renders of built-in kinds
#   helm/monitoring.yaml the objects of the Prometheus operator's kinds (ServiceMonitor,
#                        PodMonitor, PrometheusRule): applied after kube-prometheus-stack,
#                        whose CRDs they need; kept out of manifests/ so that directory
#                        applies on a bare cluster
#   helm/dashboard.yaml  the Grafana dashboards' ConfigMaps alone (homework 4)
#   helm/stresstest.yaml the stress test alone (Locust through the ingress)
# CI runs this and fails if the committed files differ.
set -euo pipefail
HELM=${HELM:-helm}
# A relative HELM path must survive the cd below.
if [[ "$HELM" == */* ]]; then HELM=$(cd "$(dirname "$HELM")" && pwd)/$(basename "$HELM"); fi
cd "$(dirname "${BASH_SOURCE[0]}")"
"$HELM" version >/dev/null || { echo "helm not runnable as $HELM" >&2; exit 1; }
render() {
  # Top-level `metadata:` (column 0) gets the namespace; nested ones are indented.
  "$HELM" template otus otus --namespace otus "$@" 2> >(grep -v 'found symbolic link' >&2) \
    | sed 's/^metadata:$/metadata:\n  namespace: otus/'
}
cat >manifests/00-namespace.yaml <<'YAML'
# Rendered by helm/render-manifests.sh; do not edit.
apiVersion: v1
kind: Namespace
metadata:
  name: otus
YAML
cat >manifests/01-secret.example.yaml <<'YAML'
# EXAMPLE ONLY - rendered by helm/render-manifests.sh; do not edit.
#
# The credentials the system needs, with PLACEHOLDER values that are public
# (they are in the repository): fine for a throwaway minikube, never for
# anything else. For a real install delete this file and create the Secret
# with random values instead (helm/manifests/README.md shows the command);
# `kubectl apply -f helm/manifests/` then leaves yours alone.
apiVersion: v1
kind: Secret
metadata:
  name: otus-secrets
  namespace: otus
  labels:
    app.kubernetes.io/name: otus
    app.kubernetes.io/component: secrets
  annotations:
    otus-rs/example: "placeholder values, replace before real use"
type: Opaque
stringData:
  postgres-password: example-only-not-a-secret
  identity-token-secret: example-only-not-a-secret-replace-me-0123456789
  database-url: postgres://otus:example-only-not-a-secret@otus-postgres:5432/otus
YAML
# split KIND_FILTER: keeps the rendered documents (on stdin) whose apiVersion
# is a custom resource of the Prometheus operator (monitoring) or not (core).
split() {
  python3 -c '
import re, sys
want = sys.argv[1]
docs = re.split(r"^---\n", sys.stdin.read(), flags=re.M)
for d in docs:
    m = re.search(r"^apiVersion: (\S+)", d, flags=re.M)
    if not m:
        continue
    monitoring = m.group(1).startswith("monitoring.coreos.com/")
    if monitoring == (want == "monitoring"):
        sys.stdout.write("---\n" + d)
' "$1"
}
render --set secrets.create=false >"${TMPDIR:-/tmp}/otus-render.$$.yaml"
{
  echo "# Rendered from helm/otus by helm/render-manifests.sh; do not edit."
  echo "# Built-in kinds only: applies on a cluster without the Prometheus operator."
  split core <"${TMPDIR:-/tmp}/otus-render.$$.yaml"
} >manifests/otus.yaml
{
  echo "# The release's ServiceMonitors, PodMonitor and PrometheusRule, rendered from helm/otus by"
  echo "# helm/render-manifests.sh; do not edit. They are kinds of the Prometheus operator: apply"
  echo "# after kube-prometheus-stack is installed (README), kubectl apply -f helm/monitoring.yaml"
  split monitoring <"${TMPDIR:-/tmp}/otus-render.$$.yaml"
} >monitoring.yaml
rm -f "${TMPDIR:-/tmp}/otus-render.$$.yaml"
{
  echo "# The Grafana dashboards alone (ConfigMaps the kube-prometheus-stack Grafana sidecar loads),"
  echo "# rendered from helm/otus by helm/render-manifests.sh: kubectl apply -f helm/dashboard.yaml"
  render --show-only templates/dashboards.yaml
} >dashboard.yaml
{
  echo "# The stress test alone (Locust through the ingress), rendered from helm/otus by"
  echo "# helm/render-manifests.sh: kubectl apply -f helm/stresstest.yaml"
  render --set stresstest.enabled=true --show-only templates/stresstest.yaml
} >stresstest.yaml
echo "rendered helm/manifests/{00-namespace,01-secret.example,otus}.yaml, helm/monitoring.yaml, helm/dashboard.yaml and helm/stresstest.yaml"
