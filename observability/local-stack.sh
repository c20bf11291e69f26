#!/usr/bin/env bash
# Local observability stack without Kubernetes: Debian's Prometheus (and, when
# installed, postgres_exporter and redis_exporter) scraping the running
# otus-rs processes, with the project's alert rules loaded.
#
#   cargo run &                                  # the system (admin port :9000)
#   observability/local-stack.sh                 # Prometheus on http://127.0.0.1:9090
#
# Env:
#   TARGETS        admin ports to scrape (default "127.0.0.1:9000"; the split
#                  processes: "127.0.0.1:9000 127.0.0.1:9001 127.0.0.1:9002 127.0.0.1:9003")
#   PROM_PORT      Prometheus port (9090)
#   SCRAPE_INTERVAL (5s)
#   PG_DSN         e.g. postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable
#                  starts prometheus-postgres-exporter on PG_EXPORTER_ADDR (127.0.0.1:9187)
#   REDIS_ADDR     e.g. redis://127.0.0.1:6379, starts prometheus-redis-exporter on
#                  REDIS_EXPORTER_ADDR (127.0.0.1:9121)
#   DETACH=1       start in the background, print the PIDs file, and return
#   READY_TIMEOUT  seconds to wait for Prometheus to report ready (60)
# Install: apt-get install --no-install-recommends prometheus
#          [prometheus-postgres-exporter prometheus-redis-exporter]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TARGETS=${TARGETS:-127.0.0.1:9000}
PROM_PORT=${PROM_PORT:-9090}
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-5s}
PG_EXPORTER_ADDR=${PG_EXPORTER_ADDR:-127.0.0.1:9187}
REDIS_EXPORTER_ADDR=${REDIS_EXPORTER_ADDR:-127.0.0.1:9121}
DIR=${STACK_DIR:-$(mktemp -d /tmp/otus-stack.XXXXXX)}
mkdir -p "$DIR/data"
command -v prometheus >/dev/null || { echo "prometheus is not installed: apt-get install --no-install-recommends prometheus" >&2; exit 1; }

pids=()
extra_jobs=""
if [ -n "${PG_DSN:-}" ] && command -v prometheus-postgres-exporter >/dev/null; then
  DATA_SOURCE_NAME="$PG_DSN" prometheus-postgres-exporter --web.listen-address="$PG_EXPORTER_ADDR" >"$DIR/postgres-exporter.log" 2>&1 &
  pids+=($!)
  extra_jobs+=$'\n'"  - job_name: postgres"$'\n'"    static_configs: [{targets: ['$PG_EXPORTER_ADDR']}]"
fi
if [ -n "${REDIS_ADDR:-}" ] && command -v prometheus-redis-exporter >/dev/null; then
  prometheus-redis-exporter -redis.addr "$REDIS_ADDR" -web.listen-address "$REDIS_EXPORTER_ADDR" >"$DIR/redis-exporter.log" 2>&1 &
  pids+=($!)
  extra_jobs+=$'\n'"  - job_name: redis"$'\n'"    static_configs: [{targets: ['$REDIS_EXPORTER_ADDR']}]"
fi

targets_yaml=$(for t in $TARGETS; do printf "'%s', " "$t"; done | sed 's/, $//')
cp "$HERE/prometheus/rules.yml" "$DIR/rules.yml"
cat >"$DIR/prometheus.yml" <<YAML
global:
  scrape_interval: $SCRAPE_INTERVAL
  evaluation_interval: $SCRAPE_INTERVAL
rule_files: [rules.yml]
scrape_configs:
  - job_name: otus
    static_configs: [{targets: [$targets_yaml]}]$extra_jobs
YAML
prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$DIR/prometheus.log" 2>&1 &
pids+=($!)
printf '%s\n' "${pids[@]}" >"$DIR/pids"
# Poll for readiness (bounded), never a fixed sleep.
# shellcheck source=../loadtest/wait.sh
source "$HERE/../loadtest/wait.sh"
WAIT_LOGS="$DIR/prometheus.log" wait_until "${READY_TIMEOUT:-60}" "Prometheus ready" \
  curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready"
echo "Prometheus: http://127.0.0.1:$PROM_PORT  (scraping: $TARGETS; config and logs in $DIR)"
echo "Try: http://127.0.0.1:$PROM_PORT/graph?g0.expr=histogram_quantile(0.99%2C%20sum%20by%20(route%2C%20le)%20(rate(http_server_request_duration_seconds_bucket%5B1m%5D)))"
if [ "${DETACH:-0}" = 1 ]; then
  echo "running in the background; stop with: kill \$(cat $DIR/pids)"
  exit 0
fi
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
wait
