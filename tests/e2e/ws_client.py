#!/usr/bin/python3
"""WebSocket end-to-end checks of monkeyproof-api (docs/api.md, "WebSocket").

Run with Debian's python3 and python3-websockets. The API is MP_API_URL with the token
MP_API_TOKEN; MP_API_CWD, when set, is the cwd of the sessions it creates. Subcommands:

  stream --bytes N       a deterministic ASCII stream of N bytes: read over WebSocket from 0,
                         abort the TCP connection halfway, resume with ?since=<next>, compare the
                         sha256 with the generator's, then read it again from GET /output.
  stdin                  stdin as text and binary frames, close-stdin, signal, resize (PTY).
  snippet                the original server's client snippet: ?token=, catchup, stdout, stderr,
                         stdin, exit, close 1000.
  api-restart --bytes N  like stream, but prints "MIDSTREAM <next>" halfway, waits for "killed"
                         on stdin (the harness SIGKILLs and restarts the API), then resumes.
  fanout --clients C --bytes N
                         C clients on one session from offset 0 each receive all N bytes.
  utf8                   multi-byte characters split across reads arrive whole, live and
                         replayed; bytes that are not UTF-8 become U+FFFD.
  gaps                   a transcript cap cuts the start: gaps over WebSocket, /output and
                         /transcript, exact bytes elsewhere.
  live-resume --lines L   a session writes L numbered lines slowly (and waits for stdin at the
                         middle): read part of it, drop the connection, resume with ?since=<bytes
                         read> while it still writes; the bytes received must be exactly its text.
  wait-exit --session ID --reason R
                         prints CONNECTED once attached, then expects killed and an exit with
                         reason R (used across a supervisor restart).

Exits 0 when every check passed; otherwise prints what failed and exits 1.
"""

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

import websockets

API_URL = os.environ.get("MP_API_URL", "http://127.0.0.1:3200")
TOKEN = os.environ["MP_API_TOKEN"]
_URL = urllib.parse.urlsplit(API_URL)
HOST, PORT = _URL.hostname, _URL.port or 80
WS_URL = "ws://%s:%d" % (HOST, PORT)

# The generator a session runs: N bytes of 64 KiB ASCII lines "<block number>|<rotated
# alphabet>...\n", flushing and sleeping P seconds after every 16 blocks when P > 0. Run with
# python3 -c GEN N P; no single quotes so that a shell task can quote it.
GEN = (
    "import sys,time\n"
    "A=b\"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\"\n"
    "n=int(sys.argv[1]);p=float(sys.argv[2]);o=sys.stdout.buffer;i=0\n"
    "while n>0:\n"
    " r=i%62;b=((b\"%010d|\"%i)+(A[r:]+A[:r])*1057)[:65535]+b\"\\n\"\n"
    " b=b[:n];o.write(b);n-=len(b);i+=1\n"
    " if p and i%16==0:o.flush();time.sleep(p)\n"
    "o.flush()\n"
)
assert "'" not in GEN


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def log(*parts):
    print(*parts, flush=True)


def expected_stream(n):
    """The generator's bytes, produced by the generator itself (run here, outside a sandbox)."""
    out = subprocess.run([sys.executable, "-c", GEN, str(n), "0"], check=True,
                         stdout=subprocess.PIPE).stdout
    check(len(out) == n, "local generator gave %d bytes, not %d" % (len(out), n))
    return out


def api(method, path, body=None, token=TOKEN, timeout=60):
    """One HTTP request; returns (status, headers with lower-case names, body bytes)."""
    conn = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    headers = {}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = json.dumps(body).encode() if not isinstance(body, (bytes, str)) else body
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    payload = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    return r.status, hdrs, payload


def api_json(method, path, body=None, want=200):
    status, _, payload = api(method, path, body)
    check(status == want, "%s %s: status %d, not %d: %r" % (method, path, status, want,
                                                             payload[:500]))
    return json.loads(payload)


def create(body):
    # MP_API_CWD: the cwd of every session, for policies without a default_workspace (the
    # packaged exec policy in the host install test).
    if "cwd" not in body and os.environ.get("MP_API_CWD"):
        body = dict(body, cwd=os.environ["MP_API_CWD"])
    info = api_json("POST", "/sessions", body, want=201)
    check(isinstance(info.get("id"), str) and info["id"], "no session id in %r" % info)
    return info


def wait_ended(sid, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = api_json("GET", "/sessions/" + sid)
        if info["status"] != "running":
            return info
        time.sleep(0.2)
    raise CheckFailed("session %s still running after %d s" % (sid, timeout))


async def ws_connect(sid, since=None, header=True, query_token=False):
    query = {}
    if since is not None:
        query["since"] = str(since)
    if query_token:
        query["token"] = TOKEN
    url = "%s/sessions/%s/ws" % (WS_URL, sid)
    if query:
        url += "?" + urllib.parse.urlencode(query)
    extra = {"Authorization": "Bearer " + TOKEN} if header else {}
    return await websockets.connect(url, extra_headers=extra, max_size=1 << 24,
                                    compression=None, ping_interval=None, open_timeout=60,
                                    close_timeout=10)


class Follower:
    """Reads one session's output messages, checking that offsets are contiguous."""

    def __init__(self, since=0):
        self.next = since
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.messages = 0
        self.lagged = 0
        self.exit = None
        self.killed = False
        self.text = {"stdout": "", "stderr": ""}
        self.keep_text = False

    def feed(self, msg):
        t = msg.get("type")
        if t in ("stdout", "stderr"):
            check(msg["offset"] == self.next,
                  "%s message at offset %d, expected %d" % (t, msg["offset"], self.next))
            data = msg["data"].encode("utf-8")
            check(msg["next"] == msg["offset"] + len(data),
                  "next %d != offset %d + %d bytes" % (msg["next"], msg["offset"], len(data)))
            self.sha.update(data)
            self.bytes += len(data)
            self.next = msg["next"]
            self.messages += 1
            if self.keep_text:
                self.text[t] += msg["data"]
        elif t == "catchup":
            check(msg["data"] == "" and msg["next"] == self.next,
                  "catchup with ?since=%d: %r" % (self.next, {k: msg[k] for k in msg
                                                               if k != "data"}))
        elif t == "lagged":
            self.lagged += 1
            check(msg["resumeFrom"] == self.next,
                  "lagged resumeFrom %d, but we are at %d" % (msg["resumeFrom"], self.next))
        elif t == "gap":
            raise CheckFailed("unexpected gap %r" % msg)
        elif t == "killed":
            self.killed = True
        elif t == "exit":
            self.exit = msg
        elif t == "error":
            raise CheckFailed("error message from the server: %r" % msg)
        else:
            raise CheckFailed("unknown message type %r" % msg)

    async def run(self, ws, stop_at=None):
        """Reads until the exit message (True) or until `stop_at` bytes (False)."""
        while self.exit is None:
            if stop_at is not None and self.next >= stop_at:
                return False
            self.feed(json.loads(await ws.recv()))
        return True


def read_output_binary(sid, total, workers=4):
    """The whole output through GET /output in 1 MiB reads (a few at a time); its sha256."""
    from concurrent.futures import ThreadPoolExecutor
    step = 1 << 20

    def one(since):
        status, h, body = api("GET", "/sessions/%s/output?since=%d" % (sid, since))
        check(status == 200, "GET /output?since=%d: %d %r" % (since, status, body[:300]))
        check(h.get("content-type") == "application/octet-stream",
              "output content-type %r" % h.get("content-type"))
        check(int(h["x-output-offset"]) == since,
              "x-output-offset %s, asked %d" % (h["x-output-offset"], since))
        nxt = int(h["x-output-next-offset"])
        check(len(body) == min(step, total - since) and nxt == since + len(body),
              "since=%d: %d bytes, next %d" % (since, len(body), nxt))
        check(int(h["x-output-total-size"]) == total, "x-output-total-size %s != %d" % (
            h["x-output-total-size"], total))
        check("x-output-gaps" not in h, "gaps %r" % h.get("x-output-gaps"))
        check(h["x-output-ended"] == ("true" if nxt >= total else "false"),
              "x-output-ended %r at %d of %d" % (h["x-output-ended"], nxt, total))
        return body

    sha = hashlib.sha256()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for body in pool.map(one, range(0, total, step)):
            sha.update(body)
    return sha.hexdigest()


def transcript_header(sid):
    """The original's transcript header of an exec or print session."""
    task = api_json("GET", "/sessions/" + sid)["task"]
    return ("# Session %s\n## Task\n\n%s\n\n---\n" % (sid, task)).encode()


def spawn_stream(n, pace, name):
    return create({"task": name, "command": sys.executable, "args": ["-c", GEN, str(n),
                                                                     str(pace)],
                   "owner": "e2e-ws", "labels": ["stream"]})


async def cmd_stream(args):
    n = args.bytes
    t0 = time.monotonic()
    data = expected_stream(n)
    want = hashlib.sha256(data).hexdigest()
    log("expected sha256 %s (%.1f s)" % (want, time.monotonic() - t0))
    info = spawn_stream(n, 0, "e2e-stream")
    sid = info["id"]
    log("session", sid)
    t1 = time.monotonic()
    f = Follower(0)
    ws = await ws_connect(sid, since=0)
    done = await f.run(ws, stop_at=n // 2)
    check(not done, "the stream ended before the midpoint")
    # A forced disconnect: no close handshake, the TCP connection just goes away.
    ws.transport.abort()
    log("aborted the connection at offset %d after %.1f s (%d messages)" %
        (f.next, time.monotonic() - t1, f.messages))
    ws = await ws_connect(sid, since=f.next)
    # A second client joins at three quarters without ?since: recent output in the catchup,
    # then everything after it.
    late = None
    if not await f.run(ws, stop_at=3 * n // 4):
        late = asyncio.create_task(late_joiner(sid, data))
    check(await f.run(ws), "no exit message")
    await ws.wait_closed()
    if late is not None:
        await asyncio.wait_for(late, 240)
    check(ws.close_code == 1000, "close code %r after exit" % ws.close_code)
    dt = time.monotonic() - t1
    log("received %d bytes in %.1f s (%.1f MiB/s), %d messages, %d lagged" %
        (f.bytes, dt, f.bytes / dt / 1048576, f.messages, f.lagged))
    check(f.bytes == n, "received %d bytes, expected %d" % (f.bytes, n))
    check(f.sha.hexdigest() == want, "sha256 differs: %s" % f.sha.hexdigest())
    check(f.exit["code"] == 0 and f.exit["reason"] == "exit", "exit %r" % f.exit)
    check(f.exit["offset"] == n, "exit offset %r" % f.exit["offset"])
    check(not f.killed, "a killed message for a session that exited")
    t2 = time.monotonic()
    got = read_output_binary(sid, n)
    log("GET /output read %d bytes in %.1f s" % (n, time.monotonic() - t2))
    check(got == want, "GET /output sha256 differs: %s" % got)
    # The transcript is the original's text (a header, then the output: stdout only here),
    # at most 4 MiB per response.
    text = transcript_header(sid) + data
    status, h, body = api("GET", "/sessions/%s/transcript?since=0" % sid)
    check(status == 200 and len(body) == 4 << 20 and body == text[:4 << 20],
          "transcript from 0: %d, %d bytes" % (status, len(body)))
    check((h["x-transcript-offset"], h["x-transcript-next-offset"],
           h["x-transcript-total-size"]) == ("0", str(4 << 20), str(len(text))),
          "transcript headers %r" % h)
    status, h, body = api("GET", "/sessions/%s/transcript?since=%d" % (sid, len(text) - 10))
    check(status == 200 and body == data[-10:] and
          h["x-transcript-next-offset"] == str(len(text)),
          "transcript tail: %d %r %r" % (status, body, h))
    detail = api_json("GET", "/sessions/" + sid)
    check(detail["status"] == "exited" and detail["exitCode"] == 0, "detail %r" % {
        k: detail[k] for k in ("status", "exitCode", "endReason")})
    check(detail["outputBytes"] == n, "outputBytes %r" % detail["outputBytes"])
    check(detail["outputLines"] == (n + 65535) // 65536, "outputLines %r" % detail["outputLines"])
    check(detail["wsClients"] == 0, "wsClients %r after every client left" % detail["wsClients"])
    log("stream OK")


async def late_joiner(sid, data):
    """Joins without ?since: the catchup holds the recent output and ends where live starts."""
    ws = await ws_connect(sid)
    first = json.loads(await ws.recv())
    check(first["type"] == "catchup", "late joiner's first message %r" % first["type"])
    raw = first["data"].encode()
    check(0 < len(raw) <= 16384, "catchup carries %d bytes" % len(raw))
    check(first["offset"] + len(raw) == first["next"],
          "catchup offset %d + %d bytes != next %d" % (first["offset"], len(raw), first["next"]))
    check(raw == data[first["offset"]:first["next"]], "catchup data differs from the stream")
    f = Follower(first["next"])
    check(await f.run(ws), "late joiner: no exit")
    check(f.sha.hexdigest() == hashlib.sha256(data[first["next"]:]).hexdigest(),
          "late joiner: bytes after the catchup differ")
    log("late joiner: catchup at %d..%d, then %d bytes" % (first["offset"], first["next"],
                                                            f.bytes))
    await ws.close()


async def read_until(ws, f, pred, timeout=60):
    """Feeds messages to `f` until pred() holds or the exit arrives."""
    async def loop():
        while not pred() and f.exit is None:
            f.feed(json.loads(await ws.recv()))
    await asyncio.wait_for(loop(), timeout)


async def cmd_stdin(args):
    # head -n1: one text stdin message, echoed back.
    sid = create({"task": "head -n1"})["id"]
    ws = await ws_connect(sid)
    first = json.loads(await ws.recv())
    check(first["type"] == "catchup", "first message %r" % first)
    f = Follower(first["next"])
    f.keep_text = True
    await ws.send(json.dumps({"type": "stdin", "data": "hello-stdin\nsecond line\n"}))
    await read_until(ws, f, lambda: False)
    check(f.text["stdout"] == "hello-stdin\n", "head -n1 echoed %r" % f.text["stdout"])
    check(f.exit and f.exit["code"] == 0, "head exit %r" % f.exit)
    await ws.close()
    # Joining an ended session: the catchup holds its output, then exit and close.
    ws = await ws_connect(sid)
    first = json.loads(await ws.recv())
    check(first["type"] == "catchup" and first["data"] == "hello-stdin\n" and
          first["status"] == "exited" and first["exitCode"] == 0,
          "catchup of an ended session %r" % first)
    last = json.loads(await ws.recv())
    check(last["type"] == "exit" and last["code"] == 0, "then %r" % last)
    await ws.wait_closed()
    check(ws.close_code == 1000, "close code %r" % ws.close_code)

    # cat: a binary frame and a text message, then close-stdin ends it.
    sid = create({"task": "cat; echo done"})["id"]
    ws = await ws_connect(sid, since=0)
    f = Follower(0)
    f.keep_text = True
    await ws.send(b"binary-bytes ")
    await ws.send(json.dumps({"type": "stdin", "data": "text \u00e9\n"}))
    await read_until(ws, f, lambda: "\u00e9" in f.text["stdout"])
    await ws.send(json.dumps({"type": "close-stdin"}))
    await read_until(ws, f, lambda: False)
    check(f.text["stdout"] == "binary-bytes text \u00e9\ndone\n", "cat gave %r" % f.text["stdout"])
    check(f.exit and f.exit["code"] == 0, "cat exit %r" % f.exit)
    await ws.close()

    # More stdin than the supervisor buffers (1 MiB), to a command that starts reading late:
    # nothing may be dropped; the API must hold the client back instead.
    blob = os.urandom(3 << 20)
    sid = create({"task": "sleep 3; sha256sum"})["id"]
    ws = await ws_connect(sid, since=0)
    f = Follower(0)
    f.keep_text = True
    t0 = time.monotonic()
    reader = asyncio.create_task(read_until(ws, f, lambda: False, timeout=120))
    for i in range(0, len(blob), 60 * 1024):
        await ws.send(blob[i:i + 60 * 1024])
    await ws.send(json.dumps({"type": "close-stdin"}))
    await reader
    check(f.text["stdout"] == hashlib.sha256(blob).hexdigest() + "  -\n",
          "3 MiB of stdin: sha256sum printed %r" % f.text["stdout"])
    check(f.exit and f.exit["code"] == 0, "sha256sum exit %r" % f.exit)
    log("3 MiB of stdin through a slow reader in %.1f s" % (time.monotonic() - t0))
    await ws.close()

    # A malformed client message gets an error message; the connection stays usable.
    sid = create({"task": "trap 'echo got-term; exit 5' TERM; echo ready; "
                          "while :; do sleep 0.1; done"})["id"]
    ws = await ws_connect(sid, since=0)
    f = Follower(0)
    f.keep_text = True
    await read_until(ws, f, lambda: "ready" in f.text["stdout"])
    await ws.send("{not json")
    while True:
        m = json.loads(await ws.recv())
        if m["type"] == "error":
            check(isinstance(m.get("error"), str) and m.get("code") == "bad_request",
                  "error message %r" % m)
            break
        f.feed(m)
    await ws.send(json.dumps({"type": "signal", "signal": "TERM"}))
    await read_until(ws, f, lambda: False)
    check("got-term" in f.text["stdout"], "trap output %r" % f.text["stdout"])
    check(f.exit and f.exit["code"] == 5, "signal exit %r" % f.exit)
    await ws.close()

    # DELETE while a client watches: killed, then exit, then close 1000.
    sid = create({"task": "echo up; sleep 600"})["id"]
    ws = await ws_connect(sid, since=0)
    f = Follower(0)
    f.keep_text = True
    await read_until(ws, f, lambda: "up" in f.text["stdout"])
    api_json("DELETE", "/sessions/" + sid)
    await read_until(ws, f, lambda: False)
    check(f.killed, "no killed message after DELETE")
    check(f.exit and f.exit["reason"] == "killed_by_request" and f.exit["code"] >= 128,
          "exit after DELETE %r" % f.exit)
    await ws.wait_closed()
    check(ws.close_code == 1000, "close code %r after DELETE" % ws.close_code)

    # An unknown session: 404 before any upgrade.
    try:
        await ws_connect("s-00000000000000000000000000")
        raise CheckFailed("a WebSocket to an unknown session was accepted")
    except websockets.InvalidStatusCode as e:
        check(e.status_code == 404, "unknown session: %d" % e.status_code)

    # An interactive session: the PTY resizes from a WebSocket message.
    sid = create({"type": "interactive", "preset": "shell", "pty": {"rows": 30, "cols": 100},
                  "task": "stty size; read x; stty size; echo \"in:$x\""})["id"]
    ws = await ws_connect(sid, since=0)
    f = Follower(0)
    f.keep_text = True
    await read_until(ws, f, lambda: "30 100" in f.text["stdout"])
    await ws.send(json.dumps({"type": "resize", "rows": 50, "cols": 120}))
    await ws.send(json.dumps({"type": "stdin", "data": "typed\n"}))
    await read_until(ws, f, lambda: False)
    check("50 120" in f.text["stdout"] and "in:typed" in f.text["stdout"],
          "pty output %r" % f.text["stdout"])
    check(f.text["stderr"] == "", "pty output came as stderr: %r" % f.text["stderr"])
    await ws.close()
    log("stdin OK")


# Multi-byte characters written in odd-sized pieces, so that reads split them, then two bytes
# that are not UTF-8. No single quotes (a shell task quotes it).
UTF8_GEN = (
    "import os,sys,time\n"
    "d=(\"a\\u00e9\\u20ac\\U0001F600\"*int(sys.argv[1])).encode()+b\"\\xff\\xfeend\\n\"\n"
    "for i in range(0,len(d),4099):\n"
    " os.write(1,d[i:i+4099])\n"
    " if i%65000<4099:time.sleep(0.01)\n"
)
assert "'" not in UTF8_GEN


async def cmd_utf8(args):
    """Characters split across reads arrive whole; invalid bytes become U+FFFD."""
    reps = 30000
    raw = subprocess.run([sys.executable, "-c", UTF8_GEN, str(reps)], check=True,
                         stdout=subprocess.PIPE).stdout
    want = raw.decode("utf-8", "replace")
    sid = create({"task": "read go && exec python3 -c '%s' %d" % (UTF8_GEN, reps)})["id"]
    for phase in ("live", "replay"):
        ws = await ws_connect(sid, since=0)
        if phase == "live":
            api_json("POST", "/sessions/%s/input" % sid, {"input": "go\n"})
        text, nxt, msgs = [], 0, 0
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if m["type"] == "exit":
                check(m["offset"] == len(raw), "%s: exit offset %r" % (phase, m["offset"]))
                break
            if m["type"] in ("catchup", "lagged"):
                continue
            check(m["type"] == "stdout", "%s: message %r" % (phase, m["type"]))
            check(m["offset"] == nxt, "%s: offset %d, expected %d" % (phase, m["offset"], nxt))
            nxt = m["next"]
            text.append(m["data"])
            msgs += 1
        got = "".join(text)
        check(got == want, "%s: text differs (%d chars, want %d); first difference at %d" % (
            phase, len(got), len(want),
            next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got),
                                                                                len(want)))))
        check(nxt == len(raw), "%s: last next %d != %d bytes" % (phase, nxt, len(raw)))
        log("utf8 %s: %d bytes in %d messages, text intact" % (phase, len(raw), msgs))
        await ws.close()
    log("utf8 OK")


class RangeFollower:
    """Follows output that may have gaps: offsets must be contiguous counting the gaps."""

    def __init__(self):
        self.next = 0
        self.pieces = []  # (offset, bytes)
        self.gaps = []
        self.exit = None

    def feed(self, msg):
        t = msg["type"]
        if t == "stdout":
            check(msg["offset"] == self.next, "offset %d, expected %d" % (msg["offset"],
                                                                         self.next))
            self.pieces.append((msg["offset"], msg["data"].encode()))
            self.next = msg["next"]
        elif t == "gap":
            check(msg["from"] == self.next and msg["to"] > msg["from"],
                  "gap %r at offset %d" % (msg, self.next))
            self.gaps.append((msg["from"], msg["to"]))
            self.next = msg["to"]
        elif t == "exit":
            self.exit = msg
        elif t not in ("catchup", "lagged"):
            raise CheckFailed("unexpected message %r" % msg)

    def verify(self, data, what):
        check(self.next == len(data), "%s: ended at %d of %d" % (what, self.next, len(data)))
        for off, piece in self.pieces:
            check(piece == data[off:off + len(piece)], "%s: bytes at %d differ" % (what, off))
        check(self.exit and self.exit["offset"] == len(data), "%s: exit %r" % (what, self.exit))


async def cmd_gaps(args):
    """A transcript cap of 1 MiB on ~2.6 MB of output: the cut start is reported as a gap by
    GET /output, GET /transcript and the WebSocket (live and replayed); the rest is exact."""
    data = subprocess.run(["seq", "1", "400000"], check=True, stdout=subprocess.PIPE).stdout
    sid = create({"type": "print", "preset": "capped",
                  "task": "read go && exec seq 1 400000"})["id"]
    ws = await ws_connect(sid, since=0)
    live = RangeFollower()
    api_json("POST", "/sessions/%s/input" % sid, {"input": "go\n"})
    while live.exit is None:
        live.feed(json.loads(await asyncio.wait_for(ws.recv(), 120)))
    live.verify(data, "live")
    await ws.close()
    wait_ended(sid)
    # Replayed after the end: a gap from 0 first.
    ws = await ws_connect(sid, since=0)
    replay = RangeFollower()
    while replay.exit is None:
        replay.feed(json.loads(await asyncio.wait_for(ws.recv(), 120)))
    replay.verify(data, "replay")
    await ws.close()
    check(replay.gaps and replay.gaps[0][0] == 0, "replay: no gap at the start: %r" %
          replay.gaps)
    cut = replay.gaps[0][1]
    check(len(data) - cut <= 1 << 20, "more than the cap kept: from %d of %d" % (cut, len(data)))
    status, h, body = api("GET", "/sessions/%s/output?since=0" % sid)
    check(status == 200 and h.get("x-output-offset") == str(cut) and
          h.get("x-output-gaps") == "0-%d" % cut and body == data[cut:cut + len(body)] and body,
          "GET /output across the gap: %d %r" % (status, {k: v for k, v in h.items()
                                                            if k.startswith("x-")}))
    # The transcript stays contiguous: its header, then (asked from after it) the output
    # past the cut, which counts as its size in output bytes.
    head = transcript_header(sid)
    status, h, body = api("GET", "/sessions/%s/transcript?since=0" % sid)
    check(status == 200 and body == head and h.get("x-transcript-next-offset") == str(len(head))
          and h.get("x-transcript-total-size") == str(len(head) + len(data)),
          "GET /transcript up to the gap: %d %r" % (status, {k: v for k, v in h.items()
                                                               if k.startswith("x-")}))
    status, h, body = api("GET", "/sessions/%s/transcript?since=%d" % (sid, len(head)))
    check(status == 200 and h.get("x-transcript-offset") == str(len(head) + cut) and
          body == data[cut:] and h.get("x-transcript-next-offset") == str(len(head) + len(data)),
          "GET /transcript across the gap: %d %r" % (status, {k: v for k, v in h.items()
                                                                if k.startswith("x-")}))
    log("gaps: live %r, replay %r; kept %d..%d" % (live.gaps, replay.gaps, cut, len(data)))
    log("gaps OK")


# Numbered lines, one every P seconds, with a stop at the middle until a line arrives on
# stdin: a session that is certainly still writing when a client resumes. Run with
# python3 -c LIVE_GEN L P. No single quotes.
LIVE_GEN = (
    "import sys,time\n"
    "n=int(sys.argv[1]);p=float(sys.argv[2]);o=sys.stdout\n"
    "for i in range(1,n+1):\n"
    " o.write(\"line %05d of %d: the quick brown fox jumps over the lazy dog\\n\"%(i,n));o.flush()\n"
    " if p:time.sleep(p)\n"
    " if i==n//2:sys.stdin.readline()\n"
)
assert "'" not in LIVE_GEN


async def cmd_live_resume(args):
    """Subscribe, read N bytes, drop the connection, resubscribe from N while the session still
    writes: what arrives, joined, is the session's text, no byte lost and none twice."""
    lines = args.lines
    want = subprocess.run([sys.executable, "-c", LIVE_GEN, str(lines), "0"], input=b"go\n",
                          check=True, stdout=subprocess.PIPE).stdout
    half = len(b"".join(want.splitlines(keepends=True)[:lines // 2]))
    # Mid-line and well before the stop, so that the cut is not on a message boundary by luck.
    cut = half // 3 + 7
    sid = create({"task": "e2e-live-resume", "command": sys.executable,
                  "args": ["-c", LIVE_GEN, str(lines), "0.01"], "owner": "e2e-ws",
                  "labels": ["live-resume"]})["id"]
    f = Follower(0)
    f.keep_text = True
    ws = await ws_connect(sid, since=0)
    check(not await asyncio.wait_for(f.run(ws, stop_at=cut), 120),
          "the session ended before %d bytes" % cut)
    # Keep exactly the first `cut` bytes: the rest of the last message comes again after the
    # resume. A forced disconnect: no close handshake.
    first = f.text["stdout"].encode()[:cut]
    check(len(first) == cut and not f.text["stderr"],
          "first connection: %d bytes of stdout, stderr %r" % (len(first), f.text["stderr"]))
    ws.transport.abort()
    log("read %d bytes (to %d) over the first connection, dropped it; resuming from %d" %
        (len(f.text["stdout"]), f.next, cut))
    ws = await ws_connect(sid, since=cut)
    catchup = json.loads(await asyncio.wait_for(ws.recv(), 60))
    check(catchup["type"] == "catchup" and catchup["data"] == "" and catchup["next"] == cut,
          "catchup after ?since=%d: %r" % (cut, {k: catchup.get(k) for k in
                                                 ("type", "offset", "next", "status")}))
    check(catchup["status"] == "running",
          "the session is %r at the resume: it must still be writing" % catchup["status"])
    rest = Follower(cut)
    rest.keep_text = True
    await ws.send(json.dumps({"type": "stdin", "data": "go\n"}))
    check(await asyncio.wait_for(rest.run(ws), 180), "no exit after the resume")
    check(rest.exit["code"] == 0 and rest.exit["reason"] == "exit", "exit %r" % rest.exit)
    check(rest.exit["offset"] == len(want), "exit offset %r, text is %d bytes" % (
        rest.exit["offset"], len(want)))
    check(not rest.text["stderr"], "stderr %r" % rest.text["stderr"][:300])
    got = first + rest.text["stdout"].encode()
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got),
                                                                              len(want)))
        raise CheckFailed("received %d bytes, the text is %d (%s); first difference at %d: "
                          "got %r, want %r" % (len(got), len(want),
                                               "duplicated" if len(got) > len(want) else
                                               "lost" if len(got) < len(want) else "same length",
                                               at, got[at:at + 60], want[at:at + 60]))
    await ws.wait_closed()
    check(ws.close_code == 1000, "close code %r after exit" % ws.close_code)
    log("live-resume: %d + %d bytes = the session's %d lines (%d bytes) exactly" % (
        len(first), rest.bytes, lines, len(want)))
    log("live-resume OK")


async def cmd_wait_exit(args):
    """Watches a session through a supervisor restart: prints CONNECTED, then expects the exit."""
    ws = await ws_connect(args.session, since=0)
    first = json.loads(await ws.recv())
    check(first["type"] == "catchup", "first message %r" % first)
    log("CONNECTED")
    f = Follower(0)
    await asyncio.wait_for(f.run(ws), 180)
    check(f.exit["reason"] == args.reason, "exit %r, expected reason %s" % (f.exit, args.reason))
    check(f.killed, "no killed message")
    await ws.wait_closed()
    check(ws.close_code == 1000, "close code %r" % ws.close_code)
    log("wait-exit OK: %r" % f.exit)


async def cmd_snippet(args):
    """What clients of the original do: token in the query, JSON messages, stdin as JSON."""
    sid = create({"task": "echo out-line; echo err-line >&2; read x; echo \"got:$x\"; exit 7"})["id"]
    ws = await ws_connect(sid, header=False, query_token=True)
    first = json.loads(await ws.recv())
    check(first["type"] == "catchup", "first message %r" % first)
    for key in ("id", "task", "status", "exitCode", "data"):
        check(key in first, "catchup lacks %r: %r" % (key, first))
    check(first["id"] == sid, "catchup id %r" % first["id"])
    check(first["status"] == "running", "catchup status %r" % first["status"])
    out, err = first["data"], ""
    sent = False
    exit_msg = None
    while exit_msg is None:
        if not sent and "out-line" in out:
            await ws.send(json.dumps({"type": "stdin", "data": "hi\n"}))
            sent = True
        m = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if m["type"] == "stdout":
            out += m["data"]
        elif m["type"] == "stderr":
            err += m["data"]
        elif m["type"] == "exit":
            exit_msg = m
        elif m["type"] == "killed":
            raise CheckFailed("killed message for a session that exited")
    check("got:hi" in out, "stdout %r" % out)
    check("err-line" in err or "err-line" in first["data"], "stderr %r" % err)
    check("err-line" not in out.replace(first["data"], ""), "stderr came as stdout: %r" % out)
    check(exit_msg["code"] == 7, "exit code %r" % exit_msg)
    check(isinstance(exit_msg["duration"], (int, float)) and exit_msg["duration"] >= 0,
          "duration %r" % exit_msg)
    try:
        extra = await asyncio.wait_for(ws.recv(), 30)
        raise CheckFailed("a message after exit: %r" % extra)
    except websockets.ConnectionClosedOK:
        pass
    check(ws.close_code == 1000, "close code %r" % ws.close_code)
    # The session reports the exit as the original did.
    info = wait_ended(sid)
    check(info["status"] == "exited" and info["exitCode"] == 7, "info %r" % info)
    log("snippet OK")


async def cmd_api_restart(args):
    n = args.bytes
    want = hashlib.sha256(expected_stream(n)).hexdigest()
    # Paced, so that the session is still producing when the API dies.
    sid = spawn_stream(n, 0.2, "e2e-api-restart")["id"]
    f = Follower(0)
    ws = await ws_connect(sid, since=0)
    check(not await f.run(ws, stop_at=n // 4), "the stream ended before a quarter")
    log("MIDSTREAM %d" % f.next)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    check(line.strip() == "killed", "harness said %r" % line)
    # Whatever the dead API had already sent is still valid; then the connection is gone.
    try:
        await asyncio.wait_for(f.run(ws), 60)
        log("note: the whole stream arrived before the API died")
    except websockets.ConnectionClosed as e:
        log("connection lost at offset %d (%s)" % (f.next, type(e).__name__))
    before = f.next
    deadline = time.monotonic() + 90
    while f.exit is None:
        try:
            ws = await ws_connect(sid, since=f.next)
        except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError) as e:
            check(time.monotonic() < deadline, "could not reconnect: %r" % e)
            await asyncio.sleep(0.3)
            continue
        try:
            await f.run(ws)
        except websockets.ConnectionClosed:
            continue
    log("resumed from %d; received %d bytes in total" % (before, f.bytes))
    check(f.bytes == n and f.sha.hexdigest() == want, "sha256 or length differs after resume")
    check(f.exit["code"] == 0, "exit %r" % f.exit)
    check(read_output_binary(sid, n) == want, "GET /output differs")
    log("api-restart OK")


async def cmd_fanout(args):
    n, count = args.bytes, args.clients
    data = expected_stream(n)
    want = hashlib.sha256(data).hexdigest()
    sid = create({"task": "read go && exec python3 -c '%s' %d 0" % (GEN, n), "owner": "fanout"})["id"]
    t0 = time.monotonic()
    conns = await asyncio.gather(*[ws_connect(sid, since=0) for _ in range(count)])
    log("%d clients connected in %.1f s" % (count, time.monotonic() - t0))
    info = api_json("GET", "/sessions/" + sid)
    check(info["wsClients"] == count, "wsClients %r, expected %d" % (info["wsClients"], count))
    listed = [s for s in api_json("GET", "/sessions?owner=fanout") if s["id"] == sid]
    check(listed and listed[0]["wsClients"] == count, "listed wsClients %r" % listed)
    followers = [Follower(0) for _ in range(count)]
    t1 = time.monotonic()
    api_json("POST", "/sessions/%s/input" % sid, {"input": "go\n"})
    results = await asyncio.gather(*[asyncio.wait_for(f.run(ws), 240)
                                     for f, ws in zip(followers, conns)], return_exceptions=True)
    dt = time.monotonic() - t1
    bad = []
    for i, (f, r) in enumerate(zip(followers, results)):
        if isinstance(r, BaseException):
            bad.append("client %d: %r at offset %d" % (i, r, f.next))
        elif f.bytes != n or f.sha.hexdigest() != want:
            bad.append("client %d: %d bytes, sha %s" % (i, f.bytes, f.sha.hexdigest()))
        elif f.exit["code"] != 0:
            bad.append("client %d: exit %r" % (i, f.exit))
    log("%d clients x %d bytes in %.1f s; %d lagged messages" % (
        count, n, dt, sum(f.lagged for f in followers)))
    for ws in conns:
        await ws.close()
    check(not bad, "%d clients failed:\n  %s" % (len(bad), "\n  ".join(bad[:10])))
    log("fanout OK")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("commands", nargs="+", metavar="command",
                   choices=["stream", "stdin", "snippet", "api-restart", "fanout", "utf8", "gaps",
                            "wait-exit", "live-resume"],
                   help="run one after the other, in one process")
    p.add_argument("--session")
    p.add_argument("--reason")
    p.add_argument("--bytes", type=int, default=1 << 20)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--lines", type=int, default=400)
    args = p.parse_args()
    fns = {"stream": cmd_stream, "stdin": cmd_stdin, "snippet": cmd_snippet,
           "api-restart": cmd_api_restart, "fanout": cmd_fanout, "utf8": cmd_utf8,
           "gaps": cmd_gaps, "wait-exit": cmd_wait_exit, "live-resume": cmd_live_resume}
    for command in args.commands:
        t0 = time.monotonic()
        try:
            asyncio.run(fns[command](args))
        except CheckFailed as e:
            print("FAILED (%s): %s" % (command, e), flush=True)
            return 1
        except Exception as e:  # noqa: BLE001 - report anything unexpected as a failure
            import traceback
            traceback.print_exc()
            print("FAILED (%s): %r" % (command, e), flush=True)
            return 1
        log("%s: %.1f s" % (command, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
