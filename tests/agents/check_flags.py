#!/usr/bin/env python3
"""Checks every agent preset's command line against the pinned version of its CLI.

For each policies/*.json of type print or interactive:

1. command[0] names a CLI pinned in tests/agents/versions.json (by its executable name);
2. every flag of the template is listed by that version's --help of the template's
   subcommand (`codex exec --help`, `opencode run --help`, `claude --help`, ...);
3. a dry run: the CLI runs the full argument vector with the task appended, offline and
   without credentials, and must fail *after* parsing its arguments, at a point this script
   knows (no login, a missing config directory, ...). An argument error (unknown flag, invalid
   choice) fails the check, naming the preset, the flag and the version.

Before the presets, each CLI's detector is tested: a template with an unknown flag added must
be reported as an argument error, so a CLI whose error messages changed fails the check instead
of passing it silently.

  tests/agents/check_flags.py --build-dir BUILD_DIR [--policies DIR] [--no-install]

The CLIs are installed with tests/agents/install.sh BUILD_DIR (nothing is downloaded when the
pinned versions are already there). Exit status 0 when every preset passes, 1 otherwise.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import jsonc  # tests/agents/jsonc.py, beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE_FLAG = "--monkeyproof-no-such-flag"
TASK = "Reply with the word ok."
RUN_TIMEOUT = 120
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Nothing listens here: any network access fails at once.
DEAD_URL = "http://127.0.0.1:9"

# Per CLI: how it reports an argument error (the first group, if any, is the flag at fault),
# and what it prints once it got past its arguments in the dry-run environment below.
CLIS = {
    "claude": {
        "arg_errors": [
            r"error: unknown option '([^']+)'",
            r"error: option '([^' ]+)[^']*' argument '[^']*' is invalid",
            r"error: option '([^' ]+)[^']*' argument missing",
            r"error: (too many arguments)",
            r"error: unknown command '([^']+)'",
        ],
        "reached": r"Not logged in|Invalid API key|Please run /login",
    },
    "codex": {
        "arg_errors": [
            r"error: unexpected argument '([^']+)' found",
            r"error: invalid value '[^']*' for '([^' ]+)",
            r"error: a value is required for '([^' ]+)",
            r"error: unrecognized subcommand '([^']+)'",
            r"error: the argument '([^' ]+)[^']*' cannot be used",
        ],
        "reached": r"CODEX_HOME points to \S+, but that path does not exist",
    },
    "gemini": {
        "arg_errors": [
            r"Unknown arguments?: ([^,\s]+)",
            r"Invalid values:\s+Argument: ([^,\s]+),",
            r"Not enough arguments following: (\S+)",
            r"(Missing required argument)",
        ],
        "reached": r"Invalid auth method selected|GEMINI_API_KEY",
    },
    "opencode": {
        # yargs as OpenCode configures it prints the subcommand's usage and no message.
        "arg_errors": [
            r"Unknown arguments?: ([^,\s]+)",
            r"Invalid values:\s+Argument: ([^,\s]+),",
            r"Not enough arguments following: (\S+)",
            r"(?m)^opencode run \[message\.\.\]$",
        ],
        "reached": r"Config file at OPENCODE_CONFIG_CONTENT is not valid",
    },
}


SHELLS = {"sh", "bash", "dash", "zsh"}


def load_policies(directory):
    presets = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = os.path.join(directory, name)
        with open(path, encoding="utf-8") as f:
            try:
                policy = json.loads(jsonc.strip_comments(f.read()))
            except ValueError as e:
                raise SystemExit(f"check_flags: {path}: not valid JSON with comments: {e}")
        template = policy.get("command") or [""]
        # A plain shell (the `shell` preset) is no agent CLI: there are no pinned flags to check.
        if os.path.basename(template[0]) in SHELLS:
            continue
        if policy.get("type") in ("print", "interactive"):
            presets.append((name[: -len(".json")], policy))
    return presets


def subcommand_of(template):
    """The template's words between the executable and its first flag: its subcommand path."""
    words = []
    for word in template[1:]:
        if word.startswith("-"):
            break
        words.append(word)
    return words


def flags_of(template):
    """Each flag the template uses, without an attached `=value`."""
    return [w.split("=", 1)[0] for w in template[1:] if w.startswith("-") and w != "-"]


NODE_BIN_DIR = ""  # set by main(): the pinned Node.js of tests/agents/node-version


def with_probe(template):
    """The template with PROBE_FLAG inserted before its first flag."""
    at = 1 + len(subcommand_of(template))
    return template[:at] + [PROBE_FLAG] + template[at:]


def run(argv, env, cwd):
    try:
        p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        return None, ANSI.sub("", out)
    return p.returncode, ANSI.sub("", p.stdout.decode("utf-8", "replace"))


def dry_run_env(cli, home):
    """Offline, no credentials, a fresh home; each CLI stops at a known point after parsing."""
    env = {
        "PATH": NODE_BIN_DIR + ":/usr/bin:/bin",
        "HOME": home,
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "XDG_CACHE_HOME": os.path.join(home, ".cache"),
        "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
        "XDG_STATE_HOME": os.path.join(home, ".local", "state"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "HTTPS_PROXY": DEAD_URL,
        "HTTP_PROXY": DEAD_URL,
        "https_proxy": DEAD_URL,
        "http_proxy": DEAD_URL,
    }
    if cli == "claude":
        # Claude Code refuses bypassPermissions as root unless told it is sandboxed; the check
        # may run as root (in CI containers), the presets never do.
        env.update({"IS_SANDBOX": "1", "ANTHROPIC_BASE_URL": DEAD_URL,
                    "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
    elif cli == "codex":
        env["CODEX_HOME"] = os.path.join(home, "absent")
        env["OPENAI_BASE_URL"] = DEAD_URL + "/v1"
    elif cli == "gemini":
        env["GOOGLE_GEMINI_BASE_URL"] = DEAD_URL
    elif cli == "opencode":
        env["OPENCODE_CONFIG_CONTENT"] = '{"monkeyproof-check": '
        env["OPENCODE_DISABLE_AUTOUPDATE"] = "1"
    return env


def argument_error(cli, output):
    """The argument error in OUTPUT as (message line, flag or None), or None."""
    for pattern in CLIS[cli]["arg_errors"]:
        m = re.search(pattern, output)
        if m:
            line = next((l for l in output.splitlines() if m.group(0).splitlines()[0] in l),
                        m.group(0))
            flag = m.group(1) if m.groups() else None
            return line.strip(), flag
    return None


def excerpt(output, limit=800):
    text = output.strip()
    return text if len(text) <= limit else text[:limit] + " [...]"


class Checker:
    def __init__(self, pins, bins):
        self.pins = pins          # cli -> {"package", "version", "bin"}
        self.bins = bins          # cli -> executable path
        self.help_cache = {}
        self.failures = []
        self.work = tempfile.mkdtemp(prefix="mp-flag-check-")

    def fail(self, message):
        self.failures.append(message)
        print("FAIL " + message, flush=True)

    def label(self, cli):
        return f"{self.pins[cli]['package']}@{self.pins[cli]['version']}"

    def dry_run(self, cli, argv):
        home = tempfile.mkdtemp(dir=self.work, prefix=cli + "-home-")
        cwd = tempfile.mkdtemp(dir=self.work, prefix=cli + "-ws-")
        return run([self.bins[cli]] + argv[1:] + [TASK], dry_run_env(cli, home), cwd)

    def help_text(self, cli, sub):
        key = (cli, tuple(sub))
        if key not in self.help_cache:
            home = tempfile.mkdtemp(dir=self.work, prefix=cli + "-help-")
            status, out = run([self.bins[cli]] + sub + ["--help"], dry_run_env(cli, home), home)
            self.help_cache[key] = out if status == 0 else None
            if status != 0:
                self.fail(f"{self.label(cli)}: `{' '.join([cli] + sub + ['--help'])}` exited with "
                          f"{'a timeout' if status is None else status}: {excerpt(out)}")
        return self.help_cache[key]

    def self_test(self, cli, preset, template):
        """The detector must see an unknown flag in this version's output."""
        status, out = self.dry_run(cli, with_probe(template))
        err = argument_error(cli, out)
        if status in (0, None) or err is None:
            self.fail(f"{self.label(cli)}: an unknown flag ({PROBE_FLAG}, added to preset "
                      f"{preset}) was not reported as an argument error (exit "
                      f"{'timeout' if status is None else status}); the check cannot tell "
                      f"argument errors of this version apart: {excerpt(out)}")
            return False
        print(f"ok   {self.label(cli)}: an unknown flag is reported: {err[0]}", flush=True)
        return True

    def check(self, preset, template):
        cli = os.path.basename(template[0])
        if cli not in self.bins:
            self.fail(f"preset {preset}: command {template[0]!r} is no CLI pinned in "
                      f"versions.json (pinned: {', '.join(sorted(self.bins))})")
            return
        version = self.label(cli)
        sub = subcommand_of(template)
        help_out = self.help_text(cli, sub)
        ok = True
        if help_out is not None:
            for flag in flags_of(template):
                if not re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", help_out):
                    ok = False
                    self.fail(f"preset {preset}: flag {flag} is not listed by "
                              f"`{' '.join([cli] + sub + ['--help'])}` of {version}")
        status, out = self.dry_run(cli, template)
        err = argument_error(cli, out)
        shown = " ".join(template[1:])
        if err is not None:
            line, flag = err
            what = f"flag {flag}" if flag else "an argument error without a message (usage shown)"
            self.fail(f"preset {preset}: {version} rejects its command line ({shown}): "
                      f"{what}: {line}")
        elif status is None:
            self.fail(f"preset {preset}: {version} did not finish the dry run within "
                      f"{RUN_TIMEOUT} s: {excerpt(out)}")
        elif status == 0 or not re.search(CLIS[cli]["reached"], out):
            self.fail(f"preset {preset}: {version} ended the dry run with exit {status} "
                      f"without the expected later failure (/{CLIS[cli]['reached']}/), so "
                      f"whether it accepted its arguments is unknown: {excerpt(out)}")
        elif ok:
            print(f"ok   preset {preset}: {version} accepts `{cli} {shown} TASK`", flush=True)

    def cleanup(self):
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", required=True, help="where install.sh puts the CLIs")
    parser.add_argument("--policies", default=os.path.join(HERE, "..", "..", "policies"))
    parser.add_argument("--no-install", action="store_true",
                        help="use the CLIs already in BUILD_DIR/agents, do not run install.sh")
    args = parser.parse_args()

    with open(os.path.join(HERE, "versions.json"), encoding="utf-8") as f:
        pins = json.load(f)
    unknown = sorted(set(pins) - set(CLIS))
    if unknown:
        raise SystemExit(f"check_flags: versions.json pins {unknown}, which this check does not know")

    install = [os.path.join(HERE, "install.sh"), args.build_dir]
    if args.no_install:
        bins = {c: os.path.abspath(os.path.join(args.build_dir, "agents", c, "node_modules",
                                                ".bin", p["bin"]))
                for c, p in pins.items()}
        missing = [b for b in bins.values() if not os.access(b, os.X_OK)]
        if missing:
            raise SystemExit(f"check_flags: not installed: {missing}; run {' '.join(install)}")
    else:
        p = subprocess.run(install, stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise SystemExit(f"check_flags: {' '.join(install)} failed with exit {p.returncode}")
        bins = {}
        for line in p.stdout.splitlines():
            name, _version, path = line.split(" ", 2)
            bins[name] = path
    # The pinned Node.js (install.sh) runs the Node-based CLIs, not whatever the host has.
    global NODE_BIN_DIR
    NODE_BIN_DIR = os.path.abspath(os.path.join(args.build_dir, "agents", "node", "node_modules",
                                                ".bin"))
    if not os.access(os.path.join(NODE_BIN_DIR, "node"), os.X_OK):
        raise SystemExit(f"check_flags: no pinned node in {NODE_BIN_DIR}; run {' '.join(install)}")
    # Keyed by executable name, which is what a template's command[0] holds.
    by_bin = {pins[c]["bin"]: c for c in pins}
    checker = Checker({b: pins[c] for b, c in by_bin.items()},
                      {b: bins[c] for b, c in by_bin.items()})

    presets = load_policies(args.policies)
    if not presets:
        raise SystemExit(f"check_flags: no print or interactive policy in {args.policies}")
    try:
        tested = set()
        for preset, policy in presets:
            template = policy.get("command") or []
            if not template:
                checker.fail(f"preset {preset}: no command template")
                continue
            cli = os.path.basename(template[0])
            if cli in checker.bins and cli not in tested:
                tested.add(cli)
                if not checker.self_test(cli, preset, template):
                    continue
            checker.check(preset, template)
    finally:
        checker.cleanup()

    print(f"{len(presets)} presets, {len(checker.failures)} failures", flush=True)
    return 1 if checker.failures else 0


if __name__ == "__main__":
    sys.exit(main())
