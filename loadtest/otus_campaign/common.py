"""What every part of the campaign shares: paths, ports, the load generators,
logging, waiting, small formatting."""
import datetime
import os
import re
import subprocess
import sys
import time
import urllib.request


# loadtest/ (this package lives in it).
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(HERE)
FULL_STEPS = "50,100,200,400,600,800,1000,1200,1500,2000"
QUICK_STEPS = "5,20,40"
# Ports below the kernel's ephemeral range and apart from CI's own.
PORTS = {"nginx": 18180, "edge": 18100, "users": 18151, "auth": 18152, "catalog": 18153,
         "edge_admin": 18190, "users_admin": 18191, "auth_admin": 18192, "catalog_admin": 18193,
         "prometheus": 18199, "pg_exporter": 18187, "redis_exporter": 18121, "redis": 18179,
         "redis_sessions": 18178}
PROCESS_OF_ADMIN = {f"127.0.0.1:{PORTS[p + '_admin']}": p for p in ("edge", "users", "auth", "catalog")}
ERROR_PCT_FAILURE = 1.0
RISE_FAILURE = 1.05
# The load generators the campaign can drive the system with. otus-load
# (`crates/loadgen`, Rust, one thread) runs the same scenarios as
# campaign_locust.py at a small fraction of Locust's CPU per request, so the
# points it finds are the system's; Locust stays for the homework's own
# deliverable (its HTML and CSV reports).
GENERATORS = {
    "otus-load": {"label": "otus-load", "group": "otus-load", "report": "report-otus-load",
                  "files": ("steps.jsonl", "resources.csv", "generator.log")},
    "locust": {"label": "Locust", "group": "locust", "report": "report",
               "files": ("locust.html", "locust_stats.csv", "locust_stats_history.csv", "steps.jsonl",
                         "resources.csv")},
}
GEN = dict(GENERATORS["otus-load"])
# With otus-load the steps go on until the system, not the generator, gives.
# (Measured: 10k products, cache off, served 4 726 req/s at 5 000 users with p99 23 ms.)
FULL_STEPS_BY_GENERATOR = {"otus-load": "250,500,1000,2000,3000,4000,5000,6000,7000,8000", "locust": FULL_STEPS}
# The original's shoppers wait 1-6 s before every request: ~0.3 req/s each.
ORIGINAL_STEPS = "500,1000,2000,3000,4000,6000,8000,10000"


def use_generator(name):
    GEN.clear()
    GEN.update(GENERATORS[name], name=name)


# The original solution's published Locust results (its homework-7 report).
ORIGINAL = [
    ("10k products, no cache, 1000 users, 10 min", "151.8 req/s, 55.1% failures, p95 7.7 s"),
    ("10k products, cache, 1000 users, 10 min", "210.8 req/s, 0 failures, median 230 ms, p95 1.2 s"),
    ("1M products, cache", "81.3 req/s, 99.3% failures, p95 17 s"),
]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def die(msg):
    print(f"campaign FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def size_label(n):
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def http_get(url, timeout=5, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()



def psql(url, sql):
    out = subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def slo_seconds():
    """The latency SLO's threshold (the `le` of the slow-request recording rule)."""
    text = open(os.path.join(ROOT, "observability", "prometheus", "rules.yml"), encoding="utf-8").read()
    m = re.search(r'edge_slow_ratio:rate5m\s+expr:.*?le="([0-9.]+)"', text, re.S)
    if not m:
        die("no le=... threshold in the otus:edge_slow_ratio:rate5m rule of rules.yml")
    return float(m.group(1))


def metric_value(url, name):
    _, body = http_get(url)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def fmt_ms(v):
    return "-" if v is None else f"{v:,.0f} ms" if v >= 10 else f"{v:.1f} ms"


def point(s):
    if not s:
        return "none within the steps"
    return f"{s['users']} users, {s['rps']:.0f} req/s, p99 {num(s['p99_ms'])} ms, {s['error_pct']:.2f}% failed"


def num(v):
    return "-" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:.1f}"


def fmt_time(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M:%S")
