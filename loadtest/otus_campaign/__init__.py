"""Homework 7's load-test campaign (run it as `python3 loadtest/campaign.py`),
one module per job:

- `common`: paths, ports, the load generators, logging, small formatting;
- `system`: the system's processes behind nginx, Redis, the catalog data, the
  machine's description;
- `sampling`: CPU and memory of every process from /proc, and which resource
  was at its limit;
- `prom`: the campaign's Prometheus and the dashboards' PromQL;
- `charts`: PNG charts of the dashboards' panels and the comparisons;
- `steps`: the step load's figures and the working, degradation and failure
  points;
- `report`: README.md and the saved state it can be rewritten from;
- `main`: the command line and one run over every configuration.

Waiting for a condition is `loadtest/waiting.py`'s, shared with `cost.py`.
"""
