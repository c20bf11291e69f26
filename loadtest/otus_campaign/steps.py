"""The step load's figures: reading them, classifying the working, degradation
and failure points, the conclusions."""
import json
import os

from .common import ERROR_PCT_FAILURE, RISE_FAILURE, fmt_ms, log, num, size_label
from .sampling import bottleneck, cpu_of, cpu_per_request, step_resources, users_of


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
