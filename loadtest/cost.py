#!/usr/bin/env python3
"""CPU per request of product search, side by side with a bare axum server.

One `otus all-in-one` (release build) on a PostgreSQL catalog is driven by oha
at a fixed rate; the CPU time that every process of the request's path spent
(otus; the PostgreSQL backends of that database; redis-server when the cache
is on) is read from /proc before and after, and divided by the requests
answered 200. The same is done for the bare axum server
(`crates/edge/examples/bare_axum.rs`, `GET /health/`): the floor of an HTTP
request with the same axum, hyper and tokio. oha's own CPU per request and how
busy the whole machine was are printed too, so a figure that measures the
generator or a saturated machine shows as such.

    python3 loadtest/cost.py --db postgres://postgres@127.0.0.1:5432/otus_cost_1m \
        --otus target/release/otus --bare target/release/examples/bare_axum \
        [--baseline /path/to/previous/otus] [--closed]

Paths (--paths, default both):
  off  cache off: the catalog answers every search (in-memory index and,
       depending on the build, the page's rows from PostgreSQL);
  on   cache on, in Redis: after a warm-up every search of the set is a hit.

With the cache-off pass of each build (not --no-floors), two rows show
the path without the work: the edge's own `GET /health/` (HTTP only), and
`GET /ready` (the edge asks three gRPC health services: three gRPC calls that
do nothing). Their difference divided by three is one gRPC hop on loopback.

Each build may have a database of its own (`--compare LABEL=BINARY@URL`,
`--baseline-db`): a build applies its migrations at start, and an older
build refuses a schema that a newer one migrated. Make the copy a template
copy of the seeded one (`CREATE DATABASE b TEMPLATE a`), so both hold the
same catalog.

--pods LABEL=BINARY[@URL] measures a build as Kubernetes runs it: each
service its own process (users, auth, catalog, edge; gRPC over loopback TCP
between them), each with one tokio worker (TOKIO_WORKER_THREADS=1: under the
chart's 1-CPU limit tokio sizes its pool from the cgroup's quota). Its "otus"
column is the CPU of all four processes together.

--sweep RATES measures, instead of the fixed-rate table, CPU per request at
each offered rate (e.g. 500,1000,2000,4000,max; max is a closed loop, oha -c
--connections): bare axum, then for each build the edge's `/health/` and a
search on each of --paths, with the context switches of otus's threads per
request. At a low rate the runtime's workers sleep between requests, and
waking them is part of every request's cost; under load it is not.

--closed adds the closed-loop comparison: oha -c 50 for --duration over
20 000 distinct searches, cache off, each build in turn, ROUNDS times.

The database is created and seeded (`otus seed-products`, catalog shape,
seed 1) when it holds fewer products than --products. The searches are 1-2
consecutive words of random products' names (fixed random seed), as the
homework's shopper types them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import NamedTuple

from waiting import wait_until


class Build(NamedTuple):
    """One `otus` build measured: its label in the tables, the binary, its
    catalog database, and whether it runs as Kubernetes runs it (one process
    per service) or as all-in-one."""
    label: str
    binary: str
    db: str
    pods: bool

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def psql(url: str, sql: str) -> str:
    out = subprocess.run(["psql", url, "-Atqc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def proc_cpu(pid: int) -> float:
    """User+system CPU seconds of a process (all its threads, live and ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def context_switches(pid: int) -> dict[int, int]:
    """Voluntary and involuntary context switches of each live thread of a
    process, by thread id."""
    out: dict[int, int] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return out
    for t in tasks:
        try:
            out[int(t.name)] = sum(int(line.split(":")[1]) for line in (t / "status").read_text().splitlines()
                                   if "ctxt_switches:" in line)
        except (FileNotFoundError, ValueError):
            continue
    return out


def switches_between(before: dict[int, int], after: dict[int, int]) -> int:
    """Context switches between two snapshots: each thread's growth (a thread
    started since counts from zero; one that ended since is lost, as tokio's
    blocking-pool threads end after 10 s idle)."""
    return sum(n - before.get(tid, 0) for tid, n in after.items())


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime



def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def ensure_catalog(db: str, products: int, otus: str) -> int:
    base, _, name = db.rpartition("/")
    name = name.split("?")[0]
    if psql(f"{base}/postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == "0":
        log(f"creating database {name}")
        psql(f"{base}/postgres", f'CREATE DATABASE "{name}"')
    have = 0
    try:
        have = int(psql(db, "SELECT count(*) FROM products"))
    except subprocess.CalledProcessError:
        pass
    if have < products:
        log(f"seeding {products} products into {name} (otus seed-products; a few minutes for 1M)")
        env = dict(os.environ, DATABASE_URL=db, RUST_LOG="info")
        subprocess.run([otus, "seed-products", "--count", str(products), "--seed", "1", "--mode", "replace"],
                       env=env, check=True)
        have = int(psql(db, "SELECT count(*) FROM products"))
    return have


def searches(db: str, n: int) -> list[str]:
    """n distinct searches: 1-2 consecutive words of random products' names
    (up to 4 once the vocabulary runs out of distinct shorter ones)."""
    rnd = random.Random(23)
    top = int(psql(db, "SELECT max(id) FROM products"))
    out: list[str] = []
    seen: set[str] = set()
    stale, longest = 0, 2
    while len(out) < n:
        if stale and longest < 4:
            longest, stale = longest + 1, 0
        if stale > 3:
            sys.exit(f"only {len(out)} distinct searches found; ask for fewer")
        found = len(out)
        ids = ",".join(str(rnd.randint(1, top)) for _ in range(min(5000, 2 * (n - len(out)) + 10)))
        for name in psql(db, f"SELECT name FROM products WHERE id IN ({ids}) ORDER BY id").splitlines():
            # Model codes ("Про-505") only once plain words run out.
            words = [w for w in name.split() if longest > 2 or w.isalpha()]
            if not words:
                continue
            k = min(len(words), 1 if rnd.random() < 0.5 else rnd.randint(2, longest))
            i = rnd.randrange(len(words) - k + 1)
            s = " ".join(words[i : i + k])
            if s not in seen:
                seen.add(s)
                out.append(s)
                if len(out) == n:
                    break
        stale = stale + 1 if len(out) - found < 10 else 0
    return out


class Server:
    """One `otus all-in-one` (or the bare server) with its log."""

    def __init__(self, label: str, argv: list[str], env: dict, work: Path):
        self.label = label
        self.log = work / f"{label}.log"
        self.proc = subprocess.Popen(argv, env=env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_otus(label: str, binary: str, db: str, port: int, cache: bool, redis: str, work: Path) -> Server:
    env = dict(
        otus_env(label, db, cache, redis),
        HTTP_ADDR=f"127.0.0.1:{port}",
        ADMIN_ADDR=f"127.0.0.1:{port + 1}",
        USERS_GRPC_ADDR="127.0.0.1:0",
        AUTH_GRPC_ADDR="127.0.0.1:0",
        CATALOG_GRPC_ADDR="127.0.0.1:0",
    )
    s = Server(label, [binary, "all-in-one"], env, work)
    wait_until(120, f"{label}: /ready", lambda: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200, s.proc, s.log)
    wait_built(label, s, port + 1)
    return s


class Group:
    """A build's processes: one `otus all-in-one`, or one process per service."""

    def __init__(self, servers: list[Server]):
        self.servers = servers

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    def stop(self) -> None:
        # The edge first, then what it calls.
        for s in reversed(self.servers):
            s.stop()


def otus_env(label: str, db: str, cache: bool, redis: str) -> dict:
    env = dict(
        os.environ,
        DATABASE_URL=db,
        CACHE_ENABLED="true" if cache else "false",
        REDIS_URL=redis,
        REDIS_KEY_PREFIX=f"otus-cost:{label}:",
        # As in Kubernetes: JSON logs, the service's default filter.
        LOG_FORMAT="json",
    )
    env.pop("RUST_LOG", None)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    if not cache:
        env.pop("REDIS_URL")
    return env


def wait_built(label: str, s: Server, admin_port: int) -> None:
    def built() -> bool:
        _, body = http_get(f"http://127.0.0.1:{admin_port}/metrics")
        return any(line.startswith('catalog_index_builds_total{outcome="ok"}') for line in body.decode().splitlines())

    wait_until(900, f"{label}: search index built", built, s.proc, s.log)


def start_build(label: str, binary: str, db: str, port: int, cache: bool, redis: str, work: Path,
                pods: bool) -> Group:
    """One build, listening for REST on `port` (admin and gRPC ports above it)."""
    if not pods:
        return Group([start_otus(label, binary, db, port, cache, redis, work)])
    common = otus_env(label, db, cache, redis)
    common["TOKIO_WORKER_THREADS"] = "1"
    common["IDENTITY_TOKEN_SECRET"] = os.urandom(32).hex()
    grpc = {"users": port + 2, "auth": port + 4, "catalog": port + 6}
    urls = {f"{k.upper()}_GRPC_URL": f"http://127.0.0.1:{v}" for k, v in grpc.items()}
    started: list[Server] = []
    group = Group(started)
    try:
        for name in ("users", "auth", "catalog"):
            env = dict(common, GRPC_ADDR=f"127.0.0.1:{grpc[name]}", ADMIN_ADDR=f"127.0.0.1:{grpc[name] + 1}",
                       USERS_GRPC_URL=urls["USERS_GRPC_URL"])
            if name != "catalog":
                # Only the catalog gets Redis (its search cache); sessions
                # stay in the database, which a search never reads.
                env.pop("REDIS_URL", None)
            s = Server(f"{label}-{name}", [binary, name], env, work)
            started.append(s)
        wait_built(label, started[-1], grpc["catalog"] + 1)
        edge = Server(f"{label}-edge", [binary, "edge"],
                      dict(common, HTTP_ADDR=f"127.0.0.1:{port}", ADMIN_ADDR=f"127.0.0.1:{port + 1}", **urls), work)
        started.append(edge)
        wait_until(120, f"{label}: /ready", lambda: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200,
                   edge.proc, edge.log)
    except BaseException:
        group.stop()
        raise
    return group


def start_bare(binary: str, port: int, work: Path) -> Server:
    s = Server("bare", [binary, f"127.0.0.1:{port}"], dict(os.environ), work)
    wait_until(60, "bare axum", lambda: http_get(f"http://127.0.0.1:{port}/health/")[0] == 200, s.proc, s.log)
    return s


def resident_mib(pid: int) -> float:
    """The process's resident memory now (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pg_backends(db: str) -> list[int]:
    name = db.rpartition("/")[2].split("?")[0]
    rows = psql(db, f"SELECT pid FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()")
    return [int(x) for x in rows.split()]


def redis_pid(redis: str) -> int | None:
    u = urllib.parse.urlparse(redis)
    try:
        out = subprocess.run(["redis-cli", "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 6379), "info", "server"],
                             capture_output=True, text=True, timeout=5).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":")[1])
    return None


def oha(args: argparse.Namespace, urls: Path, extra: list[str], out: Path) -> dict:
    cmd = [args.oha, "--urls-from-file", str(urls), "--no-tui", "--output-format", "json", "-o", str(out), *extra]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def ok_count(r: dict) -> tuple[int, int]:
    codes = r.get("statusCodeDistribution", {})
    failed = {k: v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
    ok = codes.get("200", 0)
    return ok, sum(v for k, v in codes.items() if k != "200") + sum(failed.values())


def measure(args, urls: Path, extra: list[str], pids: dict[str, list[int] | callable], work: Path,
            db: str | None = None) -> dict:
    """Runs oha with `extra`; CPU per 200 answer of each component."""
    def snap():
        return {k: sum(proc_cpu(p) for p in (v() if callable(v) else v)) for k, v in pids.items()}

    db = db or args.db
    pg_before = {p: proc_cpu(p) for p in pg_backends(db)} if "postgres" in pids else {}
    def switches() -> dict[int, int]:
        out: dict[int, int] = {}
        for p in pids.get("otus", []):
            out.update(context_switches(p))
        return out

    before, busy0, child0, cs0 = snap(), machine_busy(), children_cpu(), switches()
    r = oha(args, urls, extra, work / "oha.json")
    after, busy1, child1, cs1 = snap(), machine_busy(), children_cpu(), switches()
    ok, errors = ok_count(r)
    cpu = {k: after[k] - before[k] for k in before}
    if "postgres" in pids:
        pg_after = {p: proc_cpu(p) for p in pg_backends(db)}
        cpu["postgres"] = sum(v - pg_before.get(p, 0.0) for p, v in pg_after.items())
    cpu["oha"] = child1 - child0
    busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    p = r.get("latencyPercentiles", {})
    return {
        "ok": ok,
        "errors": errors,
        "rps": r["summary"].get("requestsPerSec", 0.0),
        "p50_ms": (p.get("p50") or 0) * 1000,
        "p99_ms": (p.get("p99") or 0) * 1000,
        "us": {k: 1e6 * v / max(ok, 1) for k, v in cpu.items()},
        "busy": busy,
        "switches": switches_between(cs0, cs1) / max(ok, 1),
    }


def one_url(work: Path, name: str, port: int, path: str) -> Path:
    """A URL file of one URL: `path` on the server at `port`."""
    f = work / name
    f.write_text(f"http://127.0.0.1:{port}/{path}\n")
    return f


def fixed_rate(rate: int | str, seconds: int) -> list[str]:
    """oha's arguments for `rate` req/s during `seconds` (latency measured
    from when each request was due, not when it was sent)."""
    return ["-q", str(rate), "-z", f"{seconds}s", "--latency-correction", "-c", "64"]


def url_file(work: Path, name: str, port: int, qs: list[str]) -> Path:
    f = work / name
    f.write_text("".join(f"http://127.0.0.1:{port}/products?{urllib.parse.urlencode({'q': q})}\n" for q in qs))
    return f


def sweep_rates(text: str) -> list[str]:
    """`--sweep`'s rates: positive integers (req/s) and `max` (closed loop)."""
    rates = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in rates if r != "max" and not (r.isdigit() and int(r) > 0)]
    if not rates or bad:
        sys.exit(f"--sweep takes rates in req/s and `max`, comma-separated (e.g. 500,1000,2000,4000,max); "
                 f"not {', '.join(bad) or 'an empty list'}")
    return rates


def sweep(args, builds: list[Build], qs: list[str], work: Path, servers: list, results: dict) -> None:
    """CPU per request at each of `--sweep`'s offered rates: bare axum, then
    for each build the edge's `/health/` and a search on each of `--paths`."""
    rates = sweep_rates(args.sweep)
    heading = lambda r: f"max (oha -c {args.connections})" if r == "max" else f"{r} req/s"
    print("| request | build | " + " | ".join(heading(r) for r in rates) + " |\n|---|---|" + "---|" * len(rates),
          flush=True)

    def load(r: str, seconds: int) -> list[str]:
        if r == "max":
            return ["-c", str(args.connections), "-z", f"{seconds}s"]
        return fixed_rate(r, seconds)

    def line(what: str, label: str, urls: Path, pids: dict, dbu: str | None = None) -> None:
        cells = []
        for r in rates:
            oha(args, urls, load(r, args.warmup), work / "warm.json")
            m = measure(args, urls, load(r, args.duration), pids, work, dbu)
            total = sum(v for k, v in m["us"].items() if k != "oha")
            cell = f"**{total:.0f}** µs · {m['switches']:.1f} cs"
            if r == "max":
                cell += f" · {m['rps']:.0f} req/s"
            if m["errors"]:
                cell += f" · {m['errors']} errors"
            cells.append(cell)
            results["runs"].append({"path": f"sweep: {what}", "build": label, "rate": r, **m, "total_us": total})
        print(f"| {what} | {label} | " + " | ".join(cells) + " |", flush=True)

    bare = start_bare(args.bare, args.port + 9, work)
    servers.append(bare)
    hurls = one_url(work, "health.txt", args.port + 9, "health/")
    line("bare axum `GET /health/`", "–", hurls, {"otus": [bare.pid]})
    bare.stop()
    urls = url_file(work, "urls.txt", args.port, qs[: args.searches])
    rpid = redis_pid(args.redis)
    for label, binary, db, pods in builds:
        for path in [p.strip() for p in args.paths.split(",")]:
            cache = path == "on"
            s = start_build(f"{label}-sweep-{path}", binary, db, args.port, cache, args.redis, work, pods)
            servers.append(s)
            if not cache and args.floors:
                f = one_url(work, "floor.txt", args.port, "health/")
                line("edge `GET /health/` (no gRPC call)", label, f, {"otus": s.pids})
            pids = {"otus": s.pids, "postgres": []}
            if cache and rpid:
                pids["redis"] = [rpid]
            line("search, cache on (Redis)" if cache else "search, cache off", label, urls, pids, db)
            s.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True, help="PostgreSQL URL of the catalog (created and seeded if short)")
    ap.add_argument("--products", type=int, default=1_000_000)
    ap.add_argument("--otus", required=True, help="release `otus` binary to measure")
    ap.add_argument("--baseline", help="a second `otus` binary (e.g. the previous main) measured side by side")
    ap.add_argument("--baseline-db", help="the baseline's own database (default --db)")
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=BINARY",
                    help="more `otus` builds measured side by side (repeatable)")
    ap.add_argument("--pods", action="append", default=[], metavar="LABEL=BINARY[@URL]",
                    help="a build measured as Kubernetes runs it: one process per service, one tokio worker "
                         "each; its otus column sums the four processes (repeatable)")
    ap.add_argument("--bare", required=True, help="release bare_axum example binary")
    ap.add_argument("--oha", default=shutil.which("oha") or str(Path.home() / ".cache/otus-rs/tools/bin/oha"))
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--duration", type=int, default=20, help="seconds per measurement")
    ap.add_argument("--warmup", type=int, default=5, help="seconds at the rate before measuring")
    ap.add_argument("--searches", type=int, default=400, help="distinct searches of the fixed-rate runs")
    ap.add_argument("--paths", default="off,on", help="off, on or both (comma-separated)")
    ap.add_argument("--no-floors", dest="floors", action="store_false",
                    help="skip each build's `/health/` and `/ready` rows (the edge alone; the edge and "
                         "three gRPC calls that do no work)")
    ap.add_argument("--closed", action="store_true", help="also the closed-loop comparison (oha -c 50)")
    ap.add_argument("--closed-searches", type=int, default=20_000)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2, help="closed-loop rounds (builds alternate)")
    ap.add_argument("--sweep", metavar="RATES",
                    help="instead of the fixed-rate table: every build's CPU per request at each of these "
                         "rates, comma-separated req/s and `max` (closed loop), e.g. 500,1000,2000,4000,max")
    ap.add_argument("--port", type=int, default=18300)
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args()
    if args.sweep:
        sweep_rates(args.sweep)
        if args.closed:
            sys.exit("--sweep includes the closed loop as its `max` rate; leave out --closed")
    if not Path(args.oha).exists():
        sys.exit(f"oha not found at {args.oha}: cargo install oha --root ~/.cache/otus-rs/tools")

    builds = [Build("new", args.otus, args.db, False)]
    if args.baseline:
        builds.append(Build("base", args.baseline, args.baseline_db or args.db, False))
    for c, pods in [(c, False) for c in args.compare] + [(c, True) for c in args.pods]:
        label, rest = c.split("=", 1)
        binary, _, db = rest.partition("@")
        builds.append(Build(label, binary, db or args.db, pods))
    have = ensure_catalog(args.db, args.products, args.otus)
    qs = searches(args.db, max(args.searches, args.closed_searches if args.closed else 0))
    cpu_model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                      if l.startswith("model name")), "?")
    load = (f"oha at each rate of {args.sweep} (max: a closed loop, -c {args.connections})" if args.sweep
            else f"oha fixed rate {args.rate} req/s")
    print(f"# CPU per request, {date()}; {os.cpu_count()} cores ({cpu_model}); {have} products "
          f"(catalog shape, seed 1); {load}, {args.duration} s after {args.warmup} s "
          f"of warm-up, {args.searches} distinct searches", flush=True)
    print("# µs of CPU per answered request (200), each process's user+system time from /proc", flush=True)
    work = Path(tempfile.mkdtemp(prefix="otus-cost-"))
    results: dict = {"products": have, "rate": args.rate, "duration": args.duration, "runs": []}
    if args.sweep:
        print("# cs: context switches of otus's threads per request (each thread's growth, from "
              "/proc/PID/task/*/status)\n", flush=True)
        servers: list[Server | Group] = []
        try:
            sweep(args, builds, qs, work, servers, results)
        finally:
            wind_up(args, servers, results)
        shutil.rmtree(work, ignore_errors=True)
        return
    print(flush=True)
    rate = fixed_rate(args.rate, args.duration)
    warm = fixed_rate(args.rate, args.warmup)
    header = ("| path | build | otus | PostgreSQL | Redis | total per request | oha (generator) | "
              "machine busy | answered | errors | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(header, flush=True)
    servers: list[Server | Group] = []
    # Each build's resident memory after its fixed-rate run.
    resident: list[str] = []

    def row(path: str, build: str, m: dict) -> None:
        us = m["us"]
        total = sum(v for k, v in us.items() if k != "oha")
        cell = lambda k: f"{us[k]:.0f}" if k in us else "–"
        print(f"| {path} | {build} | {cell('otus')} | {cell('postgres')} | {cell('redis')} | **{total:.0f}** | "
              f"{us['oha']:.0f} | {100 * m['busy']:.0f}% | {m['ok']} | {m['errors']} | {m['p50_ms']:.2f} | "
              f"{m['p99_ms']:.2f} |", flush=True)
        results["runs"].append({"path": path, "build": build, **m, "total_us": total})
        if "rss_mib" in m:
            resident.append(f"{path}, {build}: {m['rss_mib']:.0f} MiB")

    try:
        bare = start_bare(args.bare, args.port + 9, work)
        servers.append(bare)
        hurls = one_url(work, "health.txt", args.port + 9, "health/")
        oha(args, hurls, warm, work / "warm.json")
        row("bare axum `GET /health/`", "–", measure(args, hurls, rate, {"otus": [bare.pid]}, work))
        bare.stop()
        urls = url_file(work, "urls.txt", args.port, qs[: args.searches])
        rpid = redis_pid(args.redis)
        for path in [p.strip() for p in args.paths.split(",")]:
            cache = path == "on"
            for label, binary, db, pods in builds:
                s = start_build(f"{label}-{path}", binary, db, args.port, cache, args.redis, work, pods)
                servers.append(s)
                oha(args, urls, warm, work / "warm.json")
                pids = {"otus": s.pids, "postgres": []}
                if cache and rpid:
                    pids["redis"] = [rpid]
                m = measure(args, urls, rate, pids, work, db)
                m["rss_mib"] = sum(resident_mib(p) for p in s.pids)
                row("cache on (Redis)" if cache else "cache off", label, m)
                if args.floors and not cache:
                    # The path without the work: the edge alone, then the
                    # edge and three gRPC calls that do nothing (readiness
                    # asks each backend's health service).
                    for floor, what in (("health/", "edge `GET /health/` (no gRPC call)"),
                                        ("ready", "edge `GET /ready` (3 gRPC health calls)")):
                        f = one_url(work, "floor.txt", args.port, floor)
                        oha(args, f, warm, work / "warm.json")
                        row(what, label, measure(args, f, rate, {"otus": s.pids}, work))
                s.stop()
        print("\n# Resident memory (VmRSS) of otus after each fixed-rate run: " + "; ".join(resident), flush=True)
        if args.closed:
            print(f"\n# Closed loop: oha -c {args.connections}, {args.duration} s, {args.closed_searches} distinct "
                  f"searches, cache off\n", flush=True)
            print("| round | build | req/s | p50 ms | p99 ms | errors | otus µs/request | PostgreSQL µs/request | "
                  "machine busy |\n|---|---|---|---|---|---|---|---|---|", flush=True)
            started = {}
            for i, b in enumerate(builds):
                started[b.label] = start_build(f"{b.label}-closed", b.binary, b.db, args.port + 20 * i, False,
                                               args.redis, work, b.pods)
                servers.append(started[b.label])
            for i, b in enumerate(builds):
                u = url_file(work, f"closed-{b.label}.txt", args.port + 20 * i, qs[: args.closed_searches])
                oha(args, u, ["-c", str(args.connections), "-z", "5s"], work / "warm.json")
            for rnd in range(1, args.rounds + 1):
                for b in builds if rnd % 2 else list(reversed(builds)):
                    label = b.label
                    u = work / f"closed-{label}.txt"
                    m = measure(args, u, ["-c", str(args.connections), "-z", f"{args.duration}s"],
                                {"otus": started[label].pids, "postgres": []}, work, b.db)
                    print(f"| {rnd} | {label} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                          f"{m['errors']} | {m['us']['otus']:.0f} | {m['us'].get('postgres', 0):.0f} | "
                          f"{100 * m['busy']:.0f}% |", flush=True)
                    results["runs"].append({"path": "closed", "build": label, "round": rnd, **m})
    finally:
        wind_up(args, servers, results)
    shutil.rmtree(work, ignore_errors=True)


def wind_up(args, servers: list, results: dict) -> None:
    """Stops every server started and writes --json (what was measured,
    also after a failure; the work directory with the servers' logs is
    then left for a look)."""
    for s in servers:
        s.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False))


def date() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


if __name__ == "__main__":
    main()
