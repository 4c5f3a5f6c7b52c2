"""The comparison half of the compatibility test (compat.py): observations of one flow against
the original and against ours compared member by member, and the differences found checked
against differences.json. See tests/compat/README.md, "Comparison"."""

import fnmatch
import json
import os
import sys

DIFFERENCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "differences.json")


def jtype(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def show(v):
    if isinstance(v, str) and len(v) > 60:
        return "string of %d characters starting %s" % (len(v), json.dumps(v[:30]))
    if isinstance(v, (dict, list)):
        return "<%s>" % jtype(v)
    return json.dumps(v)


def compare(path, orig, ours, opts, key, out, counter):
    counter[0] += 1
    if jtype(orig) != jtype(ours):
        out.append((path, "<%s> %s" % (jtype(ours), show(ours)),
                    "<%s> %s" % (jtype(orig), show(orig))))
        return
    if isinstance(orig, dict):
        for k, v in orig.items():
            if k not in ours:
                counter[0] += 1
                out.append((path + "/" + k, "<absent>", show(v)))
            else:
                compare(path + "/" + k, v, ours[k], opts, k, out, counter)
    elif isinstance(orig, list):
        if opts["shape_only"]:
            if orig and ours:
                compare(path + "/0", orig[0], ours[0], opts, key, out, counter)
            return
        if len(orig) != len(ours):
            out.append((path + "/length", str(len(ours)), str(len(orig))))
        for i, (a, b) in enumerate(zip(orig, ours)):
            compare("%s/%d" % (path, i), a, b, opts, key, out, counter)
    elif not opts["shape_only"] and key not in opts["volatile"] and orig != ours:
        out.append((path, show(ours), show(orig)))


def compare_flow(orig_obs, ours_obs):
    """Mismatches (path, ours, original) and the number of checks."""
    mismatches, counter = [], [0]
    ours_by_name = {name: (value, opts) for name, value, opts in ours_obs}
    differing = set()
    for name, value, opts in orig_obs:
        path = "/" + name
        if opts["after"] in differing:
            continue
        before = len(mismatches)
        if name not in ours_by_name:
            counter[0] += 1
            mismatches.append((path, "<absent>", show(value)))
        else:
            compare(path, value, ours_by_name[name][0], opts, name, mismatches, counter)
        if len(mismatches) > before:
            differing.add(name)
            if opts["gate"]:
                break
    return mismatches, counter[0]


def load_differences():
    with open(DIFFERENCES, encoding="utf-8") as f:
        doc = json.load(f)
    entries = doc["differences"]
    for e in entries:
        missing = {"flow", "path", "ours", "original", "reason"} - set(e)
        if missing:
            sys.exit("differences.json: entry %r lacks %s" % (e, ", ".join(sorted(missing))))
    return entries


def matches(entry, difference):
    return (fnmatch.fnmatchcase(difference["flow"], entry["flow"])
            and fnmatch.fnmatchcase(difference["path"], entry["path"]))


def report(observed, listed, checks, flows, write_observed):
    """Prints the outcome; returns 0 when every difference is listed and every entry observed."""
    problems = []
    for d in observed:
        entry = next((e for e in listed if matches(e, d)), None)
        if entry is None:
            problems.append("difference not in differences.json: %s" % json.dumps(d))
        else:
            print("listed difference still there: %s %s: ours %s, original %s"
                  % (d["flow"], d["path"], d["ours"], d["original"]))
    for e in listed:
        if not any(matches(e, d) for d in observed):
            problems.append("listed difference no longer observed (remove it from "
                            "differences.json and docs/api.md): %s %s" % (e["flow"], e["path"]))
    print("%d flows, %d checks, %d differences observed, %d listed"
          % (flows, checks, len(observed), len(listed)))
    if write_observed:
        with open(write_observed, "w", encoding="utf-8") as f:
            json.dump(observed, f, indent=1)
    for p in problems:
        print("FAILED:", p)
    return 1 if problems else 0
