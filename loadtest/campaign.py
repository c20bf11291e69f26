#!/usr/bin/env python3
"""Homework 7's load-test campaign, unattended, with its report and charts.

For every configuration (catalog size x search cache on/off) it starts the
system as in production: the users, auth, catalog and edge processes on
PostgreSQL with sessions (and, cache on, the search cache) in Redis, behind
nginx configured as ingress-nginx would be; Prometheus scraping every process
and the PostgreSQL and Redis exporters (`observability/local-stack.sh`). It
loads the catalog (`otus seed-products --shape words`, the original's data
shape; kept between runs), then runs the load generator in a step load (the same steps for every
configuration), printing each step as it ends: `otus-load` (`crates/loadgen`,
Rust, the default: cheap enough that the points it finds are the system's) or,
with `--generator locust`, Locust headless with `loadtest/campaign_locust.py`
(the same scenarios). From the steps it finds:

- the working load: the highest step with no failed request and a p99 within
  the latency SLO of `observability/prometheus/rules.yml` (99% under 250 ms);
- the degradation point: the first step whose p99 is over that SLO;
- the failure point: the first step with more than 1% failed requests or whose
  throughput rose by less than 5% over the step before (users rose, requests
  did not).

Then it writes the report: `README.md` (machine, profile, summary table,
per-configuration step tables, comparisons, conclusions, the original
solution's published figures), PNG charts drawn from Prometheus with the SAME
PromQL as the Grafana dashboards' panels (read from
`observability/grafana/otus-api.json`) plus CPU and memory of every process
sampled from /proc (PostgreSQL, Redis, nginx and Locust have no metrics of
their own here), and (with Locust) Locust's own HTML and CSV reports, one
folder per configuration.

    python3 loadtest/campaign.py                  # full: 10k and 1M x cache off/on, 10 min each
    python3 loadtest/campaign.py --quick          # CI smoke test, <= 90 s, report in a temp dir
    python3 loadtest/campaign.py --sizes 10000 --cache on --steps 10,50 --step-seconds 30

Needs: prometheus, prometheus-postgres-exporter, prometheus-redis-exporter,
nginx (Debian); matplotlib, pyyaml (PyPI), locust for `--generator locust`;
PostgreSQL and Redis. `--otus` takes a built binary (otus-load is looked for
beside it, or `--load-bin`); without it a release build of both is made.
"""
import argparse
import atexit
import datetime
import glob
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
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


def wait_until(seconds, what, check):
    """Polls `check` until it returns a truthy value; dies at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            die(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.25)


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


def dashboard_panels():
    with open(os.path.join(ROOT, "observability", "grafana", "otus-api.json"), encoding="utf-8") as f:
        return {p["title"]: p for p in json.load(f)["panels"] if p.get("type") != "row"}


def promql(expr, rate_interval, job="otus", database=".*"):
    """A dashboard expression with Grafana's variables at the values the campaign uses
    (`database`: the campaign's catalog database, for the PostgreSQL panels)."""
    return (expr.replace("$__rate_interval", rate_interval).replace("$route", ".*")
            .replace("$job", job).replace("$database", database))


# Grafana's panel units as axis labels and tick labels, so a chart reads as its
# panel does: "250 ms", "128 MiB", "5%", not 0.25, 1.3e8, 0.05.
UNIT_LABELS = {"s": "time", "bytes": "size", "percentunit": "%", "reqps": "requests/s",
               "ops": "per second", "cores": "cores", "ms": "milliseconds", "%": "%", "req/s": "requests/s"}


def format_value(v, unit):
    """One tick label of `unit` (a Grafana unit or one of the report's)."""
    if v == 0:
        return "0"
    if unit == "s":
        return f"{v * 1000:.3g} ms" if abs(v) < 1 else f"{v:.3g} s"
    if unit == "ms":
        return f"{v:.3g} ms" if abs(v) < 1000 else f"{v / 1000:.3g} s"
    if unit == "bytes":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {name}"
        return f"{v:.0f} B"
    if unit == "percentunit":
        return f"{v * 100:.3g}%"
    return f"{v:.3g}"


def floor_at_zero(ax, series):
    """Counts, rates and shares are never negative: the axis starts at 0 (an
    all-zero panel would otherwise be drawn around 0, from -5% to 5%)."""
    values = [v for _, pts in series for _, v in pts]
    if values and min(values) >= 0:
        ax.set_ylim(bottom=0)


def apply_unit(ax, unit, log=False):
    """Labels `ax`'s y axis in `unit`; `log`: a log scale (values spanning orders of
    magnitude: latency percentiles beside a client's seconds, an idle process beside a
    busy one), where a zero is left out rather than drawn at the bottom."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    if log:
        ax.set_yscale("log", nonpositive="mask")
        # 1-2-5 ticks: a panel spanning less than a decade still reads.
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    elif unit == "bytes":
        from matplotlib.ticker import MaxNLocator

        class BinaryLocator(MaxNLocator):
            """Round ticks in the unit the labels use (128 MiB, not 134.2 MB)."""

            def tick_values(self, vmin, vmax):
                scale = next((2**p for p in (30, 20, 10) if max(abs(vmin), abs(vmax)) >= 2**p), 1)
                return super().tick_values(vmin / scale, vmax / scale) * scale
        ax.yaxis.set_major_locator(BinaryLocator(nbins=6, steps=[1, 2, 2.5, 4, 5, 8, 10]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))
    label = UNIT_LABELS.get(unit, unit if unit != "short" else "")
    ax.set_ylabel(label + (" (log scale)" if log else ""))


# ---------------------------------------------------------------- processes

class System:
    """The system's processes for one configuration, nginx in front."""

    def __init__(self, otus, db_url, redis_url, session_redis_url, prefix, cache, workdir):
        self.otus, self.db_url, self.redis_url, self.prefix = otus, db_url, redis_url, prefix
        self.session_redis_url = session_redis_url
        self.cache, self.workdir = cache, workdir
        self.procs = {}

    def start(self, secret):
        base = dict(os.environ, DATABASE_URL=self.db_url, LOG_FORMAT="json", RUST_LOG="warn",
                    IDENTITY_TOKEN_SECRET=secret)
        base.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        p = PORTS
        specs = {
            "users": ([self.otus, "users", "--grpc-addr", f"127.0.0.1:{p['users']}",
                       "--admin-addr", f"127.0.0.1:{p['users_admin']}"], {}),
            # Every simulated user comes from the load generator's one address:
            # the per-address login limit would otherwise stop the campaign's
            # account holders, not the system's capacity.
            "auth": ([self.otus, "auth", "--grpc-addr", f"127.0.0.1:{p['auth']}",
                      "--admin-addr", f"127.0.0.1:{p['auth_admin']}",
                      "--users-grpc-url", f"http://127.0.0.1:{p['users']}"],
                     {"REDIS_URL": self.session_redis_url, "REDIS_KEY_PREFIX": self.prefix,
                      "LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "1000000"}),
            "catalog": ([self.otus, "catalog", "--grpc-addr", f"127.0.0.1:{p['catalog']}",
                         "--admin-addr", f"127.0.0.1:{p['catalog_admin']}"],
                        {"REDIS_URL": self.redis_url, "REDIS_KEY_PREFIX": self.prefix,
                         "CACHE_ENABLED": "true" if self.cache else "false"}),
            "edge": ([self.otus, "edge", "--http-addr", f"127.0.0.1:{p['edge']}",
                      "--admin-addr", f"127.0.0.1:{p['edge_admin']}",
                      "--users-grpc-url", f"http://127.0.0.1:{p['users']}",
                      "--auth-grpc-url", f"http://127.0.0.1:{p['auth']}",
                      "--catalog-grpc-url", f"http://127.0.0.1:{p['catalog']}"],
                     {"TRUSTED_PROXIES": "127.0.0.1"}),
        }
        for name, (cmd, env) in specs.items():
            out = open(os.path.join(self.workdir, f"{name}.log"), "ab")
            self.procs[name] = subprocess.Popen(cmd, env=dict(base, **env), stdout=out, stderr=subprocess.STDOUT)

    def check_alive(self):
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = open(os.path.join(self.workdir, f"{name}.log"), errors="replace").read()[-2000:]
                die(f"the {name} process exited ({proc.returncode}):\n{tail}")

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = {}


def nginx_config(workdir):
    """The CI's ingress stand-in, sized as ingress-nginx is (16k connections per
    worker, 320 upstream keep-alive connections), access log off (its disk
    writes would compete with the system for the machine's two cores)."""
    text = open(os.path.join(ROOT, ".ci", "ingress-nginx.conf"), encoding="utf-8").read()
    for old, new in (("@EDGE@", f"127.0.0.1:{PORTS['edge']}"),
                     ("worker_connections 1024;", "worker_connections 16384;"),
                     ("keepalive 16;", "keepalive 320;"),
                     ("access_log logs/access.log;", "access_log off;"),
                     ("listen 127.0.0.1:80;", f"listen 127.0.0.1:{PORTS['nginx']};"),
                     ("listen 127.0.0.1:80 default_server;", f"listen 127.0.0.1:{PORTS['nginx']} default_server;")):
        if old not in text:
            die(f".ci/ingress-nginx.conf no longer holds {old!r}: update campaign.py's nginx_config")
        text = text.replace(old, new)
    text = text.replace("worker_processes 1;", "worker_processes 1;\nworker_rlimit_nofile 40000;")
    os.makedirs(os.path.join(workdir, "nginx", "logs"), exist_ok=True)
    os.makedirs(os.path.join(workdir, "nginx", "tmp"), exist_ok=True)
    path = os.path.join(workdir, "nginx", "nginx.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------- /proc sampling

CLK_TCK = os.sysconf("SC_CLK_TCK")
MACHINE = "machine (all processes and the kernel)"


class Sampler(threading.Thread):
    """CPU (cores) and memory of every process group, every `interval` s.

    Memory is PSS (proportional set size: a page shared by n processes counts
    1/n in each), so PostgreSQL's shared buffers count once across its
    backends instead of once per backend, as summed RSS would."""

    def __init__(self, groups_of, interval, path):
        super().__init__(daemon=True)
        self.groups_of, self.interval, self.path = groups_of, interval, path
        self.stop_event = threading.Event()
        self.rows = []

    @staticmethod
    def read_all():
        out = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat", encoding="utf-8", errors="replace") as f:
                    stat = f.read()
                rss = 0
                with open(f"/proc/{d}/smaps_rollup", encoding="utf-8") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            rss = int(line.split()[1]) * 1024
                            break
            except (OSError, IndexError, ValueError):
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(d)] = (comm, int(fields[1]), int(fields[11]) + int(fields[12]), rss)
        return out

    @staticmethod
    def machine_ticks():
        """(busy, all) jiffies of the whole machine, from /proc/stat's cpu line."""
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]) - idle, sum(fields[:8])

    def run(self):
        before, t0 = self.read_all(), time.time()
        machine_before = self.machine_ticks()
        while not self.stop_event.wait(self.interval):
            now, t1 = self.read_all(), time.time()
            machine_now = self.machine_ticks()
            cpu, rss = {}, {}
            # Everything the machine did, the kernel's network work included.
            cpu[MACHINE] = (machine_now[0] - machine_before[0]) / CLK_TCK / (t1 - t0)
            rss[MACHINE] = 0
            machine_before = machine_now
            for pid, (comm, ppid, ticks, mem) in now.items():
                group = self.groups_of(pid, comm, ppid, now)
                if not group:
                    continue
                prev = before.get(pid)
                used = ticks - prev[2] if prev and prev[0] == comm else 0
                cpu[group] = cpu.get(group, 0.0) + used / CLK_TCK / (t1 - t0)
                rss[group] = rss.get(group, 0) + mem
            for group in sorted(cpu):
                self.rows.append((t1, group, cpu[group], rss[group]))
            before, t0 = now, t1

    def stop(self):
        self.stop_event.set()
        self.join()
        with open(self.path, "w", encoding="utf-8") as f:
            f.write("time,process,cpu_cores,rss_bytes\n")
            for t, g, c, m in self.rows:
                f.write(f"{t:.3f},{g},{c:.4f},{m}\n")


def group_resolver(system_pids, generator_pid):
    def ancestor(pid, target, procs):
        for _ in range(8):
            if pid == target:
                return True
            info = procs.get(pid)
            if not info:
                return False
            pid = info[1]
        return False

    def groups_of(pid, comm, ppid, procs):
        for name, p in system_pids().items():
            if pid == p:
                return f"otus {name}"
        if comm.startswith("postgres"):
            return "postgresql"
        if comm.startswith("redis-server"):
            return "redis"
        if comm == "nginx":
            return "nginx"
        gp = generator_pid()
        if gp and ancestor(pid, gp, procs):
            return GEN["group"]
        if comm == "prometheus":
            return "prometheus"
        return None
    return groups_of


# ---------------------------------------------------------------- Prometheus

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


# ---------------------------------------------------------------- one configuration

def prepare_catalog(otus, admin_url, size, drop):
    name = f"otus_campaign_{size_label(size).lower()}"
    db_url = admin_url.rsplit("/", 1)[0] + "/" + name
    if drop:
        psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if not psql(admin_url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
        psql(admin_url, f'CREATE DATABASE "{name}"')
    env = dict(os.environ, DATABASE_URL=db_url, RUST_LOG="warn")
    subprocess.run([otus, "migrate"], env=env, check=True)
    have = int(psql(db_url, "SELECT count(*) FROM products") or 0)
    if have != size:
        log(f"loading {size:,} products into {name} (seed-products --shape words; progress below)")
        t = time.monotonic()
        subprocess.run([otus, "seed-products", "--count", str(size), "--seed", "1", "--shape", "words",
                        "--mode", "replace"], env=env, check=True)
        log(f"loaded in {time.monotonic() - t:.0f} s")
    else:
        log(f"{name} already holds {size:,} products: reused")
    return name, db_url


def search_words(db_url, path):
    names = psql(db_url, "SELECT name FROM products ORDER BY id LIMIT 5000").splitlines()
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")


def metric_value(url, name):
    _, body = http_get(url)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def start_system(args, cfg, workdir, sampler_state):
    """Starts the four processes for `cfg` and waits until they serve through nginx
    and the catalog's search index holds the whole catalog."""
    size = cfg["size"]
    prefix = f"otus-campaign-{os.getpid()}-{cfg['id']}:"
    system = System(args.otus, cfg["db_url"], args.redis_url, args.session_redis_url, prefix, cfg["cache"],
                    workdir)
    system.start(os.urandom(32).hex())
    sampler_state["system"] = {n: p.pid for n, p in system.procs.items()}
    edge = f"http://127.0.0.1:{PORTS['nginx']}/otusapp"
    headers = {"Host": "arch.homework"}
    started = time.monotonic()
    try:
        wait_until(120, "the system's /ready through nginx",
                   lambda: (system.check_alive(), http_get(edge + "/ready", headers=headers)[0] == 200)[1])
        catalog_metrics = f"http://127.0.0.1:{PORTS['catalog_admin']}/metrics"
        wait_until(120 + size / 10_000, f"the catalog's search index holding {size:,} products",
                   lambda: (system.check_alive(), metric_value(catalog_metrics, "catalog_index_products") == size)[1])
    except SystemExit:
        stop_system(args, system, sampler_state)
        raise
    log(f"{cfg['title']}: system ready in {time.monotonic() - started:.1f} s (index built)")
    return system


def stop_system(args, system, sampler_state):
    sampler_state["system"] = {}
    system.stop()
    for url in {args.redis_url, args.session_redis_url}:
        keys = subprocess.run(["redis-cli", "-u", url, "--scan", "--pattern", system.prefix + "*"],
                              capture_output=True, text=True).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "-u", url, "del", *keys[i:i + 500]], capture_output=True)


def run_configuration(args, cfg, workdir, sampler_state):
    cfg_dir = os.path.join(args.out, cfg["id"])
    os.makedirs(cfg_dir, exist_ok=True)
    for old in glob.glob(os.path.join(cfg_dir, "*")):
        os.remove(old)
    system = start_system(args, cfg, workdir, sampler_state)
    try:
        steps_out = os.path.join(cfg_dir, "steps.jsonl")
        env = dict(os.environ, SEARCHES=cfg["words"], PATH_PREFIX="/otusapp", HOST_HEADER="arch.homework",
                   CAMPAIGN_STEPS=args.steps, CAMPAIGN_STEP_SECONDS=str(args.step_seconds),
                   CAMPAIGN_STEPS_OUT=steps_out)
        host = f"http://127.0.0.1:{PORTS['nginx']}"
        if GEN["name"] == "locust":
            cmd = ["locust", "-f", os.path.join(HERE, "campaign_locust.py"), "--headless", "--host", host,
                   "--csv", os.path.join(cfg_dir, "locust"), "--csv-full-history",
                   "--html", os.path.join(cfg_dir, "locust.html"), "--only-summary", "--loglevel", "WARNING"]
            log_path = os.path.join(cfg_dir, "locust.log")
        else:
            # The same environment variables name the steps, words, prefix and Host header.
            cmd = [args.load_bin, "--host", host, "--scenario", args.scenario]
            log_path = os.path.join(cfg_dir, "generator.log")
        label = GEN["label"]
        t_start = time.time()
        with open(log_path, "wb") as out:
            generator = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
            sampler_state["generator"] = generator.pid
            steps = len(args.steps.split(","))
            deadline = time.monotonic() + steps * args.step_seconds + 120
            printed = 0
            try:
                while generator.poll() is None:
                    if time.monotonic() > deadline:
                        die(f"{cfg['title']}: {label} did not finish within its schedule + 120 s")
                    system.check_alive()
                    printed = print_new_steps(cfg, steps_out, printed)
                    time.sleep(1)
            finally:
                # A campaign that stops early (a failure, Ctrl-C, SIGTERM) stops its load too.
                if generator.poll() is None:
                    generator.kill()
                    generator.wait()
            sampler_state["generator"] = None
        t_end = time.time()
        printed = print_new_steps(cfg, steps_out, printed)
        if generator.returncode not in (0, 1):  # Locust's 1: some requests failed, which the report shows
            die(f"{cfg['title']}: {label} exited {generator.returncode} (see {log_path})")
        exceptions = os.path.join(cfg_dir, "locust_exceptions.csv")
        if os.path.exists(exceptions) and len(open(exceptions, encoding="utf-8").read().splitlines()) > 1:
            die(f"{cfg['title']}: the Locust scenario raised exceptions (a script error, not the system's): "
                f"{exceptions} and {log_path}")
        if printed != steps:
            die(f"{cfg['title']}: {printed} of {steps} steps reported (see {log_path})")
        cfg.update(start=t_start, end=t_end)
    finally:
        stop_system(args, system, sampler_state)


def read_steps(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def print_new_steps(cfg, path, printed):
    steps = read_steps(path)
    for s in steps[printed:]:
        log(f"{cfg['title']}: step {s['step']}/{s['steps']}  users {s['users']:>5}  "
            f"req/s {s['rps']:>8.1f}  p50 {fmt_ms(s['p50_ms'])}  p99 {fmt_ms(s['p99_ms'])}  "
            f"errors {s['error_pct']:.2f}%")
    return len(steps)


def fmt_ms(v):
    return "-" if v is None else f"{v:,.0f} ms" if v >= 10 else f"{v:.1f} ms"


# ---------------------------------------------------------------- analysis

def classify(steps, slo_ms):
    """Working load, degradation point and failure point of one configuration."""
    working = degradation = failure = None
    failure_why = ""
    prev = None
    for s in steps:
        ok = s["failures"] == 0 and s["p99_ms"] is not None and s["p99_ms"] <= slo_ms
        if ok and degradation is None and failure is None:
            working = s
        if degradation is None and s["p99_ms"] is not None and s["p99_ms"] > slo_ms:
            degradation = s
        if failure is None:
            if s["error_pct"] > ERROR_PCT_FAILURE:
                failure, failure_why = s, f"{s['error_pct']:.1f}% of requests failed"
            elif prev and s["users"] > prev["users"] and s["rps"] < prev["rps"] * RISE_FAILURE:
                failure = s
                failure_why = (f"throughput stopped rising ({prev['rps']:.0f} -> {s['rps']:.0f} req/s "
                               f"while users rose {prev['users']} -> {s['users']})")
        prev = s
    return working, degradation, failure, failure_why


EDGE_REQUESTS = 'route!~"/health/?|/ready"'


def add_server_figures(prom, steps):
    """The edge's own view of each step (the dashboards' metric, all routes):
    p99 and req/s over the step's measured window."""
    for s in steps:
        window = f"{max(1, int(s['seconds']))}s"
        p99 = prom.query("histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket"
                         f"{{{EDGE_REQUESTS}}}[{window}])))", s["wall_end"])
        s["server_p99_ms"] = None if p99 is None else p99 * 1000
        s["server_rps"] = prom.query(f"sum(rate(http_server_request_duration_seconds_count{{{EDGE_REQUESTS}}}[{window}]))",
                                     s["wall_end"])


def step_resources(resources, step):
    """Mean CPU (cores) and peak RSS per process group within a step."""
    cpu, rss, n = {}, {}, {}
    for t, group, c, m in resources:
        if step["wall_start"] <= t <= step["wall_end"]:
            cpu[group] = cpu.get(group, 0.0) + c
            n[group] = n.get(group, 0) + 1
            rss[group] = max(rss.get(group, 0), m)
    return {g: cpu[g] / n[g] for g in cpu}, rss


def bottleneck(cpu, cores, step=None):
    """Names the limit at a step from the CPU samples and, when known, the
    edge's own p99 beside the one the load generator saw."""
    if not cpu:
        return "no samples"
    machine = cpu.get(MACHINE, 0.0)
    procs = {g: c for g, c in cpu.items() if g != MACHINE}
    top = sorted(procs.items(), key=lambda kv: -kv[1])
    parts = ", ".join(f"{g} {c:.2f}" for g, c in top[:4])
    words = []
    if machine >= cores * 0.9:
        words.append(f"CPU: the machine's {cores} cores are saturated ({machine:.2f} busy; {parts})")
    elif procs.get(GEN["group"], 0) >= 0.9:
        words.append(f"the load generator: {GEN['label']} at {procs[GEN['group']]:.2f} of its one core ({parts})")
    elif machine >= cores * 0.75:
        waits = ("Locust, one Python process, waits for a core" if GEN["group"] == "locust"
                 else "every process waits for a core in turn")
        words.append(f"CPU, nearly: the machine's {cores} cores are {100 * machine / cores:.0f}% busy ({machine:.2f}; "
                     f"{parts}), and {waits}")
    else:
        words.append(f"no resource at its limit (machine {machine:.2f} of {cores} cores busy; {parts})")
    if step and step.get("server_p99_ms") is not None and step.get("p99_ms") is not None:
        server, client = step["server_p99_ms"], step["p99_ms"]
        if client > 2 * server and client - server > 50:
            words.append(f"the edge's own p99 is {num(server)} ms where {GEN['label']} saw {num(client)} ms: the rest "
                         "is spent outside the edge: in nginx, the load generator, the queue for the cores (and "
                         "the network path)")
        else:
            words.append(f"the edge's own p99 {num(server)} ms, {GEN['label']}'s {num(client)} ms: the time is the "
                         "service's")
    return "; ".join(words)


# ---------------------------------------------------------------- charts

def charts_for(prom, cfg, panels, args, resources, slo_ms):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start, end = cfg["start"], cfg["end"]
    step, rate = args.scrape_seconds, f"{max(4 * args.scrape_seconds, 8)}s"
    steps = cfg["steps"]
    made = []

    def figure(title, name, subplots):
        fig, axes = plt.subplots(len(subplots), 1, figsize=(12, 3.6 * len(subplots)), squeeze=False)
        counts = []
        for ax, (sub_title, series, unit, extra) in zip(axes[:, 0], subplots):
            log = unit == "s"
            points = 0
            for label, pts in series:
                xs = [(t - start) / 60 for t, _ in pts]
                ax.plot(xs, [v for _, v in pts], label=label, linewidth=1.2,
                        marker="o" if "(client side)" in label else None)
                points += len(pts)
            if extra:
                extra(ax)
            for s in steps:
                x = (s["wall_start"] - start) / 60
                ax.axvline(x, color="grey", linewidth=0.6, linestyle=":")
                ax.text(x, 1.0, f" {s['users']}u", transform=ax.get_xaxis_transform(), fontsize=7,
                        va="bottom", color="grey")
            ax.set_title(sub_title, fontsize=10, pad=14)
            apply_unit(ax, unit, log)
            if not log:
                floor_at_zero(ax, series)
            ax.grid(alpha=0.3)
            if series:
                ax.legend(fontsize=7, loc="upper left", ncol=2)
            counts.append({"title": sub_title, "series": len(series), "points": points})
        axes[-1, 0].set_xlabel("minutes since the first step (dotted: step starts, users)")
        fig.suptitle(f"{cfg['title']}: {title}", fontsize=12)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (3.6 * len(subplots))))
        path = os.path.join(args.out, cfg["id"], name)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        made.append({"file": os.path.relpath(path, args.out), "subplots": counts})

    def dash(title):
        if title not in panels:
            die(f"the dashboard has no panel {title!r}: update campaign.py")
        return panel_series(prom, panels[title], start, end, step, rate)

    def client_series(key, scale=1.0):
        return [(f"{GEN['label']} (client side), {key}", [(s["wall_end"], (s[key] or 0) * scale) for s in steps])]

    def slo_line(ax):
        ax.axhline(slo_ms / 1000, color="red", linewidth=1.0, linestyle="--", label=f"SLO {slo_ms:.0f} ms")
        ax.legend(fontsize=7, loc="upper left", ncol=2)

    figure("throughput", "rps.png", [
        ("Requests per second by route (dashboard panel, server side)", dash("Requests per second by route"), "reqps", None),
        (f"Requests per second per step ({GEN['label']}, client side)", client_series("rps"), "reqps", None)])
    figure("latency", "latency.png", [
        ("Latency p50 by method and route (dashboard panel)", dash("Latency p50 by method and route"), "s", None),
        ("Latency p95 by method and route (dashboard panel)", dash("Latency p95 by method and route"), "s", None),
        (f"Latency p99 by method and route (dashboard panel, server side) and {GEN['label']}'s p99 per step "
         "(client side)",
         dash("Latency p99 by method and route") + client_series("p99_ms", 0.001), "s", slo_line)])
    figure("errors", "errors.png", [
        ("5xx share by method and route (dashboard panel)", dash("5xx share by method and route"), "percentunit", None),
        (f"Failed requests per step ({GEN['label']}: 5xx, 4xx where 2xx was expected, timeouts, refused "
         "connections)",
         client_series("error_pct"), "%", None)])
    by_group = {}
    for t, group, c, m in resources:
        if start <= t <= end:
            by_group.setdefault(group, []).append((t, c, m))
    figure("CPU", "cpu.png", [
        ("CPU by process (dashboard panel: the otus processes' own metric; 100% = one core)", dash("CPU by process"), "percentunit", None),
        (f"CPU of the machine and every process group (/proc: otus, PostgreSQL, Redis, nginx, {GEN['label']}, "
         "Prometheus)",
         [(g, [(t, c) for t, c, _ in v]) for g, v in sorted(by_group.items())], "cores", None)])
    figure("memory", "memory.png", [
        ("Resident memory by process (dashboard panel)", dash("Resident memory by process"), "bytes", None),
        ("Memory of every process group (/proc, PSS: shared pages split between the processes sharing them)",
         [(g, [(t, m) for t, _, m in v]) for g, v in sorted(by_group.items()) if g != MACHINE], "bytes", None)])
    if cfg["cache"]:
        figure("search cache", "cache.png", [
            ("Search cache hit ratio (dashboard panel)", dash("Search cache hit ratio"), "percentunit", None),
            ("Search cache lookups by result (dashboard panel)", dash("Search cache lookups by result"), "ops", None)])
    return made


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


def render_dashboard(prom, path, start, end, step, rate_interval, out_dir, caption, database=".*"):
    """One PNG per dashboard row, panels laid out two per line as in Grafana,
    each with its panel's unit (latency and CPU on a log scale: one slow route
    or one busy process would flatten the others at zero).

    Panels over metrics that exist only in Kubernetes (ingress-nginx, cAdvisor)
    say so instead of drawing an empty plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title, rows = dashboard_rows(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    made = []
    for i, row in enumerate(rows, 1):
        panels = row["panels"]
        lines = (len(panels) + 1) // 2
        fig, axes = plt.subplots(lines, 2, figsize=(15, 3.8 * lines), squeeze=False)
        counts = []
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, panel in zip(axes.flat, panels):
            series = panel_series(prom, panel, start, end, step, rate_interval, database)
            points = 0
            for label, pts in series:
                ax.plot([(t - start) / 60 for t, _ in pts], [v for _, v in pts], label=label, linewidth=1.1)
                points += len(pts)
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
            positive = [v for _, pts in series for _, v in pts if v > 0]
            log = bool(positive) and (unit == "s" or panel["title"].startswith("CPU"))
            apply_unit(ax, unit, log)
            if not log:
                floor_at_zero(ax, series)
            cluster_only = any(CLUSTER_ONLY.search(t.get("expr", "")) for t in panel.get("targets", []))
            if not series and cluster_only:
                ax.text(0.5, 0.5, "no data outside Kubernetes:\nthis panel reads ingress-nginx or cAdvisor metrics",
                        ha="center", va="center", transform=ax.transAxes, color="grey")
            elif series:
                ax.legend(fontsize=7, loc="upper left", ncol=2)
            ax.set_title(panel["title"], fontsize=10)
            ax.grid(alpha=0.3)
            ax.set_xlabel("minutes")
            counts.append({"title": panel["title"], "series": len(series), "points": points,
                           "cluster_only": cluster_only})
        fig.suptitle(f"{title} / {row['title']}\n{caption}", fontsize=11)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (3.8 * lines)))
        slug = re.sub(r"[^a-z0-9]+", "-", row["title"].lower()).strip("-")[:40]
        out = os.path.join(out_dir, f"{stem}-{i}-{slug}.png")
        fig.savefig(out, dpi=72)
        plt.close(fig)
        made.append({"file": out, "subplots": counts})
    return made


def comparison_charts(configs, args, slo_ms):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    counts = []
    for ax, key, title, unit in zip(axes, ("rps", "p99_ms", "error_pct"),
                                    ("Throughput per step", "p99 per step (client side)", "Failed requests per step"),
                                    ("req/s", "ms", "%")):
        points = 0
        for cfg in configs:
            xs = [s["users"] for s in cfg["steps"]]
            ys = [s[key] or 0 for s in cfg["steps"]]
            ax.plot(xs, ys, marker="o", label=cfg["title"], linewidth=1.2)
            points += len(xs)
        if key == "p99_ms":
            ax.axhline(slo_ms, color="red", linewidth=1.0, linestyle="--", label=f"SLO {slo_ms:.0f} ms")
        ax.set_xlabel("users")
        apply_unit(ax, unit, log=key == "p99_ms")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        counts.append({"title": title, "series": len(configs), "points": points})
    fig.suptitle("All configurations, the same steps: cache on vs off, and the volume test (catalog size)")
    fig.tight_layout()
    path = os.path.join(args.out, "compare.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    made.append({"file": "compare.png", "subplots": counts})
    return made


# ---------------------------------------------------------------- report

def chart_redis_settings(which):
    """maxmemory and policy of the chart's `which` Redis (cache, sessions), from its values."""
    import yaml
    with open(os.path.join(ROOT, "helm", "otus", "values.yaml"), encoding="utf-8") as f:
        redis = yaml.safe_load(f)["redis"][which]
    return str(redis["maxmemory"]), str(redis["maxmemoryPolicy"])


def start_redis(workdir, which, port):
    """A Redis of the campaign's own, configured as the chart configures its
    `which` Redis (cache or sessions: maxmemory, eviction policy; nothing kept
    on disk), so what the dashboards show of Redis is what a cluster would
    show. Returns the process and its URL."""
    maxmemory, policy = chart_redis_settings(which)
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--maxmemory", maxmemory, "--maxmemory-policy", policy,
                             "--dir", workdir],
                            stdout=open(os.path.join(workdir, f"redis-{which}.log"), "wb"), stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    atexit.register(lambda: proc.poll() is None and proc.terminate())
    wait_until(30, "the campaign's Redis answering PING", lambda: subprocess.run(
        ["redis-cli", "-u", url, "ping"], capture_output=True, text=True).stdout.strip() == "PONG")
    log(f"Redis ({which}) for the campaign on :{port} (maxmemory {maxmemory}, {policy}: the chart's values)")
    return proc, url


def machine(admin_url, redis_url):
    cpu_model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as f:
        mem_kb = int(f.readline().split()[1])
    settings = {}
    for name in ("shared_buffers", "max_connections", "work_mem", "effective_cache_size",
                 "synchronous_commit", "max_worker_processes", "jit"):
        settings[name] = psql(admin_url, f"SHOW {name}")
    redis_info = subprocess.run(["redis-cli", "-u", redis_url, "info", "server"], capture_output=True, text=True).stdout
    redis_version = re.search(r"redis_version:(\S+)", redis_info)
    redis_config = subprocess.run(["redis-cli", "-u", redis_url, "config", "get", "maxmemory*"],
                                  capture_output=True, text=True).stdout.split()
    redis_config = dict(zip(redis_config[::2], redis_config[1::2]))
    if GEN["name"] == "locust":
        generator = " ".join(subprocess.run(["locust", "--version"], capture_output=True, text=True).stdout.split()[:2])
    else:
        generator = "otus-load (this repository's `crates/loadgen`)"
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=8"],
                            capture_output=True, text=True).stdout.strip() or "?"
    return {"commit": commit, "cpu": cpu_model, "cores": os.cpu_count(), "memory_gib": mem_kb / 1024 / 1024,
            "kernel": platform.release(), "postgres": psql(admin_url, "SHOW server_version"),
            "postgres_settings": settings, "redis": redis_version.group(1) if redis_version else "?",
            "redis_maxmemory": redis_config.get("maxmemory", "?"),
            "redis_policy": redis_config.get("maxmemory-policy", "?"),
            "generator": generator, "python": platform.python_version()}


def write_report(args, configs, made, info, slo_ms, started, finished, quick):
    cores = info["cores"]
    lines = []
    w = lines.append
    title = "Load-test campaign (homework 7)" + (" - QUICK smoke run, not a measurement" if quick else "")
    w(f"# {title}\n")
    w(f"Generated by `{args.command}` on "
      f"{datetime.datetime.fromtimestamp(started, datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; the whole "
      f"campaign took {(finished - started) / 60:.1f} min. Every number below comes from a file in this "
      "folder: `*/steps.jsonl` (per step, client side), "
      + ("`*/locust_stats*.csv` and `*/locust.html` (Locust's own reports), " if GEN["name"] == "locust" else "")
      + "`*/resources.csv` (CPU and memory per process) and the charts.\n")
    w("## Machine\n")
    pg = ", ".join(f"{k} {v}" for k, v in info["postgres_settings"].items())
    w(f"- CPU: {info['cpu']}, **{cores} cores** shared by everything below; memory {info['memory_gib']:.1f} GiB; "
      f"Linux {info['kernel']}.")
    redis = f"Redis {info['redis']}"
    if "redis_maxmemory" in info:
        redis += (f" (maxmemory {int(info['redis_maxmemory']) / 2**20:.0f} MiB, {info['redis_policy']}: "
                  "the chart's settings)" if info["redis_maxmemory"].isdigit() else "")
    w(f"- PostgreSQL {info['postgres']} (the machine's server, default settings: {pg}); {redis}.")
    build = "release" if "/release/" in args.otus else "debug (a smoke run's build: not for figures)"
    w(f"- The system: `otus`, {build} build, checkout {info.get('commit', '?')}, as four processes (users, auth, catalog, edge), as in the chart, "
      "behind nginx configured as ingress-nginx (`.ci/ingress-nginx.conf`, 16k connections, 320 upstream "
      "keep-alive connections, access log off), `Host: arch.homework`, prefix `/otusapp`.")
    generator = info.get("generator") or info.get("locust", "?")
    if GEN["name"] == "locust":
        w(f"- The load generator: {generator} (Python {info['python']}), one process, `FastHttpUser`, on the "
          "same two cores: its CPU is measured and reported with every step, and where it, not the system, "
          "is the limit, the tables say so.")
    else:
        gen_build = "release" if "/release/" in getattr(args, "load_bin", "") else "debug"
        w(f"- The load generator: {generator}, {gen_build} build, one thread, one keep-alive connection per "
          "simulated user (as Locust's `FastHttpUser`), on the same two cores: its CPU is measured and reported "
          "with every step (a small fraction of Locust's per request: `docs/performance.md`), so the points "
          "below are the system's; where it, not the system, is the limit, the tables say so. Locust runs "
          "the same scenarios with `--generator locust`.")
    w("- Prometheus (`observability/local-stack.sh`) scraping the four processes' admin ports and the "
      f"PostgreSQL and Redis exporters every {args.scrape_seconds} s.\n")
    w("## Load profile\n")
    if getattr(args, "scenario", "campaign") == "original":
        w("A scenario, not static URLs: **the original solution's shopper** (`otus-load --scenario original`, "
          "`crates/loadgen/src/scenario.rs`, after the original's `locust-tasks/tasks.py` on Locust 1.0.3), "
          "every user alike: it takes 1-20 random words; for each, it searches for the word, then, if that "
          "answered products, searches once more for the word and a random word of a random product's name; "
          "1-6 s before every step (Locust 1.0.3 honours `min_wait`/`max_wait`); then new words. Where this "
          "service differs, the scenario does too: the original matched `name LIKE '%w1 w2%'` (a phrase) and "
          "returned every match, this service matches the words in any order and form and answers a page of "
          "20, from which the product is drawn. Words: the names of the catalog's first 5 000 products.\n")
    else:
        source = ("`loadtest/campaign_locust.py`" if GEN["name"] == "locust" else
                  "`crates/loadgen/src/scenario.rs`, the same as `loadtest/campaign_locust.py`")
        w(f"Scenarios, not static URLs ({source}), users in the ratio 9:1:\n")
        w("- **Shopper** (the homework's scenario): searches for a product by one word; while more than 10 "
          "products match, adds a word taken from the name of a random product of the answer and searches "
          "again; when nothing matches, goes on to the next product; 1-20 such cycles, then a new shopper. "
          "Think time 0.5-1.5 s between searches. Words: the names of the catalog's first 5 000 products.")
        w("- **Account holder** (the whole API): registers and logs in once (two argon2id hashes), then reads "
          "(3) and updates (1) its profile, searches (4) and opens a product (2), 1-3 s between actions.\n")
    w(f"Step load, the same for every configuration: **{args.steps.replace(',', ', ')} users**, "
      f"{args.step_seconds:.0f} s per step ({len(configs[0]['steps']) * args.step_seconds / 60:.1f} min per "
      "configuration); a step's users arrive within its first tenth (3-10 s), which its figures leave out. "
      "Catalog: the original's data shape (`otus seed-products --shape words --seed 1`: names of three "
      "words from a 454-word vocabulary). The auth service's per-address login limit is raised for the "
      "campaign (`LOGIN_MAX_ATTEMPTS_PER_ADDRESS`): every simulated user comes from one address.\n")
    w(f"Definitions: **working load** = the highest step with no failed request and p99 <= {slo_ms:.0f} ms "
      "(the latency SLO of `observability/prometheus/rules.yml`); **degradation point** = the first step with "
      f"p99 over {slo_ms:.0f} ms; **failure point** = the first step with more than {ERROR_PCT_FAILURE:g}% failed "
      f"requests, or whose throughput rose less than {100 * (RISE_FAILURE - 1):.0f}% while users rose.\n")
    w("## Summary\n")
    w("| configuration | working load | degradation point | failure point | at the top step: bottleneck |")
    w("|---|---|---|---|---|")
    for cfg in configs:
        wk, dg, fl, why = cfg["classified"]
        top = cfg["steps"][-1]
        w(f"| {cfg['title']} | {point(wk)} | {point(dg)} | {point(fl)}{': ' + why if fl else ''} | "
          f"{bottleneck(step_resources(cfg['resources'], top)[0], cores, top)} |")
    w("")
    w("![all configurations](compare.png)\n")
    w("## Conclusions\n")
    for text in conclusions(configs, slo_ms, cores):
        w(f"- {text}")
    w("")
    for cfg in configs:
        w(f"## {cfg['title']}\n")
        if GEN["name"] == "locust":
            w(f"Window: {fmt_time(cfg['start'])} - {fmt_time(cfg['end'])} UTC. Locust's reports: "
              f"[{cfg['id']}/locust.html]({cfg['id']}/locust.html), `{cfg['id']}/locust_stats.csv`, "
              f"`{cfg['id']}/locust_stats_history.csv`, `{cfg['id']}/locust_failures.csv`.\n")
        else:
            w(f"Window: {fmt_time(cfg['start'])} - {fmt_time(cfg['end'])} UTC. The generator's output, with "
              f"each step's failure reasons: `{cfg['id']}/generator.log`.\n")
        groups = sorted({g for _, g, _, _ in cfg["resources"]} - {MACHINE})
        w(f"Per step: {GEN['label']}'s figures (client side), the edge's own p99 (server side, the dashboards' "
          "metric), and the CPU (cores) the whole machine and each process used.\n")
        w("| users | req/s | p50 ms | p95 ms | p99 ms | max ms | failed | edge p99 ms | machine CPU | " +
          " | ".join(f"{g} CPU" for g in groups) + " |")
        w("|" + "---|" * (9 + len(groups)))
        for s in cfg["steps"]:
            cpu, _ = step_resources(cfg["resources"], s)
            w(f"| {s['users']} | {s['rps']:.1f} | {num(s['p50_ms'])} | {num(s['p95_ms'])} | {num(s['p99_ms'])} | "
              f"{num(s['max_ms'])} | {s['error_pct']:.2f}% | {num(s.get('server_p99_ms'))} | {cpu.get(MACHINE, 0):.2f} | "
              + " | ".join(f"{cpu.get(g, 0):.2f}" for g in groups) + " |")
        w("")
        failing = [(s["users"], name, v) for s in cfg["steps"] for name, v in s["by_name"].items() if v["failures"]]
        if failing:
            where = "locust_failures.csv" if GEN["name"] == "locust" else "generator.log"
            w(f"Failed requests by step and request (the failure messages are in `{cfg['id']}/{where}`): "
              + "; ".join(f"{u} users: {name} {v['failures']} of {v['requests']}" for u, name, v in failing[:12])
              + (" ..." if len(failing) > 12 else "") + ".\n")
        else:
            w("No request failed at any step.\n")
        _, rss = step_resources(cfg["resources"], cfg["steps"][-1])
        w("Peak memory (PSS) at the top step: " + ", ".join(f"{g} {m / 2**20:.0f} MiB" for g, m in sorted(rss.items())
                                                          if g != MACHINE) + ".\n")
        for chart in made:
            if chart["file"].startswith(cfg["id"] + "/"):
                w(f"![{chart['file']}]({chart['file']})\n")
    w("## The original solution's published results (facts; another machine)\n")
    w("From the original solution's homework-7 report, Locust through its ingress, 1000 users arriving "
      "one per 5 s over 10 minutes. The machines differ, so only the shape compares, not the numbers:\n")
    for what, result in ORIGINAL:
        w(f"- {what}: {result}.")
    w("")
    w("## Files\n")
    w("- `compare.png`: every configuration's throughput, p99 and failures per step.")
    w("- `<configuration>/rps.png`, `latency.png`, `errors.png`, `cpu.png`, `memory.png` (and `cache.png` with "
      f"the cache on): the Grafana panels' own PromQL over the run, from Prometheus, with {GEN['label']}'s per-step "
      "figures and /proc samples beside them.")
    w("- `<configuration>/" + "`, `".join(GEN["files"]) + ("`, `locust.log`." if GEN["name"] == "locust" else "`."))
    w("- `charts.json`: every chart with its series and point counts (checked: no chart without data).")
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def point(s):
    if not s:
        return "none within the steps"
    return f"{s['users']} users, {s['rps']:.0f} req/s, p99 {num(s['p99_ms'])} ms, {s['error_pct']:.2f}% failed"


def num(v):
    return "-" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:.1f}"


def fmt_time(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M:%S")


def conclusions(configs, slo_ms, cores):
    out = []
    for cfg in configs:
        wk, dg, fl, why = cfg["classified"]
        peak = max(cfg["steps"], key=lambda s: s["rps"])
        cpu, _ = step_resources(cfg["resources"], peak)
        text = (f"**{cfg['title']}**: the most it served was {peak['rps']:.0f} req/s "
                f"(at {peak['users']} users, p99 {num(peak['p99_ms'])} ms, {peak['error_pct']:.2f}% failed); "
                f"working load {('up to ' + str(wk['users']) + ' users / ' + format(wk['rps'], '.0f') + ' req/s') if wk else 'not reached at the first step'}. ")
        text += (f"It degrades at {dg['users']} users (p99 {num(dg['p99_ms'])} ms) " if dg else
                 f"Its p99 stays within {slo_ms:.0f} ms at every step; ")
        text += (f"and fails at {fl['users']} users ({why}). " if fl else "and no step fails. ")
        text += f"At that peak: {bottleneck(cpu, cores, peak)}. "
        per = cpu_per_request(cpu, peak["rps"])
        text += ("CPU per request: " + ", ".join(f"{g} {ms:.2f} ms" for g, ms in per) + "." if per else "")
        out.append(text)
    by_size = {}
    for cfg in configs:
        by_size.setdefault(cfg["size"], {})[cfg["cache"]] = cfg
    for size, pair in sorted(by_size.items()):
        if True in pair and False in pair:
            on, off = pair[True], pair[False]
            out.append(cache_verdict(size, on, off))
            out.append(f"Cache on vs off at {size_label(size)} products: working load {users_of(on, 0)} vs "
                       f"{users_of(off, 0)} users, degradation {users_of(on, 1)} vs {users_of(off, 1)}, failure "
                       f"{users_of(on, 2)} vs {users_of(off, 2)}; catalog CPU at the top step "
                       f"{cpu_of(on, 'otus catalog'):.2f} vs {cpu_of(off, 'otus catalog'):.2f} cores, PostgreSQL "
                       f"{cpu_of(on, 'postgresql'):.2f} vs {cpu_of(off, 'postgresql'):.2f}, Redis "
                       f"{cpu_of(on, 'redis'):.2f} vs {cpu_of(off, 'redis'):.2f}.")
    by_cache = {}
    for cfg in configs:
        by_cache.setdefault(cfg["cache"], []).append(cfg)
    for cache, group in sorted(by_cache.items()):
        if len(group) > 1:
            group = sorted(group, key=lambda c: c["size"])
            rows = []
            for i, s in enumerate(group[0]["steps"]):
                if all(i < len(c["steps"]) for c in group):
                    rows.append((s["users"], [c["steps"][i] for c in group]))
            mid = rows[len(rows) // 2] if rows else None
            if mid:
                out.append(f"Volume test (cache {'on' if cache else 'off'}, the same load): at {mid[0]} users "
                           + "; ".join(f"{size_label(c['size'])} products: {s['rps']:.0f} req/s, p99 {num(s['p99_ms'])} ms, "
                                       f"{s['error_pct']:.2f}% failed, catalog CPU {step_resources(c['resources'], s)[0].get('otus catalog', 0):.2f}"
                                       for c, s in zip(group, mid[1]))
                           + ".")
    return out


def cpu_per_request(cpu, rps):
    """Milliseconds of CPU per request of the system's groups at a step."""
    if rps <= 0:
        return []
    otus = sum(c for g, c in cpu.items() if g.startswith("otus "))
    rows = [("otus (4 processes)", otus)] + [(g, cpu.get(g, 0.0)) for g in ("postgresql", "redis", "nginx", GEN["group"])]
    return [(g, 1000 * c / rps) for g, c in rows]


def peak_step(cfg):
    return max(cfg["steps"], key=lambda s: s["rps"])


def cache_verdict(size, on, off):
    """What the cache changes at one catalog size, in words, from the figures."""
    p_on, p_off = peak_step(on), peak_step(off)
    f_on, f_off = on["classified"][2], off["classified"][2]
    d_on, d_off = on["classified"][1], off["classified"][1]

    def users(s):
        return s["users"] if s else float("inf")
    if users(f_on) > users(f_off) or users(d_on) > users(d_off):
        moved = "moves the degradation/failure points to more users"
    elif users(f_on) < users(f_off) or users(d_on) < users(d_off):
        moved = "moves the degradation/failure points to FEWER users"
    else:
        moved = "does not move the degradation or failure point"
    cpu_on = dict(cpu_per_request(step_resources(on["resources"], p_on)[0], p_on["rps"]))
    cpu_off = dict(cpu_per_request(step_resources(off["resources"], p_off)[0], p_off["rps"]))
    system_on = sum(cpu_on.get(g, 0) for g in ("otus (4 processes)", "postgresql", "redis"))
    system_off = sum(cpu_off.get(g, 0) for g in ("otus (4 processes)", "postgresql", "redis"))
    if system_on < system_off * 0.9:
        cpu_words = (f"With the cache the system spends {system_on:.2f} instead of {system_off:.2f} ms of CPU per "
                     "request (otus, PostgreSQL and Redis together): hits skip the index and the page's rows.")
    elif system_on > system_off * 1.1:
        cpu_words = (f"With the cache the system spends MORE CPU per request ({system_on:.2f} vs {system_off:.2f} ms, "
                     "otus, PostgreSQL and Redis together): without it a search is answered from the in-memory "
                     "index, so a Redis round trip per search (and a write per miss) costs more than a hit saves.")
    else:
        cpu_words = (f"The system's CPU per request is about the same ({system_on:.2f} vs {system_off:.2f} ms, "
                     "otus, PostgreSQL and Redis together): what a hit saves (the index lookup, the page's rows) "
                     "the Redis round trips cost.")
    # Latencies compared at one load (the step where the cache-off system served
    # most): the two peaks are at different user counts, and a p99 at 1500 users
    # next to one at 1000 would read as if the cache made latency worse.
    same = next((s for s in on["steps"] if s["users"] == p_off["users"]), None)
    at_same = (f"; at the same load, {p_off['users']} users: p99 {num(same['p99_ms'])} vs "
               f"{num(p_off['p99_ms'])} ms, {same['rps']:.0f} vs {p_off['rps']:.0f} req/s" if same else "")
    return (f"**What the cache changes at {size_label(size)} products**: it {moved} "
            f"(the most served: {p_on['rps']:.0f} req/s at {p_on['users']} users with the cache, "
            f"{p_off['rps']:.0f} req/s at {p_off['users']} users without{at_same}). "
            f"CPU per request with vs without, each at its peak: otus "
            f"{cpu_on.get('otus (4 processes)', 0):.2f} vs {cpu_off.get('otus (4 processes)', 0):.2f} ms, PostgreSQL "
            f"{cpu_on.get('postgresql', 0):.2f} vs {cpu_off.get('postgresql', 0):.2f} ms, Redis "
            f"{cpu_on.get('redis', 0):.2f} vs {cpu_off.get('redis', 0):.2f} ms. " + cpu_words)


def users_of(cfg, which):
    s = cfg["classified"][which]
    return str(s["users"]) if s else "none"


def cpu_of(cfg, group):
    return step_resources(cfg["resources"], cfg["steps"][-1])[0].get(group, 0.0)


def check_outputs(args, configs, made):
    """Every chart exists, is non-empty and has data in every subplot."""
    problems = []
    if os.path.getsize(os.path.join(args.out, "README.md")) < 500:
        problems.append("README.md is (nearly) empty")
    for chart in made:
        path = os.path.join(args.out, chart["file"])
        if not os.path.exists(path) or os.path.getsize(path) < 5000:
            problems.append(f"{chart['file']}: missing or empty")
        for sub in chart["subplots"]:
            if sub["series"] == 0 or sub["points"] < 2:
                problems.append(f"{chart['file']}: '{sub['title']}' has no data ({sub['series']} series, {sub['points']} points)")
    for cfg in configs:
        for name in GEN["files"]:
            path = os.path.join(args.out, cfg["id"], name)
            if not os.path.exists(path) or os.path.getsize(path) == 0:
                problems.append(f"{cfg['id']}/{name}: missing or empty")
        if sum(s["requests"] for s in cfg["steps"]) == 0:
            problems.append(f"{cfg['id']}: no request completed")
    return problems


def run_stress_snapshots(args, workdir, state, prom):
    """Homework 4: the chart's stress test (`loadtest/locustfile.py`, every API
    method at a steady rate) against the system, then every dashboard row as
    a PNG under observability/snapshots/ (what Grafana would show)."""
    out_dir = os.path.join(ROOT, "observability", "snapshots") if not args.out_given else args.out
    os.makedirs(out_dir, exist_ok=True)
    for old in glob.glob(os.path.join(out_dir, "*.png")):
        os.remove(old)
    db_name, db_url = prepare_catalog(args.otus, args.pg_admin_url, 10_000, False)
    cfg = {"size": 10_000, "cache": True, "db_url": db_url, "id": "stress", "title": "stress test"}
    users, rate = 10, args.stress_rate / 10
    system = start_system(args, cfg, workdir, state)
    try:
        log(f"stress test: {users} users at {rate:g} req/s each ({args.stress_rate:g} req/s) for "
            f"{args.stress_snapshots:g} min")
        env = dict(os.environ, PATH_PREFIX="/otusapp", HOST_HEADER="arch.homework", RATE_PER_USER=str(rate))
        start = time.time()
        subprocess.run(["locust", "-f", os.path.join(HERE, "locustfile.py"), "--headless", "-u", str(users),
                        "-r", "2", "-t", f"{int(args.stress_snapshots * 60)}s", "--only-summary",
                        "--host", f"http://127.0.0.1:{PORTS['nginx']}", "--loglevel", "WARNING"],
                       env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "stress.log"), "wb"))
        end = time.time()
    finally:
        stop_system(args, system, state)
    wait_until(60, "Prometheus holding samples scraped after the stress test", lambda: prom.newest_sample() > end)
    caption = (f"the stress test (loadtest/locustfile.py, {args.stress_rate:g} req/s over every API method), "
               f"{datetime.datetime.fromtimestamp(start, datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, 10k products")
    made = []
    for path in sorted(glob.glob(os.path.join(ROOT, "observability", "grafana", "*.json"))):
        made += render_dashboard(prom, path, start, end, args.scrape_seconds, f"{max(4 * args.scrape_seconds, 8)}s",
                                 out_dir, caption, database=db_name)
    lines = ["# Dashboard snapshots under the stress test (homework 4)", "",
             "Made by `" + " ".join(["python3", "loadtest/campaign.py"] + sys.argv[1:]) + "`: the system as four",
             "processes on PostgreSQL + Redis behind nginx (the ingress stand-in), the chart's stress test",
             f"(`loadtest/locustfile.py`: every API method, {args.stress_rate:g} req/s) for "
             f"{args.stress_snapshots:g} min, then every row of",
             "the Grafana dashboards drawn from Prometheus with the panels' own PromQL (Grafana cannot run",
             "on the project's machine), each with its panel's unit (latency and CPU on a log scale, so",
             "a quiet process or route is not flattened at zero by a busy one). Redis runs with the",
             "chart's maxmemory and eviction policy; the PostgreSQL panels show the system's database",
             "only (the dashboard's `database` variable). Panels over ingress-nginx and cAdvisor metrics",
             "have no data outside Kubernetes and say so.", ""]
    for chart in made:
        name = os.path.basename(chart["file"])
        lines += [f"![{name}]({name})", ""]
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    problems = [f"{os.path.basename(c['file'])}: '{sub['title']}' has no data" for c in made
                for sub in c["subplots"] if not sub["cluster_only"] and sub["points"] < 2]
    return made, problems


STATE = "campaign.json"


def save_state(args, configs, made, info, started, finished):
    """Everything the report is written from, so `--report-only` can write it
    again (new wording or definitions) without running the campaign again."""
    keep = ("id", "title", "size", "cache", "start", "end", "steps", "resources")
    state = {"command": args.command, "steps": args.steps, "step_seconds": args.step_seconds,
             "scrape_seconds": args.scrape_seconds, "otus": args.otus, "quick": args.quick,
             "generator": GEN["name"], "load_bin": getattr(args, "load_bin", ""), "scenario": args.scenario,
             "started": started, "finished": finished, "machine": info, "charts": made,
             "configurations": [{k: c[k] for k in keep} for c in configs]}
    with open(os.path.join(args.out, STATE), "w", encoding="utf-8") as f:
        json.dump(state, f, ensure_ascii=False, indent=0)


def report_only(args):
    path = os.path.join(args.out, STATE)
    if not os.path.exists(path):
        die(f"{path} does not exist: run the campaign first")
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    for key in ("command", "steps", "step_seconds", "scrape_seconds", "otus", "quick"):
        setattr(args, key, state[key])
    # Runs from before otus-load was the default were Locust's.
    use_generator(state.get("generator", "locust"))
    args.load_bin = state.get("load_bin", "")
    args.scenario = state.get("scenario", "campaign")
    slo = slo_seconds() * 1000
    configs = state["configurations"]
    for cfg in configs:
        cfg["resources"] = [tuple(r) for r in cfg["resources"]]
        cfg["classified"] = classify(cfg["steps"], slo)
    write_report(args, configs, state["charts"], state["machine"], slo, state["started"], state["finished"],
                 state["quick"])
    problems = check_outputs(args, configs, state["charts"])
    for p in problems:
        print(f"CHECK FAILED: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    log(f"report written again from {path}: {args.out}/README.md")


# ---------------------------------------------------------------- main

def main():
    # SIGTERM as Ctrl-C: SystemExit unwinds every `finally`, so the processes the
    # campaign started (the system, nginx, Prometheus, Redis, the generator) stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke run: 10k products, cache off and on, 3 short steps, report in a temp dir")
    parser.add_argument("--sizes", help="catalog sizes (default 10000,1000000; quick 10000)")
    parser.add_argument("--cache", help="off,on (default both)")
    parser.add_argument("--steps", help=f"users per step (default {FULL_STEPS_BY_GENERATOR['otus-load']}, with "
                                        f"locust {FULL_STEPS}; quick {QUICK_STEPS})")
    parser.add_argument("--step-seconds", type=float, help="seconds per step (default 60; quick 8)")
    parser.add_argument("--out", help="report folder (default loadtest/report-otus-load, with --generator locust "
                                      "loadtest/report; quick a temp dir)")
    parser.add_argument("--otus", help="the otus binary (default: cargo build --release)")
    parser.add_argument("--generator", choices=sorted(GENERATORS), default="otus-load",
                        help="the load generator: otus-load (default; Rust, cheap, so the points found are the "
                             "system's) or locust (the homework's tool, with its HTML/CSV reports)")
    parser.add_argument("--scenario", choices=("campaign", "original"), default="campaign",
                        help="campaign (default: shoppers and account holders, 9:1) or original (the original "
                             "solution's shopper: 1-6 s waits, one refinement per word; otus-load only; report "
                             "in loadtest/report-original by default)")
    parser.add_argument("--load-bin", help="the otus-load binary (default: beside --otus, else built with the "
                                           "release build)")
    parser.add_argument("--pg-admin-url", default=os.environ.get("PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", help="a Redis to use as it is configured (default: the campaign starts its "
                                            "own on :%d with the chart's maxmemory and eviction policy)" % PORTS["redis"])
    parser.add_argument("--session-redis-url", help="auth's Redis for sessions (default: with --redis-url, that one; "
                                                    "else the campaign starts its own on :%d as the chart's "
                                                    "sessions Redis)" % PORTS["redis_sessions"])
    parser.add_argument("--stress-snapshots", type=float, metavar="MINUTES",
                        help="instead of the campaign: run the homework-4 stress test for MINUTES and draw every "
                             "dashboard row to observability/snapshots/ (or --out)")
    parser.add_argument("--stress-rate", type=float, default=10.0, help="the stress test's req/s (5-20; default 10)")
    parser.add_argument("--report-only", action="store_true",
                        help=f"write README.md again from --out's {STATE} (the last run's figures), run nothing")
    parser.add_argument("--drop-databases", action="store_true",
                        help="drop the campaign's catalog databases at the start and the end (default: reuse them)")
    args = parser.parse_args()
    args.sizes = [int(s.replace("_", "")) for s in (args.sizes or ("10000" if args.quick else "10000,1000000")).split(",")]
    caches = [c.strip() for c in (args.cache or "off,on").split(",")]
    if any(c not in ("on", "off") for c in caches):
        parser.error("--cache takes on and/or off")
    use_generator(args.generator)
    if args.scenario == "original":
        if args.generator != "otus-load":
            parser.error("--scenario original runs with otus-load only")
        GEN["report"] = "report-original"
    args.steps = args.steps or (QUICK_STEPS if args.quick else
                                ORIGINAL_STEPS if args.scenario == "original" else
                                FULL_STEPS_BY_GENERATOR[args.generator])
    if not re.fullmatch(r"\d+(,\d+)*", args.steps) or any(int(u) <= 0 for u in args.steps.split(",")):
        parser.error("--steps takes positive user counts separated by commas")
    args.step_seconds = args.step_seconds or (8.0 if args.quick else 60.0)
    if args.step_seconds < 5:
        parser.error("--step-seconds must be at least 5")
    args.scrape_seconds = 1 if args.step_seconds < 30 else 5
    if args.stress_snapshots:
        args.scrape_seconds = 5
    args.command = " ".join(["python3", "loadtest/campaign.py"] + sys.argv[1:])
    if args.report_only:
        args.out = os.path.abspath(args.out or os.path.join(HERE, GEN["report"]))
        return report_only(args)
    args.out_given = args.out is not None
    args.out = os.path.abspath(args.out or (tempfile.mkdtemp(prefix="otus-campaign-") if args.quick
                                            else os.path.join(HERE, GEN["report"])))
    for tool in ("prometheus", "prometheus-postgres-exporter", "prometheus-redis-exporter", "nginx",
                 "psql", "redis-cli", "redis-server") + (("locust",) if args.generator == "locust" or args.stress_snapshots else ()):
        if not shutil.which(tool):
            die(f"{tool} is not installed (see the docstring: python3 loadtest/campaign.py --help)")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        die("matplotlib is not installed: pip install matplotlib")
    for name, port in PORTS.items():
        try:
            import socket
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                die(f"port {port} ({name}) is in use: stop whatever listens there (ss -ltnp)")
        except OSError:
            pass
    if not args.otus:
        log("building the release binaries (cargo build --release --bin otus --bin otus-load)")
        target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/otus-rs/release-target"))
        subprocess.run(["cargo", "build", "--release", "--bin", "otus", "--bin", "otus-load"], cwd=ROOT, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=target))
        args.otus = os.path.join(target, "release", "otus")
    args.otus = os.path.abspath(args.otus)
    if args.generator == "otus-load":
        args.load_bin = os.path.abspath(args.load_bin or os.path.join(os.path.dirname(args.otus), "otus-load"))
        if not os.access(args.load_bin, os.X_OK):
            die(f"{args.load_bin}: no otus-load binary there (cargo build --release --bin otus-load, "
                "then --load-bin PATH; or --generator locust)")
    slo = slo_seconds() * 1000
    panels = dashboard_panels()
    started = time.time()
    os.makedirs(args.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="otus-campaign-work-")
    log(f"report: {args.out}; logs: {workdir}")
    redis_procs = []
    if not args.redis_url:
        # As the chart: the cache's Redis evicts, the sessions' never does.
        proc, args.redis_url = start_redis(workdir, "cache", PORTS["redis"])
        redis_procs.append(proc)
        if not args.session_redis_url:
            proc, args.session_redis_url = start_redis(workdir, "sessions", PORTS["redis_sessions"])
            redis_procs.append(proc)
    elif not args.session_redis_url:
        args.session_redis_url = args.redis_url

    info = machine(args.pg_admin_url, args.redis_url)
    stack_dir = os.path.join(workdir, "stack")
    targets = " ".join(f"127.0.0.1:{PORTS[p + '_admin']}" for p in ("edge", "users", "auth", "catalog"))
    pg_dsn = args.pg_admin_url + ("&" if "?" in args.pg_admin_url else "?") + "sslmode=disable"
    subprocess.run(["bash", os.path.join(ROOT, "observability", "local-stack.sh")], check=True, env=dict(
        os.environ, STACK_DIR=stack_dir, DETACH="1", SCRAPE_INTERVAL=f"{args.scrape_seconds}s", TARGETS=targets,
        PROM_PORT=str(PORTS["prometheus"]), PG_DSN=pg_dsn, REDIS_ADDR=args.redis_url.rsplit("/", 1)[0],
        PG_EXPORTER_ADDR=f"127.0.0.1:{PORTS['pg_exporter']}",
        REDIS_EXPORTER_ADDR=f"127.0.0.1:{PORTS['redis_exporter']}"), stdout=subprocess.DEVNULL)
    stack_pids = [int(p) for p in open(os.path.join(stack_dir, "pids")).read().split()]
    nginx_conf = nginx_config(workdir)
    nginx_prefix = os.path.dirname(nginx_conf)
    subprocess.run(["nginx", "-p", nginx_prefix, "-c", nginx_conf], check=True)
    prom = Prometheus(f"http://127.0.0.1:{PORTS['prometheus']}")
    state = {"system": {}, "generator": None}
    sampler = Sampler(group_resolver(lambda: state["system"], lambda: state["generator"]),
                      1.0 if args.quick else 2.0, os.path.join(workdir, "resources.csv"))
    sampler.start()
    configs = []
    made = []
    try:
        if args.stress_snapshots:
            made, problems = run_stress_snapshots(args, workdir, state, prom)
            for p in problems:
                print(f"CHECK FAILED: {p}", file=sys.stderr)
            if problems:
                sys.exit(1)
            log(f"{len(made)} dashboard rows drawn")
            return
        for size in args.sizes:
            db_name, db_url = prepare_catalog(args.otus, args.pg_admin_url, size, args.drop_databases)
            words = os.path.join(workdir, f"words-{size}.txt")
            search_words(db_url, words)
            for cache in caches:
                cfg = {"size": size, "cache": cache == "on", "db": db_name, "db_url": db_url, "words": words,
                       "id": f"{size_label(size)}-cache-{cache}",
                       "title": f"{size_label(size)} products, cache {cache}"}
                log(f"=== {cfg['title']}: {len(args.steps.split(','))} steps x {args.step_seconds:.0f} s")
                run_configuration(args, cfg, workdir, state)
                configs.append(cfg)
            if args.drop_databases:
                psql(args.pg_admin_url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        last = max(c["end"] for c in configs)
        wait_until(60, "Prometheus holding samples scraped after the last step", lambda: prom.newest_sample() > last)
        sampler.stop()
        resources = [(float(t), g, float(c), int(m)) for t, g, c, m in
                     (line.strip().split(",") for line in open(sampler.path).readlines()[1:])]
        for cfg in configs:
            cfg["steps"] = read_steps(os.path.join(args.out, cfg["id"], "steps.jsonl"))
            add_server_figures(prom, cfg["steps"])
            cfg["classified"] = classify(cfg["steps"], slo)
            cfg["resources"] = [r for r in resources if cfg["start"] <= r[0] <= cfg["end"]]
            with open(os.path.join(args.out, cfg["id"], "resources.csv"), "w", encoding="utf-8") as f:
                f.write("time,process,cpu_cores,rss_bytes\n")
                f.writelines(f"{t:.3f},{g},{c:.4f},{m}\n" for t, g, c, m in cfg["resources"])
            log(f"charts for {cfg['title']}")
            made += charts_for(prom, cfg, panels, args, cfg["resources"], slo)
        made += comparison_charts(configs, args, slo)
        with open(os.path.join(args.out, "charts.json"), "w", encoding="utf-8") as f:
            json.dump(made, f, indent=1)
        finished = time.time()
        save_state(args, configs, made, info, started, finished)
        write_report(args, configs, made, info, slo, started, finished, args.quick)
    finally:
        if sampler.is_alive():
            sampler.stop_event.set()
        subprocess.run(["nginx", "-p", nginx_prefix, "-c", nginx_conf, "-s", "stop"], capture_output=True)
        for proc in redis_procs:
            proc.terminate()
            proc.wait(timeout=30)
        for pid in stack_pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
    problems = check_outputs(args, configs, made)
    for p in problems:
        print(f"CHECK FAILED: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    log(f"report written: {args.out}/README.md ({len(made)} charts, {(time.time() - started):.0f} s in all)")
    for cfg in configs:
        wk, dg, fl, why = cfg["classified"]
        log(f"{cfg['title']}: working {point(wk)}; degradation {point(dg)}; failure {point(fl)}")


if __name__ == "__main__":
    main()
