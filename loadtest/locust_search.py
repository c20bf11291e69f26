"""The original solution's product-search scenario (homework 7), no think time.

Each simulated user runs 1-20 search cycles, then starts over as a new
shopper (so the load stays constant for the whole test):

1. search for one word (a random word of the catalog's names);
2. while more than 10 products match, add one more word, taken from the
   name of a random product of the answer, and search again;
3. when nothing matches, start the next cycle.

Words come from SEARCHES (a file of one search per line, words separated by
spaces, e.g. `loadtest/search_candidates.py --dump-searches FILE
--dump-only`); each cycle starts from one random word of a random line.

    SEARCHES=/tmp/searches.txt locust -f loadtest/locust_search.py --headless \
        -u 200 -r 50 -t 3m --host http://127.0.0.1:8000

PATH_PREFIX and HOST_HEADER work as in `locustfile.py` (through the ingress).
The users are `FastHttpUser`s (geventhttpclient): on the project's 2 cores the
load generator shares the CPU with the system, and the default `HttpUser`
(requests) spends several times more CPU per request, so Locust itself
would be what limits the measurement.
"""
import os
import random

from locust import FastHttpUser, constant, task

PREFIX = os.environ.get("PATH_PREFIX", "")
HOST_HEADER = os.environ.get("HOST_HEADER", "")
# The refinement stops at the service's limit on words in a query.
MAX_WORDS = 10


def _first_words():
    path = os.environ.get("SEARCHES")
    if not path:
        raise SystemExit("SEARCHES (a file of searches, one per line) is required")
    with open(path, encoding="utf-8") as f:
        words = sorted({w for line in f for w in line.split() if len(w) >= 3})
    if not words:
        raise SystemExit(f"{path} holds no word of 3+ characters")
    return words


FIRST_WORDS = _first_words()


class Shopper(FastHttpUser):
    wait_time = constant(0)
    # FastHttpSession has no `headers`: the Host header goes in default_headers.
    default_headers = {"Host": HOST_HEADER} if HOST_HEADER else None

    def search(self, words, name):
        with self.client.get(f"{PREFIX}/products", params={"q": " ".join(words)},
                             name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
                return None
            try:
                return r.json()
            except ValueError:
                r.failure("not JSON")
                return None

    @task
    def shop(self):
        for _ in range(random.randint(1, 20)):
            words = [random.choice(FIRST_WORDS)]
            page = self.search(words, "/products?q=[search]")
            while page and page["total"] > 10 and page["items"] and len(words) < MAX_WORDS:
                name = random.choice(page["items"])["name"]
                words.append(random.choice(name.split()))
                page = self.search(words, "/products?q=[refine]")
