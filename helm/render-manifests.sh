#!/usr/bin/env bash
# Renders the chart into plain manifests for `kubectl apply -f helm/manifests/`
# (homeworks 2 and 3), and the standalone stress test helm/stresstest.yaml.
# Release "otus" in namespace "otus". The Secret is not rendered (it would put
# credentials in the repository): helm/manifests/README.md shows how to create it.
# CI runs this and fails if the committed files differ.
set -euo pipefail
HELM=${HELM:-helm}
# A relative HELM path must survive the cd below.
if [[ "$HELM" == */* ]]; then HELM=$(cd "$(dirname "$HELM")" && pwd)/$(basename "$HELM"); fi
cd "$(dirname "${BASH_SOURCE[0]}")"
"$HELM" version >/dev/null || { echo "helm not runnable as $HELM" >&2; exit 1; }
{
  echo "# Rendered from helm/otus by helm/render-manifests.sh; do not edit."
  "$HELM" template otus otus --namespace otus --set secrets.create=false 2> >(grep -v 'found symbolic link' >&2)
} >manifests/otus.yaml
{
  echo "# The stress test alone (Locust through the ingress), rendered from helm/otus by"
  echo "# helm/render-manifests.sh: kubectl apply -n otus -f helm/stresstest.yaml"
  "$HELM" template otus otus --namespace otus --set stresstest.enabled=true \
    --show-only templates/stresstest.yaml 2> >(grep -v 'found symbolic link' >&2)
} >stresstest.yaml
echo "rendered helm/manifests/otus.yaml and helm/stresstest.yaml"
