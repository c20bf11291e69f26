#!/usr/bin/env python3
"""Search relevance as a shopper meets it: recall@20 and "best match first" per
query class, against a running system, with the truth taken from the database.

The baseline for issue 22 (search that finds what the shopper means). Each query
names, for every word the shopper typed, the whole words of a product name that
count as a match (the word's forms in the generator's vocabulary, ё folded to е):
`рюкзаки` means the word `рюкзак`, `синие` any form of `синий`. A product is
relevant when every query word is matched by a whole word of its name; a
"partial" query (`рюкз`, a model code) instead wants names with a word starting
with it. "Best first": the first item answered is relevant and, when the name
holds the typed words as written, one of those.

    cargo run -- seed-products --count 10000 --seed 1 && cargo run &
    python3 loadtest/relevance.py --base http://127.0.0.1:8000 --db otus.sqlite
    python3 loadtest/relevance.py --db postgres://postgres@127.0.0.1:5432/otus

Prints one table (class, queries, recall@20, best first, empty answers) and one
line per query; measures, asserts nothing.
"""
import argparse
import json
import re
import sqlite3
import subprocess
import urllib.parse
import urllib.request

ADJ = {
    "синий": ["синий", "синяя", "синее", "синие"],
    "легкий": ["легкий", "легкая", "легкое", "легкие"],
    "звездный": ["звездный", "звездная", "звездное", "звездные"],
    "походный": ["походный", "походная", "походное", "походные"],
    "детский": ["детский", "детская", "детское", "детские"],
}


def noun(word):
    return [word]


# (class, the query as typed, [acceptable whole words per query word] or "prefix:<p>")
QUERIES = [
    ("exact word", "рюкзак", [noun("рюкзак")]),
    ("exact word", "палатка", [noun("палатка")]),
    ("exact word", "чай", [noun("чай")]),
    ("exact word", "куртка", [noun("куртка")]),
    ("exact word", "смартфон", [noun("смартфон")]),
    ("exact word", "телескоп", [noun("телескоп")]),
    ("another form", "рюкзаки", [noun("рюкзак")]),
    ("another form", "куртку", [noun("куртка")]),
    ("another form", "наушников", [noun("наушники")]),
    ("another form", "палатки", [noun("палатка")]),
    ("another form", "книгу", [noun("книга")]),
    ("another form", "смартфоны", [noun("смартфон")]),
    ("one typo", "рюкзк", [noun("рюкзак")]),
    ("one typo", "палтка", [noun("палатка")]),
    ("one typo", "наушнеки", [noun("наушники")]),
    ("one typo", "смартфн", [noun("смартфон")]),
    ("one typo", "энциклопедя", [noun("энциклопедия")]),
    ("one typo", "конструткор", [noun("конструктор")]),
    ("е for ё, case", "мед", [noun("мед")]),
    ("е for ё, case", "легкий", [ADJ["легкий"]]),
    ("е for ё, case", "ЗВЕЗДНАЯ", [ADJ["звездный"]]),
    ("е for ё, case", "РЮКЗАК", [noun("рюкзак")]),
    ("е for ё, case", "Телескоп", [noun("телескоп")]),
    ("two words", "синие куртки", [ADJ["синий"], noun("куртка")]),
    ("two words", "куртка синяя", [ADJ["синий"], noun("куртка")]),
    ("two words", "легкая палатка", [ADJ["легкий"], noun("палатка")]),
    ("two words", "походные рюкзаки", [ADJ["походный"], noun("рюкзак")]),
    ("two words", "детский конструктор", [ADJ["детский"], noun("конструктор")]),
    ("partial word", "рюкз", "prefix:рюкз"),
    ("partial word", "энцикл", "prefix:энцикл"),
    ("partial word", "телеск", "prefix:телеск"),
]


def fold(text):
    return text.lower().replace("ё", "е")


def names(db):
    """Every product's id and name."""
    if db.startswith("postgres"):
        out = subprocess.run(["psql", db, "-qAt", "-F", "\t", "-c", "SELECT id, name FROM products"],
                             capture_output=True, text=True, check=True).stdout
        return [(int(i), n) for i, n in (line.split("\t", 1) for line in out.splitlines() if line)]
    con = sqlite3.connect(db.removeprefix("sqlite://").split("?")[0])
    return list(con.execute("SELECT id, name FROM products"))


def words_of(name):
    """The folded whole words of a name."""
    return re.findall(r"[\w-]+", fold(name))


def relevant(name, want):
    words = words_of(name)
    if isinstance(want, str):
        prefix = want.removeprefix("prefix:")
        return any(w.startswith(prefix) for w in words)
    return all(any(w in forms for w in words) for forms in want)


def search(base, q):
    url = f"{base}/products?" + urllib.parse.urlencode({"q": q, "limit": 20})
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="http://127.0.0.1:8000", help="the edge (default http://127.0.0.1:8000)")
    p.add_argument("--db", required=True, help="the catalog's database: a SQLite file or a postgres:// URL")
    args = p.parse_args()
    catalog = names(args.db)
    words = {i: words_of(n) for i, n in catalog}
    name_of = dict(catalog)
    by_class = {}
    print(f"{'class':<16} {'query':<22} {'relevant':>8} {'answered':>8} {'recall@20':>9}  first")
    for cls, q, want in QUERIES:
        truth = {i for i, n in catalog if relevant(n, want)}
        answer = search(args.base, q)
        got = [item["id"] for item in answer["items"]]
        recall = len(truth & set(got)) / min(20, len(truth)) if truth else 1.0
        first = got[0] if got else None
        typed = [fold(w) for w in q.split()]
        # Relevant, and holding the words as typed when some relevant name does.
        best = first in truth and (
            all(t in words[first] for t in typed)
            or not any(all(t in words[i] for t in typed) for i in truth))
        by_class.setdefault(cls, []).append((recall, best, not got))
        print(f"{cls:<16} {q:<22} {len(truth):>8} {answer['total']:>8} {recall:>9.2f}  "
              f"{'best' if best else '-'} {name_of.get(first, '(none)')}")
    print()
    print("| class | queries | recall@20 | best match first | empty answers |")
    print("|---|---|---|---|---|")
    everything = []
    for cls, rows in by_class.items():
        everything += rows
        print(f"| {cls} | {len(rows)} | {sum(r for r, _, _ in rows) / len(rows):.2f} | "
              f"{sum(b for _, b, _ in rows)}/{len(rows)} | {sum(e for _, _, e in rows)} |")
    print(f"| **all** | {len(everything)} | {sum(r for r, _, _ in everything) / len(everything):.2f} | "
          f"{sum(b for _, b, _ in everything)}/{len(everything)} | {sum(e for _, _, e in everything)} |")


if __name__ == "__main__":
    main()
