"""Prometheus: the campaign's own instance, and the dashboards' PromQL it asks."""
import json
import os
import re
import urllib.request

from .common import PROCESS_OF_ADMIN, ROOT, die, http_get


def dashboard_panels():
    with open(os.path.join(ROOT, "observability", "grafana", "otus-api.json"), encoding="utf-8") as f:
        return {p["title"]: p for p in json.load(f)["panels"] if p.get("type") != "row"}


def promql(expr, rate_interval, job="otus", database=".*"):
    """A dashboard expression with Grafana's variables at the values the campaign uses
    (`database`: the campaign's catalog database, for the PostgreSQL panels)."""
    return (expr.replace("$__rate_interval", rate_interval).replace("$route", ".*")
            .replace("$job", job).replace("$database", database))


class Prometheus:
    def __init__(self, base):
        self.base = base

    def query_range(self, expr, start, end, step):
        url = self.base + "/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}s"})
        _, body = http_get(url, timeout=30)
        data = json.loads(body)
        if data.get("status") != "success":
            die(f"Prometheus refused {expr}: {data.get('error')}")
        return data["data"]["result"]

    def query(self, expr, at):
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
        _, body = http_get(url, timeout=30)
        data = json.loads(body)
        if data.get("status") != "success":
            die(f"Prometheus refused {expr}: {data.get('error')}")
        result = data["data"]["result"]
        if not result or result[0]["value"][1] in ("NaN", "+Inf", "-Inf"):
            return None
        return float(result[0]["value"][1])

    def newest_sample(self):
        _, body = http_get(self.base + "/api/v1/query?query=" + urllib.parse.quote("max(timestamp(up))"))
        result = json.loads(body)["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0


def legend(fmt, labels):
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "")
    if labels.get("instance") in PROCESS_OF_ADMIN and "{{instance}}" in (fmt or ""):
        text = text.replace(labels["instance"], "otus " + PROCESS_OF_ADMIN[labels["instance"]])
    return text.strip() or json.dumps(labels)


def panel_series(prom, panel, start, end, step, rate_interval, database=".*"):
    series = []
    for target in panel.get("targets", []):
        for r in prom.query_range(promql(target["expr"], rate_interval, database=database), start, end, step):
            points = [(float(t), float(v)) for t, v in r["values"] if v not in ("NaN", "+Inf", "-Inf")]
            if points:
                series.append((legend(target.get("legendFormat"), r["metric"]), points))
    return series


CLUSTER_ONLY = re.compile(r"\b(nginx_ingress_controller_\w+|container_\w+|kube_\w+|kubelet_\w+)")


def dashboard_rows(path):
    """A dashboard's rows, each with the panels under it, in Grafana's order."""
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    rows, current = [], None
    for panel in sorted(dash["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if panel.get("type") == "row":
            current = {"title": panel["title"], "panels": []}
            rows.append(current)
        elif current is not None:
            current["panels"].append(panel)
    return dash.get("title", os.path.basename(path)), rows
