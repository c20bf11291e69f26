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
# The campaign itself is the package beside this script, one module per job:
# otus_campaign.common (paths, ports, generators, logging), .system (the
# processes, nginx, Redis, the catalog data), .sampling (CPU and memory from
# /proc), .prom (Prometheus and the dashboards' PromQL), .charts, .steps (the
# step figures and their verdicts), .report, .main (the command line).
from otus_campaign.main import main

if __name__ == "__main__":
    main()
