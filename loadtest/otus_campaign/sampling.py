"""CPU and memory of every process, sampled from /proc, and what they say about
the bottleneck."""
import os
import threading
import time

from .common import GEN, num


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


def cpu_per_request(cpu, rps):
    """Milliseconds of CPU per request of the system's groups at a step."""
    if rps <= 0:
        return []
    otus = sum(c for g, c in cpu.items() if g.startswith("otus "))
    rows = [("otus (4 processes)", otus)] + [(g, cpu.get(g, 0.0)) for g in ("postgresql", "redis", "nginx", GEN["group"])]
    return [(g, 1000 * c / rps) for g, c in rows]


def users_of(cfg, which):
    s = cfg["classified"][which]
    return str(s["users"]) if s else "none"


def cpu_of(cfg, group):
    return step_resources(cfg["resources"], cfg["steps"][-1])[0].get(group, 0.0)
