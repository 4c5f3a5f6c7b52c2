#!/usr/bin/python3
"""Auth and request limits of monkeyproof-api (docs/api.md, "Transport and auth", "Errors").

- Every route of docs/api.md answers 401 {"error":"Unauthorized","code":"unauthorized"} without a
  token, with a wrong one, with another scheme, and with ?token= outside a WebSocket upgrade;
  the WebSocket upgrade takes the header or ?token=; auth comes before the path is looked up.
- Failed attempts from one address end in 429 for that address only, and never for the right
  token.
- Malformed and oversized requests: bad JSON and wrong types (400 naming the field), a garbage
  request line (400), a huge header (431). Task and body sizes are in sizes.py.

Unauthenticated requests come from other loopback addresses (127.0.0.2...), so that the
failure limiter never blocks the address the other tests use. Exits 0 when every check passed.
"""

import asyncio
import http.client
import json
import socket
import sys
import time
import urllib.parse

import websockets

from e2e_http import FAILURES, HOST, PORT, TOKEN, check, error_of, finish, request


def raw(data, source="127.0.0.1", read_timeout=30):
    """Sends raw bytes and returns whatever comes back until the server closes."""
    s = socket.create_connection((HOST, PORT), timeout=read_timeout,
                                 source_address=(source, 0))
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return out


def status_of(raw_reply):
    try:
        return int(raw_reply.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def main():
    t0 = time.monotonic()
    # A real session to aim the session routes at.
    st, _, body = request("POST", "/sessions", {"task": "cat", "owner": "edges"})
    if not check(st == 201, "setup: POST /sessions gave %d %r" % (st, body)):
        return 1
    sid = json.loads(body)["id"]
    unknown = "s-00000000000000000000000000"
    routes = [
        ("GET", "/", None), ("GET", "/health", None), ("GET", "/livez", None),
        ("GET", "/readyz", None), ("GET", "/metrics", None), ("GET", "/version", None),
        ("GET", "/policies", None), ("GET", "/openapi.json", None),
        ("POST", "/sessions", {"task": "true"}), ("GET", "/sessions", None),
        ("GET", "/sessions?status=running", None),
        ("GET", "/sessions/{id}", None), ("DELETE", "/sessions/{id}", None),
        ("POST", "/sessions/{id}/input", {"input": "x"}),
        ("POST", "/sessions/{id}/close-stdin", None),
        ("POST", "/sessions/{id}/resize", {"rows": 10, "cols": 10}),
        ("POST", "/sessions/{id}/signal", {"signal": "TERM"}),
        ("GET", "/sessions/{id}/transcript", None), ("GET", "/sessions/{id}/output", None),
        ("GET", "/sessions/{id}/ws", None),
        ("GET", "/no/such/route", None), ("PUT", "/sessions", None),
    ]
    bad_auth = [
        ("no token", {}, None),
        ("wrong token", {"Authorization": "Bearer " + "x" * 40}, None),
        ("token with a suffix", {"Authorization": "Bearer " + TOKEN + "x"}, None),
        ("basic scheme", {"Authorization": "Basic " + TOKEN}, None),
        ("query token off a WebSocket upgrade", {}, TOKEN),
    ]
    n = 0
    for method, path, body in routes:
        for target_id in (sid, unknown):
            p = path.replace("{id}", target_id)
            # Every variant on a few routes, missing and wrong tokens on all, and the plain
            # case on an unknown session.
            full = path in ("/", "/sessions", "/sessions/{id}", "/sessions/{id}/ws")
            variants = bad_auth if full else bad_auth[:2]
            for label, headers, qtoken in (variants if target_id == sid else bad_auth[:1]):
                # Rotate source addresses: at most ~15 failures per address.
                source = "127.0.0.%d" % (10 + n // 15)
                n += 1
                q = p + ("&" if "?" in p else "?") + "token=" + qtoken if qtoken else p
                st, h, payload = request(method, q, body, headers=headers, token=None,
                                         source=source)
                what = "%s %s (%s)" % (method, q.replace(TOKEN, "<token>"), label)
                check(st == 401, "%s: status %d, not 401: %r" % (what, st, payload[:200]))
                check(error_of(payload) == {"error": "Unauthorized", "code": "unauthorized"},
                      "%s: body %r" % (what, payload[:200]))
                check(h.get("www-authenticate", "").startswith("Bearer"),
                      "%s: WWW-Authenticate %r" % (what, h.get("www-authenticate")))
            if "{id}" not in path:
                break
    print("unauthenticated: %d requests, all 401" % n if not FAILURES else
          "unauthenticated: %d requests" % n, flush=True)

    # With the token every route answers (never 401). Resize on an exec session is 409, the
    # WebSocket route without an upgrade is 400, the others succeed.
    for method, path, body in routes:
        if method == "DELETE":
            continue
        p = path.replace("{id}", sid)
        st, _, payload = request(method, p, body)
        check(st not in (401, 429) and st < 500, "%s %s with the token: %d %r" % (
            method, p, st, payload[:200]))

    # The WebSocket upgrade: header, ?token=, neither, a wrong one.
    async def ws_checks():
        url = "ws://%s:%d/sessions/%s/ws" % (HOST, PORT, sid)
        for label, u, headers, want in [
            ("header", url, {"Authorization": "Bearer " + TOKEN}, 101),
            ("query", url + "?token=" + urllib.parse.quote(TOKEN), {}, 101),
            ("none", url, {}, 401),
            ("wrong query", url + "?token=" + "y" * 40, {}, 401),
            ("wrong header", url, {"Authorization": "Bearer " + "y" * 40}, 401),
            ("none, unknown session", url.replace(sid, unknown), {}, 401),
        ]:
            source = "127.0.0.1" if want == 101 else "127.0.0.40"
            try:
                ws = await websockets.connect(u, extra_headers=headers, open_timeout=60,
                                              compression=None, local_addr=(source, 0))
                first = json.loads(await ws.recv())
                await ws.close()
                got = 101
                check(first.get("type") == "catchup", "ws %s: first message %r" % (label, first))
            except websockets.InvalidStatusCode as e:
                got = e.status_code
            check(got == want, "ws upgrade with %s: %d, not %d" % (label, got, want))
    asyncio.run(ws_checks())

    # The limiter: 20 failures from one address, then bad credentials from there get 429
    # (a wrong token and none alike), while the right token from the same address is still
    # served (issue 15: it was refused, which locked out every client behind a proxy).
    limited = "127.0.0.50"
    for _ in range(21):
        request("GET", "/health", token="z" * 40, source=limited)
    for label, bad in (("a wrong token", "z" * 40), ("no token", None)):
        st, h, payload = request("GET", "/health", token=bad, source=limited)
        check(st == 429, "after 20 failures %s got %d, not 429" % (label, st))
        check((error_of(payload) or {}).get("code") == "rate_limited", "429 body %r" % payload)
        check(h.get("retry-after", "").isdigit(), "429 Retry-After %r" % h.get("retry-after"))
    st, _, payload = request("GET", "/health", source=limited)
    check(st == 200, "after 20 failures from %s the right token from there got %d, not 200: %r"
          % (limited, st, payload[:200]))
    st, _, _ = request("GET", "/health", token="z" * 40, source=limited)
    check(st == 429, "a wrong token after the right one got %d, not 429" % st)
    st, _, _ = request("GET", "/health")
    check(st == 200, "another address got %d after 127.0.0.50 was limited" % st)

    # Bad bodies: 400 bad_request naming the member.
    bad_bodies = [
        ("{not json", None),
        ("[1,2]", None),
        ({"task": 5}, "/task"),
        ({"task": ""}, "/task"),
        ({}, "/task"),
        ({"task": "x", "type": "weird"}, "/type"),
        ({"task": "x", "type": "exec", "mode": "print"}, "/mode"),
        ({"task": "x", "preset": "shell"}, "/preset"),
        ({"task": "x", "cwd": 7}, "/cwd"),
        ({"task": "x", "cwd": "relative"}, "/cwd"),
        ({"task": "x", "command": ["ls"]}, "/command"),
        ({"task": "x", "args": "a b"}, "/args"),
        ({"task": "x", "args": ["a", 2]}, "/args/1"),
        ({"task": "x", "maxTurns": "3"}, "/maxTurns"),
        ({"task": "x", "maxTurns": 0}, "/maxTurns"),
        ({"task": "x", "env": ["A=1"]}, "/env"),
        ({"task": "x", "env": {"A": 1}}, "/env/A"),
        ({"task": "x", "owner": 5}, "/owner"),
        ({"task": "x", "labels": ["a", "b", "c", 3]}, "/labels/3"),
        ({"task": "x", "limits": {"pidsMax": "x"}}, "/limits/pidsMax"),
        ({"task": "x", "limits": []}, "/limits"),
        ({"task": "x", "type": "interactive", "preset": "shell", "pty": {"rows": 0, "cols": 9}},
         "/pty/rows"),
    ]
    for body, field in bad_bodies:
        st, _, payload = request("POST", "/sessions", body if isinstance(body, dict) else body,
                                 headers={"Content-Type": "application/json"})
        e = error_of(payload) or {}
        what = "POST /sessions %r" % (body,)
        check(st == 400, "%s: %d, not 400: %r" % (what, st, payload[:200]))
        check(e.get("code") == "bad_request" and isinstance(e.get("error"), str),
              "%s: body %r" % (what, payload[:200]))
        if field is not None:
            check(e.get("field") == field, "%s: field %r, not %r" % (what, e.get("field"), field))
    for path, body, field in [
        ("/sessions/%s/input" % sid, {"input": 5}, "/input"),
        ("/sessions/%s/input" % sid, {}, "/input"),
        ("/sessions/%s/input" % sid, "{oops", None),
        ("/sessions/%s/resize" % sid, {"rows": "a", "cols": 5}, "/rows"),
        ("/sessions/%s/signal" % sid, {"signal": "NOPE"}, "/signal"),
    ]:
        st, _, payload = request("POST", path, body)
        e = error_of(payload) or {}
        check(st == 400, "POST %s %r: %d, not 400: %r" % (path, body, st, payload[:200]))
        check(e.get("code") == "bad_request" and isinstance(e.get("error"), str),
              "POST %s %r: body %r" % (path, body, payload[:200]))
        if field:
            check(e.get("field") == field, "POST %s %r: field %r" % (path, body, e.get("field")))
    st, _, payload = request("POST", "/sessions/%s/input" % sid, {"input": 5})
    check((error_of(payload) or {}).get("error") == "input is required",
          "input error as the original's: %r" % payload)
    for path, field in [("/sessions/%s/transcript?since=abc" % sid, "?since"),
                        ("/sessions/%s/transcript?since=-1" % sid, "?since"),
                        ("/sessions/%s/output?limit=0" % sid, "?limit"),
                        ("/sessions/%s/ws?since=x" % sid, "?since"),
                        ("/sessions?status=bogus", "?status"),
                        ("/sessions?limit=0", "?limit")]:
        st, _, payload = request("GET", path)
        e = error_of(payload) or {}
        check(st == 400 and e.get("code") == "bad_request" and e.get("field") == field,
              "GET %s: %d %r" % (path, st, payload[:200]))

    # Offsets past the end of the output: a 400 naming ?since on /output, and for the
    # WebSocket too (before the upgrade: a client waiting for output that cannot come would
    # wait forever). The transcript clamps to its end, as the original did.
    st, _, body = request("POST", "/sessions", {"task": "echo 12345; sleep 600"})
    check(st == 201, "POST /sessions: %d" % st)
    late = json.loads(body)["id"]
    path = "/sessions/%s/output?since=1000000" % late
    st, _, payload = request("GET", path)
    e = error_of(payload) or {}
    check(st == 400 and e.get("code") == "bad_request" and e.get("field") == "?since",
          "GET %s: %d %r" % (path, st, payload[:200]))
    st, headers, payload = request("GET", "/sessions/%s/transcript?since=1000000" % late)
    check(st == 200 and payload == b"" and
          headers.get("x-transcript-offset") == headers.get("x-transcript-total-size") ==
          headers.get("x-transcript-next-offset"),
          "GET transcript past the end: %d %r %r" % (st, payload[:200], headers))

    async def ws_past_end():
        url = "ws://%s:%d/sessions/%s/ws?since=1000000" % (HOST, PORT, late)
        try:
            ws = await websockets.connect(url, extra_headers={"Authorization": "Bearer " + TOKEN},
                                          open_timeout=60, compression=None)
        except websockets.InvalidStatusCode as e:
            check(e.status_code == 400, "ws ?since past the end: %d" % e.status_code)
            return
        msgs = []
        try:
            while True:
                msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except asyncio.TimeoutError:
            check(False, "ws ?since past the end: accepted, then silence after %r" % msgs)
        except websockets.ConnectionClosed:
            check(any(m["type"] == "error" for m in msgs),
                  "ws ?since past the end: closed without an error: %r" % msgs)
        await ws.close()
    asyncio.run(ws_past_end())
    request("DELETE", "/sessions/" + late)

    # What the supervisor refuses, mapped: a cwd outside the roots (400, as a missing one), a
    # looser limit (403), an unknown preset (404), too large a list limit (400).
    for body, want, code in [
        ({"task": "true", "cwd": "/etc"}, 400, "bad_request"),
        ({"task": "true", "limits": {"memoryMaxBytes": 1 << 40}}, 403, "policy_violation"),
        ({"task": "x", "type": "print", "preset": "no-such-preset"}, 404, "not_found"),
    ]:
        st, _, payload = request("POST", "/sessions", body)
        e = error_of(payload) or {}
        check(st == want and e.get("code") == code and isinstance(e.get("error"), str),
              "POST /sessions %r: %d %r" % (body, st, payload[:300]))
    st, _, payload = request("GET", "/sessions?limit=1001")
    e = error_of(payload) or {}
    check(st == 400 and e.get("code") == "bad_request" and e.get("field") == "?limit",
          "?limit=1001: %d %r" % (st, payload[:200]))

    # The session's environment: what the request may set arrives, the API's token never does.
    st, _, body = request("POST", "/sessions", {"task": "env", "env": {"MP_E2E": "yes-please"}})
    check(st == 201, "POST /sessions with env: %d %r" % (st, body[:300]))
    envs = json.loads(body)["id"] if st == 201 else None
    deadline = time.monotonic() + 60
    while envs and time.monotonic() < deadline:
        st, _, body = request("GET", "/sessions/" + envs)
        if json.loads(body)["status"] != "running":
            break
        time.sleep(0.2)
    if envs:
        st, _, out = request("GET", "/sessions/%s/output" % envs)
        check(b"MP_E2E=yes-please" in out, "the allowed env variable is missing: %r" % out[:500])
        check(TOKEN.encode() not in out and b"MONKEYPROOF" not in out,
              "the session sees the API's token or settings: %r" % out[:500])
    # A variable outside the policy's request_env.allow is refused, naming it.
    st, _, payload = request("POST", "/sessions", {"task": "env", "env": {"LD_PRELOAD": "x"}})
    e = error_of(payload) or {}
    check(st == 403 and e.get("code") == "policy_violation" and
          "LD_PRELOAD" in e.get("error", ""),
          "an env variable the policy does not allow: %d %r" % (st, payload[:300]))

    # Wrong method: 405 with Allow.
    st, h, payload = request("PUT", "/sessions")
    check(st == 405 and "GET" in h.get("allow", "") and "POST" in h.get("allow", ""),
          "PUT /sessions: %d Allow=%r" % (st, h.get("allow")))
    st, _, payload = request("GET", "/no/such/route")
    check(st == 404 and (error_of(payload) or {}).get("code") == "not_found",
          "unknown route: %d %r" % (st, payload))

    # Sizes (task, body) are sizes.py's.

    # Garbage on the wire.
    reply = raw(b"HELLO THERE\r\n\r\n")
    check(status_of(reply) == 400, "garbage request line: %r" % reply[:300])
    reply = raw(b"GET /health HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n")
    check(status_of(reply) == 400, "malformed header: %r" % reply[:300])
    reply = raw(b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                b"\r\nX-Huge: " + b"h" * (64 * 1024) + b"\r\n\r\n")
    check(status_of(reply) == 431, "huge header: %r" % reply[:300])
    reply = raw(b"GET /" + b"a" * (32 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    check(status_of(reply) in (414, 431), "huge request line: %r" % reply[:300])
    # Two requests in one write (pipelining) get two answers, in order, on one connection.
    auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    reply = raw(b"GET /health HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n" +
                b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth + b"\r\n")
    check(reply.count(b"HTTP/1.1 ") == 2 and reply.startswith(b"HTTP/1.1 200") and
          b"HTTP/1.1 404" in reply, "pipelined requests: %r" % reply[:600])
    # Expect: 100-continue: the interim answer, then the body, then 201.
    body = json.dumps({"task": "true", "pad": "q" * 4000}).encode()
    sock = socket.create_connection((HOST, PORT), timeout=30)
    sock.sendall(b"POST /sessions HTTP/1.1\r\nHost: x\r\n" + auth +
                 b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    interim = sock.recv(4096)
    check(interim.startswith(b"HTTP/1.1 100"), "Expect: 100-continue answered %r" % interim[:200])
    sock.sendall(body)
    final = sock.recv(65536)
    check(final.startswith(b"HTTP/1.1 201"), "after 100 Continue: %r" % final[:200])
    sock.close()
    # A chunked body within the limit, HTTP/1.0 without Host, several requests on one
    # keep-alive connection.
    chunked_ok = b'{"task":"true"}'
    reply = raw(b"POST /sessions HTTP/1.1\r\nHost: x\r\n" + auth +
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunked_ok), chunked_ok))
    check(status_of(reply) == 201, "chunked POST: %r" % reply[:300])
    reply = raw(b"GET /health HTTP/1.0\r\n" + auth + b"\r\n")
    check(reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200"),
          "HTTP/1.0: %r" % reply[:300])
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    for i in range(5):
        conn.request("GET", "/sessions/" + sid, headers={"Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        r.read()
        check(r.status == 200, "keep-alive request %d: %d" % (i, r.status))
    conn.close()

    # Many requests at once: the one supervisor link matches every answer to its request.
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        if i % 4 == 0:
            st, _, b = request("POST", "/sessions", {"task": "echo %d" % i, "owner": "burst"})
            return st == 201 and json.loads(b)["task"] == "echo %d" % i, (i, st, b[:100])
        st, _, b = request("GET", "/sessions/" + sid)
        return st == 200 and json.loads(b)["id"] == sid, (i, st, b[:100])
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(one, range(64)))
    bad = [r[1] for r in results if not r[0]]
    check(not bad, "concurrent requests: %d wrong, e.g. %r" % (len(bad), bad[:3]))

    # A WebSocket message over the 1 MiB the server reads closes that connection (1009) and
    # nothing else.
    st, _, b = request("POST", "/sessions", {"task": "sleep 600"})
    sleeper = json.loads(b)["id"]

    async def ws_huge():
        url = "ws://%s:%d/sessions/%s/ws" % (HOST, PORT, sleeper)
        ws = await websockets.connect(url, extra_headers={"Authorization": "Bearer " + TOKEN},
                                      open_timeout=60, compression=None, max_size=None)
        try:
            await ws.send(json.dumps({"type": "stdin", "data": "x" * (2 << 20)}))
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            check(False, "a 2 MiB WebSocket message did not close the connection")
        check(ws.close_code in (1009, 1006), "close code %r after 2 MiB" % ws.close_code)
    asyncio.run(ws_huge())
    st, _, b = request("GET", "/sessions/" + sleeper)
    check(st == 200 and json.loads(b)["status"] == "running",
          "the session outlives its client's oversized message: %d %r" % (st, b[:200]))
    request("DELETE", "/sessions/" + sleeper)

    # Metrics count what happened, without per-session labels.
    st, h, payload = request("GET", "/metrics")
    text = payload.decode("utf-8", "replace")
    check(st == 200 and h.get("content-type", "").startswith("text/plain") and "# TYPE" in text,
          "metrics: %d %r" % (st, text[:300]))
    check(sid not in text, "metrics mention a session id")
    # The server is still fine after all that.
    st, _, _ = request("GET", "/health")
    check(st == 200, "GET /health after the garbage: %d" % st)
    request("DELETE", "/sessions/" + sid)

    return finish("http_edges", t0)


if __name__ == "__main__":
    sys.exit(main())
