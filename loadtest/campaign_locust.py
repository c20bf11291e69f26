"""The homework-7 campaign's load: realistic shoppers plus account holders, in steps.

Run by `loadtest/campaign.py` (which sets the environment below); by hand:

    SEARCHES=/tmp/words.txt CAMPAIGN_STEPS=10,50,100 CAMPAIGN_STEP_SECONDS=30 \
        locust -f loadtest/campaign_locust.py --headless --host http://127.0.0.1:8000

Users (weights 9:1):
- `Shopper`, the homework's scenario: search for a product (one word); while
  more than 10 products match, add a word taken from the name of a random
  product of the answer and search again; when nothing matches, go on to the
  next product; 1-20 such cycles per shopper, then a new shopper takes over.
  Think time between searches: 0.5-1.5 s (a person reading a page).
- `AccountHolder`, the mixed profile over the whole API: registers and logs in
  once, then reads and updates its profile, searches and opens products, with
  1-3 s between actions.

Step load (`StepShape`): the user count follows CAMPAIGN_STEPS (comma-separated
user counts), each held for CAMPAIGN_STEP_SECONDS; a step's users arrive over
its first SETTLE seconds (a tenth of the step, 3-10 s), which its figures leave
out. At the end of every step one JSON line goes to CAMPAIGN_STEPS_OUT: users,
requests, req/s, failures, p50/p95/p99/max (ms, as Locust's clients saw them),
and the same per request name.

Env: SEARCHES (file of words, one search per line), PATH_PREFIX and HOST_HEADER
(through the ingress, as in `locustfile.py`), CAMPAIGN_STEPS,
CAMPAIGN_STEP_SECONDS, CAMPAIGN_STEPS_OUT.
"""
import json
import math
import os
import random
import threading
import time
import uuid

from locust import FastHttpUser, LoadTestShape, between, events, task

import shopping
from shopping import FIRST_WORDS, PREFIX, get_json

STEPS = [int(u) for u in os.environ.get("CAMPAIGN_STEPS", "10,20").split(",") if u.strip()]
STEP_SECONDS = float(os.environ.get("CAMPAIGN_STEP_SECONDS", "60"))
SETTLE = min(10.0, max(3.0, STEP_SECONDS / 10))
STEPS_OUT = os.environ.get("CAMPAIGN_STEPS_OUT", "")


class Shopper(FastHttpUser):
    """The homework's shopper (`shopping.py`), reading each page for 0.5-1.5 s."""
    weight = 9
    wait_time = between(0.5, 1.5)
    default_headers = shopping.DEFAULT_HEADERS

    @task
    def shop(self):
        shopping.shop(self.client, pause=self.wait)


class AccountHolder(FastHttpUser):
    weight = 1
    wait_time = between(1, 3)
    default_headers = shopping.DEFAULT_HEADERS

    def on_start(self):
        tag = uuid.uuid4().hex[:12]
        self.password = f"pw-{uuid.uuid4().hex}"
        self.username = f"campaign_{tag}"
        body = {"username": self.username, "firstName": "Нагрузка", "lastName": "Тест",
                "email": f"{tag}@campaign.example.com", "phone": "+7 900 000-00-00",
                "password": self.password}
        self.token = None
        self.seen = []
        with self.client.post(f"{PREFIX}/register", name="/register", json=body,
                              catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"status {r.status_code}")
                return
        self.login()

    def login(self):
        with self.client.post(f"{PREFIX}/login", name="/login", catch_response=True,
                              json={"username": self.username, "password": self.password}) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
                return
            self.token = r.json().get("token")

    def auth(self):
        return {"Authorization": f"Bearer {self.token}"}

    @task(3)
    def profile(self):
        if not self.token:
            return self.login()
        get_json(self.client, f"{PREFIX}/me", "/me", headers=self.auth())

    @task(1)
    def update_profile(self):
        if not self.token:
            return self.login()
        with self.client.put(f"{PREFIX}/me", name="/me", headers=self.auth(), catch_response=True,
                             json={"firstName": random.choice(["Ада", "Алан", "Грейс"])}) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")

    @task(4)
    def search(self):
        page = get_json(self.client, f"{PREFIX}/products", "/products?q=[search]",
                         params={"q": random.choice(FIRST_WORDS)})
        if page and page["items"]:
            self.seen = [p["id"] for p in page["items"]]

    @task(2)
    def product(self):
        if self.seen:
            get_json(self.client, f"{PREFIX}/products/{random.choice(self.seen)}", "/products/{id}")


class _Step:
    """Requests completed in the current step after it settled."""

    def __init__(self):
        self.lock = threading.Lock()
        self.index = -1
        self.started = 0.0
        self.times = {}
        self.failures = {}

    def reset(self, index, started):
        with self.lock:
            self.index, self.started, self.times, self.failures = index, started, {}, {}

    def record(self, name, ms, failed):
        if time.monotonic() < self.started + SETTLE:
            return
        with self.lock:
            self.times.setdefault(name, []).append(ms)
            if failed:
                self.failures[name] = self.failures.get(name, 0) + 1


STEP = _Step()


@events.request.add_listener
def _on_request(name, response_time, exception, **_kw):
    STEP.record(name, response_time, exception is not None)


def _percentile(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def _summary(times, failures, seconds):
    values = sorted(times)
    n = len(values)
    return {"requests": n, "rps": round(n / seconds, 2) if seconds > 0 else 0.0,
            "failures": failures, "error_pct": round(100.0 * failures / n, 3) if n else 0.0,
            "p50_ms": _percentile(values, 0.50), "p95_ms": _percentile(values, 0.95),
            "p99_ms": _percentile(values, 0.99), "max_ms": values[-1] if values else None}


def flush_step(users, ended):
    """Writes the finished step's line (once per step)."""
    with STEP.lock:
        index, started, times, failures = STEP.index, STEP.started, STEP.times, STEP.failures
        STEP.index = -1
    if index < 0:
        return
    seconds = max(0.0, ended - (started + SETTLE))
    every = [t for ts in times.values() for t in ts]
    line = {"step": index + 1, "steps": len(STEPS), "users": users, "seconds": round(seconds, 2),
            "wall_start": time.time() - (time.monotonic() - started), "wall_end": time.time() - (time.monotonic() - ended),
            **_summary(every, sum(failures.values()), seconds),
            "by_name": {name: _summary(ts, failures.get(name, 0), seconds) for name, ts in sorted(times.items())}}
    if STEPS_OUT:
        with open(STEPS_OUT, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


class StepShape(LoadTestShape):
    def __init__(self):
        super().__init__()
        self.current = -1

    def tick(self):
        run_time = self.get_run_time()
        index = int(run_time // STEP_SECONDS)
        now = time.monotonic()
        if index != self.current:
            if self.current >= 0:
                flush_step(STEPS[self.current], now)
            self.current = index
            if index < len(STEPS):
                STEP.reset(index, now)
        if index >= len(STEPS):
            return None
        previous = STEPS[index - 1] if index else 0
        # A step's users arrive within its settling time.
        rate = max(1.0, abs(STEPS[index] - previous) / max(1.0, SETTLE - 1))
        return STEPS[index], rate
