#!/usr/bin/env python3
"""POST /sessions round trips, for bench/post_timing.sh.

  post     N POSTs of one body over one keep-alive connection, each after the previous
           session has ended; prints one line per POST: "POST <t0_ns> <t1_ns> <status>"
           (CLOCK_MONOTONIC, the clock the daemons' stamps use).
  report   reads the POST lines and, when present, the daemons' stamp files
           (/tmp/mp-stamps.<pid>: "name ns" per line, written by a build with timing stamps)
           and prints the median of each step between consecutive stamps within a POST.

Standard library only (Debian's python3)."""
import argparse
import http.client
import json
import os
import statistics
import sys
import time


def cmd_post(a):
    token = os.environ["MONKEYPROOF_TOKEN"]
    host, port = a.hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    body = a.body.encode()
    for i in range(a.warmup + a.count):
        t0 = time.monotonic_ns()
        conn.request("POST", "/sessions", body=body, headers=headers)
        r = conn.getresponse()
        payload = r.read()
        t1 = time.monotonic_ns()
        if r.status != 201:
            sys.exit("POST /sessions: %d %s" % (r.status, payload[:300]))
        sid = json.loads(payload)["id"]
        if i >= a.warmup:
            print("POST %d %d %d" % (t0, t1, r.status), flush=True)
        # Wait for the end, so that no session runs during the next POST.
        for _ in range(600):
            conn.request("GET", "/sessions/" + sid, headers=headers)
            g = conn.getresponse()
            info = json.loads(g.read())
            if info.get("status") not in ("running", "starting"):
                break
            time.sleep(0.05)
        time.sleep(a.pause)


def load_stamps(paths):
    out = []
    for p in paths:
        with open(p) as f:
            for line in f:
                name, ns = line.split()
                out.append((int(ns), name))
    out.sort()
    return out


def cmd_report(a):
    posts = []
    with open(a.posts) as f:
        for line in f:
            if line.startswith("POST "):
                _, t0, t1, _ = line.split()
                posts.append((int(t0), int(t1)))
    stamps = load_stamps(a.stamps)
    rtt = [(t1 - t0) / 1e6 for t0, t1 in posts]
    print("%s: %d POSTs, round trip median %.1f ms (p10 %.1f, p90 %.1f)" % (
        a.label, len(rtt), statistics.median(rtt), quantile(rtt, 0.1), quantile(rtt, 0.9)))
    if not stamps:
        return
    steps = {}
    order = []
    for t0, t1 in posts:
        inside = [(ns, n) for ns, n in stamps if t0 <= ns <= t1 and not n.startswith("s10p")]
        prev_ns, prev_name = t0, "c0_client_send"
        for ns, name in inside + [(t1, "c1_client_has_201")]:
            key = "%s -> %s" % (prev_name, name)
            if key not in steps:
                steps[key] = []
                order.append(key)
            steps[key].append((ns - prev_ns) / 1e6)
            prev_ns, prev_name = ns, name
    for key in order:
        xs = steps[key]
        print("  %-46s median %7.2f ms  (n=%d)" % (key, statistics.median(xs), len(xs)))


def quantile(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("post")
    p.add_argument("--hostport", default="127.0.0.1:3290")
    p.add_argument("--count", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--pause", type=float, default=0.2)
    p.add_argument("--body", default='{"task":"true","command":"/bin/true"}')
    r = sub.add_parser("report")
    r.add_argument("--label", default="")
    r.add_argument("posts")
    r.add_argument("stamps", nargs="*")
    a = ap.parse_args()
    {"post": cmd_post, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
