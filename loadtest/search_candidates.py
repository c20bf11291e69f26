#!/usr/bin/env python3
"""Search designs side by side on one PostgreSQL database (issue: search at 1M/10M).

Measures, on the `products` table that `otus seed-products` filled, the SQL each
candidate design would run for the same sample of searches, one client, warm
cache (each query runs once unmeasured first), and prints latency percentiles:

  trigram  - what the catalog runs today: `name_search LIKE '%w%'` per word
             (pg_trgm GIN index), page `ORDER BY id LIMIT 20`, total counted
             up to 10 000 (`SELECT count(*) FROM (... LIMIT 10001)`).
  postings - an inverted index in tables: `bench_vocab` (every distinct word
             of the names, trigram-indexed) and `bench_product_words` (word,
             product_id) as a B-tree; a query word is first resolved to the
             vocabulary words containing it, then the rarest word's postings
             are walked in id order and checked against the others.

The searches follow the original solution's Locust scenario: one or two
words taken from random products' names. Builds the postings tables on
first use (timed, sizes printed); `--drop` removes them.

Usage: loadtest/search_candidates.py --db postgres://postgres@127.0.0.1:5432/otus_bench_1000000
       [--sample 300] [--seed 1] [--drop]
"""

import argparse
import random
import statistics
import subprocess
import sys
import time

try:
    import psycopg2
except ImportError:  # installed on first use (PyPI)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "psycopg2-binary"])
    import psycopg2

BOUND = 10_000
LIMIT = 20


def build_postings(cur):
    cur.execute("SELECT to_regclass('bench_product_words') IS NOT NULL")
    if cur.fetchone()[0]:
        return
    print("building the postings tables (once)...", file=sys.stderr)
    started = time.perf_counter()
    cur.execute("""
        CREATE TABLE bench_product_words AS
        SELECT DISTINCT w AS word, id AS product_id
        FROM products, regexp_split_to_table(name_search, '\\s+') AS w
        WHERE w <> ''""")
    cur.execute("ALTER TABLE bench_product_words ADD PRIMARY KEY (word, product_id)")
    cur.execute("""
        CREATE TABLE bench_vocab AS
        SELECT word, count(*) AS n FROM bench_product_words GROUP BY word""")
    cur.execute("ALTER TABLE bench_vocab ADD PRIMARY KEY (word)")
    cur.execute("CREATE INDEX bench_vocab_trgm ON bench_vocab USING gin (word gin_trgm_ops)")
    took = time.perf_counter() - started
    cur.connection.autocommit = True
    cur.execute("VACUUM ANALYZE bench_product_words")
    cur.execute("VACUUM ANALYZE bench_vocab")
    print(f"built in {took:.1f} s (+ VACUUM ANALYZE)", file=sys.stderr)


def sizes(cur):
    out = {}
    for rel in ["products", "products_name_trgm_idx", "bench_product_words", "bench_vocab"]:
        cur.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))", (rel,))
        out[rel] = cur.fetchone()[0]
    cur.execute("SELECT count(*) FROM bench_vocab")
    out["vocabulary words"] = cur.fetchone()[0]
    return out


def like(word):
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def trigram(cur, words):
    where = " AND ".join(["name_search LIKE %s"] * len(words))
    args = [like(w) for w in words]
    cur.execute(f"SELECT id, name, description, category, price_cents FROM products "
                f"WHERE {where} ORDER BY id LIMIT {LIMIT}", args)
    page = cur.fetchall()
    cur.execute(f"SELECT count(*) FROM (SELECT id FROM products WHERE {where} LIMIT {BOUND + 1}) s", args)
    return [r[0] for r in page], cur.fetchone()[0]


def postings(cur, words):
    # 1. Each query word -> the vocabulary words containing it, and their
    #    total postings (to walk the rarest first).
    terms = []
    for w in words:
        cur.execute("SELECT coalesce(array_agg(word), '{}'), coalesce(sum(n), 0) "
                    "FROM bench_vocab WHERE word LIKE %s", (like(w),))
        vocab, n = cur.fetchone()
        if not vocab:
            return [], 0
        terms.append((n, vocab))
    terms.sort(key=lambda t: t[0])
    first, rest = terms[0][1], [t[1] for t in terms[1:]]
    checks = " ".join(
        "AND EXISTS (SELECT 1 FROM bench_product_words o WHERE o.product_id = d.product_id "
        "AND o.word = ANY(%s))" for _ in rest)
    ids_sql = (f"SELECT DISTINCT d.product_id FROM bench_product_words d "
               f"WHERE d.word = ANY(%s) {checks} ORDER BY d.product_id")
    args = [first, *rest]
    cur.execute(f"SELECT p.id, p.name, p.description, p.category, p.price_cents FROM products p "
                f"WHERE p.id IN ({ids_sql} LIMIT {LIMIT}) ORDER BY p.id", args)
    page = cur.fetchall()
    cur.execute(f"SELECT count(*) FROM ({ids_sql} LIMIT {BOUND + 1}) s", args)
    return [r[0] for r in page], cur.fetchone()[0]


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--drop", action="store_true")
    ap.add_argument("--dump-only", action="store_true",
                    help="with --dump-searches: write the searches and stop (no postings tables, no measurements)")
    ap.add_argument("--dump-searches", metavar="FILE",
                    help="also write the sampled searches there, one per line (for the Rust index benchmark)")
    args = ap.parse_args()
    conn = psycopg2.connect(args.db)
    conn.autocommit = True
    cur = conn.cursor()
    if args.drop:
        cur.execute("DROP TABLE IF EXISTS bench_product_words, bench_vocab")
        return
    cur.execute("SELECT count(*), max(id) FROM products")
    count, max_id = cur.fetchone()
    print(f"{count} products", file=sys.stderr)
    if not args.dump_only:
        build_postings(cur)
        for k, v in sizes(cur).items():
            print(f"  {k}: {v}", file=sys.stderr)

    rng = random.Random(args.seed)
    searches = []
    while len(searches) < args.sample:
        cur.execute("SELECT name_search FROM products WHERE id = %s", (rng.randint(1, max_id),))
        row = cur.fetchone()
        if not row:
            continue
        words = [w for w in row[0].split() if len(w) >= 3]
        if words:
            searches.append(rng.sample(words, min(len(words), rng.choice([1, 2]))))

    if args.dump_searches:
        with open(args.dump_searches, "w", encoding="utf-8") as f:
            f.writelines(" ".join(words) + "\n" for words in searches)
        if args.dump_only:
            print(f"{len(searches)} searches written to {args.dump_searches}", file=sys.stderr)
            return

    results = {}
    for name, run in [("trigram", trigram), ("postings", postings)]:
        times, totals, mismatch = [], [], 0
        for i, words in enumerate(searches):
            run(cur, words)  # warm
            started = time.perf_counter()
            ids, total = run(cur, words)
            times.append((time.perf_counter() - started) * 1000)
            totals.append(total)
            if name != "trigram" and (ids, total) != results["trigram"]["answers"][i]:
                mismatch += 1
            results.setdefault(name, {"answers": []})["answers"].append((ids, total))
            if (i + 1) % 100 == 0:
                print(f"  {name}: {i + 1}/{len(searches)} searches", file=sys.stderr)
        results[name].update(times=times, totals=totals, mismatch=mismatch)

    print(f"\n{count} products, {len(searches)} searches (1-2 words from random names), one client, warm")
    print(f"{'design':9} | {'p50 ms':>7} | {'p95 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | "
          f"{'mean ms':>7} | {'answers ≠ trigram':>17}")
    for name, r in results.items():
        t = r["times"]
        print(f"{name:9} | {statistics.median(t):7.2f} | {pct(t, 95):7.2f} | {pct(t, 99):7.2f} | "
              f"{max(t):7.2f} | {statistics.mean(t):7.2f} | {r['mismatch']:17}")
    totals = results["trigram"]["totals"]
    print(f"matches per search: median {statistics.median(totals):.0f}, "
          f"p99 {pct(totals, 99)}, at the {BOUND} bound: {sum(1 for t in totals if t > BOUND)}")


if __name__ == "__main__":
    main()
