"""The reference fan-out of the `floor-fanout` case: the least a client can do to create the tasks.

    python bench/fanout.py BODIES.json

BODIES.json holds ``{"url": "http://host:port/api/v1/task/", "token": ..., "concurrency": 4,
"bodies": [...]}``: the CreateTask bodies the trigger would send. THREADS threads, one keep-alive
``http.client.HTTPConnection`` each, take the bodies in turn and POST them with
``Authorization: Ponos <token>``; no schema, no retry, no client library. It prints one JSON line:
``{"seconds": <first connection to last answer>, "statuses": {"201": n, ...}}``.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def post_all(url: str, token: str, bodies: list[dict], concurrency: int) -> dict[str, int]:
    """POST every body, `concurrency` at a time; the count of each answer status."""
    target = urlsplit(url)
    headers = {
        "Authorization": f"Ponos {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    pending = iter(bodies)
    lock = threading.Lock()
    statuses: dict[str, int] = {}

    def work() -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                # Serialised here, as a client does for each request.
                conn.request("POST", target.path, body=json.dumps(body).encode(), headers=headers)
                response = conn.getresponse()
                response.read()
                with lock:
                    statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
        finally:
            conn.close()

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def main() -> int:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    started = time.perf_counter()
    statuses = post_all(spec["url"], spec["token"], spec["bodies"], spec["concurrency"])
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "statuses": statuses}))
    return 0 if set(statuses) == {"201"} else 1


if __name__ == "__main__":
    sys.exit(main())
