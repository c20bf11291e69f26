"""The PNG charts: dashboard panels drawn from Prometheus, and the comparisons
across configurations."""
import os
import re

from .common import GEN, die
from .prom import CLUSTER_ONLY, dashboard_rows, panel_series
from .sampling import MACHINE


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
