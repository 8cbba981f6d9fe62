#!/usr/bin/env python3
"""One-commit-per-insert SQLite on the same disk as the server's store: the floor a durable
create must beat. WAL, synchronous=FULL (as Outdial's store), one row of a call's size per
transaction, for DURATION seconds. Prints inserts/s and p99 latency in ms."""

import os
import sqlite3
import sys
import time

path, duration = sys.argv[1], float(sys.argv[2])
for suffix in ("", "-wal", "-shm"):
    try:
        os.remove(path + suffix)
    except FileNotFoundError:
        pass
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute(
    "CREATE TABLE calls (id TEXT PRIMARY KEY, tenant TEXT, status TEXT, to_uri TEXT,"
    " url TEXT, vars TEXT, created_at TEXT)"
)
row = ("tenant-dev", "queued", "sip:+15550100@192.0.2.1:5060",
       "http://127.0.0.1:9/app.vxml", '{"name":"bench"}')
latencies = []
n = 0
end = time.monotonic() + duration
while time.monotonic() < end:
    start = time.monotonic()
    db.execute("BEGIN")
    db.execute("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ'))",
               (f"call-{n:012d}",) + row)
    db.execute("COMMIT")
    latencies.append(time.monotonic() - start)
    n += 1
latencies.sort()
p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0
print(f"{n / duration:.0f} {p99:.2f}")
