#!/usr/bin/python3
"""The original MonkeyProof server's documented client flows, run against ours and against the
original itself, their answers compared member by member (tests/compat/README.md).

    compat.py run          runs every flow against both servers (in parallel, one thread per
                           server), compares, and checks the result against differences.json;
                           --write-observed FILE also writes the differences it saw
    compat.py rewrite-policy IN OUT --workspace DIR
                           a shipped policy for the test host: its default workspace becomes
                           DIR and its workspace root DIR's parent (the rest is what ships)

`run` reads MP_COMPAT_OURS_URL, MP_COMPAT_OURS_TOKEN, MP_COMPAT_ORIGINAL_URL,
MP_COMPAT_ORIGINAL_TOKEN and MP_COMPAT_WORKSPACE (the cwd both servers' sessions use, and the
original's HOME and working directory). Needs Debian's python3-websockets.

Comparison: for each flow, every observation (a status code, a JSON body, a WebSocket message,
a derived fact) of the original must be in ours with the same JSON type, and the same value
unless the member is volatile (ids, pids, times, counters that depend on read sizes, error
texts). Members only ours has are allowed. A flow's comparison stops at the first status code
that differs: what follows depends on it. Every mismatch must be listed in differences.json and
every listed difference must still be observed. Exits 0 when both hold.
"""

import argparse
import asyncio
import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.parse

from compare import compare_flow, load_differences, report  # beside this script


# Members compared by JSON type only: they differ from run to run or depend on how the server
# happened to read the output.
VOLATILE = {"id", "pid", "createdAt", "endedAt", "duration", "wsClients", "outputLines",
            "transcriptPath", "error", "version"}
RUNNING = "running"


class FlowStopped(Exception):
    """A step's status code was not the one the rest of the flow needs."""


class Server:
    def __init__(self, name, url, token, workspace):
        self.name = name
        self.url = url
        self.token = token
        self.workspace = workspace
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port

    def log(self, *parts):
        print("[%s]" % self.name, *parts, flush=True)

    def request(self, method, path, body=None, token=True, raw=None, timeout=60):
        """(status, lower-case headers, body text) of one request on a fresh connection."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        headers = {}
        if token:
            headers["Authorization"] = "Bearer %s" % (self.token if token is True else token)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, text
        finally:
            conn.close()

    def json(self, method, path, body=None, **kw):
        try:
            status, headers, text = self.request(method, path, body, **kw)
        except OSError as e:  # the server closed or reset the connection without an answer
            return None, {}, {"<no answer>": "%s: %s" % (type(e).__name__, e)}
        try:
            return status, headers, json.loads(text)
        except ValueError:
            return status, headers, {"<text>": text[:200]}


class Recorder:
    """The observations of one flow against one server, in order."""

    def __init__(self, server):
        self.server = server
        self.obs = []  # (name, value, options)
        self.ids = []

    def normalize(self, value):
        if isinstance(value, str):
            for i in self.ids:
                value = value.replace(i, "<id>")
            return value
        if isinstance(value, list):
            return [self.normalize(v) for v in value]
        if isinstance(value, dict):
            return {k: self.normalize(v) for k, v in value.items()}
        return value

    def add(self, name, value, gate=False, shape_only=False, exact=(), volatile=(), after=None):
        """One observation. `gate`: a mismatch ends the flow's comparison; `after`: compared
        only when the observation so named matched (a body after its status code)."""
        self.obs.append((name, self.normalize(value),
                         {"gate": gate, "shape_only": shape_only, "after": after,
                          "volatile": (VOLATILE | set(volatile)) - set(exact)}))

    def status(self, name, status, want=None):
        """Records a status code; with `want`, the flow needs it to go on."""
        self.add(name, status, gate=want is not None)
        if want is not None and status != want:
            raise FlowStopped("%s: status %s, the flow needs %s" % (name, status, want))

    def reply(self, name, reply, want=None, **opts):
        status, _, body = reply
        self.add(name + ".status", status, gate=want is not None)
        self.add(name, body, after=name + ".status", **opts)
        if want is not None and status != want:
            raise FlowStopped("%s: status %s, the flow needs %s" % (name, status, want))
        return body

    def create(self, name, body, **opts):
        """POST /sessions; the session's id is normalized from then on."""
        reply = self.server.json("POST", "/sessions", body)
        if reply[0] == 201 and isinstance(reply[2], dict) and "id" in reply[2]:
            self.ids.append(reply[2]["id"])
        return self.reply(name, reply, want=201, **opts)["id"]


def wait_ended(server, sid, limit=90):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, _, body = server.json("GET", "/sessions/" + sid)
        if status != 200 or body.get("status") != RUNNING:
            # The original reads the last output after the exit: give it a moment.
            time.sleep(0.3)
            return
        time.sleep(0.2)
    raise FlowStopped("session %s still running after %d s" % (sid, limit))


def wait_pid(server, sid, limit=60):
    """Until the session has a pid (ours is `running` while it starts, without one)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, _, body = server.json("GET", "/sessions/" + sid)
        if status != 200 or body.get("pid") is not None:
            return
        time.sleep(0.2)


def ended_detail(rec, name, sid, **opts):
    wait_ended(rec.server, sid)
    rec.reply(name, rec.server.json("GET", "/sessions/" + sid), want=200, **opts)


# ---- The flows. Each takes a Recorder; rec.server is the server it runs against.

def flow_basics(rec):
    s = rec.server
    rec.reply("root", s.json("GET", "/"))
    rec.reply("health", s.json("GET", "/health"))
    rec.reply("no-token", s.json("GET", "/sessions", token=False), exact={"error"})
    rec.reply("wrong-token", s.json("GET", "/sessions", token="not-the-token"), exact={"error"})
    rec.reply("unknown-get", s.json("GET", "/sessions/nosuch00"), exact={"error"})
    rec.reply("unknown-delete", s.json("DELETE", "/sessions/nosuch00"), exact={"error"})
    rec.reply("bad-status-filter", s.json("GET", "/sessions?status=bogus"))


def flow_readme_exec_as_written(rec):
    # The README's first recipe, verbatim: its cwd does not exist on the test host.
    rec.reply("create", rec.server.json("POST", "/sessions", {
        "task": "bun test", "cwd": "/home/skippy/Development/king/king-dashboard"}))


def flow_readme_exec(rec):
    s = rec.server
    sid = rec.create("create", {"task": "echo hello; sleep 0.5; echo oops >&2",
                                "cwd": s.workspace, "owner": "compat-readme",
                                "labels": [" Compat ", "x", "compat"]})
    ended_detail(rec, "detail", sid)
    rec.reply("list-owner", s.json("GET", "/sessions?owner=compat-readme"))
    rec.reply("list-label", s.json("GET", "/sessions?owner=compat-readme&label=compat"))
    rec.reply("list-status", s.json("GET", "/sessions?owner=compat-readme&status=exited"))
    rec.reply("list-all", s.json("GET", "/sessions"), shape_only=True)
    status, headers, text = s.request("GET", "/sessions/%s/transcript" % sid)
    rec.status("transcript.status", status, want=200)
    rec.add("transcript", {"text": text, "content-type": headers.get("content-type"),
                           "x-transcript-offset": headers.get("x-transcript-offset")})
    rec.add("transcript-headers", {
        "total-is-integer": (headers.get("x-transcript-total-size") or "").isdigit(),
        "next-is-total": headers.get("x-transcript-next-offset")
        == headers.get("x-transcript-total-size")})


def flow_readme_explicit_exec(rec):
    sid = rec.create("create", {"type": "exec", "task": "echo explicit",
                                "cwd": rec.server.workspace})
    ended_detail(rec, "detail", sid)


def flow_mode_alias(rec):
    sid = rec.create("create", {"mode": "exec", "task": "echo alias", "cwd": rec.server.workspace})
    ended_detail(rec, "detail", sid)


def flow_exec_with_preset(rec):
    rec.reply("create", rec.server.json("POST", "/sessions", {
        "type": "exec", "preset": "claude", "task": "x", "cwd": rec.server.workspace}))


def flow_readme_print_as_written(rec):
    # The README's print recipe with the test's cwd: `claude` is not installed in the test VM.
    rec.reply("create", rec.server.json("POST", "/sessions", {
        "type": "print", "task": "Fix the bug in auth.ts", "cwd": rec.server.workspace,
        "command": "claude", "args": ["--print", "--permission-mode", "bypassPermissions"],
        "maxTurns": 50}))


def flow_print_own_command(rec):
    sid = rec.create("create", {"type": "print", "task": "hello", "cwd": rec.server.workspace,
                                "command": "/bin/echo", "args": ["printed:"]})
    ended_detail(rec, "detail", sid)


def flow_no_cwd(rec):
    sid = rec.create("create", {"task": "pwd"})
    ended_detail(rec, "detail", sid)


def flow_relative_cwd(rec):
    sid = rec.create("create", {"task": "pwd", "cwd": "sub"})
    ended_detail(rec, "detail", sid)


def flow_command_only(rec):
    sid = rec.create("create", {"task": 'echo "$0" via-lc', "command": "bash",
                                "cwd": rec.server.workspace})
    ended_detail(rec, "detail", sid)


def flow_command_and_args(rec):
    sid = rec.create("create", {"task": "tail", "command": "/bin/echo", "args": ["head"],
                                "cwd": rec.server.workspace})
    ended_detail(rec, "detail", sid)


def flow_owner_absent(rec):
    sid = rec.create("create", {"task": "true", "cwd": rec.server.workspace})
    ended_detail(rec, "detail", sid)


def flow_interactive(rec):
    s = rec.server
    sid = rec.create("create", {"type": "interactive", "task": "echo hi", "cwd": s.workspace})
    # The original types the task into tmux two seconds after the start.
    time.sleep(3)
    rec.reply("delete", s.json("DELETE", "/sessions/" + sid), want=200)
    wait_ended(s, sid)
    rec.reply("detail", s.json("GET", "/sessions/" + sid), want=200,
              volatile={"recentOutput", "exitCode"})


def long_task(rec, size):
    text = "echo long-%d; : " % size
    task = text + "x" * (size - len(text))
    sid = rec.create("create", {"task": task, "cwd": rec.server.workspace})
    ended_detail(rec, "detail", sid)


def flow_long_task_100k(rec):
    long_task(rec, 100 * 1024)


def flow_long_task_1m(rec):
    long_task(rec, 1024 * 1024)


def flow_body_2m_written_first(rec):
    # Like Python's http.client (and requests, and Node's fetch): the whole body is written
    # before the answer is read, so a server that answers early and closes breaks the write.
    s = rec.server
    body = json.dumps({"task": "echo big", "cwd": s.workspace,
                       "pad": "x" * (2 * 1024 * 1024)}).encode()
    try:
        status, _, text = s.request("POST", "/sessions", raw=body)
        outcome = "answered"
    except OSError as e:
        status, text, outcome = None, "", "%s: %s" % (type(e).__name__, e)
    rec.add("transport", {"answered": outcome == "answered"})
    s.log("2 MiB body:", outcome, status)
    rec.status("create.status", status)
    if status == 201:
        sid = json.loads(text)["id"]
        rec.ids.append(sid)
        wait_ended(s, sid)


def flow_delete_then_get(rec):
    s = rec.server
    sid = rec.create("create", {"task": "sleep 30", "cwd": s.workspace})
    wait_pid(s, sid)
    rec.reply("delete", s.json("DELETE", "/sessions/" + sid), want=200)
    wait_ended(s, sid)
    time.sleep(1)
    rec.reply("detail", s.json("GET", "/sessions/" + sid), want=200)
    rec.reply("delete-again", s.json("DELETE", "/sessions/" + sid))


def flow_transcript_past_end(rec):
    s = rec.server
    sid = rec.create("create", {"task": "echo abc", "cwd": s.workspace})
    wait_ended(s, sid)
    path = "/sessions/%s/transcript" % sid
    status, headers, _ = s.request("GET", path)
    rec.status("full.status", status, want=200)
    total = int(headers.get("x-transcript-total-size", "0"))
    for name, since in (("at-end", total), ("past-end", total + 1000)):
        status, headers, text = s.request("GET", "%s?since=%d" % (path, since))
        rec.status(name + ".status", status)
        if status == 200:
            rec.add(name, {"text": text,
                           "offset-is-total": headers.get("x-transcript-offset") == str(total),
                           "next-is-total": headers.get("x-transcript-next-offset") == str(total)},
                    after=name + ".status")
    for name, since in (("negative", "-1"), ("not-a-number", "abc")):
        rec.reply(name, s.json("GET", "%s?since=%s" % (path, since)))
    rec.reply("unknown", s.json("GET", "/sessions/nosuch00/transcript"))


def flow_input(rec):
    s = rec.server
    sid = rec.create("create", {"task": 'read x; echo "got $x"', "cwd": s.workspace})
    wait_pid(s, sid)
    # Empty input: 400 "input is required" from both (the original checks `!body.input`).
    rec.reply("input-empty", s.json("POST", "/sessions/%s/input" % sid, {"input": ""}),
              exact={"error"})
    rec.reply("input", s.json("POST", "/sessions/%s/input" % sid, {"input": "yes\n"}))
    ended_detail(rec, "detail", sid)


def flow_input_refused(rec):
    s = rec.server
    sid = rec.create("create", {"task": "true", "cwd": s.workspace})
    wait_ended(s, sid)
    rec.reply("input-ended", s.json("POST", "/sessions/%s/input" % sid, {"input": "late\n"}))
    rec.reply("input-missing", s.json("POST", "/sessions/%s/input" % sid, {}))
    rec.reply("input-unknown", s.json("POST", "/sessions/nosuch00/input", {"input": "x\n"}))


def flow_bad_requests(rec):
    s = rec.server
    rec.reply("no-task", s.json("POST", "/sessions", {"cwd": s.workspace}), exact={"error"})
    rec.reply("empty-task", s.json("POST", "/sessions", {"task": ""}), exact={"error"})
    rec.reply("task-number", s.json("POST", "/sessions", {"task": 5, "cwd": s.workspace}))
    rec.reply("bad-type", s.json("POST", "/sessions", {"task": "x", "type": "batch"}))


def ws_url(s, sid):
    """The session's WebSocket URL with ?token=, as the original's README connects."""
    return "ws://%s:%d/sessions/%s/ws?token=%s" % (s.host, s.port, sid, s.token)


async def read_to_close(ws, types, firsts, out=None):
    """Reads messages until the server closes the socket: the run of message types (a repeat
    counted once), the first message of each type, and stdout/stderr data appended to `out`;
    returns the close code (None when the server sent none)."""
    import websockets
    try:
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            t = msg.get("type")
            if not types or types[-1] != t:
                types.append(t)
            firsts.setdefault(t, msg)
            if out is not None and t in out:
                out[t] += msg.get("data", "")
    except websockets.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


async def ws_snippet(rec):
    import websockets  # Debian's python3-websockets, in the guest only
    s = rec.server
    sid = rec.create("create", {"task": 'read x; echo "got $x"; echo err >&2; sleep 0.5; exit 3',
                                "cwd": s.workspace})
    out = {"stdout": "", "stderr": ""}
    types, firsts = [], {}
    async with websockets.connect(ws_url(s, sid), open_timeout=60, max_size=None) as ws:
        await ws.send(json.dumps({"type": "stdin", "data": "yes\n"}))
        close_code = await read_to_close(ws, types, firsts, out)
    for t, msg in firsts.items():
        rec.add("first-" + t, msg, volatile={"data"} if t in out else ())
    rec.add("messages", {"types": types, "stdout": out["stdout"], "stderr": out["stderr"],
                         "closeCode": close_code})
    ended_detail(rec, "detail", sid)


def flow_ws_snippet(rec):
    asyncio.run(ws_snippet(rec))


async def ws_catchup_ended(rec):
    import websockets
    s = rec.server
    sid = rec.create("create", {"task": "echo out; sleep 0.5; echo err >&2", "cwd": s.workspace})
    wait_ended(s, sid)
    async with websockets.connect(ws_url(s, sid), open_timeout=60) as ws:
        # The original keeps this connection open; the first message is what a client reads.
        rec.add("catchup", json.loads(await asyncio.wait_for(ws.recv(), 60)))


def flow_ws_catchup_ended(rec):
    asyncio.run(ws_catchup_ended(rec))


async def ws_delete(rec):
    import websockets
    s = rec.server
    sid = rec.create("create", {"task": "sleep 30", "cwd": s.workspace})
    wait_pid(s, sid)
    types, firsts = [], {}
    async with websockets.connect(ws_url(s, sid), open_timeout=60) as ws:
        firsts["catchup"] = json.loads(await asyncio.wait_for(ws.recv(), 60))
        types.append("catchup")
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: s.json("DELETE", "/sessions/" + sid))
        close_code = await read_to_close(ws, types, firsts)
    for t, msg in firsts.items():
        rec.add("first-" + t, msg)
    rec.add("messages", {"types": types, "closeCode": close_code})


def flow_ws_delete(rec):
    asyncio.run(ws_delete(rec))


async def ws_refusals(rec):
    import websockets
    s = rec.server
    sid = rec.create("create", {"task": "sleep 5", "cwd": s.workspace})

    async def status_of(path):
        try:
            async with websockets.connect("ws://%s:%d%s" % (s.host, s.port, path),
                                          open_timeout=60):
                return 101
        except websockets.InvalidStatus as e:
            return e.response.status_code
        except websockets.InvalidStatusCode as e:  # older python3-websockets
            return e.status_code

    rec.status("wrong-token.status",
               await status_of("/sessions/%s/ws?token=not-the-token" % sid))
    rec.status("unknown-session.status",
               await status_of("/sessions/nosuch00/ws?token=%s" % s.token))
    s.json("DELETE", "/sessions/" + sid)


def flow_ws_refusals(rec):
    asyncio.run(ws_refusals(rec))


FLOWS = [(name[len("flow_"):].replace("_", "-"), fn)
         for name, fn in list(globals().items()) if name.startswith("flow_")]


def run_flows(server, results):
    for name, fn in FLOWS:
        rec = Recorder(server)
        start = time.monotonic()
        try:
            fn(rec)
            note = ""
        except FlowStopped as e:
            note = " (stopped: %s)" % e
        except Exception as e:  # a flow that breaks records where it broke
            rec.add("exception", "%s: %s" % (type(e).__name__, e), gate=True)
            note = " (%s: %s)" % (type(e).__name__, e)
        server.log("%s: %d observations in %.1f s%s" % (name, len(rec.obs),
                                                        time.monotonic() - start, note))
        results[name] = rec.obs


def run(args):
    listed = load_differences()
    workspace = os.environ["MP_COMPAT_WORKSPACE"]
    os.makedirs(os.path.join(workspace, "sub"), exist_ok=True)
    os.chmod(os.path.join(workspace, "sub"), 0o777)
    servers = [Server("original", os.environ["MP_COMPAT_ORIGINAL_URL"],
                      os.environ["MP_COMPAT_ORIGINAL_TOKEN"], workspace),
               Server("ours", os.environ["MP_COMPAT_OURS_URL"],
                      os.environ["MP_COMPAT_OURS_TOKEN"], workspace)]
    results = {s.name: {} for s in servers}
    threads = [threading.Thread(target=run_flows, args=(s, results[s.name])) for s in servers]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("flows ran in %.1f s" % (time.monotonic() - start))

    observed, checks = [], 0
    for name, _ in FLOWS:
        orig, ours = results["original"][name], results["ours"][name]
        mismatches, n = compare_flow(orig, ours)
        checks += n
        observed += [{"flow": name, "path": p, "ours": o, "original": g} for p, o, g in mismatches]
        broke = {server: next((v for o, v, _ in obs if o == "exception"), None)
                 for server, obs in (("original", orig), ("ours", ours))}
        if broke["ours"] and not broke["original"]:
            observed.append({"flow": name, "path": "/exception", "ours": broke["ours"],
                             "original": "<absent>"})
    return report(observed, listed, checks, len(FLOWS), args.write_observed)


def rewrite_policy(args):
    with open(args.input, encoding="utf-8") as f:
        text = f.read()
    # The shipped policies allow // comments (outside strings, at a line start or after code).
    text = re.sub(r'^\s*//.*$', "", text, flags=re.M)
    policy = json.loads(text)
    # The workspace lies below the root: a root itself is refused as a cwd.
    policy["workspace_roots"] = [os.path.dirname(args.workspace.rstrip("/"))]
    policy["default_workspace"] = args.workspace
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(policy, f, indent=1)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--write-observed", metavar="FILE",
                   help="also write every observed difference as JSON (to update the list)")
    w = sub.add_parser("rewrite-policy")
    w.add_argument("input")
    w.add_argument("output")
    w.add_argument("--workspace", required=True)
    args = p.parse_args()
    return run(args) if args.cmd == "run" else rewrite_policy(args)


if __name__ == "__main__":
    sys.exit(main())
