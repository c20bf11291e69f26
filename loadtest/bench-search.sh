#!/usr/bin/env bash
# Product search benchmark: seeds the catalog sizes of SIZES into the local
# PostgreSQL, then measures through the edge with wrk, side by side in one run:
#   (a) baseline  - the unindexed `name ILIKE '%word%'` of the original solution
#                   (CATALOG_SEARCH_BASELINE=1), cache off;
#   (b) trigram   - the previous design: the database answers on its pg_trgm
#                   index with a bounded count (CATALOG_SEARCH_INDEX=false), cache off;
#   (c) index     - the current design: the in-memory index (waited for before
#                   measuring), cache off;
#   (d) cached    - the current design with the in-process cache on.
# Same binary, same scenario, same concurrency; prints one table. SHAPE picks
# the data: `catalog` (our generator; the fixed query mix of loadtest/search.lua)
# or `words` (the original solution's data: three words of a 454-word
# vocabulary; 300 searches of 1-2 words drawn from random names by
# search_candidates.py, as the original's Locust scenario does). Deadlines are
# raised to 120 s for the run so slow answers are measured rather than cut off
# (the service's default deadline is 5 s, and the baseline at 1M exceeds it);
# errors are counted in the table. Results and the machine they ran on:
# loadtest/README.md and docs/search.md.
#
# Usage: loadtest/bench-search.sh
# Env:   PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres), SIZES
#        ("10000 1000000"; 10000000 works: about 7 minutes to seed), SHAPE
#        (catalog), VARIANTS ("baseline trigram index cached"), DURATION (15s),
#        CONNECTIONS (16), THREADS (2), OTUS_BIN (a release `otus`; built when unset).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SIZES=${SIZES:-"10000 1000000"}
SHAPE=${SHAPE:-catalog}
VARIANTS=${VARIANTS:-"baseline trigram index cached"}
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
PORT=18000
ADMIN_PORT=18001

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v psql >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null; }
command -v bc >/dev/null || { apt-get update -qq && apt-get install -y -qq bc >/dev/null; }

if [ -z "${OTUS_BIN:-}" ]; then
  echo "building the release binary (cargo build --release --bin otus)..." >&2
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/otus-rs/bench-target}
  cargo build --release --bin otus >&2
  OTUS_BIN="$CARGO_TARGET_DIR/release/otus"
fi

SERVER=""
stop_server() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=""; fi
}
trap stop_server EXIT

metric() { curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
index_built() { [ -n "$(metric 'catalog_index_builds_total{outcome="ok"}')" ]; }
# shellcheck source=wait.sh
source "$ROOT/loadtest/wait.sh"

start_server() { # db_url cache baseline index
  HTTP_ADDR=127.0.0.1:$PORT ADMIN_ADDR=127.0.0.1:$ADMIN_PORT USERS_GRPC_ADDR=127.0.0.1:0 \
  AUTH_GRPC_ADDR=127.0.0.1:0 CATALOG_GRPC_ADDR=127.0.0.1:0 \
  DATABASE_URL="$1" CACHE_ENABLED="$2" CATALOG_SEARCH_BASELINE="$3" CATALOG_SEARCH_INDEX="$4" \
  DATABASE_MAX_CONNECTIONS=16 RUST_LOG=warn \
  GRPC_DEADLINE_MS=120000 REQUEST_TIMEOUT_MS=120000 DATABASE_ACQUIRE_TIMEOUT_MS=120000 \
    "$OTUS_BIN" all-in-one >/tmp/otus-bench-server.log 2>&1 &
  SERVER=$!
  # shellcheck disable=SC2034 # read by wait_until (wait.sh)
  WAIT_LOGS=/tmp/otus-bench-server.log
  wait_until 60 "the server ready" curl -fsS "http://127.0.0.1:$PORT/ready"
  if [ "$4" = true ]; then
    # Measure the index, not the database that answers while it builds.
    wait_until 900 "the search index built" index_built
    echo "   index: $(metric catalog_index_products) products in $(metric catalog_index_build_seconds) s" >&2
  fi
}

ROWS=()
for n in $SIZES; do
  db="otus_bench_$n"
  [ "$SHAPE" = catalog ] || db="otus_bench_${SHAPE}_$n"
  db_url="${PG_ADMIN_URL%/*}/$db"
  psql "$PG_ADMIN_URL" -qAtc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
    || psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$db\""
  have=$(psql "$db_url" -qAtc "SELECT count(*) FROM products" 2>/dev/null || echo 0)
  if [ "$have" != "$n" ]; then
    echo "== seeding $n products into $db" >&2
    start=$(date +%s.%N)
    DATABASE_URL="$db_url" RUST_LOG=warn "$OTUS_BIN" seed-products --count "$n" --seed 1 --shape "$SHAPE" --mode replace
    echo "seed-products --count $n: $(echo "$(date +%s.%N) - $start" | bc) s wall clock" >&2
  else
    echo "== $db already holds $n products" >&2
  fi
  echo "== EXPLAIN of the indexed search for «космос» at $n products" >&2
  psql "$db_url" -qAtc "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM products WHERE name_search LIKE '%космос%'" >&2

  export SEARCH_URLS=""
  if [ "$SHAPE" = words ]; then
    python3 loadtest/search_candidates.py --db "$db_url" --dump-searches "/tmp/otus-bench-searches-$n.txt" --dump-only
    python3 - "/tmp/otus-bench-searches-$n.txt" >"/tmp/otus-bench-urls-$n.txt" <<'PY'
import sys, urllib.parse
for line in open(sys.argv[1], encoding="utf-8"):
    if line.strip():
        print("/products?" + urllib.parse.urlencode({"q": line.strip()}))
PY
    SEARCH_URLS="/tmp/otus-bench-urls-$n.txt"
  fi
  for name in $VARIANTS; do
    case $name in
      baseline) cache=0 baseline=1 index=false ;;
      trigram) cache=0 baseline=0 index=false ;;
      index) cache=0 baseline=0 index=true ;;
      cached) cache=1 baseline=0 index=true ;;
      *) echo "unknown variant $name (baseline, trigram, index, cached)" >&2; exit 2 ;;
    esac
    start_server "$db_url" "$cache" "$baseline" "$index"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d3s --timeout 120s -s loadtest/search.lua "http://127.0.0.1:$PORT" >/dev/null # warm-up
    line=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 120s -s loadtest/search.lua "http://127.0.0.1:$PORT" | grep '^BENCH')
    stop_server
    echo "$n $name: $line" >&2
    errors=$(( $(sed -n 's/.* non2xx=\([0-9]*\).*/\1/p' <<<"$line") + $(sed -n 's/.* socket_errors=\([0-9]*\).*/\1/p' <<<"$line") ))
    rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$line")
    p50=$(sed -n 's/.* p50_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    p99=$(sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    ROWS+=("$n|$name|$rps|$p50|$p99|$errors")
  done
done

echo
echo "Product search through the edge; wrk -t$THREADS -c$CONNECTIONS -d$DURATION; data: $SHAPE; queries: $([ "$SHAPE" = words ] && echo '300 searches of 1-2 words from random names' || echo loadtest/search.lua)"
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(psql "$PG_ADMIN_URL" -qAtc 'SHOW server_version') PostgreSQL, $(date -u +%Y-%m-%d)"
echo
printf '| %-9s | %-9s | %10s | %9s | %9s | %6s | %18s |\n' products variant "req/s" "p50 ms" "p99 ms" errors "req/s vs baseline"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "-----------" "-----------" "------------" "-----------" "-----------" "--------" "--------------------"
base=""
for row in "${ROWS[@]}"; do
  IFS='|' read -r n name rps p50 p99 errors <<<"$row"
  [ "$name" = baseline ] && base=$rps
  ratio=$([ -n "$base" ] && echo "scale=1; $rps / $base" | bc || echo "-")
  printf '| %9s | %-9s | %10s | %9s | %9s | %6s | %17sx |\n' "$n" "$name" "$rps" "$p50" "$p99" "$errors" "$ratio"
done
