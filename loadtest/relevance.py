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
line per query. With --min-recall / --min-best it is a check (CI runs it on
both backends): it exits 1 when a class's mean recall@20 or the share of all
queries answered best-first is below the bound.
"""
import argparse
import json
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ADJ = {
    "синий": ["синий", "синяя", "синее", "синие"],
    "легкий": ["легкий", "легкая", "легкое", "легкие"],
    "звездный": ["звездный", "звездная", "звездное", "звездные"],
    "походный": ["походный", "походная", "походное", "походные"],
    "детский": ["детский", "детская", "детское", "детские"],
    "компактный": ["компактный", "компактная", "компактное", "компактные"],
    "прочный": ["прочный", "прочная", "прочное", "прочные"],
    "умный": ["умный", "умная", "умное", "умные"],
    "космический": ["космический", "космическая", "космическое", "космические"],
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
    ("exact word", "термос", [noun("термос")]),
    ("exact word", "шоколад", [noun("шоколад")]),
    ("another form", "рюкзаки", [noun("рюкзак")]),
    ("another form", "куртку", [noun("куртка")]),
    ("another form", "наушников", [noun("наушники")]),
    ("another form", "палатки", [noun("палатка")]),
    ("another form", "книгу", [noun("книга")]),
    ("another form", "смартфоны", [noun("смартфон")]),
    ("another form", "фонари", [noun("фонарь")]),
    ("another form", "гантель", [noun("гантели")]),
    ("one typo", "рюкзк", [noun("рюкзак")]),
    ("one typo", "палтка", [noun("палатка")]),
    ("one typo", "наушнеки", [noun("наушники")]),
    ("one typo", "смартфн", [noun("смартфон")]),
    ("one typo", "энциклопедя", [noun("энциклопедия")]),
    ("one typo", "конструткор", [noun("конструктор")]),
    ("one typo", "велосепед", [noun("велосипед")]),
    ("one typo", "шоколадд", [noun("шоколад")]),
    ("е for ё, case", "мед", [noun("мед")]),
    ("е for ё, case", "мёд", [noun("мед")]),
    ("е for ё, case", "легкий", [ADJ["легкий"]]),
    ("е for ё, case", "ЗВЕЗДНАЯ", [ADJ["звездный"]]),
    ("е for ё, case", "РЮКЗАК", [noun("рюкзак")]),
    ("е for ё, case", "Телескоп", [noun("телескоп")]),
    ("е for ё, case", "лёгкая палатка", [ADJ["легкий"], noun("палатка")]),
    ("е for ё, case", "ЗвЁздный", [ADJ["звездный"]]),
    ("two words", "синие куртки", [ADJ["синий"], noun("куртка")]),
    ("two words", "куртка синяя", [ADJ["синий"], noun("куртка")]),
    ("two words", "легкая палатка", [ADJ["легкий"], noun("палатка")]),
    ("two words", "походные рюкзаки", [ADJ["походный"], noun("рюкзак")]),
    ("two words", "детский конструктор", [ADJ["детский"], noun("конструктор")]),
    ("two words", "компактные фонари", [ADJ["компактный"], noun("фонарь")]),
    ("two words", "термос прочный", [ADJ["прочный"], noun("термос")]),
    ("two words", "умные роботы", [ADJ["умный"], noun("робот")]),
    ("partial word", "рюкз", "prefix:рюкз"),
    ("partial word", "энцикл", "prefix:энцикл"),
    ("partial word", "телеск", "prefix:телеск"),
    ("partial word", "шокол", "prefix:шокол"),
    ("partial word", "про-50", "prefix:про-50"),
    ("partial word", "макс-12", "prefix:макс-12"),
    ("partial word", "лайт-9", "prefix:лайт-9"),
    ("partial word", "компакт", "prefix:компакт"),
    # A word inside a longer word is not that word: «чай» ranks the tea
    # before the teapots (чайник) its prefix also reaches.
    ("word inside a word", "чай", [noun("чай")]),
    ("word inside a word", "чай байкал", [noun("чай"), ["байкал"]]),
    ("word inside a word", "Чай", [noun("чай")]),
    ("word inside a word", "мяч", [noun("мяч")]),
    ("word inside a word", "стол", [noun("стол")]),
    ("word inside a word", "кофе", [noun("кофе")]),
    ("word inside a word", "мир", [noun("мир")]),
    ("word inside a word", "робот", [noun("робот")]),
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


def search(base, q, deadline):
    """One search; a 503 (the index still building) is retried until `deadline`."""
    url = f"{base}/products?" + urllib.parse.urlencode({"q": q, "limit": 20})
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="http://127.0.0.1:8000", help="the edge (default http://127.0.0.1:8000)")
    p.add_argument("--db", required=True, help="the catalog's database: a SQLite file or a postgres:// URL")
    p.add_argument("--min-recall", type=float, help="fail when a class's mean recall@20 is below this")
    p.add_argument("--min-best", type=float, help="fail when the share of queries answered best-first is below this")
    p.add_argument("--wait", type=float, default=60, help="seconds to retry 503 answers while the index builds (default 60)")
    args = p.parse_args()
    deadline = time.monotonic() + args.wait
    catalog = names(args.db)
    words = {i: words_of(n) for i, n in catalog}
    name_of = dict(catalog)
    by_class = {}
    print(f"{'class':<16} {'query':<22} {'relevant':>8} {'answered':>8} {'recall@20':>9}  first")
    for cls, q, want in QUERIES:
        truth = {i for i, n in catalog if relevant(n, want)}
        answer = search(args.base, q, deadline)
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
    failures = []
    if args.min_recall is not None:
        for cls, rows in by_class.items():
            recall = sum(r for r, _, _ in rows) / len(rows)
            if recall < args.min_recall:
                failures.append(f"{cls}: recall@20 {recall:.2f} < {args.min_recall}")
    if args.min_best is not None:
        best = sum(b for _, b, _ in everything) / len(everything)
        if best < args.min_best:
            failures.append(f"best match first in {best:.2%} of queries < {args.min_best:.0%}")
    if failures:
        print("relevance check FAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)
    if args.min_recall is not None or args.min_best is not None:
        print(f"relevance check passed (recall@20 >= {args.min_recall} per class, "
              f"best first >= {args.min_best})")


if __name__ == "__main__":
    main()
