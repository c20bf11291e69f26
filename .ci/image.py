#!/usr/bin/env python3
"""The image users build and the chart runs, checked on a machine with no
Docker engine, no image registry and no Kubernetes API (this one):

1. Stand-ins for the Dockerfile's two official base images, made once per
   machine under the same names: `debian:bookworm-slim` from Debian's
   packages (debootstrap, minbase), and `rust:1.95-slim-bookworm` as the
   official one is made (that + ca-certificates gcc libc6-dev wget + a Rust
   toolchain under /usr/local), with this machine's toolchain and the CAs of
   its TLS-inspecting proxy. So the Dockerfile is built as it is.
2. `buildah bud` of the Dockerfile (buildah builds Dockerfiles without a
   daemon; `RUN --mount=type=cache` included).
3. The image's config as the chart needs it: a numeric non-root USER (the
   pods' runAsNonRoot), `otus` as the entrypoint, `sleep` for the preStop hook.
4. The rendered chart's otus containers run from the image's root file
   system as its pods run them: uid/gid 10001, the root file system
   read-only, the chart's args and environment (ConfigMaps, the Secret), the
   Jobs first, every Service's host name resolving to this machine, each
   under its memory and CPU limits (cgroup v1); every liveness and readiness
   probe of the chart must pass. Only the backing services are this
   machine's (a database of PostgreSQL, Redis under a key prefix) and, for
   the chart's Jaeger, an OTLP receiver of this check's own. newman runs the
   Postman collections against the edge; a request with a client's
   traceparent must arrive as one trace from the edge through gRPC to the
   catalog's SQL, each span under its pod's service name; SIGTERM stops every
   process within the grace period, exit code 0.
5. The README's `docker run`: all-in-one by the default command, /data
   writable, answering the users and auth collections and a search.

Needs root (mounts, chroot), buildah and debootstrap (.ci/run installs them).
"""
import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import urllib.error
import urllib.parse
import urllib.request
from concurrent import futures
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "loadtest"))
from waiting import wait_until  # noqa: E402

STAND_IN = "otus-rs.ci.stand-in"
DEBIAN = "docker.io/library/debian:bookworm-slim"
RUST = "docker.io/library/rust:1.95-slim-bookworm"
IMAGE = "localhost/otus-rs/otus:ci-check"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def say(msg):
    print(f"image: {msg}", flush=True)


def buildah(*args, check=True):
    env = dict(os.environ, BUILDAH_ISOLATION="chroot")
    r = subprocess.run(["buildah", "--storage-driver", "vfs", *args], env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and r.returncode != 0:
        sys.exit(f"buildah {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}")
    return r


def delete_redis_keys(url, pattern):
    """Deletes the keys matching `pattern` (names as this check's requests
    make them: no spaces or quotes), given to DEL as arguments."""
    keys = subprocess.run(["redis-cli", "-u", url, "--scan", "--pattern", pattern], text=True,
                          capture_output=True).stdout.split()
    for i in range(0, len(keys), 500):
        subprocess.run(["redis-cli", "-u", url, "DEL", *keys[i:i + 500]], capture_output=True)


def image_config(name):
    """The image's OCI config, or None when there is no such image."""
    r = subprocess.run(["buildah", "--storage-driver", "vfs", "inspect", "--type", "image", name],
                       text=True, capture_output=True)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)["OCIv1"].get("config") or {}


def bud(context: Path, tag: str, log: Path, containerfile: Path | None = None):
    """Builds `context` into `tag`, printing each step as it starts; the whole
    output goes to `log` (its end printed on failure)."""
    args = ["bud", "--network", "host", "-t", tag]
    if containerfile:
        args += ["-f", str(containerfile)]
    # TMPDIR holds buildah's cache mounts: a fresh one, so the build starts
    # from an empty cargo registry and target as a user's first build does.
    env = dict(os.environ, BUILDAH_ISOLATION="chroot", TMPDIR=str(log.parent))
    started = time.monotonic()
    with open(log, "w") as out:
        p = subprocess.Popen(["buildah", "--storage-driver", "vfs", *args, str(context)], env=env,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        compiled = 0
        for line in p.stdout:
            out.write(line)
            shown = "STEP " in line or line.startswith(("    Finished", "error", "Error"))
            if line.startswith("   Compiling "):
                compiled += 1
                shown = compiled % 100 == 0
                line = f"    ... {compiled} crates compiled"
            if shown:
                print(f"  [{time.monotonic() - started:4.0f}s] {line.rstrip()[:160]}", flush=True)
        rc = p.wait()
    if rc != 0:
        sys.exit(f"building {tag} failed ({rc}); the end of {log}:\n{log.read_text()[-4000:]}")


def debian_stand_in(work: Path):
    cfg = image_config(DEBIAN)
    if cfg is not None:
        labels = cfg.get("Labels") or {}
        say(f"{DEBIAN}: present ({'stand-in' if STAND_IN in labels else 'as pulled'})")
        return
    say(f"{DEBIAN}: making a stand-in (debootstrap --variant=minbase bookworm, ~1 min)")
    rootfs = work / "debian-rootfs"
    r = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs),
                        "http://deb.debian.org/debian"], text=True, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"debootstrap failed:\n{(r.stdout + r.stderr)[-3000:]}")
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    ctr = buildah("from", "scratch").stdout.strip().splitlines()[-1]
    mnt = buildah("mount", ctr).stdout.strip()
    subprocess.run(["cp", "-a", f"{rootfs}/.", mnt], check=True)
    buildah("umount", ctr)
    buildah("config", "--cmd", "bash", "--label", f"{STAND_IN}=debootstrap minbase bookworm", ctr)
    buildah("commit", "-q", ctr, DEBIAN)
    buildah("rm", ctr)
    shutil.rmtree(rootfs)


def rust_stand_in(work: Path):
    version = subprocess.run(["rustc", "--version"], text=True, capture_output=True,
                             check=True).stdout.strip()
    cfg = image_config(RUST)
    labels = None if cfg is None else cfg.get("Labels") or {}
    if labels is not None and (STAND_IN not in labels or labels[STAND_IN] == version):
        say(f"{RUST}: present ({labels.get(STAND_IN, 'as pulled')})")
        return
    say(f"{RUST}: making a stand-in with this machine's {version} (~1 min)")
    if not version.startswith("rustc 1.95."):
        say(f"note: the Dockerfile names rust 1.95; this stand-in carries {version}")
    ctx = work / "rust-context"
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], text=True, capture_output=True,
                             check=True).stdout.strip()
    shutil.copytree(sysroot, ctx / "toolchain", symlinks=True,
                    ignore=lambda d, names: ["doc"] if d.endswith("/share") else [])
    (ctx / "extra-ca").mkdir()
    for ca in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(ca, ctx / "extra-ca" / ca.name)
    tc = "/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu"
    (ctx / "Containerfile").write_text(f"""\
FROM {DEBIAN}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev wget \\
 && rm -rf /var/lib/apt/lists/*
# This machine reaches crates.io through a TLS-inspecting proxy: its CAs.
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY toolchain {tc}
RUN mkdir -p /usr/local/cargo/bin \\
 && for b in cargo rustc rustdoc; do ln -s {tc}/bin/$b /usr/local/cargo/bin/$b; done
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL {STAND_IN}="{version}"
""")
    bud(ctx, RUST, work / "rust-stand-in.log", ctx / "Containerfile")
    shutil.rmtree(ctx)


def remove_leftovers():
    """Working containers of IMAGE left by a run that was killed."""
    r = buildah("containers", "--json", check=False)
    # No containers at all is `null`.
    for c in (json.loads(r.stdout or "null") or []) if r.returncode == 0 else []:
        if c.get("imagename") == IMAGE:
            buildah("umount", c["id"], check=False)
            buildah("rm", c["id"], check=False)


def check_config():
    cfg = image_config(IMAGE)
    user = cfg.get("User", "")
    say(f"config: User={user!r} Entrypoint={cfg.get('Entrypoint')} Cmd={cfg.get('Cmd')}")
    uid = user.split(":")[0]
    # Kubernetes can only verify runAsNonRoot against a numeric user.
    if not uid.isdigit() or int(uid) == 0:
        sys.exit(f"the image's USER must be a numeric non-root uid (runAsNonRoot), not {user!r}")
    if cfg.get("Entrypoint") != ["/usr/local/bin/otus"]:
        sys.exit(f"the image's entrypoint is not /usr/local/bin/otus: {cfg.get('Entrypoint')}")
    return user, cfg.get("WorkingDir") or "/"


CGROUP_V1 = Path("/sys/fs/cgroup")


def quantity(text, cpu=False):
    """A Kubernetes quantity: CPU in cores ("500m", "1"), memory in bytes."""
    text = str(text)
    if cpu:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[:-len(suffix)]) * factor)
    return int(text)


class Limits:
    """The container's resource limits as the kubelet sets them on a cgroup v1
    machine (this one): memory.limit_in_bytes (over it: the OOM killer) and a
    CFS quota (what tokio sizes its workers from). `dirs` are the cgroups the
    process joins before it execs (none where cgroup v1 is not mounted: then
    `reason` says so and the limits are not applied)."""

    def __init__(self, name, container):
        self.name, self.dirs, self.reason = name, [], ""
        limits = (container.get("resources") or {}).get("limits") or {}
        self.memory = quantity(limits["memory"]) if "memory" in limits else None
        self.cpu = quantity(limits["cpu"], cpu=True) if "cpu" in limits else None
        if not (CGROUP_V1 / "memory/memory.limit_in_bytes").exists():
            self.reason = "no cgroup v1 memory controller at /sys/fs/cgroup/memory"
            return
        leaf = f"otus-ci-image-{os.getpid()}-{name}"
        if self.memory is not None:
            d = CGROUP_V1 / "memory" / leaf
            d.mkdir()
            (d / "memory.limit_in_bytes").write_text(str(self.memory))
            self.dirs.append(d)
        if self.cpu is not None:
            d = CGROUP_V1 / "cpu" / leaf
            d.mkdir()
            period = int((d / "cpu.cfs_period_us").read_text())
            (d / "cpu.cfs_quota_us").write_text(str(int(self.cpu * period)))
            self.dirs.append(d)

    def describe(self):
        if self.reason:
            return f"limits not applied ({self.reason})"
        mem = f"{self.memory >> 20} MiB" if self.memory is not None else "none"
        cpu = f"{self.cpu:g}" if self.cpu is not None else "none"
        return f"memory limit {mem}, CPU limit {cpu}"

    def peak(self):
        """(peak bytes, OOM kills) of the memory cgroup, or None."""
        d = next((d for d in self.dirs if d.parent.name == "memory"), None)
        if d is None:
            return None
        oom = next((int(line.split()[1]) for line in
                    (d / "memory.oom_control").read_text().splitlines()
                    if line.startswith("oom_kill ")), 0)
        return int((d / "memory.max_usage_in_bytes").read_text()), oom

    def check(self, quiet=False):
        """Fails if the OOM killer struck; prints the peak against the limit
        (unless `quiet`)."""
        peak = self.peak()
        if peak is None:
            return
        used, oom = peak
        if oom:
            sys.exit(f"{self.name}: killed by the OOM killer under its memory limit "
                     f"({self.memory >> 20} MiB)")
        if not quiet:
            say(f"{self.name}: peak {used / (1 << 20):.0f} MiB of its {self.memory >> 20} MiB limit")

    def close(self):
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass


class Rootfs:
    """The image's root file system, mounted once; each process runs in a
    mount namespace of its own, with that root bound read-only (or one
    directory writable, as a volume)."""

    RUN = r"""set -e
root=$1 target=$2 hosts=$3 data=$4 user=$5 workdir=$6 cgroups=$7; shift 7
for g in $cgroups; do echo $$ > "$g/cgroup.procs"; done
mount --bind "$root" "$target"
mount -o remount,bind,ro "$target"
mount -t proc proc "$target/proc"
mount --rbind /dev "$target/dev"
mount --rbind /sys "$target/sys"
mount --bind "$hosts" "$target/etc/hosts"
if [ -n "$data" ]; then mount --bind "$data" "$target/data"; fi
exec chroot --userspec="$user" "$target" env -i -C "$workdir" "$@"
"""

    def __init__(self, work: Path, hosts: list[str], user: str, workdir: str):
        self.ctr = buildah("from", "-q", IMAGE).stdout.strip().splitlines()[-1]
        self.path = buildah("mount", self.ctr).stdout.strip()
        self.target = work / "root"
        self.target.mkdir()
        self.hosts = work / "hosts"
        self.hosts.write_text("127.0.0.1 localhost " + " ".join(sorted(hosts)) + "\n")
        self.user, self.workdir = user, workdir
        self.work = work

    def start(self, name, argv, env, data="", limits=None):
        """Starts `otus argv` with exactly `env` (plus PATH), in the cgroups
        of `limits`; returns the process (its pid is otus's: every step
        execs) and its log."""
        log = self.work / f"{name.replace(' ', '_').replace('/', '_')}.log"
        vars_ = [PATH_ENV] + [f"{k}={v}" for k, v in env.items()]
        cgroups = " ".join(str(d) for d in limits.dirs) if limits else ""
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", self.RUN, "sh", self.path,
             str(self.target), str(self.hosts), data, self.user, self.workdir, cgroups, *vars_,
             "/usr/local/bin/otus", *argv],
            stdout=open(log, "w"), stderr=subprocess.STDOUT)
        return proc, log

    def run(self, name, argv, env, seconds, limits=None):
        proc, log = self.start(name, argv, env, limits=limits)
        finish(name, proc, log, seconds, f"not done within {seconds} s", limits)
        if limits:
            limits.check()
        say(f"{name}: done")

    def sh(self, *cmd):
        """A command of the image's own (not otus), as the pods' user."""
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", self.RUN,
                               "sh", self.path, str(self.target), str(self.hosts), "", self.user,
                               self.workdir, "", PATH_ENV, *cmd], text=True, capture_output=True)

    def close(self):
        buildah("umount", self.ctr, check=False)
        buildah("rm", self.ctr, check=False)


def rendered(helm: str, sets: list[str], values: str | None = None):
    sets = [a for v in sets for a in ("--set", v)]
    if values:
        sets = ["--values", values, *sets]
    r = subprocess.run([helm, "template", "otus", str(ROOT / "helm/otus"), "--namespace", "otus",
                        *sets], text=True, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"helm template failed:\n{r.stderr[-3000:]}")
    out = r.stdout
    return [d for d in yaml.safe_load_all(out) if d]


def containers(docs, kind):
    """(object, container) of every container of `kind` that runs the otus image."""
    out = []
    for d in docs:
        if d["kind"] != kind:
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            if "/otus:" in c["image"]:
                out.append((d, c))
    return out


def env_of(docs, container, overrides):
    """The container's environment as the chart gives it (its ConfigMaps, its
    env values and Secret references), then `overrides`. A reference to a
    Secret the chart does not make (one the user creates, as for an external
    database) is taken from `overrides`: this machine's service stands in for
    the user's."""
    maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    sec = {}
    for d in docs:
        if d["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
            data.update(d.get("stringData") or {})
            sec[d["metadata"]["name"]] = data
    env = {}
    for ref in container.get("envFrom", []):
        env.update(maps[ref["configMapRef"]["name"]])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            if ref["name"] in sec:
                env[e["name"]] = sec[ref["name"]][ref["key"]]
            elif e["name"] in overrides:
                env[e["name"]] = overrides[e["name"]]
            else:
                sys.exit(f"{e['name']} comes from Secret {ref['name']!r}, which the chart does "
                         "not make and this check has no stand-in for")
    for k, v in overrides.items():
        if k in env or k == "REDIS_KEY_PREFIX" and "REDIS_URL" in env:
            env[k] = v
    return env


def http_status(url):
    """The status of a GET of `url`, errors included; OSError (which
    wait_until counts as "not yet") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def port_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def finish(name, proc, log, seconds, late, limits=None):
    """Waits up to `seconds` for `proc` to exit; fails (the log's end
    printed) if it exits other than 0 (naming the OOM killer if it was
    that), or kills it and fails with `late`."""
    try:
        rc = proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        sys.exit(f"{name}: {late}\n{log.read_text()[-3000:]}")
    if limits:
        limits.check(quiet=True)
    if rc != 0:
        sys.exit(f"{name} exited {rc}\n{log.read_text()[-3000:]}")


def stop(name, proc, log, grace, limits=None):
    if limits:
        limits.check(quiet=True)
    proc.send_signal(signal.SIGTERM)
    finish(name, proc, log, grace, f"did not stop within the grace period ({grace} s) after SIGTERM",
           limits)


def probe(buf, name, container, kind):
    """Runs the container's `kind` probe (livenessProbe, readinessProbe) as
    the kubelet would, against the process on this machine; True if it
    passes. httpGet: a 2xx/3xx answer; grpc: grpc.health.v1 SERVING for the
    probe's service name."""
    spec = container.get(kind)
    if spec is None:
        sys.exit(f"{name} has no {kind}")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if "httpGet" in spec:
        port = spec["httpGet"]["port"]
        url = f"http://127.0.0.1:{ports.get(port, port)}{spec['httpGet']['path']}"
        return 200 <= http_status(url) < 400
    if "grpc" in spec:
        service = spec["grpc"].get("service", "")
        r = subprocess.run([buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d",
                            json.dumps({"service": service}),
                            f"http://127.0.0.1:{spec['grpc']['port']}/grpc.health.v1.Health/Check"],
                           text=True, capture_output=True)
        return r.returncode == 0 and '"SERVING"' in r.stdout
    sys.exit(f"{name}'s {kind} is of a kind this check does not run: {spec}")


def newman(newman_bin, base, collections, env_vars=()):
    for c in collections:
        extra = [a for v in env_vars for a in ("--env-var", v)]
        say(f"newman: postman/{c}.postman_collection.json at {base} {' '.join(extra)}".rstrip())
        r = subprocess.run([newman_bin, "run", str(ROOT / f"postman/{c}.postman_collection.json"),
                            "--env-var", f"baseUrl={base}", *extra, "--color", "off"], text=True,
                           capture_output=True)
        summary = [line for line in r.stdout.splitlines() if "│" in line and
                   ("requests" in line or "assertions" in line)]
        print("\n".join(summary), flush=True)
        if r.returncode != 0:
            sys.exit(f"newman: {c} failed against the image\n{r.stdout[-6000:]}")


def build(args, work: Path, stack: contextlib.ExitStack):
    """The base images' stand-ins, then the Dockerfile built into IMAGE
    (removed at the end unless --keep)."""
    remove_leftovers()
    debian_stand_in(work)
    rust_stand_in(work)
    say("buildah bud of the Dockerfile as it is, its cache mounts empty as on a user's "
        "first build (~9 min on 2 cores: a release build)")
    if args.reuse and image_config(IMAGE) is not None:
        say(f"--reuse: {IMAGE} as a --keep run left it, not built again")
    else:
        bud(ROOT, IMAGE, work / "build.log")
    if not args.keep:
        stack.callback(buildah, "rmi", IMAGE, check=False)


def backing_services(args, stack: contextlib.ExitStack, run=0):
    """A database of this machine's PostgreSQL and a key prefix in its Redis
    for this run of the pods (both removed at the end): the environment that
    points the chart's containers at them."""
    db = f"otus_ci_image_{os.getpid()}_{run}"
    subprocess.run(["psql", args.pg_admin_url, "-qc", f'CREATE DATABASE "{db}"'], check=True)
    stack.callback(subprocess.run, ["psql", args.pg_admin_url, "-qc",
                                    f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'],
                   capture_output=True)
    prefix = f"otus-ci-image-{os.getpid()}-{run}:"
    stack.callback(delete_redis_keys, args.redis_url, prefix + "*")
    return {
        "DATABASE_URL": args.pg_admin_url.rsplit("/", 1)[0] + "/" + db,
        "REDIS_URL": args.redis_url,
        "REDIS_KEY_PREFIX": prefix,
    }


def limits_of(name, container, stack: contextlib.ExitStack):
    """The container's Limits, their cgroups removed at the end (after the
    processes in them: the stack unwinds in reverse)."""
    limits = Limits(name, container)
    stack.callback(limits.close)
    return limits


def killed_at_end(proc, stack: contextlib.ExitStack):
    """`proc`, killed at the end if it still runs (a check that failed)."""
    def kill():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stack.callback(kill)
    return proc


class OtlpReceiver:
    """An OTLP/gRPC trace receiver on 127.0.0.1:`port`, standing in for the
    chart's Jaeger (whose Service name resolves to this machine): it keeps
    every span exported to it as (service.name, span)."""

    def __init__(self, port):
        try:
            import grpc
            from opentelemetry.proto.collector.trace.v1 import (trace_service_pb2,
                                                                trace_service_pb2_grpc)
        except ImportError:
            sys.exit("the trace check needs grpcio and opentelemetry-proto (pip install "
                     "grpcio opentelemetry-proto; .ci/run installs them)")
        self.spans, self.lock = [], threading.Lock()
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                for rs in request.resource_spans:
                    name = next((a.value.string_value for a in rs.resource.attributes
                                 if a.key == "service.name"), "")
                    with receiver.lock:
                        receiver.spans += [(name, sp) for ss in rs.scope_spans for sp in ss.spans]
                return trace_service_pb2.ExportTraceServiceResponse()

        # Without SO_REUSEPORT (grpcio's default), a port in use fails the bind.
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                                  options=[("grpc.so_reuseport", 0)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        try:
            bound = self.server.add_insecure_port(f"127.0.0.1:{port}")
        except RuntimeError:
            bound = 0
        if bound == 0:
            sys.exit(f"the trace receiver could not listen on 127.0.0.1:{port} (in use?)")
        self.server.start()

    def services(self):
        with self.lock:
            return {name for name, _ in self.spans}

    def trace(self, trace_id):
        """(service, span) of every span of `trace_id` (hex) received so far."""
        with self.lock:
            return [(n, sp) for n, sp in self.spans if sp.trace_id.hex() == trace_id]

    def close(self):
        self.server.stop(grace=None)


def otlp_port(docs):
    """The port of the OTLP endpoint the chart's otus containers export to,
    when its host is one of the rendered Services (the in-release Jaeger);
    None when it is elsewhere (an external collector) or unset."""
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    endpoints = {(d.get("data") or {}).get("OTEL_EXPORTER_OTLP_ENDPOINT")
                 for d in docs if d["kind"] == "ConfigMap"} - {None, ""}
    for url in endpoints:
        u = urllib.parse.urlsplit(url)
        if u.hostname in services:
            return u.port or 4317
    return None


def check_trace(receiver, base, envs):
    """A REST request with a client's traceparent is one trace in the pods'
    exports, as Jaeger would show it: the edge's server span under the
    client's, its gRPC client span, the catalog's gRPC server span under
    that (context carried in gRPC metadata between processes) and its SQL
    under it, each span under its pod's OTEL_SERVICE_NAME; and every otus
    Deployment exported spans."""
    trace_id, client_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    req = urllib.request.Request(base + "/products/1",
                                 headers={"traceparent": f"00-{trace_id}-{client_span}-01"})
    try:
        urllib.request.urlopen(req, timeout=5).close()
    except urllib.error.HTTPError as e:
        if e.code != 404:
            sys.exit(f"GET /products/1 answered {e.code}")
    edge_name = envs["edge"].get("OTEL_SERVICE_NAME")
    catalog_name = envs["catalog"].get("OTEL_SERVICE_NAME")
    rpc = "otus.catalog.v1.CatalogService/GetProduct"
    server_kind, client_kind = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind

    def complete():
        spans = receiver.trace(trace_id)
        edge = [sp for n, sp in spans if n == edge_name and sp.kind == server_kind
                and sp.parent_span_id.hex() == client_span]
        calls = [sp for n, sp in spans if n == edge_name and sp.kind == client_kind
                 and sp.name == rpc and edge and sp.parent_span_id == edge[0].span_id]
        served = [sp for n, sp in spans if n == catalog_name and sp.kind == server_kind
                  and sp.name == rpc and calls and sp.parent_span_id == calls[0].span_id]
        sql = [sp for n, sp in spans if n == catalog_name and sp.name.startswith("sea_orm")]
        return bool(edge and calls and served and sql)

    wait_until(30, lambda: (
        f"trace {trace_id} of GET /products/1 as one trace from {edge_name} through gRPC to "
        f"{catalog_name}'s SQL; received: {[(n, sp.name) for n, sp in receiver.trace(trace_id)]}"),
        complete)
    wanted = {env.get("OTEL_SERVICE_NAME") for env in envs.values()} - {None}
    wait_until(30, lambda: (f"spans from every otus Deployment ({sorted(wanted)}); received "
                            f"from {sorted(receiver.services())}"),
               lambda: wanted <= receiver.services())
    say(f"traces: GET /products/1 is one trace from {edge_name} through gRPC to "
        f"{catalog_name}'s SQL ({len(receiver.trace(trace_id))} spans); spans from "
        f"{', '.join(sorted(wanted))}")


def run_pods(args, fs, docs, overrides, stack: contextlib.ExitStack):
    """The chart's Jobs, then its Deployments as pods: every probe, newman
    against the edge, SIGTERM within the grace period, peaks against limits.
    Returns the grace period."""
    for job, c in containers(docs, "Job"):
        limits = limits_of(job["metadata"]["name"], c, stack)
        fs.run(f"job {job['metadata']['name']} ({limits.describe()}): otus "
               f"{' '.join(c['args'])}", c["args"], env_of(docs, c, overrides), 300, limits)
    deployments = containers(docs, "Deployment")
    grace = max(d["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
                for d, _ in deployments)
    for d, c in deployments:
        for port in c.get("ports", []):
            if not port_free(port["containerPort"]):
                sys.exit(f"port {port['containerPort']} ({d['metadata']['name']}) is in use "
                         "on 127.0.0.1")
    receiver = None
    port = otlp_port(docs)
    if port is not None:
        receiver = OtlpReceiver(port)
        stack.callback(receiver.close)
    procs, envs, edge = [], {}, None
    for d, c in deployments:
        name = d["metadata"]["name"]
        limits = limits_of(name, c, stack)
        say(f"{name}: otus {' '.join(c['args'])} ({limits.describe()})")
        envs[c["args"][0]] = env_of(docs, c, overrides)
        proc, log = fs.start(name, c["args"], envs[c["args"][0]], limits=limits)
        procs.append((name, killed_at_end(proc, stack), log, limits))
        if c["args"] == ["edge"]:
            edge = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
            edge_log = log
    if edge is None:
        sys.exit("the chart runs no edge")
    base = f"http://127.0.0.1:{edge}"

    def all_alive():
        """Fails at once, naming it (and the OOM killer if it was that),
        when a process has exited: a pod that would crash-loop."""
        for name, p, log, limits in procs:
            if p.poll() is not None:
                limits.check(quiet=True)
                sys.exit(f"{name} exited ({p.returncode})\n{log.read_text()[-3000:]}")
        return True

    wait_until(90, f"the edge's /ready at {base} (every service up)",
               lambda: all_alive() and http_status(base + "/ready") == 200, logfile=edge_log)
    all_alive()
    # The kubelet's probes as the chart writes them: a name or port that
    # does not match keeps the pods out of service (and `helm install
    # --wait` waiting).
    for d, c in deployments:
        for kind in ("livenessProbe", "readinessProbe"):
            name = d["metadata"]["name"]
            wait_until(30, f"{name}'s {kind} ({json.dumps(c.get(kind))})",
                       lambda: probe(args.buf, name, c, kind))
    say("every liveness and readiness probe of the chart passes")
    newman(args.newman, base, ["users", "auth"])
    # The catalog collection checks X-Cache unless told the cache is off.
    # Unset means the binary's default: on (README, CACHE_ENABLED).
    cache = envs.get("catalog", {}).get("CACHE_ENABLED", "1")
    cache_on = cache.lower() in ("1", "true", "on", "yes", "y")
    newman(args.newman, base, ["catalog"], [] if cache_on else ["cache=off"])
    if receiver is None:
        say("traces: not checked (the chart exports them to a collector outside the release)")
    else:
        check_trace(receiver, base, envs)
    for name, p, log, limits in procs:
        stop(name, p, log, grace, limits)
    say(f"every process stopped on SIGTERM within {grace} s, exit code 0")
    for _, _, _, limits in procs:
        limits.check()
    return grace


def run_all_in_one(args, fs, user, work: Path, grace, stack: contextlib.ExitStack):
    """The README's `docker run`: the image's default command, /data
    writable."""
    say("the README's `docker run`: all-in-one (the image's default command), /data writable")
    data = work / "data"
    data.mkdir()
    uid, _, gid = user.partition(":")
    os.chown(data, int(uid), int(gid or uid))
    proc, log = fs.start("all-in-one", ["all-in-one"], {}, data=str(data))
    killed_at_end(proc, stack)
    base = "http://127.0.0.1:8000"
    wait_until(60, f"all-in-one's /ready at {base}", lambda: http_status(base + "/ready") == 200,
               proc=proc, logfile=log)
    newman(args.newman, base, ["users", "auth"])
    with urllib.request.urlopen(
            base + "/products?q=" + urllib.parse.quote("рюкзак"), timeout=5) as r:
        body = json.loads(r.read())
    if r.status != 200 or "items" not in body:
        sys.exit(f"a search on all-in-one answered {r.status}: {body}")
    stop("all-in-one", proc, log, grace)
    if not (data / "otus.sqlite").exists():
        sys.exit("all-in-one wrote no otus.sqlite into /data")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--helm", required=True)
    ap.add_argument("--newman", required=True)
    ap.add_argument("--buf", required=True, help="buf, for the chart's gRPC probes (buf curl)")
    ap.add_argument("--pg-admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a chart value, as helm install --set takes it (repeatable); e.g. "
                         "catalog.seed.count=1000000 runs the pods on a 1M catalog")
    ap.add_argument("--also-values", action="append", default=[], metavar="FILE",
                    help="after the pods as --set installs them, run them again as `helm install "
                         "--values FILE` does (repeatable); a Secret the user creates first "
                         "(e.g. an external database's URL) is this machine's service")
    ap.add_argument("--keep", action="store_true", help="keep the built image (removed by default)")
    ap.add_argument("--reuse", action="store_true",
                    help="use the image a --keep run left instead of building it again (to work on "
                         "the checks after the build; CI never passes it)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (mounts and chroot), as CI runs")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="otus-image-"))
    # Everything registered on the stack is undone in reverse at the end,
    # failed or not: processes stopped before their cgroups go.
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        build(args, work, stack)
        user, workdir = check_config()
        # The chart as installed with --set, then with each --also-values.
        renders = [(None, rendered(args.helm, args.set))]
        renders += [(v, rendered(args.helm, args.set, v)) for v in args.also_values]
        if args.set:
            say(f"chart values: --set {' --set '.join(args.set)}")
        services = sorted({d["metadata"]["name"] for _, docs in renders for d in docs
                           if d["kind"] == "Service"})
        fs = Rootfs(work, services, user, workdir)
        stack.callback(fs.close)
        if fs.sh("sleep", "0").returncode != 0:
            sys.exit("the image has no `sleep`, which the chart's preStop hook runs")
        if fs.sh("touch", "/probe").returncode == 0:
            sys.exit("the root file system was writable: the read-only check is broken")
        grace = 0
        for run, (values, docs) in enumerate(renders):
            # Each run's processes, cgroups, database and keys are gone
            # before the next starts.
            with contextlib.ExitStack() as run_stack:
                if values:
                    say(f"the pods again, installed with --values {values}")
                overrides = backing_services(args, run_stack, run)
                say(f"as the chart's pods: uid {user}, root read-only, Services on 127.0.0.1; "
                    f"this machine's PostgreSQL ({overrides['DATABASE_URL'].rsplit('/', 1)[1]}) "
                    f"and Redis (keys {overrides['REDIS_KEY_PREFIX']}*)")
                grace = max(grace, run_pods(args, fs, docs, overrides, run_stack))
        run_all_in_one(args, fs, user, work, grace, stack)
        say(f"passed in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
