#!/usr/bin/env bash
# The original solution's Locust scenario (loadtest/locust_search.py: USERS
# users, no think time) side by side in one run against:
#   (a) ceiling - nginx answering one fixed search page (a real answer of the
#                 service, same size) from memory: what Locust itself can
#                 drive and measure on this machine, whatever the server;
#   (b) otus    - the release `otus all-in-one` on a PostgreSQL catalog, cache
#                 off, the in-memory index (waited for before measuring).
# Prints, for each: req/s, failures, p50/p95/p99 as Locust measured them,
# and the CPU the server and Locust used (cores, from /proc).
#
# Usage: DATABASE_URL=postgres://…/otus_search_words_1m loadtest/locust-search.sh
# Env:   USERS (200), SPAWN_RATE (50), DURATION (3m), SEARCHES (a file of
#        searches, one per line; drawn from DATABASE_URL's products with
#        search_candidates.py when unset), OTUS_BIN (release `otus`; built when
#        unset), PORT (18400; otus admin on PORT+1, nginx on PORT+2),
#        TARGETS ("ceiling otus"), PROCESSES (1; more runs Locust with
#        --processes N, one worker per core; the CPU column then counts only
#        Locust's master).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${DATABASE_URL:?DATABASE_URL (PostgreSQL with products) is required}"
USERS=${USERS:-200}
SPAWN_RATE=${SPAWN_RATE:-50}
DURATION=${DURATION:-3m}
PORT=${PORT:-18400}
ADMIN_PORT=$((PORT + 1))
NGINX_PORT=$((PORT + 2))
TARGETS=${TARGETS:-"ceiling otus"}
PROCESSES=${PROCESSES:-1}

command -v locust >/dev/null || pip install --quiet locust
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
if [ -z "${OTUS_BIN:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/otus-rs/release-target}
  (cd "$ROOT" && cargo build --release -p otus --bin otus >&2)
  OTUS_BIN="$CARGO_TARGET_DIR/release/otus"
fi

WORK=$(mktemp -d)
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
  [ -f "$WORK/nginx/nginx.pid" ] && nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -s stop >/dev/null 2>&1
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=wait.sh
source "$ROOT/loadtest/wait.sh"
# shellcheck disable=SC2034 # read by wait_until (wait.sh)
WAIT_LOGS="$WORK/otus.log"
metric() { curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
index_built() { [ -n "$(metric 'catalog_index_builds_total{outcome="ok"}')" ]; }
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }

if [ -z "${SEARCHES:-}" ]; then
  SEARCHES="$WORK/searches.txt"
  python3 "$ROOT/loadtest/search_candidates.py" --db "$DATABASE_URL" --dump-searches "$SEARCHES" --dump-only >&2
fi

HTTP_ADDR=127.0.0.1:$PORT ADMIN_ADDR=127.0.0.1:$ADMIN_PORT USERS_GRPC_ADDR=127.0.0.1:0 \
AUTH_GRPC_ADDR=127.0.0.1:0 CATALOG_GRPC_ADDR=127.0.0.1:0 CACHE_ENABLED=0 RUST_LOG=warn \
  "$OTUS_BIN" all-in-one >"$WORK/otus.log" 2>&1 &
SERVER=$!
wait_until 60 "otus ready" curl -fsS "http://127.0.0.1:$PORT/ready"
wait_until 900 "search index built" index_built
echo "index: $(metric catalog_index_products) products, built in $(metric catalog_index_build_seconds) s" >&2

# The ceiling's page: the service's own answer (a full default page) to the
# search with the most matches among the first 50.
mkdir -p "$WORK/nginx/logs"
python3 - "$SEARCHES" "http://127.0.0.1:$PORT" "$WORK/nginx/page.json" <<'EOF'
import json, sys, urllib.parse, urllib.request
searches = [l.strip() for l in open(sys.argv[1], encoding="utf-8") if l.strip()][:50]
best = None
for q in searches:
    body = urllib.request.urlopen(f"{sys.argv[2]}/products?" + urllib.parse.urlencode({"q": q})).read()
    if best is None or json.loads(body)["total"] > json.loads(best)["total"]:
        best = body
page = json.loads(best)
if page["total"] <= 10:
    sys.exit("no search among the first 50 has more than 10 matches")
open(sys.argv[3], "wb").write(best)
print(f"ceiling page: {len(best)} bytes, total {page['total']}", file=sys.stderr)
EOF
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /products { default_type application/json; alias $WORK/nginx/page.json; }
  }
}
EOF
# nginx's workers run as an unprivileged user: let them read the page.
chmod 755 "$WORK" "$WORK/nginx" && chmod 644 "$WORK/nginx/page.json"
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
wait_until 10 "nginx up" curl -fsS "http://127.0.0.1:$NGINX_PORT/products"
NGINX_PID=$(cat "$WORK/nginx/nginx.pid")
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n1)

ROWS=()
for target in $TARGETS; do
  case $target in
    ceiling) url="http://127.0.0.1:$NGINX_PORT" pid=$NGINX_WORKER ;;
    otus) url="http://127.0.0.1:$PORT" pid=$SERVER ;;
    *) echo "unknown target $target (ceiling, otus)" >&2; exit 2 ;;
  esac
  echo "== $target: locust -u $USERS -r $SPAWN_RATE -t $DURATION $url" >&2
  before=$(cpu_s "$pid")
  start=$(date +%s.%N)
  SEARCHES="$SEARCHES" locust -f "$ROOT/loadtest/locust_search.py" --headless -u "$USERS" -r "$SPAWN_RATE" \
    -t "$DURATION" --host "$url" --csv "$WORK/$target" --only-summary \
    $([ "$PROCESSES" -gt 1 ] && echo "--processes $PROCESSES") >"$WORK/locust-$target.log" 2>&1 &
  locust_pid=$!
  locust_cpu=0
  # Locust ends by itself after -t; one that is still running two minutes
  # later (its stop and report included) is stuck: stopped, and the run fails.
  limit=$(python3 -c 'import re, sys; print(120 + sum(int(n) * {"h": 3600, "m": 60}.get(u, 1) for n, u in re.findall(r"(\d+)([hms]?)", sys.argv[1])))' "$DURATION")
  deadline=$(($(date +%s) + limit))
  # Locust's CPU: read each second while it runs (its /proc entry goes with it).
  while kill -0 "$locust_pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "$target: locust still running ${limit} s after a $DURATION run started; stopping it" >&2
      kill "$locust_pid" 2>/dev/null || true
      wait "$locust_pid" 2>/dev/null || true
      exit 1
    fi
    locust_cpu=$(cpu_s "$locust_pid" 2>/dev/null || echo "$locust_cpu")
    sleep 1
  done
  wait "$locust_pid" || true
  wall=$(python3 -c "import time; print(time.time() - $start)")
  server_cores=$(python3 -c "print(f'{($(cpu_s "$pid") - $before) / $wall:.2f}')")
  locust_cores=$(python3 -c "print(f'{$locust_cpu / $wall:.2f}')")
  row=$(python3 - "$WORK/${target}_stats.csv" <<'EOF'
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    if r["Name"] == "Aggregated":
        print(f'{float(r["Requests/s"]):.0f}|{r["Failure Count"]}|{r["50%"]}|{r["95%"]}|{r["99%"]}')
EOF
)
  grep -i 'cpu' "$WORK/locust-$target.log" | head -n2 >&2 || true
  ROWS+=("$target|$row|$server_cores|$locust_cores")
done

echo
echo "The original's Locust scenario, $USERS users, no think time, $DURATION; FastHttpUser; $PROCESSES Locust process(es); cache off"
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(date -u +%F); catalog: $(metric catalog_index_products) products"
echo
printf '| %-8s | %7s | %8s | %6s | %6s | %6s | %11s | %11s |\n' target "req/s" failures "p50 ms" "p95 ms" "p99 ms" "server CPU" "Locust CPU"
printf '|----------|---------|----------|--------|--------|--------|-------------|-------------|\n'
for row in "${ROWS[@]}"; do
  IFS='|' read -r t rps fail p50 p95 p99 sc lc <<<"$row"
  printf '| %-8s | %7s | %8s | %6s | %6s | %6s | %11s | %11s |\n' "$t" "$rps" "$fail" "$p50" "$p95" "$p99" "$sc" "$lc"
done
