#!/usr/bin/python3
"""Helpers of bench/egress_bench.sh (bench/README.md, "egress_bench"). Debian's python3 only.

  spawn SOCKET PRESET TASK   starts one session through monkeyproofd's control socket
                             (docs/protocol.md: SEQPACKET frames, hello, spawn) and prints its id
  table PREFIX               the table from a run's PREFIX.jsonl; --readme FILE rewrites its
                             "egress_bench" section between the markers (--facts: text above it)
"""
import argparse
import json
import socket
import statistics
import struct
import sys

VARIANTS = ["direct", "proxy", "gateway"]
LABELS = {
    "direct": "direct (host network)",
    "proxy": "proxy (allowlist, HTTPS_PROXY)",
    "gateway": "gateway (allowlist, endpoint)",
}
BEGIN = "<!-- egress_bench.sh table: begin -->"
END = "<!-- egress_bench.sh table: end -->"
TRANSFER_TARGET = 1.10  # issue 14: at most 10 % more transfer time
SETUP_TARGET_MS = 1.0  # issue 14: at most 1 ms more median connection setup


def frame(obj):
    body = json.dumps(obj).encode()
    return b"MPW1" + struct.pack("<II", len(body), 0) + body


def unframe(record):
    if len(record) < 12 or record[:4] != b"MPW1":
        raise SystemExit("egress_bench: not a frame from monkeyproofd: %r" % record[:32])
    jlen, _ = struct.unpack("<II", record[4:12])
    return json.loads(record[12:12 + jlen])


def spawn(a):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(a.socket)
    s.send(frame({"type": "hello", "proto": 4, "client": "egress-bench/1"}))
    hello = unframe(s.recv(65536))
    if hello.get("type") != "hello":
        raise SystemExit("egress_bench: hello refused: %s" % hello)
    s.send(frame({"id": 1, "type": "spawn", "task": a.task, "preset": a.preset,
                  "client": "egress-bench"}))
    while True:
        r = unframe(s.recv(65536))
        if r.get("id") == 1:
            break
    if r.get("type") == "error" or "session" not in r:
        raise SystemExit("egress_bench: spawn refused: %s" % r)
    session = r["session"]
    print(session["id"] if isinstance(session, dict) else session)


def load(prefix):
    rows = []
    with open(prefix + ".jsonl") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def med(values):
    return statistics.median(values) if values else None


def fmt(v, digits=3):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "%.0f" % v
    return ("%." + str(digits) + "g") % v


def table(a):
    rows = load(a.prefix)
    legs = {}  # variant -> [leg numbers in run order]
    for r in rows:
        if r.get("kind") == "leg":
            legs.setdefault(r["variant"], []).append(r["leg"])

    def values(variant, kind, key, leg=None):
        return [r[key] for r in rows if r.get("kind") == kind and r.get("variant") == variant
                and (leg is None or r.get("leg") == leg) and r.get(key) is not None]

    def cell(variant, kind, key, scale=1.0, agg=med):
        """The median over both legs, and each leg's median in brackets."""
        total = agg(values(variant, kind, key))
        if total is None:
            return None, "-"
        parts = []
        for leg in legs.get(variant, []):
            v = agg(values(variant, kind, key, leg))
            parts.append(fmt(v * scale) if v is not None else "-")
        return total * scale, "%s (%s)" % (fmt(total * scale), " / ".join(parts))

    lines = []
    missing = []
    head = "| figure | unit | %s | proxy / direct | gateway / direct |" % " | ".join(
        LABELS[v] for v in VARIANTS)
    lines.append(head)
    lines.append("|---|---|" + "---:|" * (len(VARIANTS) + 2))

    def row(label, unit, kind, key, scale=1.0, ratio="ratio", agg=med, needed=VARIANTS):
        got = {}
        texts = []
        for v in VARIANTS:
            val, text = cell(v, kind, key, scale, agg)
            got[v] = val
            texts.append(text)
            if val is None and v in needed:
                missing.append("%s: %s" % (label, v))
        extra = []
        for v in ("proxy", "gateway"):
            if got[v] is None or got["direct"] is None:
                extra.append("-")
            elif ratio == "ratio":
                extra.append("%.2f" % (got[v] / got["direct"]) if got["direct"] else "-")
            else:  # difference
                extra.append("%+.2f" % (got[v] - got["direct"]))
        lines.append("| %s | %s | %s | %s |" % (label, unit, " | ".join(texts), " | ".join(extra)))
        return got

    nbytes = next((r["bytes"] for r in rows if r.get("kind") == "transfer"), 0)
    t = row("transfer of %d bytes, median" % nbytes, "s", "transfer", "time_total")
    row("throughput, median", "MiB/s", "transfer", "mib_s")
    s = row("connection setup: time to first byte of a small file, median", "ms", "setup",
            "time_starttransfer", 1000.0, ratio="difference")
    row("TCP connect (curl's time_connect), median", "ms", "setup", "time_connect", 1000.0,
        ratio="difference")
    row("TLS done (curl's time_appconnect), median", "ms", "setup", "time_appconnect", 1000.0,
        ratio="difference", needed=("direct", "proxy"))
    row("setup samples", "count", "setup", "time_starttransfer", agg=lambda x: len(x) or None,
        ratio="difference")
    row("transfer samples", "count", "transfer", "time_total", agg=lambda x: len(x) or None,
        ratio="difference")
    row("downloads complete and byte-exact", "fraction", "transfer", "ok",
        agg=lambda x: (sum(1 for v in x if v) / len(x)) if x else None)
    row("upstream CPU / transfer time (the server's load)", "fraction", "transfer",
        "upstream_cpu_fraction")
    row("monkeyproof-egress CPU per GiB", "s", "transfer", "egress_cpu_s_per_gib",
        ratio="difference")
    lines.append("")
    lines.append("| target (issue 14) | proxy | gateway |")
    lines.append("|---|---|---|")

    def verdict(val, limit, fmt_):
        if val is None:
            return "-"
        return "%s (%s)" % (fmt_ % val, "met" if val <= limit else "MISSED")

    tr = {v: (t[v] / t["direct"] if t.get(v) and t.get("direct") else None)
          for v in ("proxy", "gateway")}
    sd = {v: (s[v] - s["direct"] if s.get(v) is not None and s.get("direct") is not None else None)
          for v in ("proxy", "gateway")}
    lines.append("| transfer time / direct <= %.2f | %s | %s |" % (
        TRANSFER_TARGET, verdict(tr["proxy"], TRANSFER_TARGET, "%.3f"),
        verdict(tr["gateway"], TRANSFER_TARGET, "%.3f")))
    lines.append("| median setup - direct <= %.0f ms | %s | %s |" % (
        SETUP_TARGET_MS, verdict(sd["proxy"], SETUP_TARGET_MS, "%+.2f ms"),
        verdict(sd["gateway"], SETUP_TARGET_MS, "%+.2f ms")))
    text = "\n".join(lines)
    print(text)
    for m in missing:
        print("MISSING ROW %s" % m)
    if a.readme and not missing:
        facts = open(a.facts).read().strip() if a.facts else ""
        block = "%s\n%s\n\n%s\n%s" % (BEGIN, facts, text, END)
        with open(a.readme) as f:
            readme = f.read()
        if BEGIN not in readme or END not in readme:
            raise SystemExit("%s has no %s ... %s markers" % (a.readme, BEGIN, END))
        head_, rest = readme.split(BEGIN, 1)
        readme = head_ + block + rest.split(END, 1)[1]
        with open(a.readme, "w") as f:
            f.write(readme)
        print("egress_bench: table written to %s" % a.readme)
    return 1 if missing else 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("spawn")
    sp.add_argument("socket")
    sp.add_argument("preset")
    sp.add_argument("task")
    sp = sub.add_parser("table")
    sp.add_argument("prefix")
    sp.add_argument("--readme")
    sp.add_argument("--facts")
    a = p.parse_args()
    if a.cmd == "spawn":
        spawn(a)
        return 0
    return table(a)


if __name__ == "__main__":
    sys.exit(main())
