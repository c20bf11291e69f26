#!/usr/bin/env python3
"""Checks a rendered release for what kubeconform-style validation cannot see.

- No credential outside a Secret: no ConfigMap key or literal env value named
  like a password, token secret or database URL, and no `postgres://user:pw@`.
- Every workload container: liveness and readiness probes (Jobs excepted),
  resources, and an image that is official or the project's own.
- With --default: the default release has everything a user relies on. The four services (edge, users, auth, catalog): >= 2 replicas, or
  an HPA with minReplicas >= 2.

  helm template otus helm/otus | python3 helm/check_rendered.py
"""
import json
import os
import re
import sys

import yaml

SECRET_NAMES = re.compile(r"PASSWORD|SECRET|DATABASE_URL|TOKEN", re.I)
URL_WITH_PASSWORD = re.compile(r"postgres(ql)?://[^:/@\s]+:[^@\s]+@")

SERVICES = {"edge", "users", "auth", "catalog"}
# Docker official images, the exporters' and tools' own images, and ours.
IMAGES = re.compile(
    r"^(postgres|redis):|^jaegertracing/|^locustio/locust:|"
    r"^quay\.io/prometheuscommunity/postgres-exporter:|^oliver006/redis_exporter:|^otus-rs/otus:"
)
failures = []


def readme_ingress_metrics_ports():
    """Container port names the README's minikube steps add to the ingress-nginx
    controller, if those steps also turn its metrics on (--enable-metrics=true,
    off by default since controller v1.12.0). The patch is the JSON of the
    README's `kubectl -n ingress-nginx patch deployment ingress-nginx-controller`
    line."""
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
    m = re.search(r"patch deployment ingress-nginx-controller --type=json -p '(\[.*?\])'",
                  open(readme, encoding="utf-8").read(), flags=re.S)
    if not m:
        return set()
    ops = json.loads(m.group(1))
    container = "/spec/template/spec/containers/0/"
    args = [o["value"] for o in ops if o["op"] == "add" and o["path"] == container + "args/-"]
    ports = [o["value"] for o in ops if o["op"] == "add" and o["path"] == container + "ports/-"]
    if "--enable-metrics=true" not in args:
        return set()
    return {p["name"] for p in ports if p.get("containerPort") == 10254}
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
hpa_min = {
    d["spec"]["scaleTargetRef"]["name"]: d["spec"].get("minReplicas", 1)
    for d in docs
    if d.get("kind") == "HorizontalPodAutoscaler"
}
names = {d["kind"] + "/" + d["metadata"]["name"] for d in docs}
for svc in SERVICES:
    if not any(n.startswith("Deployment/") and n.endswith("-" + svc) for n in names):
        failures.append(f"no Deployment for the {svc} service")
for d in docs:
    kind, name = d.get("kind"), d.get("metadata", {}).get("name")
    where = f"{kind}/{name}"
    if kind != "Secret":
        text = yaml.safe_dump(d)
        if URL_WITH_PASSWORD.search(text):
            failures.append(f"{where}: a database URL with a password outside a Secret")
    if kind == "ConfigMap":
        for key in (d.get("data") or {}):
            if SECRET_NAMES.search(key):
                failures.append(f"{where}: credential-like key {key} in a ConfigMap")
    if kind in ("Deployment", "StatefulSet", "Job"):
        spec = d["spec"]["template"]["spec"]
        for c in spec["containers"]:
            for e in c.get("env") or []:
                if SECRET_NAMES.search(e["name"]) and "value" in e:
                    failures.append(f"{where}: {e['name']} as a literal value, not from a Secret")
            if kind != "Job":
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        failures.append(f"{where}: {c['name']} has no {probe}")
                # The edge's readiness must be its own: a probe on the public
                # /ready (which asks users and auth) takes every edge pod out
                # of the Service when one backend is down (issue 13 item 7).
                http_ready = (c.get("readinessProbe") or {}).get("httpGet") or {}
                if http_ready.get("path") == "/ready":
                    failures.append(f"{where}: {c['name']} readiness probes /ready, which depends on other services")
            if "resources" not in c:
                failures.append(f"{where}: {c['name']} has no resources")
            if not IMAGES.search(c["image"]):
                failures.append(f"{where}: image {c['image']} is neither official nor the project's")
        component = d["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if kind == "Deployment" and component in SERVICES:
            replicas = d["spec"].get("replicas")
            if replicas is None:
                replicas = hpa_min.get(name, 0)
            if replicas < 2:
                failures.append(f"{where}: fewer than 2 replicas")
# The default release holds a catalog of 1M products (issue 21 item 7), with the
# figures measured for the README's "Sizing" table: PostgreSQL's volume holds
# the data (0.39 GB per million, indexes included) and the WAL a load writes
# before a checkpoint recycles it (up to max_wal_size, 1 GB); each catalog
# replica holds two indexes during a full build (~300 Mi per million each:
# the index stores what a search page shows, docs/performance.md),
# the process (40 Mi) and the near copy of cached answers (32 Mi,
# NEAR_BYTES in crates/catalog/src/cache.rs).
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def size_bytes(text):
    """A Kubernetes quantity with a binary suffix (512Mi, 2Gi) in bytes."""
    return float(text[:-2]) * UNITS[text[-2:]]



def session_store_failures(docs):
    """Sessions cannot be evicted by cache traffic (issue 24 item 1): auth's REDIS_URL names an
    in-release Redis that never evicts (maxmemory-policy noeviction), and the catalog's cache is
    another Redis."""
    out = []
    config = {
        d["metadata"]["labels"].get("app.kubernetes.io/component"): d.get("data") or {}
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"].get("labels")
    }
    policies = {}
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            args = c.get("args") or []
            if c["name"] == "redis" and "--maxmemory-policy" in args:
                policies[d["metadata"]["name"]] = args[args.index("--maxmemory-policy") + 1]
    def host(component):
        url = config.get(component, {}).get("REDIS_URL", "")
        return url.split("//", 1)[-1].split(":", 1)[0].split("/", 1)[0]
    sessions, cache = host("auth"), host("catalog")
    if policies.get(sessions) != "noeviction":
        out.append(
            f"auth's REDIS_URL host {sessions!r} is not an in-release Redis with maxmemory-policy "
            f"noeviction (policies: {policies}): cache traffic could evict sessions"
        )
    if not cache or cache == sessions:
        out.append(f"the catalog's search cache ({cache!r}) must be a Redis of its own, not the sessions' ({sessions!r})")
    return out


def trusted_proxy_failures(docs):
    """X-Real-IP is trusted only from configured proxies, and only the ingress controller can
    reach the edge (issue 24 item 4): the edge's TRUSTED_PROXIES is set, TRUST_PROXY_HEADERS
    is gone, and a NetworkPolicy admits only the ingress namespace to the edge's HTTP port."""
    out = []
    edge_config = [
        d.get("data") or {}
        for d in docs
        if d["kind"] == "ConfigMap" and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "edge"
    ]
    if not edge_config or not edge_config[0].get("TRUSTED_PROXIES"):
        out.append("the edge has no TRUSTED_PROXIES: X-Real-IP would be ignored, or trusted from anyone")
    if any("TRUST_PROXY_HEADERS" in c for c in edge_config):
        out.append("TRUST_PROXY_HEADERS is set: the edge refuses to start with it")
    edge_policies = [
        d for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "edge"
    ]
    ok = False
    for p in edge_policies:
        for rule in p["spec"].get("ingress", []):
            sources = rule.get("from", [])
            if sources and all(
                s.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "ingress-nginx"
                for s in sources
            ) and any(str(port.get("port")) == "8000" for port in rule.get("ports", [])):
                ok = True
            elif any(str(port.get("port")) == "8000" for port in rule.get("ports", [])):
                out.append(f"NetworkPolicy/{p['metadata']['name']} admits others than ingress-nginx to the edge's port 8000")
    if not ok:
        out.append("no NetworkPolicy admits only ingress-nginx to the edge (networkPolicy.enabled)")
    return out

if "--default" in sys.argv:
    million = 1
    for d in docs:
        if d["kind"] == "StatefulSet" and d["metadata"]["name"].endswith("-postgres"):
            claim = d["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
            need = 0.39e9 * million + 1e9
            if size_bytes(claim) < need:
                failures.append(f"postgres volume {claim} cannot hold {million}M products "
                                f"({need / 2**30:.1f} GiB with the WAL)")
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-catalog"):
            limit = d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
            need = (40 + 32 + 2 * 300 * million) * 2**20
            if size_bytes(limit) < need:
                failures.append(f"catalog memory limit {limit} cannot hold two indexes of {million}M products "
                                f"({need / 2**20:.0f} Mi)")
# Jaeger's in-memory store must fit its container (issue 13 item 8): at most
# 30 KiB a trace (5-14 spans of 1-2 KiB) in 60% of the memory limit.
for d in docs:
    if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-jaeger"):
        config = yaml.safe_load(d["data"]["config.yaml"])
        backends = config["extensions"]["jaeger_storage"]["backends"]
        max_traces = [b["memory"].get("max_traces") for b in backends.values() if "memory" in b]
        deployment = next(x for x in docs if x["kind"] == "Deployment" and x["metadata"]["name"] == d["metadata"]["name"])
        limit = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        limit_bytes = size_bytes(limit)
        if not max_traces or max_traces[0] is None:
            failures.append(f"ConfigMap/{d['metadata']['name']}: the memory store has no max_traces (Jaeger's default is 100 000)")
        elif max_traces[0] * 30 * 2**10 > 0.6 * limit_bytes:
            failures.append(f"Jaeger: max_traces {max_traces[0]} x 30 KiB exceeds 60% of its {limit} limit")
if "--default" in sys.argv:
    def count(kind, pred=lambda d: True):
        return sum(1 for d in docs if d.get("kind") == kind and pred(d))
    def component(d):
        return d["metadata"].get("labels", {}).get("app.kubernetes.io/component")
    expected = {
        "4 service Deployments": count("Deployment", lambda d: component(d) in SERVICES) == 4,
        "PostgreSQL StatefulSet with a PVC on the official image": count(
            "StatefulSet",
            lambda d: d["spec"].get("volumeClaimTemplates")
            and d["spec"]["template"]["spec"]["containers"][0]["image"].startswith("postgres:"),
        ) == 1,
        "two Redis servers, sessions and cache": count(
            "Deployment", lambda d: component(d) in ("redis-sessions", "redis-cache")
        ) == 2,
        # Not a post-install hook: helm runs those after --wait/--atomic, and readiness needs the
        # tables (issue 13 item 4). On install with the in-cluster database: a plain Job.
        "migrations Job that is part of the install (no hook)": count(
            "Job", lambda d: "helm.sh/hook" not in (d["metadata"].get("annotations") or {}) and component(d) == "migrate"
        ) == 1,
        "Ingress with the rewrite on arch.homework": count(
            "Ingress",
            lambda d: d["spec"]["rules"][0]["host"] == "arch.homework"
            and d["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/rewrite-target") == "/$1",
        ) == 1,
        "ServiceMonitors for 4 services and 3 exporters": count("ServiceMonitor") == 7,
        "PrometheusRule": count("PrometheusRule") == 1,
        # gRPC clients balance over pods only through headless Services (issue 13 item 6).
        "headless Services for users, auth, catalog, and every gRPC URL pointing at one": count(
            "Service", lambda d: d["spec"].get("clusterIP") == "None" and component(d) in ("users", "auth", "catalog")
        ) == 3
        and all(
            "-headless:" in v
            for d in docs if d["kind"] == "ConfigMap"
            for k, v in (d.get("data") or {}).items() if k.endswith("_GRPC_URL")
        ),
        # Something must scrape ingress-nginx for the platform dashboard's ingress row (issue 13 item 5).
        # By a port *name* the README's controller set-up declares (a number is only a keep
        # rule on declared ports, and the addon declares none for metrics: issue 21 item 8).
        "a PodMonitor on the ingress-nginx controller's named metrics port, which the README's "
        "minikube steps declare and enable, selected by kube-prometheus-stack": count(
            "PodMonitor",
            lambda d: d["spec"]["namespaceSelector"]["matchNames"] == ["ingress-nginx"]
            and d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == "ingress-nginx"
            and "targetPort" not in d["spec"]["podMetricsEndpoints"][0]
            and d["spec"]["podMetricsEndpoints"][0].get("port") in readme_ingress_metrics_ports()
            and d["metadata"]["labels"].get("release") == "kube-prometheus-stack",
        ) == 1,
        "dashboard ConfigMaps": count(
            "ConfigMap", lambda d: d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        ) >= 2,
        "Jaeger": count("Deployment", lambda d: component(d) == "jaeger") == 1,
        "the Secret": count("Secret") == 1,
    }
    for what, ok in expected.items():
        if not ok:
            failures.append(f"default release lacks: {what}")
    failures.extend(session_store_failures(docs))
    failures.extend(trusted_proxy_failures(docs))
kinds = sorted({d["kind"] for d in docs})
print(f"{len(docs)} resources ({', '.join(kinds)})")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
