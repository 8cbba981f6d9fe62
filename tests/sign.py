#!/usr/bin/env python3
"""An independent Outdial request-signing client (stdlib only), per docs/security.md.

  sign.py check-vectors docs/security/vectors.json
  sign.py send --url URL --api-key KEY --secret SECRET [--method POST] [--data BODY]
               [--timestamp T] [--nonce N] [--cacert FILE]

`send` prints the HTTP status on the first line and the answer's body after it.
"""
import argparse
import hashlib
import hmac
import json
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SCHEME = "OUTDIAL-HMAC-SHA256"


def canonical(method, target, timestamp, nonce, digest):
    return "\n".join([SCHEME, method.upper(), target, str(timestamp), nonce, digest])


def sign(secret, text):
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def headers(secret, method, target, body, timestamp=None, nonce=None):
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_hex(16)
    digest = hashlib.sha256(body).hexdigest()
    mac = sign(secret, canonical(method, target, timestamp, nonce, digest))
    return {
        "Outdial-Signature": f"t={timestamp},n={nonce},v1={mac}",
        "Outdial-Content-SHA256": digest,
    }


def check_vectors(path):
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)["vectors"]
    for v in vectors:
        body = v["body"].encode()
        digest = hashlib.sha256(body).hexdigest()
        assert digest == v["body_sha256"], v["name"]
        text = canonical(v["method"], v["target"], v["timestamp"], v["nonce"], digest)
        assert text == v["canonical"], v["name"]
        assert sign(v["secret"], text) == v["signature"], v["name"]
        h = headers(v["secret"], v["method"], v["target"], body, v["timestamp"], v["nonce"])
        assert h["Outdial-Signature"] == v["header"], v["name"]
    print(f"{len(vectors)} vectors ok")


def send(args):
    body = args.data.encode() if args.data is not None else b""
    url = urllib.parse.urlsplit(args.url)
    target = url.path + (f"?{url.query}" if url.query else "")
    req = urllib.request.Request(args.url, data=body if body else None, method=args.method)
    req.add_header("Authorization", f"Bearer {args.api_key}")
    if body:
        req.add_header("Content-Type", "application/json")
    for k, v in headers(args.secret, args.method, target, body, args.timestamp, args.nonce).items():
        req.add_header(k, v)
    context = ssl.create_default_context(cafile=args.cacert) if args.cacert else None
    try:
        with urllib.request.urlopen(req, context=context, timeout=30) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    print(status)
    print(text)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check-vectors")
    c.add_argument("path")
    s = sub.add_parser("send")
    s.add_argument("--url", required=True)
    s.add_argument("--api-key", required=True)
    s.add_argument("--secret", required=True)
    s.add_argument("--method", default="POST")
    s.add_argument("--data")
    s.add_argument("--timestamp", type=int)
    s.add_argument("--nonce")
    s.add_argument("--cacert")
    args = parser.parse_args()
    if args.cmd == "check-vectors":
        check_vectors(args.path)
    else:
        send(args)


if __name__ == "__main__":
    sys.exit(main())
