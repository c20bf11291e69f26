#!/usr/bin/env python3
"""How soon a change to `products` is searchable, and whether the catalog applied
it incrementally or built its index anew: against a running system on PostgreSQL.

Three changes, each made with plain SQL (as any writer would), each timed from its
commit to the first search that shows it (polled every 20 ms):

1. one product renamed to a new, unique word;
2. SMALL products inserted in one statement (an incremental update: at most
   10 000 products per update);
3. BULK products inserted in one statement (more than 10 000 rows: a bulk change,
   one "reload everything" row in the change log, so a full build).

For each it reads the catalog's metrics before and after (`catalog_index_updates_total`,
`catalog_index_builds_total`) and says which path served it. The rows it added are
deleted and the renamed product is renamed back at the end.

    python3 loadtest/freshness.py --base http://127.0.0.1:18100 \\
        --metrics http://127.0.0.1:18101/metrics --db postgres://postgres@127.0.0.1:5432/otus

Prints one table; exits 1 when a change is not searchable within --timeout seconds.
"""
import argparse
import json
import random
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

LETTERS = "бвгджзклмнпрстфхцчшщ"


def unique_word(prefix):
    return prefix + "".join(random.choice(LETTERS) for _ in range(8))


def psql(db, sql):
    return subprocess.run(["psql", db, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, check=True).stdout.strip()


def search(base, q):
    url = f"{base}/products?" + urllib.parse.urlencode({"q": q, "limit": 5})
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def counters(metrics_url):
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    out = {}
    for name in ("catalog_index_updates_total", "catalog_index_builds_total"):
        m = re.search(rf'^{name}{{outcome="ok"}} (\S+)$', text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def wait_for(base, q, want_total, timeout):
    started = time.monotonic()
    while True:
        page = search(base, q)
        if page["total"] == want_total:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.02)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the edge, e.g. http://127.0.0.1:18100")
    p.add_argument("--metrics", required=True, help="the catalog's /metrics URL")
    p.add_argument("--db", required=True, help="the catalog's PostgreSQL database URL")
    p.add_argument("--small", type=int, default=1000, help="products in the incremental insert (default 1000)")
    p.add_argument("--bulk", type=int, default=20000, help="products in the bulk insert (default 20000)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for each change (default 300)")
    args = p.parse_args()

    products = int(psql(args.db, "SELECT count(*) FROM products"))
    rows = []
    failed = False

    def measure(what, change, q, want_total):
        nonlocal failed
        before = counters(args.metrics)
        change()
        took = wait_for(args.base, q, want_total, args.timeout)
        # The update that served it may not be counted yet: poll (bounded)
        # until an update or a build shows, rather than a fixed pause.
        deadline = time.monotonic() + 30
        while True:
            after = counters(args.metrics)
            if any(after[k] > before[k] for k in ("catalog_index_updates_total",
                                                  "catalog_index_builds_total")):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        updates = after["catalog_index_updates_total"] - before["catalog_index_updates_total"]
        builds = after["catalog_index_builds_total"] - before["catalog_index_builds_total"]
        path = f"{int(updates)} incremental update(s), {int(builds)} full build(s)"
        if took is None:
            failed = True
        rows.append((what, "not within timeout" if took is None else f"{took:.2f}", path))

    target = int(psql(args.db, "SELECT id FROM products ORDER BY id OFFSET (SELECT count(*) / 2 FROM products) LIMIT 1"))
    old_name = psql(args.db, f"SELECT name FROM products WHERE id = {target}")
    word = unique_word("квазар")
    measure("1 product renamed",
            lambda: psql(args.db, f"UPDATE products SET name = 'Квазарный {word}', "
                                  f"name_search = 'квазарный {word}' WHERE id = {target}"),
            word, 1)

    def insert(n, word):
        return lambda: psql(args.db, (
            "INSERT INTO products (name, name_search, description, category, price_cents) "
            f"SELECT 'Пульсарный {word} ' || g, 'пульсарный {word} ' || g, 'freshness', 'Дом и сад', 100 "
            f"FROM generate_series(1, {n}) g"))

    small = unique_word("пульсар")
    measure(f"{args.small} products inserted in one statement", insert(args.small, small), small,
            min(args.small, 10000))
    bulk = unique_word("пульсар")
    measure(f"{args.bulk} products inserted in one statement (bulk)", insert(args.bulk, bulk), bulk,
            min(args.bulk, 10000))

    psql(args.db, "DELETE FROM products WHERE description = 'freshness'")
    old = old_name.replace("'", "''")
    psql(args.db, f"UPDATE products SET name = '{old}', name_search = lower('{old}') WHERE id = {target}")

    print(f"Freshness on {products} products (PostgreSQL {psql(args.db, 'SHOW server_version')}, "
          f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, "
          f"{time.strftime('%Y-%m-%d', time.gmtime())})")
    print()
    print("| change | commit to searchable, s | how the catalog applied it |")
    print("|---|---|---|")
    for what, took, path in rows:
        print(f"| {what} | {took} | {path} |")
    if failed:
        print("a change was not searchable within the timeout", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
