"""Steady stress test of every API method, through the ingress (homework 4).

Each simulated user registers, logs in, then calls every method of the API at
about one request per second (`constant_throughput(1)`), forever; 10 users
give a steady ~10 requests/s. Locally:

    locust -f loadtest/locustfile.py --headless -u 10 -r 2 --host http://localhost:8000

In Kubernetes the chart's stress-test Job runs it against the ingress
controller's Service with `Host: arch.homework` (HOST_HEADER) and the
`/otusapp` prefix (PATH_PREFIX).
"""
import os
import random
import uuid

from locust import HttpUser, constant_throughput, task

PREFIX = os.environ.get("PATH_PREFIX", "")
HOST_HEADER = os.environ.get("HOST_HEADER", "")
WORDS = ["космос", "рюкзак", "синий", "чайник", "палатка", "книга", "робот", "смартфон"]


class ApiUser(HttpUser):
    wait_time = constant_throughput(1)

    def on_start(self):
        if HOST_HEADER:
            self.client.headers["Host"] = HOST_HEADER
        tag = uuid.uuid4().hex[:12]
        self.username = f"stress_{tag}"
        self.password = f"pw-{uuid.uuid4().hex}"
        r = self.client.post(f"{PREFIX}/register", name="/register", json={
            "username": self.username, "firstName": "Нагрузка", "lastName": "Тест",
            "email": f"{tag}@stress.example.com", "phone": "+7 900 000-00-00",
            "password": self.password})
        self.user_id = r.json().get("id") if r.ok else None
        self.login()

    def login(self):
        r = self.client.post(f"{PREFIX}/login", name="/login",
                             json={"username": self.username, "password": self.password})
        self.token = r.json().get("token") if r.ok else None

    def auth(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @task(2)
    def health(self):
        self.client.get(f"{PREFIX}/health/", name="/health/")

    @task(3)
    def me(self):
        self.client.get(f"{PREFIX}/me", name="/me", headers=self.auth())

    @task(2)
    def read_user(self):
        if self.user_id:
            self.client.get(f"{PREFIX}/user/{self.user_id}", name="/user/{userId}", headers=self.auth())

    @task(1)
    def update_user(self):
        if self.user_id:
            self.client.put(f"{PREFIX}/user/{self.user_id}", name="/user/{userId}",
                            headers=self.auth(), json={"firstName": random.choice(["Ада", "Алан", "Грейс"])})

    @task(1)
    def update_me(self):
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

    @task(1)
    def relogin(self):
        self.client.post(f"{PREFIX}/logout", name="/logout", headers=self.auth())
        self.login()
