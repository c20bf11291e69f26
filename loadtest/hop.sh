#!/usr/bin/env bash
# The edge's own cost per request: `GET /health/` on the release
# `otus all-in-one` (default log filter, JSON logs, as in Kubernetes) against a
# bare axum server answering the same JSON (crates/edge/examples/bare_axum.rs),
# wrk -t2 -c64, alternating ROUNDS times in one run so both see the same
# machine. Prints each round, the median of the rounds' ratios (each round's
# two runs are back to back, so this is the figure least moved by the
# machine's drift) and the ratio of the medians.
#
# Usage: loadtest/hop.sh
# Env:   ROUNDS (7), DURATION (10s), CONNECTIONS (64), PORT (18200; bare on PORT+1),
#        OTUS_BIN and BARE_BIN (prebuilt binaries, e.g. to compare two builds;
#        both are built when unset), RUST_LOG (the edge's log filter; default
#        the service's own).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18200}
BARE_PORT=$((PORT + 1))

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/otus-rs/release-target}
if [ -z "${OTUS_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -p otus --bin otus >&2)
  OTUS_BIN="$CARGO_TARGET_DIR/release/otus"
fi
if [ -z "${BARE_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -p otus-edge --example bare_axum >&2)
  BARE_BIN="$CARGO_TARGET_DIR/release/examples/bare_axum"
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

HTTP_ADDR=127.0.0.1:$PORT ADMIN_ADDR=127.0.0.1:0 USERS_GRPC_ADDR=127.0.0.1:0 AUTH_GRPC_ADDR=127.0.0.1:0 \
CATALOG_GRPC_ADDR=127.0.0.1:0 DATABASE_URL="sqlite://$WORK/hop.db?mode=rwc" LOG_FORMAT=json \
  "$OTUS_BIN" all-in-one >"$WORK/otus.log" 2>&1 &
PIDS+=($!)
"$BARE_BIN" "127.0.0.1:$BARE_PORT" >"$WORK/bare.log" 2>&1 &
PIDS+=($!)
# shellcheck source=wait.sh
source "$ROOT/loadtest/wait.sh"
# shellcheck disable=SC2034 # read by wait_until (wait.sh)
WAIT_LOGS="$WORK/otus.log $WORK/bare.log"
for url in "http://127.0.0.1:$PORT/health/" "http://127.0.0.1:$BARE_PORT/health/"; do
  wait_until 60 "$url up" curl -fsS "$url"
done

rps() { wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$1" | awk '/Requests\/sec/ {printf "%d", $2}'; }
echo "GET /health/, wrk -t2 -c$CONNECTIONS -d$DURATION; $(nproc) cores; $(date -u +%F)"
printf '| round | edge req/s | bare axum req/s | edge / bare |\n|---|---|---|---|\n'
edge_all=(); bare_all=(); ratio_all=()
for round in $(seq "$ROUNDS"); do
  e=$(rps "http://127.0.0.1:$PORT/health/")
  b=$(rps "http://127.0.0.1:$BARE_PORT/health/")
  edge_all+=("$e"); bare_all+=("$b"); ratio_all+=("$(( 100 * e / b ))")
  printf '| %s | %s | %s | %s%% |\n' "$round" "$e" "$b" "$(( 100 * e / b ))"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
me=$(median "${edge_all[@]}"); mb=$(median "${bare_all[@]}")
echo
echo "median of the rounds' edge / bare: $(median "${ratio_all[@]}")%"
echo "median: edge $me, bare $mb: edge / bare = $(( 100 * me / mb ))%"
