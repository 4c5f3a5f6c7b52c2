#!/usr/bin/python3
"""An agent CLI through monkeyproof-api, end to end (tests/privileged/agent_e2e_test.cc).

Run with Debian's python3 and python3-websockets; the API is MP_API_URL with the token
MP_API_TOKEN. Subcommands:

  oneshot --preset P --cwd DIR --file F --content C [--close-stdin] [--expect TEXT]...
      POST /sessions (type print) with the task "Create the file F containing the text: C",
      which the stub model (tests/agents/stub_model.py) turns into a call of the CLI's
      file-writing tool; streams the output over WebSocket from offset 0 (with
      --close-stdin, POST /sessions/ID/close-stdin first: `codex exec` reads a piped stdin
      to its end before it starts); expects the exit message with code 0 and reason exit,
      then GET /sessions/ID: status exited, exitCode 0. Checks that F holds C, that the
      streamed output holds every --expect TEXT and equals GET /output, and that no
      --secret-file value appears in the request, the answers or the output.
  interactive --preset P --cwd DIR
      POST /sessions (type interactive), waits for the agent's first screen output over
      WebSocket, DELETE /sessions/ID, expects the killed and exit messages, then
      GET /sessions/ID: status and state killed, endReason killed_by_request, and a
      transcript that matches outputBytes.
  probe --preset P --cwd DIR (--expect-clean | --expect-key-in-env) [--secret-file F]...
      POST /sessions (type print) of a preset whose command is tests/agents/key_probe.sh,
      follows it to its exit and reads its last line "KEY-PROBE env_hits=N file_hits=M
      readable_environs=E": --expect-clean wants N = M = 0, E > 0 and no --secret-file value
      in the output; --expect-key-in-env (the control) wants N > 0.

Prints how long each step took. Exits 0 when every check passed, else says what failed and
exits 1.
"""

import argparse
import asyncio
import http.client
import json
import os
import sys
import time
import urllib.parse

import websockets

API_URL = os.environ.get("MP_API_URL", "http://127.0.0.1:3200")
TOKEN = os.environ["MP_API_TOKEN"]
_URL = urllib.parse.urlsplit(API_URL)
HOST, PORT = _URL.hostname, _URL.port or 80
START = time.monotonic()


class CheckFailed(Exception):
    pass


def say(msg):
    print("  [%6.1f s] %s" % (time.monotonic() - START, msg), flush=True)


def check(cond, what, detail=""):
    if not cond:
        raise CheckFailed(what + (": " + detail if detail else ""))


def request(method, path, body=None):
    """(status, headers, body bytes)."""
    conn = http.client.HTTPConnection(HOST, PORT, timeout=60)
    headers = {"Authorization": "Bearer " + TOKEN}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    conn.close()
    return out


def request_json(method, path, body=None, want=200):
    status, _, raw = request(method, path, body)
    check(status == want, "%s %s: status %d, expected %d" % (method, path, status, want),
          raw[:600].decode(errors="replace"))
    return json.loads(raw)


def secrets(files):
    out = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            value = fh.read().strip()
        check(len(value) >= 16, "secret file %s holds fewer than 16 characters" % f)
        out.append(value)
    return out


async def follow(sid, on_first_output=None, timeout=600):
    """Reads the session from offset 0 until its exit message. Returns (output text, exit
    message, killed message seen)."""
    url = "ws://%s:%d/sessions/%s/ws?since=0" % (HOST, PORT, sid)
    ws = await websockets.connect(url, extra_headers={"Authorization": "Bearer " + TOKEN},
                                  max_size=1 << 24, compression=None, ping_interval=None,
                                  open_timeout=60, close_timeout=10)
    text, exit_msg, killed, nxt, first = [], None, False, 0, True
    deadline = time.monotonic() + timeout
    try:
        while exit_msg is None:
            left = deadline - time.monotonic()
            check(left > 0, "no exit message within %d s" % timeout,
                  "output so far: %r" % "".join(text)[-1500:])
            msg = json.loads(await asyncio.wait_for(ws.recv(), left))
            kind = msg.get("type")
            if kind == "catchup":
                check(msg["next"] == 0 and msg["data"] == "", "catchup with ?since=0", str(msg))
            elif kind in ("stdout", "stderr"):
                check(msg["offset"] == nxt, "output offsets are contiguous",
                      "expected %d, got %r" % (nxt, msg))
                nxt = msg["next"]
                text.append(msg["data"])
                if first and on_first_output is not None:
                    first = False
                    say("first output (%d bytes)" % (nxt - msg["offset"]))
                    await on_first_output()
            elif kind == "killed":
                killed = True
            elif kind == "exit":
                exit_msg = msg
            elif kind in ("gap", "lagged", "error"):
                raise CheckFailed("unexpected message %r" % msg)
        check(exit_msg["offset"] == nxt, "exit offset equals the bytes received",
              "%r, received up to %d" % (exit_msg, nxt))
    finally:
        await ws.close()
    return "".join(text), exit_msg, killed


def oneshot(a):
    task = "Create the file %s containing the text: %s" % (a.file, a.content)
    check(not os.path.exists(a.file), "%s exists before the run" % a.file)
    keys = secrets(a.secret_file)
    body = {"type": "print", "preset": a.preset, "task": task, "cwd": a.cwd,
            "owner": "agent-e2e", "labels": [a.preset]}
    check(not any(k in json.dumps(body) for k in keys), "the API key is in the request")
    t0 = time.monotonic()
    info = request_json("POST", "/sessions", body, want=201)
    sid = info["id"]
    say("%s: session %s started: %s" % (a.preset, sid, info["command"][:200]))
    check(info["type"] == "print" and info["preset"] == a.preset, "SessionInfo names the preset",
          json.dumps(info))
    if a.close_stdin:
        check(request_json("POST", "/sessions/%s/close-stdin" % sid) == {"closed": True},
              "close-stdin")
    output, exit_msg, killed = asyncio.run(follow(sid, timeout=a.timeout))
    took = time.monotonic() - t0
    say("%s: exit message %s after %.1f s; %d bytes of output" %
        (a.preset, json.dumps(exit_msg), took, len(output.encode())))
    print("----- streamed output (last 3000 characters):\n%s\n-----" % output[-3000:], flush=True)
    check(not killed, "the session was not killed")
    check(exit_msg["code"] == 0 and exit_msg["reason"] == "exit", "a clean exit",
          json.dumps(exit_msg))
    detail = request_json("GET", "/sessions/%s" % sid)
    check(detail["status"] == "exited" and detail["state"] == "exited" and
          detail["exitCode"] == 0 and detail["endReason"] == "exit",
          "GET /sessions/ID after the run", json.dumps(detail)[:1500])
    with open(a.file, encoding="utf-8") as f:
        written = f.read()
    check(written == a.content + "\n", "the file the agent wrote",
          "%s holds %r, expected %r" % (a.file, written, a.content + "\n"))
    for want in a.expect:
        check(want in output, "the streamed output holds %r" % want)
    status, headers, raw = request("GET", "/sessions/%s/output?since=0" % sid)
    check(status == 200 and headers.get("x-output-ended") == "true", "GET /output", str(headers))
    check(raw.decode("utf-8", errors="replace") == output, "GET /output equals the stream")
    for k in keys:
        check(k not in output and k not in json.dumps(detail), "the API key is not in the output")
    say("%s: file written, clean exit, agent run %.1f s" % (a.preset, took))
    print("AGENT_RUN_SECONDS %s %.1f" % (a.preset, took), flush=True)


def interactive(a):
    body = {"type": "interactive", "preset": a.preset, "task": a.task, "cwd": a.cwd,
            "owner": "agent-e2e", "labels": [a.preset], "pty": {"rows": 40, "cols": 120}}
    t0 = time.monotonic()
    info = request_json("POST", "/sessions", body, want=201)
    sid = info["id"]
    say("%s: session %s started: %s" % (a.preset, sid, info["command"][:200]))
    check(info["type"] == "interactive" and info["pty"] == {"rows": 40, "cols": 120},
          "an interactive session", json.dumps(info))

    async def kill():
        say("%s: up after %.1f s; DELETE" % (a.preset, time.monotonic() - t0))
        # The request blocks the event loop briefly; nothing else runs meanwhile.
        check(request_json("DELETE", "/sessions/%s" % sid) == {"killed": True}, "DELETE answer")

    output, exit_msg, killed = asyncio.run(follow(sid, on_first_output=kill,
                                                  timeout=a.timeout))
    say("%s: exit message %s; %d bytes of output" % (a.preset, json.dumps(exit_msg),
                                                     len(output.encode())))
    check(killed, "a killed message before the exit")
    check(exit_msg["reason"] == "killed_by_request", "the exit reason", json.dumps(exit_msg))
    detail = request_json("GET", "/sessions/%s" % sid)
    check(detail["status"] == "killed" and detail["state"] == "killed" and
          detail["endReason"] == "killed_by_request" and detail["endedAt"] is not None,
          "GET /sessions/ID of the killed session", json.dumps(detail)[:1500])
    check(detail["outputBytes"] > 0 and detail["recentOutput"], "the agent's screen was recorded")
    status, headers, raw = request("GET", detail["transcriptPath"])
    check(status == 200, "GET %s" % detail["transcriptPath"], str(status))
    check(int(headers["x-transcript-total-size"]) == detail["outputBytes"] == len(raw),
          "the transcript holds the whole output",
          "%s, outputBytes %d, body %d" % (headers, detail["outputBytes"], len(raw)))
    listed = request_json("GET", "/sessions?status=killed&label=%s" % a.preset)
    check([s["id"] for s in listed] == [sid], "GET /sessions?status=killed lists it",
          json.dumps(listed)[:600])
    say("%s: killed and inspected after %.1f s" % (a.preset, time.monotonic() - t0))


def probe(a):
    keys = secrets(a.secret_file)
    body = {"type": "print", "preset": a.preset, "task": "probe", "cwd": a.cwd,
            "owner": "agent-e2e", "labels": [a.preset]}
    info = request_json("POST", "/sessions", body, want=201)
    sid = info["id"]
    say("%s: probe session %s started" % (a.preset, sid))
    output, exit_msg, killed = asyncio.run(follow(sid, timeout=a.timeout))
    print("----- probe output:\n%s\n-----" % output[-3000:], flush=True)
    check(not killed and exit_msg["code"] == 0, "the probe ran to its end", json.dumps(exit_msg))
    last = [line for line in output.splitlines() if line.startswith("KEY-PROBE ")]
    check(len(last) == 1, "one KEY-PROBE line in the output")
    found = dict(item.split("=") for item in last[0].split()[1:])
    env_hits, file_hits = int(found["env_hits"]), int(found["file_hits"])
    check(int(found["readable_environs"]) > 0, "the probe read process environments", last[0])
    if a.expect_clean:
        check(env_hits == 0 and file_hits == 0, "no key in the session", last[0])
        for k in keys:
            check(k not in output, "the API key is not in the output")
    else:
        check(env_hits > 0, "the control finds the key in the environment", last[0])
    say("%s: %s" % (a.preset, last[0]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("oneshot")
    o.add_argument("--preset", required=True)
    o.add_argument("--cwd", required=True)
    o.add_argument("--file", required=True)
    o.add_argument("--content", required=True)
    o.add_argument("--close-stdin", action="store_true")
    o.add_argument("--expect", action="append", default=[])
    o.add_argument("--secret-file", action="append", default=[])
    o.add_argument("--timeout", type=int, default=900)
    i = sub.add_parser("interactive")
    i.add_argument("--preset", required=True)
    i.add_argument("--cwd", required=True)
    i.add_argument("--task", default="Say hello.")
    i.add_argument("--timeout", type=int, default=600)
    r = sub.add_parser("probe")
    r.add_argument("--preset", required=True)
    r.add_argument("--cwd", required=True)
    want = r.add_mutually_exclusive_group(required=True)
    want.add_argument("--expect-clean", action="store_true")
    want.add_argument("--expect-key-in-env", action="store_true")
    r.add_argument("--secret-file", action="append", default=[])
    r.add_argument("--timeout", type=int, default=300)
    a = p.parse_args()
    try:
        {"oneshot": oneshot, "interactive": interactive, "probe": probe}[a.cmd](a)
    except (CheckFailed, OSError, KeyError, ValueError, asyncio.TimeoutError,
            websockets.WebSocketException) as e:
        print("FAILED (agent_session %s): %s: %s" % (a.cmd, type(e).__name__, e),
              file=sys.stderr, flush=True)
        sys.exit(1)
    print("agent_session %s %s: all checks passed" % (a.cmd, a.preset), flush=True)


if __name__ == "__main__":
    main()
