#!/usr/bin/env bash
# A CPU flame graph (SVG) of one release `otus all-in-one` answering product
# searches at a fixed rate: perf record -g at 499 Hz for SECONDS, folded with
# inferno (`cargo install inferno`).
#
# Usage: DATABASE_URL=postgres://…/otus_cost_1m URLS=/tmp/urls.txt \
#          loadtest/flame.sh OTUS_BIN OUT.svg
# Env:   RATE (500), SECONDS_ (10), CACHE_ENABLED (false), REDIS_URL, PORT (18400).
#        URLS: one search URL per line for http://127.0.0.1:$PORT (oha picks at random).
set -euo pipefail
BIN=${1:?otus binary}; OUT=${2:?output svg}
: "${DATABASE_URL:?}" "${URLS:?}"
PORT=${PORT:-18400}; RATE=${RATE:-500}; SECS=${SECONDS_:-10}
TOOLS=$HOME/.cache/otus-rs/tools/bin
export PATH=$TOOLS:$PATH
command -v inferno-flamegraph >/dev/null || cargo install inferno --locked --root "$HOME/.cache/otus-rs/tools"
WORK=$(mktemp -d); SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
HTTP_ADDR=127.0.0.1:$PORT ADMIN_ADDR=127.0.0.1:$((PORT + 1)) USERS_GRPC_ADDR=127.0.0.1:0 AUTH_GRPC_ADDR=127.0.0.1:0 \
CATALOG_GRPC_ADDR=127.0.0.1:0 CACHE_ENABLED=${CACHE_ENABLED:-false} LOG_FORMAT=json "$BIN" all-in-one >"$WORK/log" 2>&1 &
SERVER=$!
# shellcheck source=wait.sh
source "$(dirname "${BASH_SOURCE[0]}")/wait.sh"
WAIT_LOGS="$WORK/log" wait_until 300 "a search answer" curl -fsS "http://127.0.0.1:$PORT/products?q=%D1%87%D0%B0%D0%B9"
oha --urls-from-file "$URLS" -q "$RATE" -z 5s --no-tui >/dev/null 2>&1
# perf starts with the load (the server is warm from the run above).
oha --urls-from-file "$URLS" -q "$RATE" -z "$((SECS + 2))s" --no-tui >/dev/null 2>&1 &
perf record -F 499 -g -p "$SERVER" -o "$WORK/perf.data" -- sleep "$SECS" >/dev/null 2>&1
wait %2 2>/dev/null || true
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph --title "$(basename "$BIN") $RATE req/s, cache ${CACHE_ENABLED:-false}" >"$OUT"
echo "wrote $OUT"
