"""This project's shopper (homework 7), modelled on the original solution's,
shared by the Locust files `locust_search.py` (no think time) and
`campaign_locust.py` (with think time).

Not a locustfile itself: it defines no User class.

A shopper runs 1-20 search cycles: search for one word (a random word of
SEARCHES, a file of searches, one per line); while more than 10 products
match, add one more word taken from the name of a random product of the
answer and search again; when nothing matches, go on to the next cycle.
PATH_PREFIX and HOST_HEADER route the requests through the ingress.

Not the original's scenario. The original (its
`loadtest-product/src/app/locust-tasks/tasks.py`) pins locust==1.0.3, in
which its `min_wait=1000`/`max_wait=6000` are honoured (1-6 s before every
task; Locust 2.x ignores those attributes), and each user takes 1-20 random
words and, for each, searches for the word, then, if that answered products,
once more for the word and a random word of a random product's name as a
phrase (`name LIKE '%w1 w2%'`): one refinement per word, not "while more
than 10 match". That scenario runs as `otus-load --scenario original`
(`crates/loadgen`; `loadtest/campaign.py --scenario original`).
"""
import os
import random

PREFIX = os.environ.get("PATH_PREFIX", "")
HOST_HEADER = os.environ.get("HOST_HEADER", "")
# FastHttpSession has no `headers`: a FastHttpUser sets these as its
# `default_headers`.
DEFAULT_HEADERS = {"Host": HOST_HEADER} if HOST_HEADER else None
# The refinement stops at the service's limit on words in a query.
MAX_WORDS = 10


def first_words():
    path = os.environ.get("SEARCHES")
    if not path:
        raise SystemExit("SEARCHES (a file of searches, one per line) is required")
    with open(path, encoding="utf-8") as f:
        words = sorted({w for line in f for w in line.split() if len(w) >= 3})
    if not words:
        raise SystemExit(f"{path} holds no word of 3+ characters")
    return words


FIRST_WORDS = first_words()


def get_json(client, path, name, **kw):
    """GET `path`; the parsed body of a 200, else None with the request marked failed."""
    with client.get(path, name=name, catch_response=True, **kw) as r:
        if r.status_code != 200:
            r.failure(f"status {r.status_code}")
            return None
        try:
            return r.json()
        except ValueError:
            r.failure("not JSON")
            return None


def search(client, words, name):
    return get_json(client, f"{PREFIX}/products", name, params={"q": " ".join(words)})


def shop(client, pause=None):
    """One shopper's 1-20 cycles; `pause()` (if any) runs between two searches."""
    for cycle in range(random.randint(1, 20)):
        if cycle and pause:
            pause()
        words = [random.choice(FIRST_WORDS)]
        page = search(client, words, "/products?q=[search]")
        while page and page["total"] > 10 and page["items"] and len(words) < MAX_WORDS:
            if pause:
                pause()
            name = random.choice(page["items"])["name"]
            words.append(random.choice(name.split()))
            page = search(client, words, "/products?q=[refine]")
