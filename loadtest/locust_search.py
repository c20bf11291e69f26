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
from locust import FastHttpUser, constant, task

import shopping


class Shopper(FastHttpUser):
    wait_time = constant(0)
    default_headers = shopping.DEFAULT_HEADERS

    @task
    def shop(self):
        shopping.shop(self.client)
