#!/usr/bin/env python3
"""Runs every PromQL expression of the project against a real Prometheus.

Sources: the alert and recording rules (observability/prometheus/rules.yml)
and every panel target of every dashboard (observability/grafana/*.json).
Each expression must parse and evaluate. Expressions over the application's
own metrics and the exporters' must return data; ones over ingress-nginx or
kubelet/cAdvisor metrics (which do not exist outside Kubernetes) only need to
parse. Exit status 1 on any failure.

  python3 observability/check-promql.py http://127.0.0.1:9090 [--after UNIX_TS] [--timeout SECS]

With --after (the time the traffic ended, e.g. `date +%s.%N`), it first waits
for the data to be there instead of for a fixed time: every scrape target up
with at least two samples scraped after that moment (rate() needs two), and
then every rule group evaluated once more, all within --timeout (60 s).
"""
import argparse
import datetime
import glob
import json
import os
import re
import sys
import time
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
                    for var, value in (("$route", ".*"), ("$job", ".*"), ("$ingress", "otus.*"), ("$namespace", "otus"),
                                       ("$database", ".*")):
                        expr = expr.replace(var, value)
                    yield f"{os.path.basename(path)}: {panel.get('title')}", expr, False


def query(base, expr):
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def api(base, path):
    with urllib.request.urlopen(base.rstrip("/") + path, timeout=10) as r:
        return json.load(r)["data"]


def rfc3339(text):
    """Prometheus times (nanoseconds, Z) as Unix seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return 0.0
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    whole = datetime.datetime.fromisoformat(m.group(1) + zone).timestamp()
    return whole + float("0." + (m.group(2) or "0"))


def targets_lacking_samples(base, after):
    """Scrape targets that are not up or have fewer than two samples after `after`."""
    active = api(base, "/api/v1/targets?state=active")["activeTargets"]
    if not active:
        return ["(no active scrape targets)"]
    window = max(10, int(time.time() - after) + 5)
    samples = {}
    res = query(base, f"up[{window}s]")
    for series in res.get("data", {}).get("result", []):
        key = (series["metric"].get("job"), series["metric"].get("instance"))
        samples[key] = [float(v) for ts, v in series["values"] if float(ts) > after]
    lacking = []
    for t in active:
        key = (t["labels"].get("job"), t["labels"].get("instance"))
        got = samples.get(key, [])
        if t.get("health") != "up" or len(got) < 2 or got[-1] != 1.0:
            lacking.append(f"{key[0]}/{key[1]} (health {t.get('health')}, "
                           f"{len(got)} samples after the traffic, last error: {t.get('lastError') or '-'})")
    return lacking


def groups_not_evaluated_since(base, since):
    return [g["name"] for g in api(base, "/api/v1/rules")["groups"]
            if rfc3339(g.get("lastEvaluation", "")) <= since]


def wait_for_data(base, after, timeout):
    """Polls until the data the checks need is there, or exits 1 with what is missing."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    what = "scrape targets"
    while True:
        try:
            lacking = targets_lacking_samples(base, after)
            if not lacking:
                break
        except (OSError, ValueError, KeyError) as e:
            lacking = [f"Prometheus API: {e}"]
        if time.monotonic() > deadline:
            print(f"FAIL  after {timeout:.0f} s these {what} still lack two samples taken after the traffic:")
            for line in lacking:
                print(f"      {line}")
            sys.exit(1)
        time.sleep(0.5)
    scraped = time.time()
    print(f"every target has two samples after the traffic ({time.monotonic() - started:.1f} s)")
    while True:
        stale = groups_not_evaluated_since(base, scraped)
        if not stale:
            break
        if time.monotonic() > deadline:
            print(f"FAIL  after {timeout:.0f} s these rule groups were not evaluated again: {', '.join(stale)}")
            sys.exit(1)
        time.sleep(0.5)
    print(f"every rule group evaluated after that ({time.monotonic() - started:.1f} s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", nargs="?", default="http://127.0.0.1:9090")
    parser.add_argument("--after", type=float, help="Unix time the traffic ended; wait for data after it")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the data (60)")
    args = parser.parse_args()
    base = args.base
    if args.after is not None:
        wait_for_data(base, args.after, args.timeout)
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
