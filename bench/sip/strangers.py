#!/usr/bin/env python3
"""Strangers churning a server's accepted TCP connections (bench/sip/strangers.sh): from
ADDRESSES loopback addresses (127.0.0.2 on, in turn), open connections to HOST:PORT one
after another for SECONDS, say nothing, and keep the newest KEEP open (closing the oldest,
which the server has closed by then). Prints the number of connections opened.

    python3 bench/sip/strangers.py HOST PORT SECONDS [ADDRESSES] [KEEP]
"""
import collections
import resource
import socket
import sys
import time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
addresses = int(sys.argv[4]) if len(sys.argv) > 4 else 41
keep = int(sys.argv[5]) if len(sys.argv) > 5 else 1500
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, keep + 100)), hard))
held = collections.deque()
opened = 0
start = time.monotonic()
while time.monotonic() - start < seconds:
    for a in range(addresses):
        s = socket.socket()
        s.bind((f"127.0.0.{2 + a}", 0))
        s.connect((host, port))
        held.append(s)
        opened += 1
        while len(held) > keep:
            held.popleft().close()
print(opened)
