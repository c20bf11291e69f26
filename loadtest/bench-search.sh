#!/usr/bin/env bash
# Product search benchmark: seeds 10k and 1M products into the local
# PostgreSQL, then measures through the edge with wrk, side by side in one run:
#   (a) baseline  - the unindexed `name ILIKE '%word%'` of the original solution
#                   (CATALOG_SEARCH_BASELINE=1), cache off;
#   (b) indexed   - our trigram-indexed search, cache off (CACHE_ENABLED=0);
#   (c) cached    - our search with the in-process cache on (CACHE_ENABLED=1).
# Same binary, same scenario (loadtest/search.lua), same concurrency; prints
# one table. Deadlines are raised to 120 s for the run so slow answers are
# measured rather than cut off (the service's default deadline is 5 s, and
# the baseline at 1M exceeds it); errors are counted in the table. Results and the machine they ran on: loadtest/README.md.
#
# Usage: loadtest/bench-search.sh
# Env:   PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres), SIZES
#        ("10000 1000000"), DURATION (15s), CONNECTIONS (16), THREADS (2),
#        OTUS_BIN (a release `otus`; built when unset).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SIZES=${SIZES:-"10000 1000000"}
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
PORT=18000

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

start_server() { # db_url cache baseline
  HTTP_ADDR=127.0.0.1:$PORT ADMIN_ADDR=127.0.0.1:0 USERS_GRPC_ADDR=127.0.0.1:0 \
  AUTH_GRPC_ADDR=127.0.0.1:0 CATALOG_GRPC_ADDR=127.0.0.1:0 \
  DATABASE_URL="$1" CACHE_ENABLED="$2" CATALOG_SEARCH_BASELINE="$3" \
  DATABASE_MAX_CONNECTIONS=16 RUST_LOG=warn \
  GRPC_DEADLINE_MS=120000 REQUEST_TIMEOUT_MS=120000 DATABASE_ACQUIRE_TIMEOUT_MS=120000 \
    "$OTUS_BIN" all-in-one >/tmp/otus-bench-server.log 2>&1 &
  SERVER=$!
  local deadline=$(( $(date +%s) + 60 ))
  until curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      cat /tmp/otus-bench-server.log >&2
      echo "the server did not become ready within 60 s" >&2
      exit 1
    fi
    sleep 0.2
  done
}

ROWS=()
for n in $SIZES; do
  db="otus_bench_$n"
  db_url="${PG_ADMIN_URL%/*}/$db"
  psql "$PG_ADMIN_URL" -qAtc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
    || psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$db\""
  have=$(psql "$db_url" -qAtc "SELECT count(*) FROM products" 2>/dev/null || echo 0)
  if [ "$have" != "$n" ]; then
    echo "== seeding $n products into $db" >&2
    start=$(date +%s.%N)
    DATABASE_URL="$db_url" RUST_LOG=warn "$OTUS_BIN" seed-products --count "$n" --seed 1 --mode replace
    echo "seed-products --count $n: $(echo "$(date +%s.%N) - $start" | bc) s wall clock" >&2
  else
    echo "== $db already holds $n products" >&2
  fi
  echo "== EXPLAIN of the indexed search for «космос» at $n products" >&2
  psql "$db_url" -qAtc "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM products WHERE name_search LIKE '%космос%'" >&2

  for variant in "baseline:0:1" "indexed:0:0" "cached:1:0"; do
    IFS=: read -r name cache baseline <<<"$variant"
    start_server "$db_url" "$cache" "$baseline"
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
echo "Product search through the edge; wrk -t$THREADS -c$CONNECTIONS -d$DURATION, loadtest/search.lua"
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(psql "$PG_ADMIN_URL" -qAtc 'SHOW server_version') PostgreSQL, $(date -u +%Y-%m-%d)"
echo
printf '| %-9s | %-9s | %10s | %9s | %9s | %6s | %18s |\n' products variant "req/s" "p50 ms" "p99 ms" errors "req/s vs baseline"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "-----------" "-----------" "------------" "-----------" "-----------" "--------" "--------------------"
base=""
for row in "${ROWS[@]}"; do
  IFS='|' read -r n name rps p50 p99 errors <<<"$row"
  [ "$name" = baseline ] && base=$rps
  ratio=$(echo "scale=1; $rps / $base" | bc)
  printf '| %9s | %-9s | %10s | %9s | %9s | %6s | %17sx |\n' "$n" "$name" "$rps" "$p50" "$p99" "$errors" "$ratio"
done
