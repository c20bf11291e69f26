#!/usr/bin/env python3
"""What `helm install` prints (the chart's NOTES.txt, i.e. the named template
"otus.notes") names only what that install made.

    python3 .ci/check_notes.py HELM

`helm template` leaves NOTES.txt out, so the chart is copied and a ConfigMap
that includes "otus.notes" is added to the copy; each scenario (the default
values, every helm/otus/ci/*-values.yaml, and no Ingress) is rendered whole,
and every object the notes name in a kubectl command (svc/, deployment/,
deploy/) must be one the scenario renders, every port-forward must name a
port that object has, the curl through the ingress must be the Ingress's
host and path, and an external database's Secret the one the pods read.
"""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHECK = """apiVersion: v1
kind: ConfigMap
metadata:
  name: otus-notes-check
data:
  notes: {{ include "otus.notes" . | quote }}
"""


def scenarios():
    yield "default values", []
    for f in sorted((ROOT / "helm/otus/ci").glob("*-values.yaml")):
        yield f.name, ["--values", str(f)]
    yield "ingress.enabled=false", ["--set", "ingress.enabled=false"]


def check(helm, chart, name, args):
    r = subprocess.run([helm, "template", "otus", str(chart), "--namespace", "otus", *args],
                       text=True, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"{name}: helm template failed:\n{r.stderr[-2000:]}")
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    notes = next(d for d in docs if d["metadata"]["name"] == "otus-notes-check")["data"]["notes"]
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    problems = []

    kinds = {"svc": "Service", "deployment": "Deployment", "deploy": "Deployment", "job": "Job"}

    def find(ref):
        kind, _, obj = ref.partition("/")
        return objects.get((kinds[kind], obj))

    for ref in re.findall(r"\b((?:svc|deployment|deploy|job)/[a-z0-9-]+)", notes):
        if find(ref) is None:
            problems.append(f"{ref}: no {kinds[ref.split('/')[0]]} of that name in this install")
    for line in notes.splitlines():
        pf = re.search(r"port-forward ((?:svc|deploy)/[a-z0-9-]+) (?:\d+:)?(\d+)", line)
        if pf:
            d = find(pf.group(1))
            port = int(pf.group(2))
            if d is not None and d["kind"] == "Service":
                ports = [p["port"] for p in d["spec"]["ports"]]
            elif d is not None:
                ports = [p["containerPort"] for c in d["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports", [])]
            else:
                ports = []
            if d is not None and port not in ports:
                problems.append(f"{pf.group(1)} has no port {port} (it has {ports})")
    ingress = next((d for d in docs if d["kind"] == "Ingress"), None)
    curls = re.findall(r"curl (http://\S+)", notes)
    if ingress is not None:
        rule = ingress["spec"]["rules"][0]
        # The Ingress's path is a regex like /otusapp/(.*); the notes show its prefix.
        prefix = re.sub(r"\(.*$", "", rule["http"]["paths"][0]["path"]).rstrip("/")
        want = f"http://{rule['host']}{prefix}/health/"
        if want not in curls:
            problems.append(f"the Ingress serves {want}, the notes curl {curls}")
    elif not any(c.startswith("http://localhost:") for c in curls):
        problems.append(f"no Ingress, but the notes do not reach the edge on localhost: {curls}")
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for d in docs if d["kind"] == "Deployment"
               for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])
               if e["name"] == "DATABASE_URL" and "valueFrom" in e}
    for s in secrets - {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}:
        if f"Secret {s}" not in notes:
            problems.append(f"the pods read DATABASE_URL from Secret {s}, which the user makes; "
                            "the notes do not say so")
    if problems:
        sys.exit(f"{name}: the notes `helm install` prints are wrong:\n  " + "\n  ".join(problems)
                 + f"\n--- notes ---\n{notes}")
    refs = len(re.findall(r"\b(?:svc|deployment|deploy|job)/[a-z0-9-]+", notes))
    print(f"  {name}: {len(notes.splitlines())} lines, {refs} objects named, all rendered")


def main():
    helm = sys.argv[1]
    work = Path(tempfile.mkdtemp(prefix="otus-notes-"))
    try:
        chart = work / "otus"
        # Symlinks (files/ points into observability/, loadtest/) copied as files.
        shutil.copytree(ROOT / "helm/otus", chart, symlinks=False)
        (chart / "templates/zz-notes-check.yaml").write_text(CHECK)
        for name, args in scenarios():
            check(helm, chart, name, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
