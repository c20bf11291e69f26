"""The command line and one campaign run: every configuration in turn, then the
report."""
import argparse
import datetime
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from waiting import wait_until
from .charts import charts_for, comparison_charts, render_dashboard
from .common import FULL_STEPS, FULL_STEPS_BY_GENERATOR, GEN, GENERATORS, HERE, ORIGINAL_STEPS, PORTS, QUICK_STEPS, ROOT, die, log, point, psql, size_label, slo_seconds, use_generator
from .prom import Prometheus, dashboard_panels
from .report import STATE, check_outputs, report_only, save_state, write_report
from .sampling import Sampler, group_resolver
from .steps import add_server_figures, classify, print_new_steps, read_steps
from .system import machine, nginx_config, prepare_catalog, search_words, start_redis, start_system, stop_system


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
