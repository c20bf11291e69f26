"""Steady stress test of every API method, through the ingress (homework 4).

Each simulated user registers and logs in once, keeps its session, and then
calls every method of the API at RATE_PER_USER requests per second
(`constant_throughput`), forever: 10 users at 1 request/s give a steady
~10 requests/s. Covered: POST /register, POST /login, POST /logout, POST /user,
GET/PUT/DELETE /user/{userId}, GET/PUT /me, GET /products, GET /products/{id},
GET /health, GET /health/ and GET /ready.

Logins are rationed so the stress test never trips the service's login limits
(100 per client address per 5 minutes by default; every simulated user comes
from the one load-generator address): one login per user at start, and the
user lifecycle (create a user, log in, log out, log in again, delete it) at
most once per LIFECYCLE_EVERY seconds in the whole process, i.e. ~8 logins a
minute. A session that expires is renewed once (a 401 on /me). If the limit is
hit anyway (another client behind the same address), the 429 counts as a
failure and its Retry-After is honoured by every user of the process: no
login, and no call that needs a session, until it has passed, so the stress
test neither keeps the address locked out nor fills its statistics with the
401s of users without a session.

Locally:

    locust -f loadtest/locustfile.py --headless -u 10 -r 2 --host http://localhost:8000

In Kubernetes the chart's stress-test Deployment runs it against the ingress
controller's Service with `Host: arch.homework` (HOST_HEADER) and the
`/otusapp` prefix (PATH_PREFIX).
"""
import os
import random
import time
import uuid

from locust import HttpUser, constant_throughput, task

PREFIX = os.environ.get("PATH_PREFIX", "")
HOST_HEADER = os.environ.get("HOST_HEADER", "")
RATE_PER_USER = float(os.environ.get("RATE_PER_USER", "1"))
LIFECYCLE_EVERY = float(os.environ.get("LIFECYCLE_EVERY", "15"))
WORDS = ["космос", "рюкзак", "синий", "чайник", "палатка", "книга", "робот", "смартфон"]

# When the last user lifecycle started, shared by all users of this process.
_last_lifecycle = [0.0]
# Until when logins are refused (a 429's Retry-After): the limit is per client
# address, and every user of this process has the same one.
_logins_blocked_until = [0.0]


def new_user_body():
    tag = uuid.uuid4().hex[:12]
    return {"username": f"stress_{tag}", "firstName": "Нагрузка", "lastName": "Тест",
            "email": f"{tag}@stress.example.com", "phone": "+7 900 000-00-00",
            "password": f"pw-{uuid.uuid4().hex}"}


class ApiUser(HttpUser):
    wait_time = constant_throughput(RATE_PER_USER)

    def on_start(self):
        if HOST_HEADER:
            self.client.headers["Host"] = HOST_HEADER
        body = new_user_body()
        self.username, self.password = body["username"], body["password"]
        r = self.client.post(f"{PREFIX}/register", name="/register", json=body)
        self.user_id = r.json().get("id") if r.ok else None
        self.token = self.login(self.username, self.password)

    def login(self, username, password):
        """The session token, or None (also, without asking, while a 429's
        Retry-After has not passed)."""
        if time.monotonic() < _logins_blocked_until[0]:
            return None
        r = self.client.post(f"{PREFIX}/login", name="/login",
                             json={"username": username, "password": password})
        if r.status_code == 429:
            try:
                wait = float(r.headers.get("Retry-After", "60"))
            except ValueError:
                wait = 60.0
            _logins_blocked_until[0] = time.monotonic() + wait
        return r.json().get("token") if r.ok else None

    def has_session(self):
        """True if this user has a session, after logging in again if it
        has none (unless logins are held back)."""
        if not self.token:
            self.token = self.login(self.username, self.password)
        return bool(self.token)

    def auth(self, token=None):
        token = token or self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    @task(1)
    def health(self):
        self.client.get(f"{PREFIX}/health/", name="/health/")
        self.client.get(f"{PREFIX}/health", name="/health")

    @task(1)
    def ready(self):
        self.client.get(f"{PREFIX}/ready", name="/ready")

    @task(3)
    def me(self):
        if not self.has_session():
            return
        with self.client.get(f"{PREFIX}/me", name="/me", headers=self.auth(),
                             catch_response=True) as r:
            if r.status_code == 401:
                # The session expired (SESSION_TTL): log in again, once.
                r.success()
                self.token = self.login(self.username, self.password)

    @task(2)
    def read_user(self):
        if self.user_id and self.has_session():
            self.client.get(f"{PREFIX}/user/{self.user_id}", name="/user/{userId}", headers=self.auth())

    @task(1)
    def update_user(self):
        if self.user_id and self.has_session():
            self.client.put(f"{PREFIX}/user/{self.user_id}", name="/user/{userId}",
                            headers=self.auth(), json={"firstName": random.choice(["Ада", "Алан", "Грейс"])})

    @task(1)
    def update_me(self):
        if not self.has_session():
            return
        self.client.put(f"{PREFIX}/me", name="/me", headers=self.auth(), json={"lastName": "Тест"})

    @task(5)
    def search(self):
        q = " ".join(random.sample(WORDS, random.choice([1, 2])))
        r = self.client.get(f"{PREFIX}/products", name="/products", params={"q": q, "limit": 20})
        if r.ok:
            self.seen = [p["id"] for p in r.json().get("items", [])] or getattr(self, "seen", [])

    @task(2)
    def product(self):
        # Ids from earlier searches: whatever the catalog holds, they exist.
        if getattr(self, "seen", None):
            self.client.get(f"{PREFIX}/products/{random.choice(self.seen)}", name="/products/{id}")

    @task(2)
    def lifecycle(self):
        """Create a user, log in, log out, log in again, delete it: rationed."""
        now = time.monotonic()
        if now - _last_lifecycle[0] < LIFECYCLE_EVERY or now < _logins_blocked_until[0]:
            return
        _last_lifecycle[0] = now
        body = new_user_body()
        r = self.client.post(f"{PREFIX}/user", name="/user", json=body)
        if not r.ok:
            return
        user_id = r.json().get("id")
        token = self.login(body["username"], body["password"])
        self.client.post(f"{PREFIX}/logout", name="/logout", headers=self.auth(token))
        token = self.login(body["username"], body["password"])
        if token and user_id:
            self.client.delete(f"{PREFIX}/user/{user_id}", name="/user/{userId}", headers=self.auth(token))
