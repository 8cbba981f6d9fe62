"""Durable batch creates per second: POST /v1/calls/batch with 10,000 calls a request.

    python3 bench/api/batch_creates.py API_URL KEY SECONDS [CLIENTS]

Prints "<calls per second> <p99 request ms>". Every answer must be 201 with 10,000 calls.
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse

api, key, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
clients = int(sys.argv[4]) if len(sys.argv) > 4 else 2
BATCH = 10_000
# Due a day ahead, so the calls stay queued and the run measures intake and the store.
ahead = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86_400))
calls = [
    {"to": f"sip:+1555{i:07d}@192.0.2.1", "url": "http://192.0.2.1/app.vxml", "at": ahead}
    for i in range(BATCH)
]
body = json.dumps({"calls": calls}).encode()
target = urllib.parse.urlsplit(api)
latencies, created, errors = [], [0], []
lock = threading.Lock()
deadline = time.monotonic() + seconds


def client():
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    while time.monotonic() < deadline:
        start = time.monotonic()
        conn.request("POST", "/v1/calls/batch", body, headers)
        response = conn.getresponse()
        answer = response.read()
        took = (time.monotonic() - start) * 1000
        with lock:
            if response.status != 201:
                errors.append(f"{response.status}: {answer[:200]!r}")
                return
            # Counting the records' ids, not parsing 5 MB of JSON per answer: the GIL-bound
            # parse slowed the client below what the server takes.
            created[0] += answer.count(b'"id":"call_')
            latencies.append(took)


started = time.monotonic()
threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - started
if errors:
    sys.exit(f"batch create failed: {errors[0]}")
latencies.sort()
p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
print(f"{created[0] / elapsed:.0f} {p99:.1f}")
