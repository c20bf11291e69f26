"""Authentication for .ci/run's authenticated schemathesis pass.

Every session belongs to a user of its own: `get` registers a fresh user and
logs it in. The fuzzer's own POST /logout and DELETE /user/{id} end sessions
and delete users mid-run; a 401 then makes schemathesis call `get` again and
replay the request with the new session (`retry_on`), so every operation is
exercised with a live session.

The login goes out with a random `X-Real-IP` (the system runs with
TRUSTED_PROXIES=127.0.0.1, as behind the ingress), so these logins do not
count against the per-address login limit the fuzzer's own logins test.
"""

import json
import os
import random
import urllib.request
import uuid

import schemathesis

BASE_URL = os.environ["OTUS_BASE_URL"].rstrip("/")


def _post(path, body, client_address):
    request = urllib.request.Request(
        BASE_URL + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Real-IP": client_address},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


@schemathesis.auth(retry_on=[401])
class OwnUserSession:
    def get(self, case, ctx):
        username = "st-" + uuid.uuid4().hex[:16]
        password = uuid.uuid4().hex
        address = "10.%d.%d.%d" % tuple(random.randrange(1, 255) for _ in range(3))
        _post(
            "/register",
            {
                "username": username,
                "password": password,
                "firstName": "Schema",
                "lastName": "Thesis",
                "email": username + "@example.com",
                "phone": "+79990000000",
            },
            address,
        )
        return _post("/login", {"username": username, "password": password}, address)["token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = "Bearer " + data
