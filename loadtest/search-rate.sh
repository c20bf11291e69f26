#!/usr/bin/env bash
# Product search at fixed request rates (oha -q, latency corrected for
# coordinated omission), cache off, through the edge of one `otus all-in-one`
# on an existing PostgreSQL catalog. Prints one row per rate: achieved req/s,
# p50/p99/max, and errors (any non-200 or failed request; requests oha itself
# cuts when the duration ends are not counted).
#
# The searches come from a file of one search per line (words separated by
# spaces), e.g. the sample `loadtest/search_candidates.py --dump-searches`
# writes (1-2 words from random products' names, the original's scenario);
# oha picks from them at random.
#
# Usage: DATABASE_URL=postgres://…/otus_search_words_1m SEARCHES=/tmp/searches.txt \
#          loadtest/search-rate.sh
# Env:   RATES ("50 100 300"), DURATION (30s), OTUS_BIN (release `otus`; built
#        when unset), OHA (oha binary; `cargo install oha` into
#        ~/.cache/otus-rs/tools when missing), PORT (18100; admin on PORT+1),
#        SEARCH_INDEX (true: the in-memory index, waited for before measuring;
#        false: the database's trigram index answers, the previous design).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${DATABASE_URL:?DATABASE_URL (PostgreSQL with products) is required}"
: "${SEARCHES:?SEARCHES (a file of searches, one per line) is required}"
RATES=${RATES:-"50 100 300"}
DURATION=${DURATION:-30s}
PORT=${PORT:-18100}
ADMIN_PORT=$((PORT + 1))
SEARCH_INDEX=${SEARCH_INDEX:-true}

OHA=${OHA:-$(command -v oha || echo "$HOME/.cache/otus-rs/tools/bin/oha")}
if [ ! -x "$OHA" ]; then
  echo "installing oha (cargo install oha)..." >&2
  cargo install oha --locked --root "$HOME/.cache/otus-rs/tools" >&2
  OHA="$HOME/.cache/otus-rs/tools/bin/oha"
fi
if [ -z "${OTUS_BIN:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/otus-rs/bench-target}
  (cd "$ROOT" && cargo build --release --bin otus >&2)
  OTUS_BIN="$CARGO_TARGET_DIR/release/otus"
fi

WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

python3 - "$SEARCHES" "$PORT" >"$WORK/urls.txt" <<'EOF'
import sys, urllib.parse
for line in open(sys.argv[1], encoding="utf-8"):
    if line.strip():
        print(f"http://127.0.0.1:{sys.argv[2]}/products?" + urllib.parse.urlencode({"q": line.strip()}))
EOF

started=$(date +%s.%N)
HTTP_ADDR=127.0.0.1:$PORT ADMIN_ADDR=127.0.0.1:$ADMIN_PORT USERS_GRPC_ADDR=127.0.0.1:0 \
AUTH_GRPC_ADDR=127.0.0.1:0 CATALOG_GRPC_ADDR=127.0.0.1:0 CACHE_ENABLED=0 RUST_LOG=warn \
CATALOG_SEARCH_INDEX=$SEARCH_INDEX \
  "$OTUS_BIN" all-in-one >"$WORK/server.log" 2>&1 &
SERVER=$!
# Ready once the search index is built (10M products: about a minute and a half).
# shellcheck source=wait.sh
source "$ROOT/loadtest/wait.sh"
# shellcheck disable=SC2034 # read by wait_until (wait.sh)
WAIT_LOGS="$WORK/server.log"
wait_until 900 "the server ready" curl -fsS "http://127.0.0.1:$PORT/ready"
metric() { curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
index_built() { [ -n "$(metric 'catalog_index_builds_total{outcome="ok"}')" ]; }
rss_mib() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$SERVER/status"; }
design="database (trigram index)"
if [ "$SEARCH_INDEX" = true ]; then
  design="in-memory tantivy index"
  # Measure the index, not the database fallback that answers while it builds.
  wait_until 900 "the search index built" index_built
  echo "index: $(metric catalog_index_products) products built in $(metric catalog_index_build_seconds) s;" \
    "start to searchable $(python3 -c "import time; print(f'{time.time() - $started:.1f}')") s; server RSS $(rss_mib) MiB"
fi

products=$(curl -fsS "http://127.0.0.1:$PORT/products?limit=1" | python3 -c 'import json,sys; p=json.load(sys.stdin); print(p["total"], p["totalRelation"])')
echo "Search at fixed rates, cache off, $design; $(wc -l <"$WORK/urls.txt") searches from $SEARCHES; products: $products (total as the API counts it)"
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(psql "$DATABASE_URL" -Atc 'SHOW server_version' 2>/dev/null || echo '?') PostgreSQL, $(date -u +%F)"
echo
printf '| %8s | %10s | %8s | %8s | %8s | %7s |\n' "rate" "achieved" "p50 ms" "p99 ms" "max ms" "errors"
printf '|----------|------------|----------|----------|----------|---------|\n'
for rate in $RATES; do
  "$OHA" --urls-from-file "$WORK/urls.txt" -q "$rate" -z "$DURATION" --latency-correction \
    --no-tui --output-format json -o "$WORK/oha.json" >/dev/null 2>&1 || true
  python3 - "$WORK/oha.json" "$rate" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ok = codes.get("200", 0)
# "aborted due to deadline": requests still in flight when -z ends, cut by
# oha itself, not failures of the service.
failed = {k: v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
errors = sum(v for k, v in codes.items() if k != "200") + sum(failed.values())
ms = lambda v: (v or 0) * 1000
print(f"| {sys.argv[2]:>8} | {s['requestsPerSec']:10.1f} | {ms(p['p50']):8.2f} | {ms(p['p99']):8.2f} | {ms(s['slowest']):8.2f} | {errors:7} |")
EOF
done
echo
echo "server RSS after the run: $(rss_mib) MiB"
