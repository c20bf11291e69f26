#!/usr/bin/env python3
"""The chart's stress test, run as its Deployment runs it, against the system
behind the ingress stand-in (CI's nginx).

    python3 .ci/stresstest.py RENDERED.yaml TARGET_URL OUT_DIR [--seconds 30] [--locust BIN]

RENDERED.yaml is `helm template ... --set stresstest.enabled=true --show-only
templates/stresstest.yaml`. From it: the scenario as the pod gets it (the
ConfigMap's locustfile.py, written where the container's args expect the
mount), the container's args with `$(VAR)` expanded from its env as the
kubelet does, and that env (HOST_HEADER, PATH_PREFIX, RATE_PER_USER); only
TARGET (the ingress controller's Service) becomes TARGET_URL. Locust runs as
the pod does (`--autostart`, its web UI on the container's `ui` port, which
the readiness probe asks) for --seconds, then quits. Passes when the probe
answered, no request failed, and the rate is the chart's
(stresstest.requestsPerSecond, within 30%: the users start at 2 a second).
--locust is the Locust to run; CI passes one of the version the chart's image
tag names (locustio/locust:X, installed from PyPI into a venv of its own), and
a different version is printed as such.
"""
import argparse
import csv
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "loadtest"))
from waiting import wait_until  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rendered")
    ap.add_argument("target")
    ap.add_argument("out")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--locust", default="locust", help="the locust executable (default: on PATH)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    docs = [d for d in yaml.safe_load_all(open(args.rendered)) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    env["TARGET"] = args.target
    # The scenario as the pod gets it: each ConfigMap volume's files at its mount.
    maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    volumes = {v["name"]: maps[v["configMap"]["name"]] for v in pod.get("volumes", [])
               if "configMap" in v}
    mounts = {}
    for m in container.get("volumeMounts", []):
        local = out / m["name"]
        local.mkdir(exist_ok=True)
        for name, text in volumes[m["name"]].items():
            (local / name).write_text(text)
        mounts[m["mountPath"].rstrip("/")] = str(local)

    def localize(arg):
        arg = re.sub(r"\$\((\w+)\)", lambda g: env.get(g.group(1), g.group(0)), arg)
        for path, local in mounts.items():
            if arg.startswith(path + "/"):
                return local + arg[len(path):]
        return arg
    argv = [localize(a) for a in container["args"]]
    ui = next(p["containerPort"] for p in container["ports"] if p["name"] == "ui")
    probe = container["readinessProbe"]["httpGet"]
    rate = float(env["RATE_PER_USER"]) * int(argv[argv.index("-u") + 1])
    extra = ["--run-time", f"{args.seconds}s", "--autoquit", "0", "--csv", str(out / "stats"),
             "--web-host", "127.0.0.1", "--web-port", str(ui), "--loglevel", "WARNING"]
    image = container["image"]
    version = subprocess.run([args.locust, "--version"], text=True,
                             capture_output=True).stdout.split()[1:2] or ["?"]
    same = image.rsplit(":", 1)[-1] == version[0]
    print(f"stresstest: locust {version[0]} (the pod's image: {image}"
          f"{'' if same else '; NOT the same version'})", flush=True)
    print(f"stresstest: locust {' '.join(argv)} {' '.join(extra)}", flush=True)
    print(f"stresstest: env HOST_HEADER={env.get('HOST_HEADER')!r} "
          f"PATH_PREFIX={env.get('PATH_PREFIX')!r} RATE_PER_USER={env['RATE_PER_USER']}",
          flush=True)
    log = out / "locust.log"
    proc = subprocess.Popen([args.locust, *argv, *extra], env={**os.environ, **env},
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{ui}{probe['path']}"
        wait_until(30, f"the readiness probe (GET {url})",
                   lambda: urllib.request.urlopen(url, timeout=2).status == 200,
                   proc=proc, logfile=log)
        proc.wait(args.seconds + 60)
    except subprocess.TimeoutExpired:
        sys.exit(f"locust did not quit {args.seconds} s after it started\n{log.read_text()[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    stats = out / "stats_stats.csv"
    if not stats.exists():
        sys.exit(f"locust wrote no statistics (exit {proc.returncode})\n{log.read_text()[-3000:]}")
    rows = list(csv.DictReader(open(stats)))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    count, failures = int(total["Request Count"]), int(total["Failure Count"])
    achieved = float(total["Requests/s"])
    for r in rows:
        if r["Name"] != "Aggregated":
            print(f"  {r['Type']:6} {r['Name']:22} {r['Request Count']:>5} requests, "
                  f"{r['Failure Count']} failed, p99 {r['99%']} ms")
    print(f"stresstest: {count} requests in {args.seconds} s, {failures} failed, "
          f"{achieved:.1f} req/s (the chart's rate: {rate:g})", flush=True)
    failed = out / "stats_failures.csv"
    if failures:
        sys.exit(f"the stress test had {failures} failed requests:\n{failed.read_text()[-3000:]}")
    if not 0.7 * rate <= achieved <= 1.3 * rate:
        sys.exit(f"the stress test ran at {achieved:.1f} req/s, not the chart's {rate:g}")
    if proc.returncode != 0:
        sys.exit(f"locust exited {proc.returncode}\n{log.read_text()[-3000:]}")


if __name__ == "__main__":
    main()
