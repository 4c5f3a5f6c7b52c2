#!/usr/bin/python3
"""Client side and table of bench/compare.sh: the original MonkeyProof server against ours.

Debian's python3 with python3-websockets (10.x, asyncio API) and nothing else. Every command
speaks to either server the same way: POST /sessions with a Bearer token on a new connection,
the session's WebSocket as `/sessions/ID/ws?since=0&token=T` (the original reads the token
from the query and ignores `since`; ours accepts both), the end of a session from its `exit`
message or from a `catchup` that already says `exited`.

  spawn        interleaved rounds of `sh -lc true` and `/bin/true` (command/args): POST -> 201,
               POST -> exit
  concurrency  N sessions at once (`sleep 2; echo done`, POSTed by the native client): POST
               latencies, and the time until all exited from the servers' endedAt
  stream       the Python reader of one session's stream (checks the native one, stream_client)
  table        the comparison table from a run's PREFIX.jsonl; --readme FILE rewrites its
               "compare" section between the markers

Each measuring command prints one `BENCH_JSON {...}` line; progress goes to stderr.
"""

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time

import websockets


def log(*args):
    print("compare:", *args, file=sys.stderr, flush=True)


def emit(obj):
    print("BENCH_JSON " + json.dumps(obj, sort_keys=True), flush=True)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Client:
    def __init__(self, url, token):
        assert url.startswith("http://"), url
        self.hostport = url[len("http://"):].rstrip("/")
        self.host, port = self.hostport.rsplit(":", 1)
        self.port = int(port)
        self.token = token
        self.retries = 0  # 429/503 answers and refused connections, retried

    async def get_body(self, path):
        """GET PATH on a new connection; the body of a 200."""
        head = ("GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                "Connection: close\r\n\r\n" % (path, self.hostport, self.token)).encode()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(head)
        raw = await reader.read()
        writer.close()
        if not raw.startswith(b"HTTP/1.1 200"):
            raise RuntimeError("GET %s: %r" % (path, raw[:200]))
        return raw.partition(b"\r\n\r\n")[2]

    async def rejected_ms(self, body):
        """POST /sessions that must be refused (400) at the spawn step; milliseconds."""
        data = json.dumps(body).encode()
        head = ("POST /sessions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n"
                "\r\n" % (self.hostport, self.token, len(data))).encode()
        t0 = time.monotonic()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(head + data)
        raw = await reader.read()
        writer.close()
        if not raw.startswith(b"HTTP/1.1 400"):
            raise RuntimeError("POST %s: expected 400, got %r" % (body, raw[:300]))
        return (time.monotonic() - t0) * 1000.0

    async def get_ms(self, path):
        """GET PATH on a new connection (a request that spawns nothing); milliseconds."""
        head = ("GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                "Connection: close\r\n\r\n" % (path, self.hostport, self.token)).encode()
        t0 = time.monotonic()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(head)
        raw = await reader.read()
        writer.close()
        if not raw.startswith(b"HTTP/1.1 200"):
            raise RuntimeError("GET %s: %r" % (path, raw[:200]))
        return (time.monotonic() - t0) * 1000.0

    async def post(self, body):
        """POST /sessions on a new connection; returns (session id, milliseconds)."""
        data = json.dumps(body).encode()
        head = ("POST /sessions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n"
                "\r\n" % (self.hostport, self.token, len(data))).encode()
        t0 = time.monotonic()
        for attempt in range(200):
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(head + data)
                raw = await reader.read()  # Connection: close: the answer ends at EOF
                writer.close()
            except (ConnectionError, OSError) as e:
                self.retries += 1
                await asyncio.sleep(0.1)
                last = str(e)
                continue
            status_line, _, rest = raw.partition(b"\r\n")
            parts = status_line.split()
            status = int(parts[1]) if len(parts) > 1 else 0
            payload = rest.partition(b"\r\n\r\n")[2]
            if status in (429, 503) or status == 0:
                self.retries += 1
                m = re.search(rb"(?i)\r\nretry-after:\s*(\d+)", rest)
                await asyncio.sleep(min(1.0, float(m.group(1))) if m else 0.1)
                last = "%d %r" % (status, payload[:200])
                continue
            if status != 201:
                raise RuntimeError("POST /sessions: %d %r" % (status, payload[:300]))
            return json.loads(payload)["id"], (time.monotonic() - t0) * 1000.0
        raise RuntimeError("POST /sessions: gave up after 200 attempts: %s" % last)

    def ws_url(self, sid):
        return "ws://%s/sessions/%s/ws?since=0&token=%s" % (self.hostport, sid, self.token)

    async def wait_exit(self, sid, on_message=None):
        """Reads the session's WebSocket until its end; returns the time it ended."""
        for attempt in range(100):
            try:
                async with websockets.connect(self.ws_url(sid), compression=None,
                                              max_size=64 * 2**20, ping_interval=None,
                                              close_timeout=5) as ws:
                    ended = None
                    async for raw in ws:
                        m = json.loads(raw)
                        t = m.get("type")
                        if on_message:
                            on_message(m)
                        if t == "exit" or (t == "catchup" and m.get("status") == "exited"):
                            ended = ended or time.monotonic()
                            if on_message is None:
                                return ended
                    if ended is None:
                        raise RuntimeError("session %s: WebSocket closed before its end" % sid)
                    return ended
            except (websockets.exceptions.InvalidStatusCode, ConnectionError, OSError) as e:
                if "429" in str(e) or "503" in str(e) or isinstance(e, (ConnectionError, OSError)):
                    self.retries += 1
                    await asyncio.sleep(0.1)
                    continue
                raise
        raise RuntimeError("session %s: WebSocket refused 100 times" % sid)


# ---------------------------------------------------------------------------- spawn

VARIANTS = {
    "sh": {"task": "true"},  # /bin/sh -lc true on both
    "direct": {"command": "/bin/true", "args": [], "task": "x"},  # /bin/true x on both
}

# A cwd that does not exist: both servers get as far as starting the command and answer 400
# (Bun's spawn fails; our supervisor refuses it while preparing the sandbox).
REJECTED = {"task": "true", "cwd": "/nonexistent/compare-bench"}


def cmd_spawn(a):
    c = Client(a.url, a.token)
    rng = random.Random(a.seed)
    samples = {n: [] for n in VARIANTS}
    posts = {n: [] for n in VARIANTS}
    gets, rejected = [], []

    async def run():
        for rnd in range(-a.warmup, a.rounds):
            order = list(VARIANTS)
            rng.shuffle(order)
            for n in order:
                t0 = time.monotonic()
                sid, post_ms = await c.post(dict(VARIANTS[n], owner="bench"))
                t_end = await c.wait_exit(sid)
                if rnd >= 0:
                    samples[n].append((t_end - t0) * 1000.0)
                    posts[n].append(post_ms)
                    gets.append(await c.get_ms("/sessions/" + sid))
                    if n == "sh":
                        rejected.append(await c.rejected_ms(REJECTED))
            if rnd >= 0 and (rnd + 1) % 20 == 0:
                log("spawn: %d/%d rounds" % (rnd + 1, a.rounds))

    asyncio.run(run())
    all_posts = posts["sh"] + posts["direct"]
    emit({"kind": "spawn", "rounds": a.rounds, "warmup": a.warmup,
          "sh_ms": statistics.median(samples["sh"]),
          "direct_ms": statistics.median(samples["direct"]),
          "sh_p90_ms": pct(samples["sh"], 0.9), "direct_p90_ms": pct(samples["direct"], 0.9),
          "post_ms": statistics.median(all_posts), "post_p90_ms": pct(all_posts, 0.9),
          "get_ms": statistics.median(gets), "rejected_ms": statistics.median(rejected),
          "retries": c.retries})
    return 0


# ---------------------------------------------------------------------------- concurrency


def iso_seconds(text):
    """An ISO 8601 UTC time (both servers' createdAt/endedAt, milliseconds) as epoch seconds."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def cmd_concurrency(a):
    """COUNT sessions at once: the native client POSTs them from COUNT threads released together
    (stream_client posts); then each session's endedAt, asked of the server once it should have
    ended, gives the time until all exited, whatever the client's own speed."""
    c = Client(a.url, a.token)
    r = subprocess.run([a.native, "posts", "--url", a.url, "--token", a.token, "--task", a.task,
                        "--count", str(a.count)], stdout=subprocess.PIPE, check=True)
    line = [x for x in r.stdout.decode().splitlines() if x.startswith("BENCH_JSON ")][-1]
    posts = json.loads(line[len("BENCH_JSON "):])
    ended = {}
    pending = list(posts["ids"])
    sem = asyncio.Semaphore(16)

    async def check(sid):
        async with sem:
            info = json.loads(await c.get_body("/sessions/" + sid))
        if info.get("endedAt"):
            ended[sid] = iso_seconds(info["endedAt"])

    async def run():
        nonlocal pending
        deadline = time.monotonic() + a.deadline
        while pending and time.monotonic() < deadline:
            await asyncio.gather(*(check(sid) for sid in pending))
            pending = [sid for sid in pending if sid not in ended]
            if pending:
                await asyncio.sleep(1.0)

    asyncio.run(run())
    errors = posts["errors"] + ["%s did not end within %d s" % (sid, a.deadline)
                                for sid in pending]
    for e in errors[:5]:
        log("concurrency: %s" % e)
    emit({"kind": "concurrency", "count": a.count, "task": a.task, "failed": len(errors),
          "post_p50_ms": pct(posts["post_ms"], 0.5), "post_p99_ms": pct(posts["post_ms"], 0.99),
          "all_exited_s": max(ended.values()) - posts["t0_wall"] if ended else None})
    return 0 if not errors else 1


# ---------------------------------------------------------------------------- stream


def cmd_stream(a):
    c = Client(a.url, a.token)
    sha = hashlib.sha256()
    st = {"bytes": 0, "first": None, "last": None, "cpu0": 0.0, "expected": 0, "messages": 0}

    def take(data):
        if not data:
            return
        b = data.encode()
        if st["first"] is None:
            st["first"] = time.monotonic()
            t = os.times()
            st["cpu0"] = t.user + t.system
        sha.update(b)
        st["bytes"] += len(b)
        st["last"] = time.monotonic()

    def on_message(m):
        st["messages"] += 1
        t = m.get("type")
        if t == "stdout":
            data = m["data"]
            if "offset" in m:  # ours: skip what an overlap re-sends
                skip = st["expected"] - m["offset"]
                if skip > 0:
                    data = data.encode()[skip:].decode()
                st["expected"] = max(st["expected"], m["next"])
            take(data)
        elif t == "catchup":
            if "next" in m:
                st["expected"] = m["next"]
            else:
                take(m.get("data", ""))

    async def run():
        sid, _ = await c.post({"task": a.task, "owner": "bench"})
        await c.wait_exit(sid, on_message)

    asyncio.run(run())
    t = os.times()
    secs = (st["last"] - st["first"]) if st["first"] else 0.0
    out = {"kind": "stream", "client": "python", "bytes": st["bytes"],
           "sha256": sha.hexdigest(), "seconds": secs,
           "mib_s": st["bytes"] / secs / 2**20 if secs else 0.0,
           "client_cpu_s": (t.user + t.system - st["cpu0"]) if st["first"] else 0.0,
           "messages": st["messages"]}
    if a.expect is not None and st["bytes"] != a.expect:
        out["error"] = "got %d bytes, expected %d" % (st["bytes"], a.expect)
    emit(out)
    return 0


# ---------------------------------------------------------------------------- table


def load(prefix):
    rows = []
    with open(prefix + ".jsonl") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


# (label, kind, field, unit). One row per figure; every row must be filled.
ROWS = [
    ("POST -> exit of `sh -lc true`, median", "spawn", "sh_ms", "ms"),
    ("POST -> exit of `/bin/true` (command/args), median", "spawn", "direct_ms", "ms"),
    ("POST round trip alone (-> 201), median", "spawn", "post_ms", "ms"),
    ("GET /sessions/:id round trip (no spawn), median", "spawn", "get_ms", "ms"),
    ("POST refused at the spawn (missing cwd, 400), median", "spawn", "rejected_ms", "ms"),
    ("{50} concurrent: POST p50", "concurrency-50", "post_p50_ms", "ms"),
    ("{50} concurrent: POST p99", "concurrency-50", "post_p99_ms", "ms"),
    ("{50} concurrent: all exited", "concurrency-50", "all_exited_s", "s"),
    ("{500} concurrent: POST p50", "concurrency-500", "post_p50_ms", "ms"),
    ("{500} concurrent: POST p99", "concurrency-500", "post_p99_ms", "ms"),
    ("{500} concurrent: all exited", "concurrency-500", "all_exited_s", "s"),
    ("stream, native client", "stream-native", "mib_s", "MiB/s"),
    ("stream, Python client (same stream)", "stream-python", "mib_s", "MiB/s"),
    ("stream received / sent, native client", "stream-native", "complete", "fraction"),
    ("native client CPU / stream time", "stream-native", "client_busy", "fraction"),
    ("server CPU-seconds per GiB streamed", "stream-native", "server_cpu_s_per_gib", "s"),
    ("server RSS idle (before the first request)", "rss-idle", "mib", "MiB"),
    ("server RSS peak (whole run)", "rss-peak", "mib", "MiB"),
]
LIMIT_ROWS = [
    ("posix_spawn of /bin/true, median", "spawn-true", "median_ms", "ms"),
    ("raw pipe (same generator, native reader)", "pipe", "mib_s", "MiB/s"),
]


def values(rows, server, kind, field):
    out = []
    for r in rows:
        if r.get("server") != server:
            continue
        k = r["kind"]
        if k == "concurrency":
            k = "concurrency-" + r["slot"]  # "50" or "500", whatever the count (--small)
        if k == "stream":
            k = "stream-" + r.get("client", "")
        if k == "rss":
            k = "rss-" + r["phase"]
        if k != kind:
            continue
        if field == "complete":
            v = r["bytes"] / r["expect"] if r.get("expect") else None
        elif field == "client_busy":
            v = r["client_cpu_s"] / r["seconds"] if r.get("seconds") else None
        elif field == "server_cpu_s_per_gib":
            v = r["server_cpu_s"] / (r["bytes"] / 2**30) if r.get("bytes") else None
        elif field == "mib":
            v = r["kib"] / 1024.0
        else:
            v = r.get(field)
        if v is not None:
            out.append((r.get("leg"), float(v)))
    return out


def fmt(v, unit):
    if v is None:
        return "-"
    if unit in ("fraction",):
        return "%.3f" % v
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def cell(vals, unit):
    if not vals:
        return None, "-"
    mean = sum(v for _, v in vals) / len(vals)
    if len(vals) == 1:
        return mean, fmt(mean, unit)
    return mean, "%s (%s)" % (fmt(mean, unit), " / ".join(fmt(v, unit) for _, v in vals))


def render(rows):
    lines = ["| figure | unit | original | ours | ours / original |", "|---|---|---:|---:|---:|"]
    missing = []
    counts = {r["slot"]: r["count"] for r in rows if r["kind"] == "concurrency"}
    for label, kind, field, unit in ROWS:
        label = label.replace("{50}", str(counts.get("50", 50))).replace(
            "{500}", str(counts.get("500", 500)))
        o, o_s = cell(values(rows, "original", kind, field), unit)
        u, u_s = cell(values(rows, "ours", kind, field), unit)
        ratio = "%.2f" % (u / o) if o and u is not None else "-"
        if o is None or u is None:
            missing.append(label)
        lines.append("| %s | %s | %s | %s | %s |" % (label, unit, o_s, u_s, ratio))
    lines.append("")
    lines.append("| physical limit, same boot | unit | value (first / last) |")
    lines.append("|---|---|---:|")
    for label, kind, field, unit in LIMIT_ROWS:
        v, s = cell(values(rows, "host", kind, field), unit)
        if v is None:
            missing.append(label)
        lines.append("| %s | %s | %s |" % (label, unit, s))
    pipe = [v for _, v in values(rows, "host", "pipe", "mib_s")]
    for server in ("original", "ours"):
        ws = [v for _, v in values(rows, server, "stream-native", "mib_s")]
        if pipe and ws:
            lines.append("| %s's native stream / raw pipe | fraction | %.3f |" % (
                server, (sum(ws) / len(ws)) / (sum(pipe) / len(pipe))))
        else:
            missing.append("%s's stream / pipe" % server)
    return lines, missing


BEGIN = "<!-- compare.sh table: begin -->"
END = "<!-- compare.sh table: end -->"


def cmd_table(a):
    rows = load(a.prefix)
    lines, missing = render(rows)
    text = "\n".join(lines)
    print(text)
    for m in missing:
        print("MISSING ROW: %s" % m)
    if a.readme and not missing:
        facts = open(a.facts).read().strip() if a.facts else ""
        block = "%s\n%s\n\n%s\n%s" % (BEGIN, facts, text, END)
        with open(a.readme) as f:
            readme = f.read()
        if BEGIN in readme and END in readme:
            head, rest = readme.split(BEGIN, 1)
            readme = head + block + rest.split(END, 1)[1]
        else:
            raise SystemExit("%s has no %s ... %s markers" % (a.readme, BEGIN, END))
        with open(a.readme, "w") as f:
            f.write(readme)
        print("compare: table written to %s" % a.readme)
    return 1 if missing else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--url", required=True)
        sp.add_argument("--token", required=True)

    sp = sub.add_parser("spawn")
    common(sp)
    sp.add_argument("--rounds", type=int, default=60)
    sp.add_argument("--warmup", type=int, default=3)
    sp.add_argument("--seed", type=int, default=1)
    sp = sub.add_parser("concurrency")
    common(sp)
    sp.add_argument("--count", type=int, required=True)
    sp.add_argument("--task", default="sleep 2; echo done")
    sp.add_argument("--native", required=True, help="stream_client, which POSTs the sessions")
    sp.add_argument("--deadline", type=float, default=900, help="seconds to wait for the ends")
    sp = sub.add_parser("stream")
    common(sp)
    sp.add_argument("--task", required=True)
    sp.add_argument("--expect", type=int)
    sp = sub.add_parser("table")
    sp.add_argument("prefix")
    sp.add_argument("--readme")
    sp.add_argument("--facts", help="a file whose text goes above the table")
    a = p.parse_args()
    return {"spawn": cmd_spawn, "concurrency": cmd_concurrency, "stream": cmd_stream,
            "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
