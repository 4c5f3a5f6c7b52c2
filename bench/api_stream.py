#!/usr/bin/python3
"""Client side of bench/api_bench.sh: measures monkeyproof-api from the outside.

Debian's python3 with python3-websockets (10.x, asyncio API) and nothing else.

  pipe       read stdin to EOF (the raw-pipe baseline), digest it
  stream     POST /sessions {task: GEN}, read its output over ONE WebSocket (?since=0),
             digest the `data` of every stdout message; --rate throttles the reader
  spawn      interleaved rounds: POST /sessions -> WebSocket `exit` against one-shot
             `monkeyproofd exec` runs
  mass-create / mass-delete   start N `sleep` sessions / DELETE them

The stream and pipe readers share one Digest class and one read-loop shape (receive a
block, digest it, count it), so their ratio compares transports, not readers. Every
command prints one JSON object on stdout (`BENCH_JSON {...}`); progress goes to stderr.
"""

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import time
import zlib

import websockets


def log(*args):
    print("api_stream:", *args, file=sys.stderr, flush=True)


def cpu_s():
    """This process's user+system CPU seconds so far."""
    t = os.times()
    return t.user + t.system


def emit(obj):
    print("BENCH_JSON " + json.dumps(obj, sort_keys=True), flush=True)


class Digest:
    """sha256 (the check the brief asks for), crc32 (cheap: exposes the transport's own
    cost when sha256 is the bottleneck) or none."""

    def __init__(self, kind):
        self.kind = kind
        self.crc = 0
        self.sha = hashlib.sha256() if kind == "sha256" else None

    def update(self, b):
        if self.sha is not None:
            self.sha.update(b)
        elif self.kind == "crc32":
            self.crc = zlib.crc32(b, self.crc)

    def hexdigest(self):
        if self.sha is not None:
            return self.sha.hexdigest()
        if self.kind == "crc32":
            return "%08x" % self.crc
        return ""


class Pacer:
    """Keeps the average rate at or below `rate` bytes/s by sleeping between messages."""

    def __init__(self, rate):
        self.rate = rate
        self.t0 = None
        self.slept = 0.0

    def start(self, now):
        if self.t0 is None:
            self.t0 = now

    def delay(self, total_bytes, now):
        if not self.rate or self.t0 is None:
            return 0.0
        ahead = total_bytes / self.rate - (now - self.t0)
        return ahead if ahead > 0 else 0.0


# ---------------------------------------------------------------------------- pipe


def cmd_pipe(a):
    d = Digest(a.hash)
    fd = sys.stdin.fileno()
    n = 0
    blocks = 0
    t_first = None
    t_start = time.monotonic()
    while True:
        b = os.read(fd, a.block)
        if not b:
            break
        if t_first is None:
            t_first = time.monotonic()
            cpu_first = cpu_s()
        d.update(b)
        n += len(b)
        blocks += 1
    t_end = time.monotonic()
    secs = t_end - (t_first or t_end)
    emit({"kind": "pipe", "hash": a.hash, "bytes": n, "blocks": blocks,
          "client_cpu_s": cpu_s() - cpu_first if t_first else 0.0,
          "digest": d.hexdigest(), "seconds": secs, "seconds_total": t_end - t_start,
          "mib_s": n / secs / 2**20 if secs > 0 else 0.0})


# ---------------------------------------------------------------------------- HTTP


class Api:
    def __init__(self, url, token):
        assert url.startswith("http://"), url
        self.hostport = url[len("http://"):].rstrip("/")
        self.token = token
        self.conn = None
        self.raw = False  # True: RawWebSocket instead of the websockets library

    def request(self, method, path, body=None):
        headers = {"Authorization": "Bearer " + self.token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):  # one retry on a keep-alive connection the server closed
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.hostport, timeout=120)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
                return r.status, dict(r.getheaders()), payload
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def create(self, body):
        status, headers, payload = self.request("POST", "/sessions", body)
        if status == 429:
            retry = float(headers.get("Retry-After", "1"))
            raise Capacity(retry, payload.decode(errors="replace"))
        if status != 201:
            raise RuntimeError("POST /sessions: %d %s" % (status, payload[:300]))
        return json.loads(payload)

    def ws_url(self, sid, since=0):
        return "ws://%s/sessions/%s/ws?since=%d" % (self.hostport, sid, since)

    def ws_connect(self, sid, since=0):
        if self.raw:
            return RawWebSocket(self.hostport, "/sessions/%s/ws?since=%d" % (sid, since),
                                self.token)
        return websockets.connect(
            self.ws_url(sid, since),
            extra_headers={"Authorization": "Bearer " + self.token},
            compression=None, max_size=64 * 2**20, ping_interval=None, close_timeout=5)


class RawWebSocket:
    """A minimal blocking WebSocket client (RFC 6455, client side, no extensions): enough
    to read a session's messages with less per-message work than the websockets library
    (no asyncio, no per-frame objects). Used to tell the library's cost from the server's."""

    def __init__(self, hostport, path, token):
        self.hostport, self.path, self.token = hostport, path, token
        self.sock = None
        self.buf = bytearray()

    async def __aenter__(self):
        import base64
        import socket
        host, port = self.hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (self.path, self.hostport, key, self.token))
        self.sock.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buf += chunk
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError("handshake refused: %r" % head[:200])
        self.buf = bytearray(rest)
        return self

    async def __aexit__(self, *exc):
        try:
            self.sock.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # close 1000, zero mask
        except OSError:
            pass
        self.sock.close()

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk

    async def recv(self):
        parts = []
        while True:
            self._need(2)
            b0, b1 = self.buf[0], self.buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                self._need(4)
                n = int.from_bytes(self.buf[2:4], "big")
                pos = 4
            elif n == 127:
                self._need(10)
                n = int.from_bytes(self.buf[2:10], "big")
                pos = 10
            self._need(pos + n)
            payload = bytes(self.buf[pos:pos + n])
            del self.buf[:pos + n]
            op = b0 & 0x0F
            if op == 8:
                raise ConnectionError("closed by the server")
            if op in (9, 10):  # ping/pong: the server's keep-alive; not answered, not needed here
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode() if len(parts) > 1 or op != 2 else parts[0]


class Capacity(Exception):
    def __init__(self, retry, text):
        super().__init__(text)
        self.retry = retry


# ---------------------------------------------------------------------------- stream


async def read_session(api, sid, digest, pacer=None, t_post=None):
    """Reads one session's output from offset 0 to its `exit` message."""
    st = {"stdout_bytes": 0, "stderr_bytes": 0, "messages": 0, "gaps": [], "lagged": 0,
          "duplicate_bytes": 0, "exit": None, "t_first": None, "slept": 0.0}
    expected = 0
    async with api.ws_connect(sid, 0) as ws:
        t_open = time.monotonic()
        while True:
            raw = await ws.recv()
            m = json.loads(raw)
            t = m.get("type")
            if t in ("stdout", "stderr"):
                now = time.monotonic()
                if st["t_first"] is None:
                    st["t_first"] = now
                    st["cpu_first"] = cpu_s()
                    if pacer:
                        pacer.start(now)
                data = m["data"].encode()
                off = m["offset"]
                if off > expected:
                    raise RuntimeError("hole: message at %d, expected %d" % (off, expected))
                if off < expected:  # a re-sent overlap: keep only the new tail
                    skip = expected - off
                    st["duplicate_bytes"] += min(skip, len(data))
                    data = data[skip:]
                if t == "stdout":
                    digest.update(data)
                    st["stdout_bytes"] += len(data)
                else:
                    st["stderr_bytes"] += len(data)
                    if st["stderr_bytes"] <= 4096:
                        log("stderr:", m["data"][:200].rstrip())
                expected = max(expected, m["next"])
                st["messages"] += 1
                if pacer:
                    d = pacer.delay(st["stdout_bytes"], time.monotonic())
                    if d > 0:
                        st["slept"] += d
                        await asyncio.sleep(d)
            elif t == "gap":
                st["gaps"].append([m["from"], m["to"]])
                expected = max(expected, m["to"])
            elif t == "lagged":
                st["lagged"] += 1
            elif t == "exit":
                st["exit"] = m
                break
            elif t == "catchup":
                expected = m.get("next", 0)
            elif t == "killed":
                st["killed"] = True
            elif t == "error":
                raise RuntimeError("WebSocket error message: %r" % m)
        t_end = time.monotonic()
        st["client_cpu_s"] = cpu_s() - st.get("cpu_first", cpu_s())
    st["t_open"] = t_open
    st["t_end"] = t_end
    return st


def cmd_stream(a):
    api = Api(a.url, a.token)
    api.raw = a.client == "raw"
    digest = Digest(a.hash)
    pacer = Pacer(a.rate * 2**20) if a.rate else None
    t_post = time.monotonic()
    info = api.create({"task": a.gen, "owner": "api-bench", "labels": ["stream"]})
    sid = info["id"]
    log("session", sid, "reading", a.hash, "rate", a.rate or "unlimited")
    st = asyncio.run(read_session(api, sid, digest, pacer, t_post))
    ex = st["exit"]
    first = st["t_first"] or st["t_end"]
    secs = st["t_end"] - first
    n = st["stdout_bytes"]
    session_cpu = None
    status, _, payload = api.request("GET", "/sessions/" + sid)
    if status == 200:
        res = json.loads(payload).get("resources") or {}
        if res.get("cpuUsageUsec") is not None:
            session_cpu = res["cpuUsageUsec"] / 1e6
    out = {"kind": "stream", "hash": a.hash, "session": sid, "bytes": n, "client": a.client,
           "client_cpu_s": st["client_cpu_s"], "session_cpu_s": session_cpu,
           "digest": digest.hexdigest(), "seconds": secs,
           "seconds_total": st["t_end"] - t_post, "mib_s": n / secs / 2**20 if secs else 0.0,
           "mib_s_total": n / (st["t_end"] - t_post) / 2**20,
           "messages": st["messages"], "avg_message_bytes": n / max(1, st["messages"]),
           "gaps": st["gaps"], "lagged": st["lagged"], "duplicate_bytes": st["duplicate_bytes"],
           "stderr_bytes": st["stderr_bytes"], "slept_s": round(st["slept"], 3),
           "rate_limit_mib_s": a.rate or None,
           "exit_code": ex.get("code") if ex else None,
           "exit_reason": ex.get("reason") if ex else None,
           "exit_offset": ex.get("offset") if ex else None}
    if a.expect_bytes is not None and n != a.expect_bytes:
        out["error"] = "got %d bytes, expected %d" % (n, a.expect_bytes)
    emit(out)
    return 0 if "error" not in out else 1


# ---------------------------------------------------------------------------- spawn


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def cmd_spawn(a):
    api = Api(a.url, a.token)
    cli = json.loads(a.cli)  # {"name": [argv...]}
    apis = json.loads(a.api_variants)  # {"name": {request body}}
    names = list(apis) + list(cli)
    loop = asyncio.new_event_loop()

    splits = {n: [] for n in apis}

    async def api_once(name, t0):
        info = api.create(apis[name])
        t_created = time.monotonic()
        st = await read_session(api, info["id"], Digest("none"))
        ex = st["exit"]
        if not ex or ex.get("code") != 0:
            raise RuntimeError("session %s ended %r" % (info["id"], ex))
        return ((t_created - t0) * 1000.0, (st["t_open"] - t_created) * 1000.0,
                (st["t_end"] - st["t_open"]) * 1000.0)

    def run(name):
        t0 = time.monotonic()
        if name in apis:
            split = loop.run_until_complete(api_once(name, t0))
            splits[name].append(split)
        else:
            r = subprocess.run(cli[name], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            if r.returncode != 0:
                raise RuntimeError("%s: status %d: %s" % (name, r.returncode, r.stderr[-300:]))
        return (time.monotonic() - t0) * 1000.0

    rng = random.Random(a.seed)
    samples = {n: [] for n in names}
    rows = []
    for rnd in range(-a.warmup, a.rounds):
        order = names[:]
        rng.shuffle(order)
        for pos, n in enumerate(order):
            ms = run(n)
            if rnd >= 0:
                samples[n].append(ms)
                rows.append((rnd, pos, n, ms))
        if rnd >= 0 and (rnd + 1) % 10 == 0:
            log("spawn: %d/%d rounds" % (rnd + 1, a.rounds))
    if a.raw:
        with open(a.raw, "w") as f:
            f.write("round,position,variant,ms\n")
            for r in rows:
                f.write("%d,%d,%s,%.3f\n" % r)
    res = {"kind": "spawn", "label": a.label, "rounds": a.rounds, "warmup": a.warmup,
           "variants": {}}
    for n in names:
        xs = samples[n]
        res["variants"][n] = {"median_ms": statistics.median(xs), "p10_ms": pct(xs, 0.1),
                              "p90_ms": pct(xs, 0.9), "min_ms": min(xs)}
        if n in apis:
            sp = splits[n][a.warmup:]  # the warm-up rounds come first
            res["variants"][n]["split_median_ms"] = {
                "post_201": statistics.median(x[0] for x in sp),
                "ws_open": statistics.median(x[1] for x in sp),
                "open_to_exit": statistics.median(x[2] for x in sp)}
    ratios = {}
    for num, den in json.loads(a.ratios):
        paired = [x / y for x, y in zip(samples[num], samples[den])]
        ratios["%s/%s" % (num, den)] = {
            "median_ratio": statistics.median(samples[num]) / statistics.median(samples[den]),
            "paired_median_ratio": statistics.median(paired)}
    res["ratios"] = ratios
    emit(res)
    return 0


# ---------------------------------------------------------------------------- mass


def cmd_mass_create(a):
    api = Api(a.url, a.token)
    ids = []
    t0 = time.monotonic()
    per = []
    batches = []  # seconds for each 100 sessions
    t_batch = t0
    stopped = None
    while len(ids) < a.count:
        t = time.monotonic()
        if t - t0 > a.deadline:
            stopped = "deadline of %d s reached" % a.deadline
            break
        try:
            info = api.create({"task": a.task, "owner": "api-bench", "labels": ["mass"]})
        except Capacity as e:
            stopped = "capacity: %s" % e
            break
        except Exception as e:  # noqa: BLE001 - recorded, then the phase goes on
            stopped = "error: %s" % e
            break
        per.append((time.monotonic() - t) * 1000.0)
        ids.append(info["id"])
        if len(ids) % 100 == 0:
            now = time.monotonic()
            batches.append(round(now - t_batch, 1))
            t_batch = now
            log("mass: %d sessions, the last 100 in %.1f s" % (len(ids), batches[-1]))
    if stopped:
        log("mass: stopped after %d sessions: %s" % (len(ids), stopped))
    with open(a.ids, "w") as f:
        f.write("\n".join(ids) + "\n")
    # Their states, one GET each (state, not just status: `running` covers `starting` too).
    states = {}
    for sid in ids:
        status, _, payload = api.request("GET", "/sessions/" + sid)
        st = json.loads(payload).get("state") if status == 200 else "http-%d" % status
        states[st] = states.get(st, 0) + 1
    # And the list route, as a client would ask.
    status, _, payload = api.request("GET", "/sessions?label=mass&limit=1000")
    list_probe = {"status": status,
                  "sessions": len(json.loads(payload)) if status == 200 else None,
                  "body": payload[:300].decode(errors="replace") if status != 200 else None}
    log("GET /sessions?label=mass&limit=1000: %d %s" % (status, list_probe["body"] or ""))
    emit({"kind": "mass-create", "count": len(ids), "wanted": a.count,
          "seconds": time.monotonic() - t0, "stopped": stopped,
          "post_median_ms": statistics.median(per) if per else None,
          "post_p90_ms": pct(per, 0.9) if per else None, "seconds_per_100": batches,
          "states": states, "list_probe": list_probe})
    return 0 if not stopped else 1


def cmd_mass_delete(a):
    api = Api(a.url, a.token)
    with open(a.ids) as f:
        ids = [line.strip() for line in f if line.strip()]
    t0 = time.monotonic()
    for sid in ids:
        status, _, payload = api.request("DELETE", "/sessions/" + sid)
        if status != 200:
            raise SystemExit("DELETE %s: %d %s" % (sid, status, payload[:200]))
    # api_bench.sh then waits for the sessions' cgroup leaves to go.
    emit({"kind": "mass-delete", "count": len(ids), "delete_requests_s": time.monotonic() - t0})
    return 0


# ---------------------------------------------------------------------------- summary


def rss_stats(path):
    d, a = [], []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and int(parts[1]) > 0 and int(parts[2]) > 0:
                    d.append(int(parts[1]))
                    a.append(int(parts[2]))
    except OSError:
        return None
    if not d:
        return None
    s = [x + y for x, y in zip(d, a)]
    return {"samples": len(d), "d_min": min(d), "d_max": max(d), "a_min": min(a),
            "a_max": max(a), "sum_min": min(s), "sum_max": max(s),
            "d_first": d[0], "d_last": d[-1], "a_first": a[0], "a_last": a[-1]}


def mib(kib):
    return "%.1f" % (kib / 1024.0)


def bounded_ratios(rows, mem, prefix):
    """The bounds that used to be asserted in the privileged tests, as ratios with a target.

    - A quiet session costs the supervisor no CPU: monkeyproofd's CPU seconds per wall second
      with one idle session (a loop spinning on an unread cgroup event file is 1.0; the test's
      bound was 0.25).
    - Memory stays bounded whatever a session prints: monkeyproofd's peak RSS during a stream
      per byte streamed (the test's bound was 64 MiB for 1 GiB: 1/16), and against its idle RSS.
    """
    print("bounds (formerly asserted in tests/privileged/supervisor_test.cc):")
    for r in rows:
        if r["kind"] == "idle-cpu" and r["sessions"] == 1 and r["cpu_window_s"]:
            ratio = float(r["daemon_cpu_s"]) / float(r["cpu_window_s"])
            print("monkeyproofd CPU / wall time, one quiet session: %.3f (target < 0.25: %s)" % (
                ratio, "met" if ratio < 0.25 else "MISSED"))
    idle = mem.get("idle", {}).get("monkeyproofd", {}).get("VmRSS_kib")
    for r in rows:
        if r["kind"] != "stream" or not r.get("bytes"):
            continue
        st = rss_stats("%s.rss-%s.tsv" % (prefix, r.get("phase")))
        if not st:
            continue
        per_byte = st["d_max"] * 1024.0 / r["bytes"]
        print("%s: monkeyproofd peak RSS / bytes streamed = %s MiB / %s MiB = %.4f "
              "(target <= 1/16 = 0.0625: %s)%s" % (
                  r.get("phase"), mib(st["d_max"]), mib(r["bytes"] / 1024.0), per_byte,
                  "met" if per_byte <= 1 / 16 else "MISSED",
                  "; peak / idle RSS = %.2f" % (st["d_max"] / idle) if idle else ""))


def cmd_summary(a):
    rows = []
    with open(a.prefix + ".jsonl") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    pipes = {r["hash"]: r for r in rows if r["kind"] == "pipe"}
    streams = [r for r in rows if r["kind"] == "stream"]
    mem = {r["phase"]: r for r in rows if r["kind"] == "memory"}
    if streams:
        print("stream (1 WebSocket, ?since=0; first byte to last; MiB/s):")
        print("| phase | client | hash | pipe MiB/s | WS MiB/s | WS / pipe | digest = pipe's | "
              "seconds | messages | lagged | gaps | CPU s: client | monkeyproofd | api | "
              "session | pipe reader |")
        print("|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in streams:
            p = pipes.get(r["hash"])
            ratio = "%.2f" % (r["mib_s"] / p["mib_s"]) if p and p["mib_s"] else "-"
            print("| %s | %s | %s | %s | %.2f | %s | %s | %.1f | %d | %d | %d | %.1f | %s | %s | "
                  "%s | %s |" % (
                      r.get("phase"), r.get("client"), r["hash"],
                      "%.2f" % p["mib_s"] if p else "-", r["mib_s"], ratio,
                      r.get("digest_matches_pipe"), r["seconds"], r["messages"], r["lagged"],
                      len(r["gaps"]), r.get("client_cpu_s", 0), r.get("daemon_cpu_s"),
                      r.get("api_cpu_s"), r.get("session_cpu_s"),
                      "%.1f" % p["client_cpu_s"] if p and "client_cpu_s" in p else "-"))
        print()
    abba = [r for r in streams if str(r.get("phase", "")).startswith("stream-abba")]
    if abba:
        # A-B-B-A legs (api_bench.sh phase stream-abba): every pipe leg of the run against
        # every WebSocket leg, means of the rates.
        pipe_legs = [r for r in rows if r["kind"] == "pipe" and r["hash"] == "sha256"]
        p_mean = sum(r["mib_s"] for r in pipe_legs) / len(pipe_legs)
        w_mean = sum(r["mib_s"] for r in abba) / len(abba)
        print("stream ABBA (pipe, WebSocket, WebSocket, pipe):")
        print("pipe legs MiB/s: %s; WebSocket legs MiB/s: %s; digests equal: %s" % (
            ", ".join("%.2f" % r["mib_s"] for r in pipe_legs),
            ", ".join("%.2f" % r["mib_s"] for r in abba),
            all(r.get("digest_matches_pipe") == "true" for r in abba)))
        print("mean WebSocket / mean pipe = %.2f / %.2f = %.2f (target >= 0.5: %s)" % (
            w_mean, p_mean, w_mean / p_mean, "met" if w_mean / p_mean >= 0.5 else "MISSED"))
        print()
    print("memory (VmRSS, MiB; HWM = VmHWM since the phase began):")
    print("| phase | monkeyproofd | monkeyproof-api | both | monkeyproofd HWM | api HWM |")
    print("|---|---:|---:|---:|---:|---:|")
    for phase, r in mem.items():
        d, ap = r["monkeyproofd"], r["monkeyproof_api"]
        print("| %s | %s | %s | %s | %s | %s |" % (
            phase, mib(d["VmRSS_kib"]), mib(ap["VmRSS_kib"]),
            mib(d["VmRSS_kib"] + ap["VmRSS_kib"]), mib(d["VmHWM_kib"]), mib(ap["VmHWM_kib"])))
    if "idle" in mem:
        both = mem["idle"]["monkeyproofd"]["VmRSS_kib"] + mem["idle"]["monkeyproof_api"]["VmRSS_kib"]
        print("idle target <= 16 MiB together: %s (%s MiB)" % (
            "met" if both <= 16 * 1024 else "MISSED", mib(both)))
    print()
    import glob
    for path in sorted(glob.glob(a.prefix + ".rss-*.tsv")):
        st = rss_stats(path)
        if st:
            print("%s: %d samples; monkeyproofd %s..%s MiB (first %s, last %s), "
                  "monkeyproof-api %s..%s MiB (first %s, last %s)" % (
                      path.rsplit(".rss-", 1)[1][:-4], st["samples"], mib(st["d_min"]),
                      mib(st["d_max"]), mib(st["d_first"]), mib(st["d_last"]), mib(st["a_min"]),
                      mib(st["a_max"]), mib(st["a_first"]), mib(st["a_last"])))
    for r in rows:
        if r["kind"] == "mass-create":
            print("mass-create: %d of %d sessions in %.1f s%s; POST median %s ms, p90 %s ms; "
                  "states %s; seconds per 100: %s; list route: %s" % (
                      r["count"], r["wanted"], r["seconds"],
                      " (stopped: %s)" % r["stopped"] if r.get("stopped") else "",
                      "%.0f" % r["post_median_ms"] if r["post_median_ms"] else "-",
                      "%.0f" % r["post_p90_ms"] if r["post_p90_ms"] else "-", r["states"],
                      r.get("seconds_per_100"), r.get("list_probe")))
        elif r["kind"] == "mass-delete":
            print("mass-delete: %d DELETEs in %.1f s" % (r["count"], r["delete_requests_s"]))
        elif r["kind"] == "mass-leaves":
            print("mass: %s: %s session leaves after %.1f s" % (r["when"], r["leaves"],
                                                                 r["seconds"]))
        elif r["kind"] == "idle-cpu":
            print("CPU over %s s with %s live session(s) and no request: monkeyproofd %s s, "
                  "monkeyproof-api %s s" % (r["cpu_window_s"], r["sessions"], r["daemon_cpu_s"],
                                            r["api_cpu_s"]))
    print()
    bounded_ratios(rows, mem, a.prefix)
    for r in rows:
        if r["kind"] == "spawn":
            print()
            print("spawn %s (%d rounds + %d warm-up, interleaved, shuffled; ms):" % (
                r.get("label", ""), r["rounds"], r["warmup"]))
            print("| variant | median | p10 | p90 | min |")
            print("|---|---:|---:|---:|---:|")
            for n, v in r["variants"].items():
                print("| %s | %.1f | %.1f | %.1f | %.1f |" % (
                    n, v["median_ms"], v["p10_ms"], v["p90_ms"], v["min_ms"]))
            for n, v in r["variants"].items():
                if "split_median_ms" in v:
                    sp = v["split_median_ms"]
                    print("%s split (medians): POST->201 %.1f ms, WebSocket open %.1f ms, "
                          "open->exit message %.1f ms" % (n, sp["post_201"], sp["ws_open"],
                                                          sp["open_to_exit"]))
            for n, v in r["ratios"].items():
                print("ratio %s: of medians %.2f, paired %.2f" % (
                    n, v["median_ratio"], v["paired_median_ratio"]))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--url", required=True)
        sp.add_argument("--token", default=os.environ.get("MONKEYPROOF_TOKEN", ""))

    sp = sub.add_parser("pipe")
    sp.add_argument("--hash", choices=["sha256", "crc32", "none"], default="sha256")
    sp.add_argument("--block", type=int, default=64 * 1024)
    sp = sub.add_parser("stream")
    common(sp)
    sp.add_argument("--gen", required=True, help="the session's task (a shell command line)")
    sp.add_argument("--hash", choices=["sha256", "crc32", "none"], default="sha256")
    sp.add_argument("--rate", type=float, default=0, help="MiB/s ceiling for the reader")
    sp.add_argument("--client", choices=["websockets", "raw"], default="websockets",
                    help="the websockets library (asyncio) or RawWebSocket (blocking socket)")
    sp.add_argument("--expect-bytes", type=int)
    sp = sub.add_parser("spawn")
    common(sp)
    sp.add_argument("--rounds", type=int, default=30)
    sp.add_argument("--warmup", type=int, default=3)
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument("--api-variants", required=True, help='JSON {"name": {body}}')
    sp.add_argument("--cli", required=True, help='JSON {"name": [argv]}')
    sp.add_argument("--ratios", required=True, help='JSON [["num","den"],...]')
    sp.add_argument("--raw", help="CSV of every sample")
    sp.add_argument("--label", default="", help="recorded with the result (e.g. the pinning)")
    sp = sub.add_parser("mass-create")
    common(sp)
    sp.add_argument("--count", type=int, default=1000)
    sp.add_argument("--task", default="sleep 600")
    sp.add_argument("--ids", required=True)
    sp.add_argument("--deadline", type=float, default=1800, help="seconds")
    sp = sub.add_parser("mass-delete")
    common(sp)
    sp.add_argument("--ids", required=True)
    sp = sub.add_parser("summary")
    sp.add_argument("prefix", help="the run's output prefix (PREFIX.jsonl, PREFIX.rss-*.tsv)")
    a = p.parse_args()
    if getattr(a, "token", None) == "":
        p.error("--token or MONKEYPROOF_TOKEN is required")
    return {"pipe": cmd_pipe, "stream": cmd_stream, "spawn": cmd_spawn,
            "mass-create": cmd_mass_create, "mass-delete": cmd_mass_delete,
            "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
