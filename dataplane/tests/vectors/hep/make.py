#!/usr/bin/env python3
"""Writes invite-ipv4-auth.bin: invite.sip wrapped in HEP v3 by hand, chunk by chunk, with
Python's struct module (an encoder independent of dataplane/src/sip/hep.rs)."""
import socket, struct
from pathlib import Path

here = Path(__file__).parent
payload = (here / "invite.sip").read_bytes()

def chunk(kind, value):
    # vendor 0 (generic), type, length including this 6-byte header, value
    return struct.pack("!HHH", 0, kind, 6 + len(value)) + value

body = b"".join([
    chunk(0x01, bytes([2])),                      # IP family: AF_INET
    chunk(0x02, bytes([17])),                     # IP protocol: UDP
    chunk(0x03, socket.inet_aton("10.0.0.1")),    # IPv4 source
    chunk(0x04, socket.inet_aton("10.0.0.2")),    # IPv4 destination
    chunk(0x07, struct.pack("!H", 5060)),         # source port
    chunk(0x08, struct.pack("!H", 5080)),         # destination port
    chunk(0x09, struct.pack("!I", 1764960000)),   # timestamp seconds
    chunk(0x0a, struct.pack("!I", 999999)),       # timestamp microseconds
    chunk(0x0b, bytes([1])),                      # protocol type: SIP
    chunk(0x0c, struct.pack("!I", 4000000000)),   # capture agent id
    chunk(0x0e, b"homer"),                        # auth key
    chunk(0x0f, payload),                         # payload
])
(here / "invite-ipv4-auth.bin").write_bytes(b"HEP3" + struct.pack("!H", 6 + len(body)) + body)
