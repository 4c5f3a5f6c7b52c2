"""What the e2e scripts that speak plain HTTP to monkeyproof-api share (http_edges.py, sizes.py):
the server from MP_API_URL and MP_API_TOKEN, one request helper over http.client, the JSON error
body, and check() with its list of failures (finish() prints them; the script exits 1 when there
are any)."""

import http.client
import json
import os
import time
import urllib.parse

API_URL = os.environ.get("MP_API_URL", "http://127.0.0.1:3200")
TOKEN = os.environ["MP_API_TOKEN"]
_URL = urllib.parse.urlsplit(API_URL)
HOST, PORT = _URL.hostname, _URL.port or 80

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("  FAIL:", what, flush=True)
    return cond


def finish(name, t0):
    """The script's summary line, the failures, and its exit status (0 when none failed)."""
    print("%s: %.1f s, %d failures" % (name, time.monotonic() - t0, len(FAILURES)), flush=True)
    if FAILURES:
        print("FAILED:\n  " + "\n  ".join(FAILURES), flush=True)
        return 1
    return 0


def request(method, path, body=None, headers=None, token=TOKEN, source="127.0.0.1", timeout=60,
            encode_chunked=False):
    """One request on a new connection from `source`; (status, lower-cased headers, payload).
    A body that is not bytes or str is sent as JSON; with encode_chunked, in 64 KiB chunks.
    No exception is caught: a broken pipe or a reset is a failure of the caller's check."""
    conn = http.client.HTTPConnection(HOST, PORT, timeout=timeout, source_address=(source, 0))
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    if encode_chunked:
        h["Transfer-Encoding"] = "chunked"
        body = iter([body[i:i + 65536] for i in range(0, len(body), 65536)])
    conn.request(method, path, body=body, headers=h, encode_chunked=encode_chunked)
    r = conn.getresponse()
    payload = r.read()
    headers_out = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    return r.status, headers_out, payload


def error_of(payload):
    """The JSON object of an error answer, or {} when the payload is not one."""
    try:
        j = json.loads(payload)
    except ValueError:
        return {}
    return j if isinstance(j, dict) else {}
