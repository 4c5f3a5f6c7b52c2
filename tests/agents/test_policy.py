#!/usr/bin/env python3
"""Derives a test host's policy from a real preset file, rewriting only what the test host
needs, so that the preset's command flags, user, network, seccomp, limits and deadlines are
what runs:

- workspace_roots becomes [the parent of WORKSPACE] and default_workspace WORKSPACE;
- every string under /var/lib/monkeyproof/agents/ (state_dirs, hide, env values) moves under
  STATE_BASE (the same relative path);
- command[0] becomes BIN (the pinned CLI in the build tree);
- hide entries that contain BIN (a checkout under /home, say) are dropped, or the sandbox
  would cover the binary;
- each --set NAME=VALUE is added to env.set (a base URL);
- each --mount DIR is added to mounts, read-only at its own path (the build tree's CLIs: the
  sandbox's allowlisted view shows only /usr, /etc, /opt and the like of the host);
- with --rename-state OLD=NEW, the agent state dir OLD is STATE_BASE/NEW instead (for a preset
  that needs its own config file on the test host);
- with --gateway-upstream https://HOST:PORT, every network.gateway endpoint's upstream goes to
  that origin instead, its path kept (the stub model behind the credential gateway);
- with --key-in-env NAME=SECRET (a control, the way before the gateway): the gateway endpoint
  whose key_env is NAME is dropped and env.secrets gets NAME=SECRET, so the key is in the
  session's environment.

    test_policy.py PRESET.json OUT.json --workspace DIR --state-base DIR --bin PATH \
        [--set NAME=VALUE]... [--mount DIR]... [--rename-state OLD=NEW] \
        [--gateway-upstream ORIGIN] [--key-in-env NAME=SECRET]

Prints one line per change. The output is plain JSON (the preset's comments are dropped).
"""

import argparse
import json
import os
import sys
import urllib.parse

import jsonc  # tests/agents/jsonc.py, beside this script

AGENT_STATE = "/var/lib/monkeyproof/agents/"


def inside(path, directory):
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("preset")
    p.add_argument("out")
    p.add_argument("--workspace", required=True)
    p.add_argument("--state-base", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--mount", action="append", default=[], metavar="DIR")
    p.add_argument("--rename-state", default="", metavar="OLD=NEW")
    p.add_argument("--gateway-upstream", default="", metavar="ORIGIN")
    p.add_argument("--key-in-env", default="", metavar="NAME=SECRET")
    a = p.parse_args()
    old_state, _, new_state = a.rename_state.partition("=")
    if a.rename_state and (not old_state or not new_state or "/" in a.rename_state):
        p.error(f"--rename-state wants OLD=NEW (names, no slashes), got {a.rename_state!r}")
    for name, value in (("--workspace", a.workspace), ("--state-base", a.state_base),
                        ("--bin", a.bin)):
        if not os.path.isabs(value):
            p.error(f"{name} must be an absolute path, got {value!r}")
    try:
        with open(a.preset, encoding="utf-8") as f:
            policy = json.loads(jsonc.strip_comments(f.read()))
    except (OSError, ValueError) as e:
        sys.exit(f"test_policy.py: {a.preset}: {e}")
    changes = []

    def move(value, where):
        if isinstance(value, str) and value.startswith(AGENT_STATE):
            rest = value[len(AGENT_STATE):]
            first, sep, tail = rest.partition("/")
            if old_state and first == old_state:
                rest = new_state + sep + tail
            moved = a.state_base.rstrip("/") + "/" + rest
            changes.append(f"{where}: {value} -> {moved}")
            return moved
        if isinstance(value, list):
            return [move(v, f"{where}/{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: move(v, f"{where}/{k}") for k, v in value.items()}
        return value

    policy = move(policy, "")
    # The workspace lies below the root: a root itself is refused as a cwd.
    root = os.path.dirname(a.workspace.rstrip("/"))
    changes.append(f"/workspace_roots: {policy.get('workspace_roots')} -> [{root}]")
    policy["workspace_roots"] = [root]
    policy["default_workspace"] = a.workspace
    command = policy.get("command") or []
    if not command:
        sys.exit(f"test_policy.py: {a.preset} has no command to point at {a.bin}")
    changes.append(f"/command/0: {command[0]} -> {a.bin}")
    command[0] = a.bin
    hide = policy.get("hide") or []
    kept = [h for h in hide if not inside(a.bin, h)]
    for h in hide:
        if h not in kept:
            changes.append(f"/hide: dropped {h} (it contains {a.bin})")
    if "hide" in policy:
        policy["hide"] = kept
    env_set = policy.setdefault("env", {}).setdefault("set", {})
    for item in a.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            p.error(f"--set wants NAME=VALUE, got {item!r}")
        changes.append(f"/env/set/{name}: {env_set.get(name)} -> {value}")
        env_set[name] = value
    network = policy.get("network")
    gateway = network.get("gateway", []) if isinstance(network, dict) else []
    if a.gateway_upstream:
        origin = urllib.parse.urlsplit(a.gateway_upstream)
        if origin.scheme != "https" or not origin.hostname or origin.path not in ("", "/"):
            p.error(f"--gateway-upstream wants https://HOST[:PORT], got {a.gateway_upstream!r}")
        for i, endpoint in enumerate(gateway):
            old = urllib.parse.urlsplit(endpoint["upstream"])
            new = f"https://{origin.netloc}{old.path}"
            changes.append(f"/network/gateway/{i}/upstream: {endpoint['upstream']} -> {new}")
            endpoint["upstream"] = new
    if a.key_in_env:
        name, sep, secret = a.key_in_env.partition("=")
        kept = [e for e in gateway if e.get("key_env") != name]
        if not sep or len(kept) == len(gateway):
            p.error(f"--key-in-env wants NAME=SECRET with NAME a gateway key_env, "
                    f"got {a.key_in_env!r}")
        network["gateway"] = kept
        policy["env"].setdefault("secrets", {})[name] = secret
        changes.append(f"/network/gateway: dropped the endpoint of {name}; "
                       f"/env/secrets/{name}: {secret}")
    mounts = policy.setdefault("mounts", [])
    for directory in a.mount:
        if not os.path.isabs(directory):
            p.error(f"--mount must be an absolute path, got {directory!r}")
        changes.append(f"/mounts: + {directory} (read-only)")
        mounts.append({"source": directory, "mode": "ro"})
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(policy, f, indent=2)
        f.write("\n")
    for c in changes:
        print(f"{os.path.basename(a.out)}{c}")


if __name__ == "__main__":
    main()
