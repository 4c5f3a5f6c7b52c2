#!/usr/bin/python3
"""Scoped tokens and the WebSocket credentials against the real API and supervisor (docs/api.md,
"Scoped tokens" and "WebSocket auth"); the route-by-route matrix is in the unit tier
(http_scope_test), this is the same contract end to end.

- An admin token mints a token for the sessions of one owner with read and input: it lists
  and reads only those, sends input, and gets 403 naming the right for kill, create, /tokens
  and /metrics; a session of another owner answers as an unknown one (404).
- The WebSocket takes that token in the monkeyproof.bearer.<token> subprotocol (the answer
  selects plain "monkeyproof") and as the first {"type":"auth"} message: output arrives and
  stdin reaches the session both ways. A wrong first message closes with 1008; an upgrade
  without any token is 401. Each positive case has its negative next to it.
- Revoking the token (DELETE /tokens/:id) ends its HTTP and WebSocket use at once (401); an
  expired token is 401 "token expired"; a token with kill on one session kills that one.

Exits 0 when every check passed.
"""

import asyncio
import json
import sys
import time

import websockets

from e2e_http import HOST, PORT, check, error_of, finish, request


def create(body):
    st, _, payload = request("POST", "/sessions", body)
    if not check(st == 201, "setup: POST /sessions %r gave %d %r" % (body, st, payload[:200])):
        raise SystemExit(1)
    return json.loads(payload)["id"]


def mint(scope):
    st, _, payload = request("POST", "/tokens", scope)
    if not check(st == 201, "mint %r: %d %r" % (scope, st, payload[:300])):
        raise SystemExit(1)
    j = json.loads(payload)
    check(j["token"].startswith("mpt_" + j["id"] + "_") and j["createdBy"] == "admin",
          "minted token's shape: %r" % {k: v for k, v in j.items() if k != "token"})
    return j["id"], j["token"]


def ws_url(sid):
    return "ws://%s:%d/sessions/%s/ws" % (HOST, PORT, sid)


async def first_output(ws, marker, seconds=30):
    """Reads messages until one's data contains `marker`; True when it came in time."""
    deadline = time.monotonic() + seconds
    seen = ""
    while time.monotonic() < deadline:
        m = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        seen += m.get("data") or ""
        if marker in seen:
            return True
    return False


async def ws_subprotocol(sid, token, marker):
    """Opens with the bearer subprotocol, types `marker` and waits for the echo."""
    async with websockets.connect(
            ws_url(sid), subprotocols=["monkeyproof", "monkeyproof.bearer." + token],
            open_timeout=60, compression=None) as ws:
        check(ws.subprotocol == "monkeyproof",
              "subprotocol: the server selected %r, not monkeyproof" % ws.subprotocol)
        await ws.send(json.dumps({"type": "stdin", "data": marker + "\n"}))
        return await first_output(ws, marker)


async def ws_first_message(sid, token, marker):
    """Opens offering monkeyproof alone, authenticates with the first message, types `marker`."""
    async with websockets.connect(ws_url(sid), subprotocols=["monkeyproof"], open_timeout=60,
                                  compression=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        await ws.send(json.dumps({"type": "stdin", "data": marker + "\n"}))
        return await first_output(ws, marker)


async def ws_close_code_after(sid, first_message):
    """The close code after `first_message` on an upgrade that offered monkeyproof alone."""
    async with websockets.connect(ws_url(sid), subprotocols=["monkeyproof"], open_timeout=60,
                                  compression=None) as ws:
        await ws.send(first_message)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed:
            return ws.close_code
        except asyncio.TimeoutError:
            return None


async def ws_upgrade_status(sid, subprotocols):
    """The HTTP status of an upgrade that fails, or 101 when it opened."""
    try:
        async with websockets.connect(ws_url(sid), subprotocols=subprotocols, open_timeout=60,
                                      compression=None):
            return 101
    except websockets.InvalidStatusCode as e:
        return e.status_code


def main():
    t0 = time.monotonic()
    mine = create({"task": "cat", "owner": "scope-a"})
    other = create({"task": "cat", "owner": "scope-b"})
    tid, tok = mint({"sessions": "owner:scope-a", "rights": ["read", "input"], "ttlSeconds": 300})

    # HTTP with the scoped token.
    st, _, payload = request("GET", "/sessions", token=tok)
    ids = [s["id"] for s in json.loads(payload)] if st == 200 else []
    check(st == 200 and mine in ids and other not in ids,
          "scoped list: %d, has mine %s, has other %s" % (st, mine in ids, other in ids))
    st, _, payload = request("GET", "/sessions/" + mine, token=tok)
    check(st == 200, "scoped GET of a session in scope: %d %r" % (st, payload[:200]))
    st, _, payload = request("GET", "/sessions/" + other, token=tok)
    check(st == 404, "scoped GET of a session out of scope: %d (want 404, as unknown)" % st)
    st, _, payload = request("POST", "/sessions/%s/input" % mine, {"input": "via-http\n"}, token=tok)
    check(st == 200, "scoped input: %d %r" % (st, payload[:200]))
    for method, path, body, right in (
            ("DELETE", "/sessions/" + mine, None, "kill"),
            ("POST", "/sessions", {"task": "true"}, "create")):
        st, _, payload = request(method, path, body, token=tok)
        err = error_of(payload)
        check(st == 403 and err.get("code") == "forbidden" and right in err.get("error", ""),
              "%s %s with a read+input token: %d %r" % (method, path, st, payload[:200]))
    for path in ("/tokens", "/metrics"):
        st, _, payload = request("GET", path, token=tok)
        check(st == 403, "GET %s with a scoped token: %d %r" % (path, st, payload[:200]))
    # Control for the 403s: the admin token may do what the scoped one may not.
    st, _, _ = request("GET", "/tokens")
    check(st == 200, "GET /tokens with the admin token: %d" % st)

    # WebSocket: the subprotocol and the first message, each with its refusal.
    check(asyncio.run(ws_subprotocol(mine, tok, "via-subprotocol")),
          "subprotocol auth: no echo of the typed line")
    check(asyncio.run(ws_first_message(mine, tok, "via-first-message")),
          "first-message auth: no echo of the typed line")
    code = asyncio.run(ws_close_code_after(mine, json.dumps({"type": "auth", "token": "x" * 40})))
    check(code == 1008, "first message with a wrong token: close code %r, not 1008" % code)
    code = asyncio.run(ws_close_code_after(mine, json.dumps({"type": "stdin", "data": "x\n"})))
    check(code == 1008, "a first message that is not auth: close code %r, not 1008" % code)
    status = asyncio.run(ws_upgrade_status(mine, None))
    check(status == 401, "upgrade with no token and no monkeyproof subprotocol: %r" % status)
    status = asyncio.run(ws_upgrade_status(other, ["monkeyproof", "monkeyproof.bearer." + tok]))
    check(status == 404, "subprotocol token on a session out of scope: %r (want 404)" % status)
    # Everything typed reached the session, in order: the transcript has the three lines.
    st, _, payload = request("GET", "/sessions/%s/transcript" % mine)
    text = payload.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln.startswith("via-")]
    check(lines == ["via-http", "via-subprotocol", "via-first-message"],
          "input through the scoped token reached cat: %r" % lines)

    # Revocation ends every use of the token at once.
    st, _, payload = request("DELETE", "/tokens/" + tid)
    check(st == 200 and json.loads(payload).get("revoked") is True,
          "DELETE /tokens/%s: %d %r" % (tid, st, payload[:200]))
    st, _, _ = request("GET", "/sessions/" + mine, token=tok, source="127.0.0.3")
    check(st == 401, "revoked token over HTTP: %d (want 401)" % st)
    status = asyncio.run(ws_upgrade_status(mine, ["monkeyproof", "monkeyproof.bearer." + tok]))
    check(status == 401, "revoked token in the subprotocol: %r (want 401)" % status)

    # Expiry: a one-second token works, then is 401 "token expired".
    _, short = mint({"sessions": "owner:scope-a", "rights": ["read"], "ttlSeconds": 1})
    st, _, _ = request("GET", "/sessions/" + mine, token=short)
    check(st == 200, "a fresh 1 s token: %d" % st)
    time.sleep(2.2)
    st, _, payload = request("GET", "/sessions/" + mine, token=short, source="127.0.0.3")
    check(st == 401 and "expired" in payload.decode("utf-8", "replace"),
          "an expired token: %d %r" % (st, payload[:200]))

    # Kill on one session: that session dies, the other is out of reach.
    _, killer = mint({"sessions": "session:" + other, "rights": ["kill"], "ttlSeconds": 60})
    st, _, payload = request("DELETE", "/sessions/" + mine, token=killer)
    check(st == 404, "kill token on another session: %d (want 404) %r" % (st, payload[:200]))
    st, _, payload = request("DELETE", "/sessions/" + other, token=killer)
    check(st == 200 and b'"killed":true' in payload, "kill token on its session: %d %r" % (
        st, payload[:200]))
    st, _, payload = request("GET", "/sessions/" + mine)
    check(st == 200 and json.loads(payload)["state"] == "running",
          "the session the kill token could not reach still runs: %r" % payload[:200])
    request("DELETE", "/sessions/" + mine)

    return finish("scoped_tokens", t0)


if __name__ == "__main__":
    sys.exit(main())
