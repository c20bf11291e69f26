#!/usr/bin/env python3
"""Generates the Grafana dashboards in this folder (plain JSON, schema 39).

Run `python3 observability/grafana/generate.py` after editing; CI checks the
committed JSON matches, and runs every panel query against a real Prometheus
(observability/check-promql.py). The Helm chart packages these same files as
ConfigMaps for the kube-prometheus-stack Grafana sidecar.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


def target(expr, legend, ref):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}


class Board:
    def __init__(self):
        self.panels = []
        self.y = 0
        self.x = 0
        self.next_id = 1

    def row(self, title):
        if self.x:
            self.x, self.y = 0, self.y + 8
        self.panels.append({"id": self.next_id, "type": "row", "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.next_id += 1
        self.y += 1

    def panel(self, title, targets, unit="short", description="", links=None, w=12):
        if self.x + w > 24:
            self.x, self.y = 0, self.y + 8
        p = {
            "id": self.next_id,
            "type": "timeseries",
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": 8, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit, "links": links or []}, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(targets)],
        }
        self.panels.append(p)
        self.next_id += 1
        self.x += w


def dashboard(uid, title, description, board, extra_vars=()):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["otus-rs"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "editable": True,
        "links": [{"title": "otus-rs dashboards", "type": "dashboards", "tags": ["otus-rs"], "asDropdown": True}],
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            *extra_vars,
        ]},
        "annotations": {"list": []},
        "panels": board.panels,
    }


def api_dashboard():
    b = Board()
    h = "http_server_request_duration_seconds"
    # The kubelet's liveness and readiness probes are not API traffic (as in
    # the SLO rules): left out of the RED panels.
    sel = 'route=~"$route", route!~"/health/?|/ready"'
    jaeger = [{"title": "Traces of this route in Jaeger",
               # Spans carry the route template as the `http.route` tag.
               "url": "${jaeger_url}/search?service=${jaeger_service}&lookback=1h&tags=%7B%22http.route%22%3A%22${__field.labels.route}%22%7D",
               "targetBlank": True}]
    b.row("Edge: rate, errors, duration per API method (RED; probes left out)")
    b.panel("Requests per second by route", [
        (f'sum by (method, route) (rate({h}_count{{{sel}}}[{RATE}]))', "{{method}} {{route}}")], unit="reqps")
    b.panel("5xx share by method and route", [
        # Routes without any 5xx series still show a 0 line.
        (f'(sum by (method, route) (rate({h}_count{{{sel}, status=~"5.."}}[{RATE}])) '
         f'or sum by (method, route) (rate({h}_count{{{sel}}}[{RATE}])) * 0) '
         f'/ sum by (method, route) (rate({h}_count{{{sel}}}[{RATE}]))', "{{method}} {{route}}")],
        unit="percentunit", description="Share of answers that are 5xx; 0 when a method has none.")
    for q in ("0.5", "0.95", "0.99"):
        b.panel(f"Latency p{int(float(q) * 100)} by method and route", [
            (f'histogram_quantile({q}, sum by (method, route, le) (rate({h}_bucket{{{sel}}}[{RATE}])))',
             "{{method}} {{route}}")],
            unit="s", links=jaeger, description="From the request-duration histogram. Click a series for its traces.")
    b.panel("Latency max by method and route (true maximum)", [
        (f'max by (method, route) (max_over_time(http_server_request_duration_max_seconds{{{sel}}}[{RATE}]))',
         "{{method}} {{route}}")],
        unit="s", links=jaeger,
        description="The largest single request in the window (http_server_request_duration_max_seconds), not a bucket bound.")
    b.panel("Status codes", [
        (f'sum by (status) (rate({h}_count{{{sel}}}[{RATE}]))', "{{status}}")], unit="reqps")
    b.panel("Requests in flight", [
        (f'sum by (method, route) (http_server_active_requests{{{sel}}})', "{{method}} {{route}}")])
    b.panel("Connections: open, and closed by the edge by reason", [
        ('sum(http_connections_open)', "open"),
        (f'sum by (reason) (rate(http_connections_closed_total[{RATE}]))', "closed/s {{reason}}")],
        description="Open HTTP connections of the edge processes, and those the edge closed: header, idle "
                    "or write timeout, or evicted (idle at HTTP_MAX_CONNECTIONS, for a newcomer).")
    b.row("gRPC services")
    g = "grpc_server_handling_seconds"
    b.panel("gRPC calls per second by method and code", [
        (f'sum by (grpc_service, grpc_method, grpc_code) (rate({g}_count[{RATE}]))',
         "{{grpc_service}}/{{grpc_method}} {{grpc_code}}")], unit="reqps")
    b.panel("gRPC p99 by method", [
        (f'histogram_quantile(0.99, sum by (grpc_method, le) (rate({g}_bucket[{RATE}])))', "{{grpc_method}}")],
        unit="s")
    b.panel("gRPC client errors by callee (not OK)", [
        (f'sum by (grpc_service, grpc_code) (rate(grpc_client_handling_seconds_count{{grpc_code!="OK"}}[{RATE}])) '
         f'or sum by (grpc_service) (rate(grpc_client_handling_seconds_count[{RATE}])) * 0',
         "{{grpc_service}} {{grpc_code}}")], unit="reqps")
    b.row("Storage and cache (from the services)")
    b.panel("SQL p99 by operation", [
        (f'histogram_quantile(0.99, sum by (operation, le) (rate(db_query_duration_seconds_bucket[{RATE}])))',
         "{{operation}}")], unit="s")
    b.panel("Database reachable, by process (circuit breaker)", [
        ('min by (job) (otus_db_up)', "{{job}}")],
        description="1: the process's database answers; 0: its circuit breaker is open and every query gets "
                    "503 DATABASE_UNAVAILABLE at once (alert OtusDatabaseUnreachable after 1 minute).")
    b.panel("SQL statements per second by outcome", [
        (f'sum by (operation, outcome) (rate(db_query_duration_seconds_count[{RATE}]))', "{{operation}} {{outcome}}")],
        unit="ops")
    b.panel("Search cache hit ratio", [
        (f'sum(rate(catalog_search_cache_requests_total{{result="hit"}}[{RATE}])) '
         f'/ sum(rate(catalog_search_cache_requests_total[{RATE}]))', "hit ratio")],
        unit="percentunit", description="Hits / all lookups; errors (Redis down) count as lookups answered by the database.")
    b.panel("Cache operation p99 (get, set)", [
        (f'histogram_quantile(0.99, sum by (operation, le) (rate(cache_operation_duration_seconds_bucket[{RATE}])))',
         "{{operation}}")], unit="s", description="Search cache round trips; errors include the 200 ms Redis timeout.")
    b.panel("Search cache lookups by result", [
        (f'sum by (result) (rate(catalog_search_cache_requests_total[{RATE}]))', "{{result}}")], unit="ops")
    b.row("Processes")
    b.panel("CPU by process", [
        (f'rate(process_cpu_seconds_total{{job=~"$job"}}[{RATE}])', "{{instance}}")], unit="percentunit")
    b.panel("Resident memory by process", [
        ('process_resident_memory_bytes{job=~"$job"}', "{{instance}}")], unit="bytes")
    route_var = {"name": "route", "label": "Route", "type": "query", "datasource": DS,
                 "query": {"query": f"label_values({h}_count, route)", "refId": "route"},
                 "definition": f"label_values({h}_count, route)", "includeAll": True, "multi": True,
                 "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "refresh": 2, "hide": 0}
    # Only this system's processes (jobs named after its Services: otus-edge,
    # otus-users, ...; `otus` for all-in-one), not every job in the cluster.
    job_var = {"name": "job", "label": "Job", "type": "query", "datasource": DS,
               "query": {"query": 'label_values(process_cpu_seconds_total{job=~".*otus.*"}, job)', "refId": "job"},
               "definition": 'label_values(process_cpu_seconds_total{job=~".*otus.*"}, job)', "includeAll": True,
               "multi": True, "allValue": ".*otus.*", "current": {"text": "All", "value": "$__all"}, "refresh": 2,
               "hide": 0}
    jaeger_var = {"name": "jaeger_url", "label": "Jaeger URL", "type": "textbox",
                  "query": "http://localhost:16686", "current": {"text": "http://localhost:16686", "value": "http://localhost:16686"},
                  "hide": 0}
    jaeger_service_var = {"name": "jaeger_service", "label": "Jaeger service", "type": "textbox",
                          "query": "otus-edge", "current": {"text": "otus-edge", "value": "otus-edge"}, "hide": 0}
    return dashboard("otus-api", "otus-rs: API (RED per route)",
                     "Per API method: rate, 5xx share, p50/p95/p99 and true max latency; gRPC, SQL and cache.",
                     b, (route_var, job_var, jaeger_var, jaeger_service_var))


def platform_dashboard():
    b = Board()
    ing = 'ingress=~"$ingress"'
    b.row("Ingress-nginx (the whole service as clients see it)")
    b.panel("Requests per second", [
        (f'sum(rate(nginx_ingress_controller_requests{{{ing}}}[{RATE}]))', "all")], unit="reqps")
    b.panel("5xx share", [
        (f'(sum(rate(nginx_ingress_controller_requests{{{ing}, status=~"5.."}}[{RATE}])) or vector(0)) '
         f'/ sum(rate(nginx_ingress_controller_requests{{{ing}}}[{RATE}]))', "5xx")], unit="percentunit")
    b.panel("Latency p50 / p95 / p99 / max", [
        (f'histogram_quantile({q}, sum by (le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{{{ing}}}[{RATE}])))', f"p{p}")
        for q, p in (("0.5", 50), ("0.95", 95), ("0.99", 99), ("1", 100))], unit="s",
        description="ingress-nginx exports a histogram only: the max line (p100) is the upper bound of the "
                    "slowest request's bucket. The edge's own panels have the true maximum.")
    b.panel("Requests by status", [
        (f'sum by (status) (rate(nginx_ingress_controller_requests{{{ing}}}[{RATE}]))', "{{status}}")], unit="reqps")
    # The system's own database ($database, the chart's postgres.database), not every
    # database the server holds (templates, `postgres`, other applications').
    db = 'datname=~"$database"'
    b.row("PostgreSQL (postgres_exporter)")
    b.panel("Up and connections", [
        ("pg_up", "up"), (f"sum(pg_stat_database_numbackends{{{db}}})", "connections")], unit="short")
    b.panel("Transactions per second", [
        (f'sum(rate(pg_stat_database_xact_commit{{{db}}}[{RATE}]))', "commits"),
        (f'sum(rate(pg_stat_database_xact_rollback{{{db}}}[{RATE}]))', "rollbacks")], unit="ops")
    b.panel("Rows read and written per second", [
        (f'sum(rate(pg_stat_database_tup_fetched{{{db}}}[{RATE}]))', "fetched"),
        (f'sum(rate(pg_stat_database_tup_inserted{{{db}}}[{RATE}]))', "inserted")], unit="ops")
    b.panel("Database size", [(f"pg_database_size_bytes{{{db}}}", "{{datname}}")], unit="bytes")
    b.row("Redis (redis_exporter)")
    b.panel("Up, clients", [("redis_up", "up"), ("redis_connected_clients", "clients")])
    b.panel("Memory used vs maxmemory", [
        ("redis_memory_used_bytes", "used"), ("redis_memory_max_bytes", "maxmemory")], unit="bytes")
    b.panel("Commands per second", [
        (f'sum(rate(redis_commands_processed_total[{RATE}]))', "commands")], unit="ops")
    b.panel("Keyspace hit ratio and evictions", [
        (f'sum(rate(redis_keyspace_hits_total[{RATE}])) / (sum(rate(redis_keyspace_hits_total[{RATE}])) + sum(rate(redis_keyspace_misses_total[{RATE}])))', "hit ratio"),
        (f'sum(rate(redis_evicted_keys_total[{RATE}]))', "evictions/s")])
    b.row("Pods (kubelet / cAdvisor)")
    ns = 'namespace="$namespace", container!="", container!="POD"'
    b.panel("CPU by pod", [
        (f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{ns}}}[{RATE}]))', "{{pod}}")], unit="short")
    b.panel("Memory (working set) by pod", [
        (f'sum by (pod) (container_memory_working_set_bytes{{{ns}}})', "{{pod}}")], unit="bytes")
    ingress_var = {"name": "ingress", "label": "Ingress", "type": "custom", "query": "otus.*",
                   "current": {"text": "otus.*", "value": "otus.*"}, "hide": 0}
    ns_var = {"name": "namespace", "label": "Namespace", "type": "custom", "query": "otus",
              "current": {"text": "otus", "value": "otus"}, "hide": 0}
    db_var = {"name": "database", "label": "Database", "type": "custom", "query": "otus",
              "current": {"text": "otus", "value": "otus"}, "hide": 0}
    return dashboard("otus-platform", "otus-rs: platform (ingress, PostgreSQL, Redis, pods)",
                     "The service as ingress-nginx sees it, its stores from the exporters, and pod resources.",
                     b, (ingress_var, ns_var, db_var))


def write(name, dash):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        f.write(json.dumps(dash, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write("otus-api.json", api_dashboard())
    write("otus-platform.json", platform_dashboard())
