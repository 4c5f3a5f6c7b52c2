#!/usr/bin/env python3
"""A newcomer's first hour, as README.md and docs/cli.md tell it, run as written.

Starts `monkeyproofd --dev` (as README's scripts/run.sh does), takes the token from the lines
it prints, runs the curl line it prints, then every line of README's example block ("The API
and the CLI") with the documented token and the CLI's directory on PATH, and compares what the
CLI prints with docs/cli.md (the unknown-id error, the policies table). Each line runs in bash
as written (its `# comment` included); a line that sets a variable (`id=$(...)`) passes it to
the lines after it. `monkeyproof attach` runs on a terminal (a pty) and gets typed input.

Every line of the README block must be claimed by a check below, and every check must find
its line: a new example without a check, or a check whose example is gone, fails the run.
--mutate OLD NEW edits the documents' text before anything runs (the control of
tests/privileged/dev_mode_test.cc: a broken example must fail the run).

Needs root (dev mode) and cgroup v2: the test VM. Exits 0 when every check passed, 1 at the
first failure, naming the documented line and what it printed.

Usage: first_hour.py --daemon MONKEYPROOFD --cli MONKEYPROOF --source REPO [--mutate OLD NEW]...
"""

import argparse
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request

DEFAULT_WORKSPACE = "/var/lib/monkeyproof/workspaces/default"


class Failed(Exception):
    pass


def fail(line, why, out=""):
    raise Failed("%s\n  the documented line: %s\n  it printed: %s" % (why, line, out[-1500:]))


# ---- The documents.


def readme_block(readme):
    """The lines of README's example block under "## The API and the CLI", continuation lines
    joined."""
    section = readme.split("## The API and the CLI", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines, current = [], ""
    for raw in block.splitlines():
        current += raw.strip() if current else raw
        if current.endswith("\\"):
            current = current[:-1].rstrip() + " "
            continue
        if current.strip():
            lines.append(current)
        current = ""
    return lines


def cli_doc_kill_error(cli_md):
    """docs/cli.md's example of the error for an unknown id (kill), and the id it names."""
    kill = cli_md.split("### kill", 1)[1].split("###", 1)[0]
    text = " ".join(kill.split())
    m = re.search(r"`(monkeyproof: no session (\S+): [^`]*)`", text)
    if not m:
        raise Failed("docs/cli.md's kill section no longer quotes the unknown-id error")
    return m.group(1), m.group(2)


def cli_doc_policies(cli_md):
    """docs/cli.md's policies table: the header and its rows, as lists of columns."""
    section = cli_md.split("### policies", 1)[1].split("###", 1)[0]
    table = section.split("```\n")[3]  # the synopsis block, then the table
    rows = [re.split(r"\s{2,}", line.strip()) for line in table.splitlines() if line.strip()]
    return rows[0], rows[1:]


# ---- Running.


def show(output, status):
    """What a documented line printed, indented, for the test's log (at most 30 lines)."""
    lines = output.replace("\r", "").splitlines()
    for line in lines[:30]:
        print("    " + line)
    if len(lines) > 30:
        print("    ... (%d more lines)" % (len(lines) - 30))
    print("    (%s)" % status, flush=True)


class Walk:
    def __init__(self, args):
        self.args = args
        self.env = dict(os.environ)
        self.env["PATH"] = os.path.dirname(os.path.abspath(args.cli)) + ":" + self.env["PATH"]
        self.env["XDG_CONFIG_HOME"] = "/nonexistent"  # no config file of this machine counts
        for name in ("MONKEYPROOF_URL", "MONKEYPROOF_TOKEN", "MONKEYPROOF_TOKEN_FILE"):
            self.env.pop(name, None)
        self.token = None
        self.checks = 0

    def bash(self, line, timeout=120):
        """Runs `line` in bash; (status, stdout, stderr). A line that assigns a variable
        (`id=$(...)`) prints nothing itself: its value is printed after it and kept."""
        assigned = re.match(r"^([a-z_]+)=", line)
        script = line + ('\nprintf "%s" "$' + assigned.group(1) + '"' if assigned else "")
        p = subprocess.run(["bash", "-c", script], env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        if assigned:
            self.env[assigned.group(1)] = p.stdout
        show(p.stdout + p.stderr, "exit status %d" % p.returncode)
        return p.returncode, p.stdout, p.stderr

    def on_terminal(self, line, keys, expect, timeout=90):
        """Runs `line` on a pty, types `keys` once `expect[0]` shows, then reads to the end;
        (status, screen)."""
        pid, fd = pty.fork()
        if pid == 0:
            os.execvpe("bash", ["bash", "-c", line], self.env)
        screen, typed = b"", False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not typed and expect[0].encode() in screen:
                for key in keys:
                    os.write(fd, key.encode())
                    time.sleep(0.3)
                typed = True
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the terminal's last holder has gone
                break
            if not chunk:
                break
            screen += chunk
        else:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        code = os.waitstatus_to_exitcode(status)
        text = screen.decode(errors="replace")
        show(text, "exit status %d" % code)
        return code, text

    def check(self, ok, line, why, out=""):
        if not ok:
            fail(line, why, out)
        self.checks += 1

    def api(self, path):
        req = urllib.request.Request(self.env["MONKEYPROOF_URL"] + path,
                                     headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def wait_ended(self, sid, line):
        for _ in range(300):
            s = self.api("/sessions/" + sid)
            if s["state"] not in ("starting", "running"):
                return s
            time.sleep(0.2)
        fail(line, "session %s did not end" % sid)


# ---- The daemon.


def start_daemon(args):
    """`monkeyproofd --dev`; returns (process, the lines it printed so far, a reader)."""
    proc = subprocess.Popen([args.daemon, "--dev"], stderr=subprocess.PIPE, text=True)
    lines = []

    def read():
        for line in proc.stderr:
            lines.append(line)
            sys.stderr.write("  [monkeyproofd] " + line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, lines, reader


def banner_commands(lines, proc):
    """The export and curl lines dev mode prints for a newcomer."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = "".join(lines)
        export = re.search(r"^\s*(export MONKEYPROOF_URL=\S+ MONKEYPROOF_TOKEN=\S+)$", text, re.M)
        curl = re.search(r"^\s*(curl .*/sessions)$", text, re.M)
        if export and curl and "listening on" in text:
            return export.group(1), curl.group(1)
        if proc.poll() is not None:
            raise Failed("monkeyproofd --dev exited with %s before its API listened" % proc.returncode)
        time.sleep(0.2)
    raise Failed("monkeyproofd --dev printed no export and curl lines within 120 s")


# ---- The checks: one per documented line, in README's order.


def check_export(w, line, banner_export):
    # README's export with the token monkeyproofd --dev printed (README: "prints both").
    token = banner_export.split("MONKEYPROOF_TOKEN=", 1)[1]
    documented = line.split("MONKEYPROOF_TOKEN=", 1)
    w.check(len(documented) == 2 and documented[0] == banner_export.split("MONKEYPROOF_TOKEN=")[0],
            line, "README's export line differs from the one monkeyproofd --dev prints",
            banner_export)
    for part in line.split("#", 1)[0].split()[1:]:
        name, value = part.split("=", 1)
        w.env[name] = token if name == "MONKEYPROOF_TOKEN" else value
    w.token = token


def check_curl(w, line, task_output):
    status, out, err = w.bash(line)
    w.check(status == 0, line, "curl exited with %d" % status, out + err)
    try:
        created = json.loads(out)
    except ValueError:
        fail(line, "curl did not print the created session's JSON", out + err)
    w.check("id" in created and created.get("cwd") == DEFAULT_WORKSPACE, line,
            "the session without cwd was not created in the default workspace", out)
    ended = w.wait_ended(created["id"], line)
    w.check(ended.get("exitCode") == 0 and task_output in ended.get("recentOutput", ""), line,
            "the session did not print %r and exit 0" % task_output, json.dumps(ended))


def check_install(w, line):
    status, out, err = w.bash(line)
    w.check(status == 0, line, "install -d failed", out + err)


def check_run_cwd(w, line):
    status, out, err = w.bash(line)
    w.check(status == 0 and re.search(r"nobody\s.*\snote$", out, re.M), line,
            "run --cwd did not exit 0 with `note` (owned by nobody) in its listing", out + err)


def check_run_default(w, line):
    status, out, err = w.bash(line)
    w.check(status == 0 and out.splitlines()[:1] == [DEFAULT_WORKSPACE], line,
            "run without cwd did not print the default workspace and exit 0", out + err)


def check_detach(w, line):
    status, out, err = w.bash(line)
    sid = w.env.get("id", "")
    w.check(status == 0 and sid.startswith("s-"), line, "run --detach printed no session id",
            out + err)
    s = w.api("/sessions/" + sid)
    w.check(s["type"] == "interactive" and s["preset"] == "shell", line,
            "the detached session is not an interactive shell session", json.dumps(s))


def check_attach(w, line):
    # Typed on a terminal: a command whose output differs from its echo, then `exit`.
    status, screen = w.on_terminal(line, ["echo $((6*7))typed\r", "exit\r"], ["ready"])
    w.check("42typed" in screen, line, "the typed command did not run in the attached shell",
            screen)
    w.check(status == 0, line, "attach did not exit 0 when the shell exited (%d)" % status,
            screen)


def check_ls_logs_kill(w, line):
    status, out, err = w.bash(line)
    sid = w.env["id"]
    w.check(status == 0, line, "ls; logs -f; kill exited with %d" % status, out + err)
    header = out.splitlines()[0].split() if out else []
    w.check(header == ["ID", "STATUS", "TYPE", "AGE", "OWNER", "COMMAND"], line,
            "ls printed no table header", out)
    w.check(re.search(r"^%s\s+exited \(0\)\s+interactive" % re.escape(sid), out, re.M), line,
            "ls does not show the shell session as exited (0)", out)
    w.check("42typed" in out and out.rstrip().endswith("killed " + sid), line,
            "logs -f did not print the shell's output, or kill did not say `killed ID`", out)


def check_kill_unknown(w, line, doc_error, doc_id):
    status, out, err = w.bash(line)
    w.check(status == 1, line, "kill of an unknown id did not exit 1", out + err)
    w.check(err.strip() == doc_error.replace(doc_id, line.split()[2]), line,
            "the error differs from docs/cli.md's: " + doc_error, err)


def check_policies(w, line, doc_header, doc_rows):
    status, out, err = w.bash(line)
    w.check(status == 0, line, "policies exited with %d" % status, out + err)
    rows = [re.split(r"\s{2,}", x.strip()) for x in out.splitlines() if x.strip()]
    w.check(rows and rows[0] == doc_header, line, "the header differs from docs/cli.md's",
            out)
    by_name = {r[0]: r for r in rows[1:]}
    for doc in doc_rows:
        got = by_name.get(doc[0], [])
        # The description is cut to the terminal's width: compare the columns before it.
        w.check(got[:-1] == doc[:-1], line,
                "policy %s reads %s, docs/cli.md shows %s" % (doc[0], got, doc), out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--mutate", nargs=2, action="append", default=[], metavar=("OLD", "NEW"))
    args = ap.parse_args()
    docs = {}
    for name in ("README.md", "docs/cli.md"):
        with open(os.path.join(args.source, name), encoding="utf-8") as f:
            docs[name] = f.read()
    for old, new in args.mutate:
        if not any(old in text for text in docs.values()):
            print("first_hour: --mutate: %r is in neither document" % old, file=sys.stderr)
            return 2
        docs = {k: v.replace(old, new) for k, v in docs.items()}
    doc_error, doc_id = cli_doc_kill_error(docs["docs/cli.md"])
    doc_header, doc_rows = cli_doc_policies(docs["docs/cli.md"])

    w = Walk(args)
    proc, lines, _ = start_daemon(args)
    try:
        banner_export, banner_curl = banner_commands(lines, proc)
        # Each check claims the README lines that match its pattern, in order.
        checks = [
            (r"^export MONKEYPROOF_URL=", lambda l: check_export(w, l, banner_export)),
            (r"^curl .*/sessions$", lambda l: check_curl(w, l, "hello from the sandbox")),
            (r"^install -d ", lambda l: check_install(w, l)),
            (r"^monkeyproof run --cwd ", lambda l: check_run_cwd(w, l)),
            (r"^monkeyproof run -- ", lambda l: check_run_default(w, l)),
            (r"^id=\$\(monkeyproof run --detach .*--preset shell", lambda l: check_detach(w, l)),
            (r"^monkeyproof attach \$id", lambda l: check_attach(w, l)),
            (r"^monkeyproof ls; monkeyproof logs -f \$id; monkeyproof kill \$id",
             lambda l: check_ls_logs_kill(w, l)),
            (r"^monkeyproof kill s-", lambda l: check_kill_unknown(w, l, doc_error, doc_id)),
            (r"^monkeyproof policies", lambda l: check_policies(w, l, doc_header, doc_rows)),
        ]
        block = readme_block(docs["README.md"])
        pending = list(checks)
        for line in block:
            if not pending or not re.search(pending[0][0], line):
                claimed = [p for p, _ in pending if re.search(p, line)]
                raise Failed("README's example line %r %s" % (
                    line, "is out of order" if claimed else
                    "has no check in tests/e2e/first_hour.py: add one"))
            print("$ " + line, flush=True)
            pending.pop(0)[1](line)
        if pending:
            raise Failed("README's example block no longer has a line matching %r "
                         "(update tests/e2e/first_hour.py)" % pending[0][0])
        # The lines dev mode itself prints for a newcomer work too.
        print("$ " + banner_curl + "   (printed by monkeyproofd --dev)", flush=True)
        check_curl(w, banner_curl, "hello")
    except Failed as e:
        print("FAILED (first_hour): %s" % e, file=sys.stderr)
        return 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if proc.returncode != 0:
        print("FAILED (first_hour): monkeyproofd --dev exited with %d after SIGTERM"
              % proc.returncode, file=sys.stderr)
        return 1
    print("first_hour: %d checks passed over %d documented lines and dev mode's curl line"
          % (w.checks, len(block)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
