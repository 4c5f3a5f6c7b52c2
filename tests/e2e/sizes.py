#!/usr/bin/python3
"""Size limits of monkeyproof-api and monkeyproofd end to end (docs/api.md, "Limits").

- A 1 MiB exec task (the limit, far over one 128 KiB execve argument) runs and prints what it
  should: as `/bin/sh -lc TASK` (no command), as `bash -lc TASK` (command + args) and under a
  shell preset; the control protocol carries it in parts, the shell sources it from a file.
- A task one byte over 1 MiB is 413 naming /task; a 200 KiB task for a preset whose command
  is not a shell is 413 naming the execve argument limit.
- A 2 MiB body is 413 for Python's http.client, which writes the whole body before it reads
  (declared length and chunked): the server drains the rest instead of resetting.
- A body just under the body limit is accepted.
Exits 0 when every check passed.
"""

import hashlib
import json
import sys
import time

import e2e_http
from e2e_http import check, error_of, finish

MAX_TASK = 1024 * 1024


def request(method, path, body=None, headers=None, encode_chunked=False):
    """(status, payload): a 1 MiB task takes a while under emulation, hence the longer wait."""
    st, _, payload = e2e_http.request(method, path, body, headers, timeout=120,
                                      encode_chunked=encode_chunked)
    return st, payload


def long_task(marker):
    """A shell script of exactly MAX_TASK bytes: a long comment, then commands that print
    the marker and a checksum of the comment computed by the shell's own arithmetic."""
    tail = ('\necho "%s"\nexit 0\n' % marker)
    line = "# " + "filler with 'quotes', \"double quotes\", \\backslashes and \u00e9t\u00e9\n"
    room = MAX_TASK - len(tail.encode())
    # As many whole lines as fit, counted in bytes once (re-encoding a growing string per line
    # took minutes under the VM's emulation, more than the script's time limit).
    body = line * (room // len(line.encode()))
    body += "#" * (room - len(body.encode()) - 1) + "\n"
    task = body + tail
    assert len(task.encode()) == MAX_TASK, len(task.encode())
    return task


def run_to_end(spawn_body, what):
    st, payload = request("POST", "/sessions", spawn_body)
    if not check(st == 201, "%s: POST gave %d %r" % (what, st, payload[:300])):
        return None
    sid = json.loads(payload)["id"]
    for _ in range(600):
        st, payload = request("GET", "/sessions/" + sid)
        detail = json.loads(payload)
        if detail.get("status") not in ("running", "starting"):
            break
        time.sleep(0.1)
    st, transcript = request("GET", "/sessions/%s/output" % sid)
    return detail, transcript


def main():
    t0 = time.monotonic()

    # 1. 1 MiB exec tasks: default shell, bash via command + args, a shell preset.
    for what, extra in [("sh -lc", {}),
                        ("bash -lc", {"command": "bash", "args": ["-lc"]}),
                        ("capped preset (sh -c)", {"type": "print", "preset": "capped"})]:
        marker = "ok-" + hashlib.sha256(what.encode()).hexdigest()[:12]
        spawn = {"task": long_task(marker)}
        spawn.update(extra)
        got = run_to_end(spawn, what)
        if got is None:
            continue
        detail, output = got
        check(detail.get("exitCode") == 0 and marker.encode() in output,
              "%s: 1 MiB task: status %r exitCode %r output %r" %
              (what, detail.get("status"), detail.get("exitCode"), output[-300:]))
        print("  %s: 1 MiB task ran, exit %r" % (what, detail.get("exitCode")), flush=True)

    # 2. Over the task limit, and over one argument for a command that is not a shell.
    st, payload = request("POST", "/sessions", {"task": "x" * (MAX_TASK + 1)})
    e = error_of(payload)
    check(st == 413 and e.get("code") == "too_large" and e.get("field") == "/task" and
          "1048576" in e.get("error", ""), "task of 1 MiB + 1: %d %r" % (st, payload[:300]))
    st, payload = request("POST", "/sessions",
                          {"task": "y" * (200 * 1024), "type": "print", "preset": "printer"})
    e = error_of(payload)
    check(st == 413 and e.get("code") == "too_large" and "131071" in e.get("error", ""),
          "200 KiB task for /bin/echo: %d %r" % (st, payload[:400]))

    # 3. 2 MiB bodies from a client that writes everything before reading.
    big = json.dumps({"task": "true", "pad": "p" * (2 * 1024 * 1024)}).encode()
    for chunked in (False, True):
        for attempt in range(3):
            st, payload = request("POST", "/sessions", big,
                                  headers={"Content-Type": "application/json"},
                                  encode_chunked=chunked)
            e = error_of(payload)
            check(st == 413 and e.get("code") == "too_large",
                  "2 MiB body (chunked=%s, attempt %d): %d %r" % (chunked, attempt, st,
                                                                  payload[:300]))

    # 4. Just under the 1.5 MiB body limit: accepted (the extra member is ignored).
    ok = json.dumps({"task": "true", "pad": "p" * (1536 * 1024 - 100)})
    st, payload = request("POST", "/sessions", ok, headers={"Content-Type": "application/json"})
    check(st == 201, "a body just under 1.5 MiB: %d %r" % (st, payload[:200]))

    return finish("sizes", t0)


if __name__ == "__main__":
    sys.exit(main())
