"""The system under test: its processes (edge, users, auth, catalog), nginx as
ingress-nginx, Redis, the catalog data, the machine."""
import atexit
import os
import platform
import re
import signal
import subprocess
import time

from waiting import wait_until
from .common import GEN, PORTS, ROOT, die, http_get, log, metric_value, psql, size_label


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
