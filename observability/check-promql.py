#!/usr/bin/env python3
"""Runs every PromQL expression of the project against a real Prometheus.

Sources: the alert and recording rules (observability/prometheus/rules.yml)
and every panel target of every dashboard (observability/grafana/*.json).
Each expression must parse and evaluate. Expressions over the application's
own metrics and the exporters' must return data; ones over ingress-nginx or
kubelet/cAdvisor metrics (which do not exist outside Kubernetes) only need to
parse. Exit status 1 on any failure.

  python3 observability/check-promql.py http://127.0.0.1:9090
"""
import glob
import json
import os
import re
import sys
import urllib.parse
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
# Metrics that only exist in a Kubernetes cluster with kube-prometheus-stack.
CLUSTER_ONLY = re.compile(r"\b(nginx_ingress_controller_\w+|container_\w+|kube_\w+|kubelet_\w+)")


def expressions():
    with open(os.path.join(HERE, "prometheus", "rules.yml"), encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("record") or rule.get("alert")
            yield f"rules.yml: {name}", rule["expr"], rule.get("alert") is not None
    for path in sorted(glob.glob(os.path.join(HERE, "grafana", "*.json"))):
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        for panel in dash.get("panels", []):
            for t in panel.get("targets", []):
                if t.get("expr"):
                    expr = t["expr"].replace("$__rate_interval", "1m").replace("$__range", "5m")
                    expr = expr.replace("$__interval", "15s")
                    # Template variables at their "All" values.
                    for var, value in (("$route", ".*"), ("$job", ".*"), ("$ingress", "otus.*"), ("$namespace", "otus")):
                        expr = expr.replace(var, value)
                    yield f"{os.path.basename(path)}: {panel.get('title')}", expr, False


def query(base, expr):
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9090"
    failures = 0
    checked = 0
    for where, expr, is_alert in expressions():
        checked += 1
        # An alert expression is empty when nothing is wrong; check its
        # left-hand side (the recording rule it compares) has data instead.
        probe = expr.split(">")[0].strip() if is_alert else expr
        res = query(base, probe)
        if res.get("status") != "success":
            print(f"FAIL  {where}: {res.get('errorType')}: {res.get('error')}\n      {expr}")
            failures += 1
            continue
        if CLUSTER_ONLY.search(expr):
            print(f"ok    {where} (parses; cluster-only metrics)")
            continue
        if not res["data"]["result"]:
            print(f"FAIL  {where}: no data\n      {probe}")
            failures += 1
            continue
        print(f"ok    {where} ({len(res['data']['result'])} series)")
    print(f"{checked} expressions checked, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
