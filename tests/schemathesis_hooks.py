"""Schemathesis hooks for tests/schemathesis.rs: what a JSON schema cannot say.

A schema cannot say "in the future" or "a key not used before for another request", so before
each request:

- a schema-valid `at` / `not_after` (RFC 3339) is moved next to the present, keeping its order:
  `at` becomes now, `not_after` a day later (the server refuses a `not_after` already past or
  not after `at`, and an `at` more than 366 days ahead, with 400 `schedule`);
- a schema-valid `Idempotency-Key` gets a digest of the body appended, so the same key with the
  same body is still replayed but never meets a different body (which is 422
  `idempotency_conflict`, tested in control/src/api/idempotency.rs).

Values that are not schema-valid (negative cases) are left as generated.
"""

import datetime
import hashlib
import json
import re

import schemathesis

DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
KEY = re.compile(r"^[!-~]([ -~]*[!-~])?$")


def _rfc3339(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _schedule(call):
    if not isinstance(call, dict):
        return
    now = datetime.datetime.now(datetime.timezone.utc)
    if isinstance(call.get("at"), str) and DATE_TIME.match(call["at"]):
        call["at"] = _rfc3339(now)
    if isinstance(call.get("not_after"), str) and DATE_TIME.match(call["not_after"]):
        call["not_after"] = _rfc3339(now + datetime.timedelta(days=1))


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if isinstance(body, dict):
        _schedule(body)
        calls = body.get("calls")
        if isinstance(calls, list):
            for call in calls:
                _schedule(call)
    headers = case.headers or {}
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and KEY.match(value):
            digest = hashlib.sha256(
                json.dumps(body, sort_keys=True, default=str).encode()
            ).hexdigest()[:16]
            headers[name] = value[:200].rstrip() + "-" + digest
